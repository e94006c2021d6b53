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


def run(flash, url, packets, per_packet, start):
    builder = packet.PacketBuilder(
        _read(flash + "/device.id").decode(), p256.SigningKey.from_bytes(_read(flash + "/device.key"))
    )
    meter = SyntheticMeter()
    number = 0
    for _ in range(packets):
        while len(builder) < per_packet:
            ts = start + 60 * number
            builder.add(meter.reading(number, ts), ts)
            number += 1
        seq = builder.seq
        data = builder.close()
        _write_atomic(flash + "/last-packet.cbor", data)
        status, answer = uplink.post(url + "/v1/packets", data)
        print("PACKET seq=%d readings=%d bytes=%d status=%d" % (seq, per_packet, len(data), status))
        if status not in (200, 201):
            print("REFUSED", answer.decode())
            sys.exit(1)


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
