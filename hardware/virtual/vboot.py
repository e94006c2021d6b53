# Runs under MicroPython: a virtual board's power-on, as an ESP32's boot does. The current
# directory is the board's flash; argv[1] is the sim folder (vboard.py). Runs main.py from
# the flash if provisioning put one there, else leaves the REPL to the technician. A reset
# (vboard.Board.reset) ends the interpreter, and the host starts it again.

import sys

import vboard

vboard.SIM = sys.argv[1]
try:
    with open("main.py") as f:
        source = f.read()
except OSError:
    source = None
if source is not None:
    try:
        exec(source, {"__name__": "__main__"})
    except KeyboardInterrupt:
        print("main.py stopped by Ctrl-C")
    del source
