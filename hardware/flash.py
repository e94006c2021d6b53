"""The names of the files on a board's flash, from the firmware's own list (firmware/files.py).

Provisioning, the field commands, the virtual boards and the demo read and write a board's
files by these names, so that host and firmware cannot drift apart:

    from hardware.flash import files
    link.read_file(files.CONFIG)
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from hardware.micropython import FIRMWARE


def _load() -> ModuleType:
    # firmware/ is MicroPython source, not a CPython package: the constants module is
    # loaded from its file (it holds only strings and a tuple, valid in both).
    spec = importlib.util.spec_from_file_location("wattproof_flash_files", FIRMWARE / "files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


files = _load()
