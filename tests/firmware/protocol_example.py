# Runs under MicroPython: builds the worked example of docs/protocol.md from fixed
# inputs and prints each part as "NAME hex". RFC 6979 makes the signature reproducible.

import binascii

import cbor
import cose
import p256
import packet
import reading

KEY = p256.SigningKey(0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721)
T0 = 1795000000


def show(name, data):
    print(name, binascii.hexlify(data).decode())


readings = [
    (reading.device_event(0, T0, reading.TIME_SYNCHRONISED, reading.EVENT_BOOT, "fw 0.1.0"), T0),
    (reading.meter_interval(1, T0 + 60, reading.TIME_SYNCHRONISED, 1204351, 880120, 58), T0 + 60),
    (reading.meter_interval(2, T0 + 120, reading.TIME_SYNCHRONISED, 1204351, 880123, -184), T0 + 120),
]
builder = packet.PacketBuilder("example-meter-1", KEY, capacity=1024)
for raw, ts in readings:
    builder.add(raw, ts)
show("public_key", KEY.public_key())
show("kid", builder.kid)
for i, (raw, _) in enumerate(readings):
    show("reading%d" % i, raw)
payload = builder.header_payload()
show("payload", payload)
show("protected", cose.protected_header(builder.kid))
show("to_be_signed", cose.to_be_signed(cose.protected_header(builder.kid), payload))
data = bytes(builder.close())
show("signature", cbor.decode(data)[0].value[3])
show("packet", data)
show("next_prev", builder.prev)
