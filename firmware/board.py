# The one thin hardware layer. Firmware code calls only these methods, so the same
# files run on an ESP32 (board_esp32) and on the virtual board (vboard, MicroPython
# unix port). Both provide:
#
#   time() -> int                 Unix seconds UTC
#   sync_time() -> int | None     sets the clock from the network; the step in seconds,
#                                 None when no time server answered
#   set_time(epoch)               sets the clock (commissioning, from the technician's laptop)
#   reset()                       restarts the board (main.py runs again)
#   ticks_ms(), sleep_ms(ms)      monotonic milliseconds; sleeping
#   feed()                        the watchdog
#   uart(cfg) -> port             .write(buf), .read(n, timeout_ms) -> bytes (RS485 handled)
#   s0_start(counted), s0_take()  pulses counted since the last take
#   pilot_volts() -> float        control-pilot high level, IEC 61851
#   relay(on)                     the charger contactor
#   read_token() -> bytes | None  an ID token presented at the reader
#   reset_cause() -> str          why the board started
#   flash_free() -> int           free bytes on the filesystem
#   failpoint(name)               fault injection for tests: a no-op on hardware

import sys

if sys.platform == "linux":
    from vboard import Board  # noqa: F401
else:
    from board_esp32 import Board  # noqa: F401
