# Runs at boot on the board (and on the virtual board): the gateway's main loop.
# Ctrl-C (mpremote connect) stops it cleanly and leaves the REPL for a technician.
# A file safe.boot in the flash skips the loop once: provisioning restarts the board that
# way to get a clean heap at the REPL.

import os

import files

try:
    os.remove(files.SAFE_BOOT)
except OSError:
    import board
    import config
    import runtime

    cfg = config.load()
    runtime.Runtime(cfg, board.Board(cfg)).run()
else:
    print("safe boot: the gateway did not start")
