"""The log as C2SP tlog-tiles: paths and widths, the tiles served and written to a folder,
and the same tiles read by Go's golang.org/x/mod/sumdb/tlog (tests/interop/tlog_check.go,
built by `make test` from Debian's golang-golang-x-mod-dev), which authenticates every tile
against the checkpoint, proves every entry and the consistency of an older checkpoint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import forge
from tests.conftest import Database
from tests.enroll import enroll_key
from verifier import storage
from verifier.app import create_app
from verifier.devices import ingest
from verifier.log import checkpoints, ledger, tiles
from verifier.wire import merkle
from verifier.wire.packet import GENESIS, decode_packet

ROOT = Path(__file__).resolve().parent.parent
TLOG_CHECK = ROOT / "build" / "tlog-check"
WATTPROOF = [sys.executable, "-m", "wattproof.cli"]


def test_tile_paths_follow_the_spec() -> None:
    assert tiles.encode_index(1234067) == "x001/x234/067"
    assert tiles.encode_index(0) == "000" and tiles.encode_index(1000) == "x001/000"
    assert tiles.Tile(0, 1234067, 1).path() == "tile/0/x001/x234/067.p/1"
    assert tiles.Tile(tiles.ENTRIES, 5, 256).path() == "tile/entries/005"
    for t in (tiles.Tile(3, 1234067, 7), tiles.Tile(tiles.ENTRIES, 0, 256), tiles.Tile(63, 0, 255)):
        assert tiles.parse(t.path()) == t
    for bad in ("tile/0/1", "tile/0/x000/001", "tile/0/000.p/0", "tile/0/000.p/256", "tile/64/000",
                "tile/01/000", "tile/0/000.p/01", "tile/data/000", "checkpoint"):  # fmt: skip
        with pytest.raises(tiles.TileError):
            tiles.parse(bad)


def test_the_tiles_of_a_tree_of_70000_are_those_the_spec_lists() -> None:
    found = list(tiles.for_size(70_000))
    by_level: dict[int, list[tiles.Tile]] = {}
    for t in found:
        by_level.setdefault(t.level, []).append(t)
    assert [t.width for t in by_level[0]].count(256) == 273 and by_level[0][-1].width == 112
    assert [t.width for t in by_level[1]] == [256, 17] and [t.width for t in by_level[2]] == [1]
    assert len(by_level[tiles.ENTRIES]) == 274
    assert [(t.level, t.width) for t in tiles.for_size(256)] == [(0, 256), (tiles.ENTRIES, 256), (1, 1)]
    assert all(tiles.in_tree(t, 70_000) for t in found) and not tiles.in_tree(tiles.Tile(0, 273, 113), 70_000)


def test_entry_bundles_are_length_prefixed() -> None:
    entries = [b"", b"a", bytes(300)]
    data = tiles.bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:5] == b"\x00\x01a" and tiles.unbundle(data) == entries
    with pytest.raises(tiles.TileError):
        tiles.unbundle(data[:-1])
    with pytest.raises(tiles.TileError):
        tiles.bundle([bytes(70_000)])


def _grow(target: str, device_packets: int, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Enrolls a device (first call) and sends it device_packets more packets."""
    state = state if state is not None else {}
    db = storage.connect(target)
    try:
        if "key" not in state:
            state["key"] = forge.new_key()
            enroll_key(target, "tile-1", state["key"])
            state["seq"], state["prev"] = 0, GENESIS
        packets = []
        for _ in range(device_packets):
            seq = int(state["seq"])
            data = forge.simple(state["key"], "tile-1", seq, 2, state["prev"], 2 * seq, 1795000000 + 600 * seq)
            state["prev"], state["seq"] = decode_packet(data).header_hash, seq + 1
            packets.append(data)
        for n in range(0, len(packets), 64):
            assert all(isinstance(r, ingest.Outcome) for r in ingest.accept_batch(db, packets[n : n + 64]))
    finally:
        db.close()
    return state


def _tiles(database: Database, out: Path) -> str:
    cmd = [*WATTPROOF, "ledger", "tiles", "--out", str(out), "--log-key", str(database.log_key)]
    cmd += ["--database" if database.engine == "postgresql" else "--db", database.target]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout


def _go(vkey: str, folder: Path, *old: Path) -> subprocess.CompletedProcess[str]:
    assert TLOG_CHECK.exists(), "build/tlog-check is missing: run the tests with `make test`"
    return subprocess.run([str(TLOG_CHECK), vkey, str(folder), *map(str, old)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_go_sumdb_tlog_reads_the_tiles_and_proves_every_entry(database: Database, tmp_path: Path) -> None:
    app = create_app(database.config())
    vkey = app.test_client().get("/v1/ledger/key").get_data(True).strip()
    state = _grow(database.target, 300)  # an installer, an enrollment, 300 packets: a full tile and a partial one
    out = tmp_path / "log"
    assert "written" in _tiles(database, out)
    assert (out / "tile/0/000").stat().st_size == 256 * 32 and (out / "tile/0/001.p/46").stat().st_size == 46 * 32
    assert (out / "tile/1/000.p/1").is_file() and (out / "tile/entries/001.p/46").is_file()
    result = _go(vkey, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "302", "302"]

    old = tmp_path / "old-checkpoint"
    shutil.copy(out / "checkpoint", old)
    _grow(database.target, 260, state=state)  # 562: two full tiles, a partial, and level 1 grows
    assert ", " in (line := _tiles(database, out)) and " kept" in line
    result = _go(vkey, out, old)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "562", "562"]

    # The served tiles are the written ones, byte for byte, and need no key.
    client = create_app(database.config()).test_client()
    for rel in ("tile/0/000", "tile/0/002.p/50", "tile/1/000.p/2", "tile/entries/001", "tile/entries/002.p/50"):
        answer = client.get("/log/" + rel)
        assert answer.status_code == 200 and answer.data == (out / rel).read_bytes(), rel
        assert answer.headers["Content-Type"] == "application/octet-stream"
        assert "immutable" in answer.headers["Cache-Control"]
    answer = client.get("/log/checkpoint")
    assert answer.status_code == 200 and answer.data == (out / "checkpoint").read_bytes()

    # Tampering with any tile or entry is caught by the independent reader.
    for rel, at in (("tile/entries/000", 40), ("tile/0/001", 5), ("tile/1/000.p/2", 33)):
        bad = tmp_path / f"bad-{rel.replace('/', '-')}"
        shutil.copytree(out, bad)
        data = bytearray((bad / rel).read_bytes())
        data[at] ^= 1
        (bad / rel).write_bytes(bytes(data))
        result = _go(vkey, bad)
        assert result.returncode == 1, rel


def test_a_tile_beyond_the_checkpoint_or_not_a_tile_is_a_problem(database: Database) -> None:
    app = create_app(database.config())
    _grow(database.target, 3)
    client = app.test_client()
    db = storage.connect(database.target)
    try:
        size = checkpoints.publish(db, app.extensions["wattproof.log_signer"]).size
        assert size == ledger.size(db) == 5
        leaves = client.get(f"/log/tile/0/000.p/{size}").data
        assert [leaves[i : i + 32] for i in range(0, len(leaves), 32)] == [
            merkle.leaf_hash(ledger.entry(db, i).raw) for i in range(size)
        ]
    finally:
        db.close()
    for path in (f"/log/tile/0/000.p/{size + 1}", "/log/tile/0/000", "/log/tile/0/1", "/log/tile/entries/001.p/1"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert answer.get_json()["type"].endswith("/not-found")
