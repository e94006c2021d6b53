# Runs under MicroPython: reads a meter through the firmware driver on the virtual board.
#
#   micropython read_meter.py SIM_DIR CONFIG_JSON_FILE COUNT
#
# Prints "IDENTITY x" once, then per read "READ import export power" or "ERROR message".

import json
import sys

import vboard

vboard.SIM = sys.argv[1]
with open(sys.argv[2]) as f:
    cfg = json.load(f)

import meters  # noqa: E402

b = vboard.Board(cfg)
meter = meters.make(cfg["meter"], b)
try:
    print("IDENTITY", meter.identity())
except OSError as e:
    print("ERROR", e)
for _ in range(int(sys.argv[3])):
    try:
        print("READ %d %d %d" % meter.read())
    except OSError as e:
        print("ERROR", e)
if hasattr(meter, "phases"):
    try:
        power, energy = meter.phases()
        print("PHASES", " ".join(str(x) for x in power + energy))
    except OSError as e:
        print("ERROR", e)
print("MODBUS_ERRORS", meter.bus.errors)
