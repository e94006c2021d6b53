"""One log identity, always: a key must verify the latest checkpoint the database holds, and a
new key is made only for a new log.

`serve --log-key PATH` with a path that did not exist, on a database that already held
checkpoints, made a new key and started: the log then published a key that verified none of
its checkpoints. And the PostgreSQL demo deleted the key of the database it left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Database
from verifier import settings, storage
from verifier.app import create_app
from verifier.log import checkpoints, ledger, note
from verifier.storage import transaction
from wattproof import demo


def _log_with_a_checkpoint(database: Database) -> note.Signer:
    signer = settings.log_signer({**settings.DEFAULTS, **database.config()})
    conn = storage.connect(database.target)
    try:
        with transaction(conn):
            ledger.append(conn, "installer", "i", {"name": "i", "public_key": b"\x04" + bytes(64)})
        checkpoints.publish(conn, signer)
    finally:
        conn.close()
    return signer


def test_a_missing_or_foreign_key_is_refused_on_a_log_with_checkpoints(database: Database, tmp_path: Path) -> None:
    signer = _log_with_a_checkpoint(database)
    missing = tmp_path / "elsewhere" / "log.key"
    missing.parent.mkdir()
    with pytest.raises(settings.SettingsError, match="restore the log's key"):
        create_app(database.config(LOG_KEY_FILE=str(missing)))
    assert not missing.exists()  # no key was made for it

    foreign = tmp_path / "foreign.key"
    foreign.write_text(str(note.Signer.generate(signer.name)) + "\n")
    with pytest.raises(settings.SettingsError, match="does not verify the database's latest checkpoint"):
        create_app(database.config(LOG_KEY_FILE=str(foreign)))

    app = create_app(database.config())  # the log's own key
    assert app.extensions["wattproof.log_signer"].verifier() == signer.verifier()


def test_a_new_log_gets_a_new_key(database: Database, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.key"
    app = create_app(database.config(LOG_KEY_FILE=str(fresh)))
    assert fresh.exists()
    assert app.extensions["wattproof.log_signer"].name == settings.DEFAULTS["LOG_ORIGIN"]


def test_serve_refuses_to_start_with_another_key(tmp_path: Path) -> None:
    db = tmp_path / "v.sqlite"
    database = Database("sqlite", str(db), Path(f"{db}.logkey"))
    _log_with_a_checkpoint(database)
    missing = tmp_path / "new.key"
    done = subprocess.run(
        [sys.executable, "-m", "wattproof.cli", "serve", "--db", str(db), "--log-key", str(missing), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "restore the log's key" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not missing.exists()
    (tmp_path / "foreign.key").write_text(str(note.Signer.generate(settings.DEFAULTS["LOG_ORIGIN"])) + "\n")
    tiles = subprocess.run(
        [sys.executable, "-m", "wattproof.cli", "ledger", "tiles", "--db", str(db), "--out", str(tmp_path / "t")],
        capture_output=True, text=True, timeout=60, env={"WATTPROOF_LOG_KEY_FILE": str(tmp_path / "foreign.key"),
                                                         "PATH": ""},
    )  # fmt: skip
    assert tiles.returncode != 0 and "does not verify" in tiles.stderr, tiles.stderr  # a command that signs


def test_the_postgresql_demo_keeps_the_key_of_the_database_it_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    work = tmp_path / "work"  # the demo's temporary folder, deleted at its end
    key = demo.log_key_file(work, "postgresql://demo@127.0.0.1:5432/wattproof", kept=False)
    assert work not in key.parents and (tmp_path / "state") in key.parents
    assert key == demo.log_key_file(work, "postgresql://demo@127.0.0.1:5432/wattproof", kept=False)  # the same next run
    assert key != demo.log_key_file(work, "postgresql://demo@127.0.0.1:5432/other", kept=False)
    assert (
        demo.log_key_file(work, None, kept=False) == work / "verifier.sqlite.logkey"
    )  # SQLite: the key goes with its file
    assert demo.log_key_file(work, "postgresql://x@h/db", kept=True) == work / "verifier.logkey"
