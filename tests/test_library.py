"""The verifier is a library first: its pure modules load neither Flask nor a database driver."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = [
    "verifier.provenance.checks",
    "verifier.log.tiles",
    "verifier.wire.packet",
    "verifier.wire.strict_cbor",
    "verifier.wire.cose",
    "verifier.wire.merkle",
    "verifier.log.note",
    "verifier.devices.identity",
    "verifier.charging.ocpi",
    "verifier.wire.ocmf",
    "verifier.wire.problems",
    "verifier.settings",
]
HEAVY = ("flask", "werkzeug", "waitress", "sqlite3", "_sqlite3", "psycopg")


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_loads_no_web_framework_and_no_database(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY], module


def test_the_http_service_is_where_flask_is() -> None:
    code = "import json, sys, verifier.http.app; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert "flask" in loaded  # the check above can fail: it sees Flask where it is
