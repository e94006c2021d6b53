"""The virtual board shares its flash folder with the host: what the host does there must not
crash the firmware, and the host's own helpers leave that folder alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware import micropython
from hardware.virtual_board import VirtualBoard
from provisioning import enrollment

# A listing that names a file the stat no longer finds: what the board saw when a host
# process created and removed a file in its flash between the two calls.
VANISHING = """
import os
import vboard

class Racy:
    def ilistdir(self, path):
        yield from os.ilistdir(path)
        if path == ".":
            yield ("gone.msg", 0x8000, 0)

    def stat(self, path):
        return os.stat(path)

vboard.SIM = "sim"
os.mkdir("sim")
with open("kept.bin", "wb") as f:
    f.write(b"x" * 1000)
vboard.os = Racy()
print(vboard.flash_free())
"""


def test_flash_free_survives_a_file_gone_since_the_listing(tmp_path: Path) -> None:
    script = tmp_path / "vanishing.py"
    script.write_text(VANISHING)
    flash = tmp_path / "flash"
    flash.mkdir()
    result = micropython.run(script, cwd=flash)
    assert result.returncode == 0, result.stderr or result.stdout
    assert int(result.stdout.strip()) == 4194304 - 1000  # the vanished file takes no room


def test_signing_on_a_board_leaves_its_flash_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    board = VirtualBoard(
        tmp_path / "board", {"device_id": "sign-1", "verifier": "http://127.0.0.1:9", "meter": {"model": "s0"}}
    )
    board.start(steps=1)
    assert board.wait(timeout=60) == 0, board.console()
    before = sorted(p.name for p in board.flash.iterdir())
    seen: list[list[str]] = []
    real_run = micropython.run

    def watching(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(sorted(p.name for p in board.flash.iterdir()))  # what a running board would list
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(micropython, "run", watching)
    signature = enrollment.sign_on_virtual_board(board.flash)(b"a challenge")
    assert len(signature) == 64
    assert seen == [before], "the signing helper put a file in the board's flash"
    assert sorted(p.name for p in board.flash.iterdir()) == before
