# Runs under MicroPython: builds and signs packets of N readings the way a board does.
#
#   micropython firmware_sign_board.py N PACKETS
#
# Prints "RESULT n=N build_ms=.. sign_ms=.. total_ms=.. bytes=.. after_imports=.." with
# medians over PACKETS packets. build = encoding readings and folding the Merkle root;
# sign = header, RFC 6979 nonce and ECDSA; the first packet (which fills the window table)
# is measured separately as first_ms.

import gc
import sys
import time

import p256
import packet
import reading

gc.collect()
AFTER_IMPORTS = gc.mem_alloc()


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(n, packets):
    key = p256.SigningKey(0x5A1E5A1E5A1E5A1E)
    builder = packet.PacketBuilder("bench-meter-1", key)
    number = 0
    build, sign, total = [], [], []
    size = 0
    first_ms = 0.0
    for p in range(packets + 1):
        t0 = time.ticks_us()
        for _ in range(n):
            ts = 1795000000 + 60 * number
            builder.add(reading.meter_interval(number, ts, 2, 1204350 + number, 880120 + 3 * number, -250), ts)
            number += 1
        t1 = time.ticks_us()
        data = builder.close()
        t2 = time.ticks_us()
        size = len(data)
        if p == 0:
            first_ms = time.ticks_diff(t2, t0) / 1000
            continue
        build.append(time.ticks_diff(t1, t0) / 1000)
        sign.append(time.ticks_diff(t2, t1) / 1000)
        total.append(time.ticks_diff(t2, t0) / 1000)
    assert data[0] == 0x82 and data[1] == 0xD2  # [COSE_Sign1 (tag 18), ...], checked in place
    print(
        "RESULT n=%d build_ms=%.2f sign_ms=%.2f total_ms=%.2f first_ms=%.2f bytes=%d after_imports=%d"
        % (n, median(build), median(sign), median(total), first_ms, size, AFTER_IMPORTS)
    )


main(int(sys.argv[1]), int(sys.argv[2]))
