# Runs at boot on the board (and on the virtual board): the gateway's main loop.
# Ctrl-C (mpremote connect) stops it cleanly and leaves the REPL for a technician.

import board
import config
import runtime

cfg = config.load()
runtime.Runtime(cfg, board.Board(cfg)).run()
