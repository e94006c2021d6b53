"""The verifier's tree is its map: a package per area, on floors. A module imports only from
its own package and from packages on lower floors (at module level or inside a function,
which is still a dependency), so no import circle can form between packages. A new package
gets a floor here, or this test fails."""

from __future__ import annotations

import ast
from pathlib import Path

VERIFIER = Path(__file__).resolve().parent.parent / "verifier"

# The floors, lowest first: pure wire formats; the storage engines; jobs, the log; settings
# and API keys; then the areas, each above those it reads; the transports; the app.
FLOORS = [
    {"wire"},
    {"storage"},
    {"jobs"},
    {"log"},
    {"settings", "auth"},
    {"devices"},
    {"certificates", "communities"},
    {"charging"},
    {"provenance", "audit"},
    {"http"},
    {"web"},
    {"app"},
]
FLOOR = {name: n for n, names in enumerate(FLOORS) for name in names}


def _package(path: Path) -> str:
    parts = path.relative_to(VERIFIER).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> set[str]:
    """The verifier packages a module imports, by their first name below verifier."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "verifier":
            if node.module == "verifier":
                found |= {a.name for a in node.names}
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("verifier.")}
    return found


def test_every_package_has_a_floor() -> None:
    packages = {_package(p) for p in VERIFIER.rglob("*.py") if p.parent != VERIFIER or p.name != "__init__.py"}
    assert packages <= set(FLOOR), f"give these a floor in FLOORS: {sorted(packages - set(FLOOR))}"


def test_no_module_imports_from_its_floor_or_above() -> None:
    upward = []
    for path in sorted(VERIFIER.rglob("*.py")):
        if path.parent == VERIFIER and path.name == "__init__.py":
            continue
        own = _package(path)
        for other in sorted(_imports(path) - {own}):
            if FLOOR.get(other, len(FLOORS)) >= FLOOR[own]:
                upward.append(f"{path.relative_to(VERIFIER.parent)} ({own}) imports {other}")
    assert not upward, "imports up or sideways:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from verifier.charging import sessions\nfrom verifier import ledger, storage\n")
    assert _imports(module) == {"charging", "ledger", "storage"}
