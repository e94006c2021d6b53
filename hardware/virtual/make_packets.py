# Runs under MicroPython: builds signed packets with the firmware code and writes
# them to a folder, for inspection, tests and benchmarks.
#
#   micropython make_packets.py OUT_DIR READINGS [PACKETS] [KEY_HEX] [START_TS] [DEVICE_ID]
#
# Writes OUT_DIR/packet-NNNN.cbor and OUT_DIR/device-key.sec1 (the public point).
# Without KEY_HEX the key is born here from os.urandom, as on a board.

import sys

import p256
import packet
from synthetic import SyntheticMeter


def main(argv):
    out_dir = argv[1]
    per_packet = int(argv[2])
    packets = int(argv[3]) if len(argv) > 3 else 1
    key = p256.SigningKey(int(argv[4], 16)) if len(argv) > 4 and argv[4] else p256.SigningKey.generate()
    start = int(argv[5]) if len(argv) > 5 else 1795000000
    device_id = argv[6] if len(argv) > 6 else "sample-meter-1"
    builder = packet.PacketBuilder(device_id, key)
    with open(out_dir + "/device-key.sec1", "wb") as f:
        f.write(key.public_key())
    meter = SyntheticMeter()
    number = 0
    for p in range(packets):
        for _ in range(per_packet):
            ts = start + 60 * number
            builder.add(meter.reading(number, ts), ts)
            number += 1
        with open("%s/packet-%04d.cbor" % (out_dir, p), "wb") as f:
            f.write(builder.close())


main(sys.argv)
