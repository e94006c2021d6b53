"""Facts that firmware and host tooling share are written down once.

Flash file names live in firmware/files.py, the profile keys a board reads in
hardware/sim.py, the verifier's HTTP client for provisioning in provisioning/client.py.
These tests read the sources and fail when a copy creeps back in.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hardware import micropython, sim
from hardware.flash import files

ROOT = Path(__file__).resolve().parent.parent
FILE_NAMES = {v for k, v in vars(files).items() if k.isupper() and isinstance(v, str)}
# Code that talks about a board's flash: the firmware, the virtual board, provisioning, the CLI.
SOURCES = [
    p
    for folder in ("firmware", "hardware", "provisioning", "wattproof")
    for p in sorted((ROOT / folder).rglob("*.py"))
    # vboot.py plays MicroPython's own boot, which runs main.py by the interpreter's
    # convention, on a blank board that holds none of our modules yet.
    if p not in (micropython.FIRMWARE / "files.py", micropython.VIRTUAL / "vboot.py")
]


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_flash_file_names_are_spelt_only_in_firmware_files() -> None:
    assert FILE_NAMES >= {"config.json", "device.key", "receipt.json", "readings.log", "out"}
    found = [
        f"{path.relative_to(ROOT)}:{line} {text!r}"
        for path in SOURCES
        for line, text in _strings(path)
        if text in FILE_NAMES and text not in ("out",)  # "out" is also a GPIO direction word
    ]
    assert not found, "use firmware/files.py (hardware.flash.files on the host) instead of: " + "; ".join(found)


def test_the_host_reads_the_same_list_the_firmware_imports() -> None:
    text = (micropython.FIRMWARE / "files.py").read_text()
    assert f'KEY = "{files.KEY}"' in text
    manifest = (micropython.FIRMWARE / "manifest.py").read_text()
    assert '"files"' in manifest  # frozen with the rest of the board image


def test_every_setting_the_firmware_defaults_is_a_board_config_key() -> None:
    tree = ast.parse((micropython.FIRMWARE / "config.py").read_text())
    defaults = next(
        node.value for node in tree.body if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "DEFAULTS"
    )
    assert isinstance(defaults, ast.Dict)
    keys = {k.value for k in defaults.keys if isinstance(k, ast.Constant)}
    assert keys and keys <= set(sim.BOARD_CONFIG_KEYS)


@pytest.mark.parametrize("name", sim.profile_names())
def test_a_board_gets_exactly_the_board_keys_of_its_profile(name: str) -> None:
    profile = sim.load_profile(name)
    config = sim.board_config(profile, "dev-1", "http://127.0.0.1:1")
    assert set(config) == {k for k in profile if k in sim.BOARD_CONFIG_KEYS} | {"device_id", "verifier", "profile"}
    assert not set(config) & set(sim.PROFILE_ONLY_KEYS) - {"profile"}


def test_a_profile_with_an_unknown_key_is_refused_naming_it(tmp_path: Path) -> None:
    profile = json.loads((sim.PROFILES / "devkitc-sdm120.json").read_text())
    profile["interval_sec"] = 30  # misspelt: the board would silently keep its default
    path = tmp_path / "site.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(sim.SimError, match="unknown keys interval_sec"):
        sim.load_profile(str(path))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_provisioning_has_one_http_client_and_no_import_cycle() -> None:
    folder = ROOT / "provisioning"
    for path in sorted(folder.glob("*.py")):
        if path.name != "client.py":
            assert not {m for m in _imports(path) if m.startswith(("urllib", "http.client"))}, path.name
    assert not {m for m in _imports(folder / "field.py") if m.startswith("provisioning.provision")}


def test_proof_generation_is_not_in_the_board_image() -> None:
    tree = ast.parse((micropython.FIRMWARE / "merkle.py").read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "leaf_hash" in functions  # the check sees the module's functions
    assert not functions & {"inclusion_proof", "consistency_proof", "_subtree_root"}
