# Runs under MicroPython: starts the virtual board. The current directory is the
# board's flash; argv[1] is the folder of simulated peripherals (see vboard.py);
# argv[2], if given, bounds the loop to that many steps (for tests).

import gc
import sys

import vboard

vboard.SIM = sys.argv[1]
steps = int(sys.argv[2]) if len(sys.argv) > 2 else None

import board  # noqa: E402
import config  # noqa: E402
import runtime  # noqa: E402

import wattproof  # noqa: E402

cfg = config.load()
rt = runtime.Runtime(cfg, board.Board(cfg))
try:
    rt.run(steps)
except KeyboardInterrupt:
    pass  # a clean stop: the runtime removed its running marker
print("HEAP peak %d free %d" % (rt.heap_peak, gc.mem_free()))
wattproof.status()  # the console keeps what a technician would have seen
print("PACKETS closed %d total_ms %d max_ms %d" % (rt.closed, rt.close_ms_total, rt.close_ms_max))
