"""The practice run of docs/technician.md, run as written: its three terminals' blocks, in a
fresh home folder, with one change only: a free port instead of 8080."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "technician.md"


def practice_blocks() -> list[str]:
    text = GUIDE.read_text()
    section = text[text.index("## 0. A practice run") : text.index("## 1. ")]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Terminal:
    """One terminal of the guide: a block left running (the verifier, the board)."""

    def __init__(self, block: str, env: dict[str, str], ready: str) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-e", "-c", block],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a terminal of its own: Ctrl-C goes to its foreground group
        )
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line)
            if ready in line:
                break
        else:
            raise AssertionError(f"never printed {ready!r}:\n{''.join(self.lines)}")
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or []), daemon=True).start()

    def ctrl_c(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTPROOF_") and k != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(tmp_path)
    env["PATH"] = os.environ["PATH"]
    yield env


def test_the_practice_run_works_as_written(home: dict[str, str], tmp_path: Path) -> None:
    blocks = practice_blocks()
    assert len(blocks) == 3, blocks
    port = str(_free_port())
    verifier_block, board_block, technician_block = (b.replace("8080", port) for b in blocks)
    verifier = Terminal(verifier_block, home, "verifier listening on")
    board = None
    try:
        board = Terminal(board_block, home, "Ctrl-C powers the board off.")
        done = subprocess.run(
            ["bash", "-e", "-c", technician_block],
            cwd=ROOT,
            env=home,
            capture_output=True,
            text=True,
            timeout=600,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "practice-1" in out and "device_id        practice-1" in done.stdout, out
        assert "Traceback" not in out
        report = tmp_path / "wattproof-practice" / "commissioning" / "practice-1" / "report.txt"
        assert report.exists(), out
    finally:
        if board is not None:
            assert board.ctrl_c() == 0, "".join(board.lines)
        verifier.ctrl_c()
    served = "".join(verifier.lines)
    assert "enrolled practice-1" in served or "practice-1" in served, served
