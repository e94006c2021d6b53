"""The firmware test modules in tests/firmware, run inside real MicroPython with the ESP32 heap.

Each module runs twice: from the .py sources and from .mpy files compiled by mpy-cross,
as a board would load them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware import micropython

FIRMWARE_TESTS = Path(__file__).resolve().parent / "firmware"
MODULES = sorted(p.stem for p in FIRMWARE_TESTS.glob("test_*.py"))


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mpy")
    built = micropython.compile_firmware(out)
    assert {p.stem for p in built} >= {"cbor", "merkle", "p256", "cose", "packet", "reading"}
    return out


def test_firmware_test_modules_exist() -> None:
    assert {"test_cbor", "test_merkle", "test_p256", "test_packet"} <= set(MODULES)


@pytest.mark.parametrize("variant", ["source", "mpy"])
@pytest.mark.parametrize("module", MODULES)
def test_firmware_module(module: str, variant: str, compiled: Path, interop: Path) -> None:
    firmware = micropython.FIRMWARE if variant == "source" else compiled
    result = micropython.run(
        FIRMWARE_TESTS / "runner.py", module, paths=(firmware, FIRMWARE_TESTS), env={"WATTPROOF_INTEROP": str(interop)}
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{module}: " in output and " 0 failed" in output, output
    # Firmware modules as loaded (test helpers beside the tests are source either way).
    loaded = [line for line in output.splitlines() if line.startswith("FIRMWARE ") and str(FIRMWARE_TESTS) not in line]
    assert loaded and all(line.endswith(".mpy" if variant == "mpy" else ".py") for line in loaded), loaded


def test_the_frozen_image_carries_the_firmwares_version_and_only_modules_that_exist() -> None:
    """The manifest's metadata version is the one the board reports (runtime.FIRMWARE_VERSION,
    in its boot event and `wattproof.status()`), and every module it freezes is a file."""
    import ast
    import re

    firmware = FIRMWARE_TESTS.parent.parent / "firmware"
    manifest = (firmware / "manifest.py").read_text()
    version = re.search(r'metadata\([^)]*version="([^"]+)"', manifest)
    tree = ast.parse((firmware / "runtime.py").read_text())
    reported = next(
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "FIRMWARE_VERSION"
        and isinstance(n.value, ast.Constant)
    )  # fmt: skip
    assert version is not None and version[1] == reported, (version, reported)
    frozen = re.findall(r'^    "([a-z_0-9]+)",$', manifest, re.M)
    assert frozen and all((firmware / f"{name}.py").exists() for name in frozen), frozen
    assert not (set(p.stem for p in firmware.glob("*.py")) - set(frozen)
                - {"main", "manifest", "commission"}), "a firmware module the image leaves out"  # fmt: skip
