"""The log's read path as static files (C2SP tlog-tiles): `checkpoint`, every tile and
entry bundle of its tree, under one folder that any static web server or CDN can serve.

Tiles are immutable: a full tile or a partial one of a given width never changes, so a
folder written before is brought up to date by writing only what it lacks and the new
checkpoint, last (a reader who sees the checkpoint finds every tile it needs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from verifier.log import checkpoints, ledger, tiles
from verifier.storage import Connection


@dataclass(frozen=True)
class Written:
    size: int
    tiles: int  # files written now
    kept: int  # files already there (immutable, not rewritten)


def contents(db: Connection, tile: tiles.Tile) -> bytes:
    return ledger.entry_bundle(db, tile) if tile.entries else ledger.tile_hashes(db, tile)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)  # a reader sees the whole file or none


def write(db: Connection, out: Path, checkpoint: checkpoints.Checkpoint, note: bytes | None = None) -> Written:
    """Writes the tiles of checkpoint's tree under out, then out/checkpoint (note: the
    checkpoint as served, with its cosignatures; the log's signed note by default)."""
    written = kept = 0
    for tile in tiles.for_size(checkpoint.size):
        path = out / tile.path()
        if path.is_file():
            kept += 1
            continue
        _write(path, contents(db, tile))
        written += 1
    _write(out / "checkpoint", checkpoint.note if note is None else note)
    return Written(checkpoint.size, written, kept)
