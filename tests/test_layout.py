"""The verifier's tree is its map: a package per area, on floors. A module imports only from
its own package and from packages on lower floors (at module level or inside a function,
which is still a dependency), so no import circle can form between packages. A new package
gets a floor here, or this test fails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

VERIFIER = Path(__file__).resolve().parent.parent / "verifier"

# The floors, lowest first: pure wire formats; the storage engines; jobs, the log; settings;
# then the areas, each above those it reads; API keys (they act for installers and
# accounts); the transports; the app.
FLOORS = [
    {"wire"},
    {"storage"},
    {"jobs"},
    {"log"},
    {"settings"},
    {"devices"},
    {"certificates", "communities"},
    {"charging"},
    {"provenance", "audit", "auth"},  # auth: API keys act for installers (devices) and accounts (certificates)
    {"http", "mqtt"},  # the transports: HTTP, and MQTT's bridge
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


# -- the areas own their SQL ------------------------------------------------------------------

ROOT = VERIFIER.parent
SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (UNIQUE )?(TABLE|INDEX))\b")
TRANSPORTS = ("verifier/http", "verifier/mqtt", "verifier/web", "verifier/app.py", "wattproof", "bench")


def _sql_in(path: Path) -> list[tuple[int, str]]:
    """(line, enclosing function) of every string in the module that is SQL."""
    found = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            func = node.name
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append((node.lineno, func))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(ast.parse(path.read_text(), str(path)), "<module>")
    return sorted(set(found))


def test_no_sql_outside_the_areas() -> None:
    found = []
    for place in TRANSPORTS:
        target = ROOT / place
        for path in [target] if target.suffix == ".py" else sorted(target.rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            for line, func in _sql_in(path):
                found.append(f"{rel}:{line} ({func})")
    assert not found, "SQL belongs in its area (verifier/<area>/), called as a function:\n" + "\n".join(found)


def test_the_sql_check_sees_sql(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('def f(db):\n    return db.execute(f"SELECT {1} FROM devices")\n')
    assert _sql_in(module) == [(2, "f")]


# -- an area's tables are read through its functions ---------------------------------------------

OWNER = {  # table -> the area that owns it: it alone writes it and reads it in SQL
    **dict.fromkeys(("accounts", "bundles", "certificate_progress", "certificates", "claims", "device_accounts",
                     "idempotency"), "certificates"),
    **dict.fromkeys(("anomalies", "chain_heads", "challenges", "devices", "edges_unordered", "installers", "meters",
                     "packets", "register_edges", "readings", "packets_new", "packets_default"), "devices"),
    **dict.fromkeys(("api_keys", "web_sessions"), "auth"),
    **dict.fromkeys(("checkpoints", "cosignatures", "ledger", "ledger_head", "ledger_nodes", "witness_sizes"), "log"),
    **dict.fromkeys(("communities", "community_coefficients", "community_members", "community_settings"),
                    "communities"),
    **dict.fromkeys(("ocmf_records", "ocmf_verdicts"), "charging"),
    "schema_migrations": "storage",
}  # fmt: skip
# The audit reads every table: comparing them with the ledger is its work. Storage's
# migrations make them.
READS_EVERY_TABLE = {"audit", "storage"}
# Reads of another area's table that are still to move behind the owner's functions (file,
# table): the list only shrinks.
NOT_YET: set[tuple[str, str]] = set()
TABLE_IN_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)")


def _foreign_reads() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(VERIFIER.rglob("*.py")):
        area = _package(path)
        if area in READS_EVERY_TABLE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                for table in TABLE_IN_SQL.findall(node.value):
                    if table in OWNER and OWNER[table] != area:
                        found.add((str(path.relative_to(VERIFIER)), table))
    return found


def test_an_area_reads_another_areas_tables_only_through_its_functions() -> None:
    found = _foreign_reads()
    new = sorted(found - NOT_YET)
    assert not new, "call the owning area's function instead of reading its table:\n" + "\n".join(map(str, new))
    moved = sorted(NOT_YET - found)
    assert not moved, f"these no longer read another area's table: take them off NOT_YET: {moved}"


def test_every_table_has_an_owner() -> None:
    made = set()
    for path in (VERIFIER / "storage").glob("*.py"):
        made |= set(re.findall(r"CREATE TABLE(?: IF NOT EXISTS)? ([a-z_]+)", path.read_text()))
    assert made and made <= set(OWNER), sorted(made - set(OWNER))
