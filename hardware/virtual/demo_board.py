# Runs under MicroPython: one virtual meter board for `wattproof demo`.
#
#   micropython demo_board.py FLASH keygen DEVICE_ID
#       creates the device key in FLASH (once) and prints "PUBKEY <hex>"
#   micropython demo_board.py FLASH run URL PACKETS READINGS START_TS
#       measures on a simulated clock (one reading a minute), signs packets and
#       POSTs them; prints one line per packet, exits 1 on any refusal
#
# FLASH is the folder that stands in for the board's filesystem.

import binascii
import os
import sys

import cbor
import p256
import packet
import uplink
from synthetic import SyntheticMeter


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write_atomic(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.rename(path + ".tmp", path)


def keygen(flash, device_id):
    try:
        key = p256.SigningKey.from_bytes(_read(flash + "/device.key"))
    except OSError:
        key = p256.SigningKey.generate()
        _write_atomic(flash + "/device.key", key.to_bytes())
        _write_atomic(flash + "/device.id", device_id.encode())
    print("PUBKEY", binascii.hexlify(key.public_key()).decode())


def _load_state(flash):
    """Chain position, clock and meter registers saved after the last accepted packet."""
    try:
        return cbor.decode(_read(flash + "/state.cbor"))
    except OSError:
        return {
            "seq": 0,
            "prev": packet.GENESIS,
            "number": 0,
            "next_ts": 0,
            "import": 1204350,
            "export": 880120,
        }


def run(flash, url, packets, per_packet, start):
    state = _load_state(flash)
    builder = packet.PacketBuilder(
        _read(flash + "/device.id").decode(),
        p256.SigningKey.from_bytes(_read(flash + "/device.key")),
        seq=state["seq"],
        prev=state["prev"],
    )
    meter = SyntheticMeter(state["import"], state["export"])
    number = state["number"]
    ts = max(start, state["next_ts"])  # the simulated clock never runs backwards
    for _ in range(packets):
        while len(builder) < per_packet:
            builder.add(meter.reading(number, ts), ts)
            number += 1
            ts += 60
        seq = builder.seq
        data = builder.close()
        _write_atomic(flash + "/last-packet.cbor", data)
        status, answer = uplink.post(url + "/v1/packets", data)
        print("PACKET seq=%d readings=%d bytes=%d status=%d" % (seq, per_packet, len(data), status))
        if status not in (200, 201):
            print("REFUSED", answer.decode())
            sys.exit(1)
        state = {
            "seq": builder.seq,
            "prev": builder.prev,
            "number": number,
            "next_ts": ts,
            "import": meter.import_wh,
            "export": meter.export_wh,
        }
        _write_atomic(flash + "/state.cbor", cbor.encode(state))


def main(argv):
    flash, mode = argv[1], argv[2]
    if mode == "keygen":
        keygen(flash, argv[3])
    elif mode == "run":
        run(flash, argv[3], int(argv[4]), int(argv[5]), int(argv[6]))
    else:
        print("unknown mode", mode)
        sys.exit(2)


main(sys.argv)
