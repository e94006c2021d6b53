"""Board profiles and the virtual board: real firmware on the real MicroPython interpreter."""
