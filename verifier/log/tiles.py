"""The log as static tiles (C2SP tlog-tiles): paths, widths and bundle bytes.

Pure functions, no storage. A tile at level L, index N holds up to 256 hashes: the i-th is
the hash of the complete subtree of 256**L leaves starting at leaf (N * 256 + i) * 256**L,
that is the stored node (8 * L, N * 256 + i) in verifier.wire.merkle's node ids. Level 0 tiles
hold leaf hashes. An entry bundle holds the entries of a level 0 tile, each a big-endian
uint16 length and the entry's bytes. Partial tiles (the rightmost ones of a tree whose size
is not a multiple of 256**(L+1)) carry `.p/<W>` with their width W, 1 to 255.

Paths are relative to the log's prefix: `checkpoint`, `tile/<L>/<N>[.p/<W>]`,
`tile/entries/<N>[.p/<W>]`, N in 3-digit groups, all but the last prefixed with x
(1234067 is x001/x234/067). Go's sumdb/tlog names the same tiles `tile/8/<L>/...` and
`tile/8/data/...` (tile height 8).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

HEIGHT = 8
WIDTH = 1 << HEIGHT  # hashes in a full tile
MAX_LEVEL = 63
MAX_ENTRY = 0xFFFF  # an entry bundle's length prefix is a uint16


class TileError(ValueError):
    """A tile path that is not one, or a bundle that does not parse."""


@dataclass(frozen=True)
class Tile:
    level: int  # 0..63; ENTRIES for an entry bundle
    index: int
    width: int  # 1..256; 256 is a full tile

    @property
    def entries(self) -> bool:
        return self.level == ENTRIES

    @property
    def node_level(self) -> int:
        """The merkle node level of the tile's hashes (an entry bundle: its leaves)."""
        return 0 if self.entries else HEIGHT * self.level

    def nodes(self) -> list[tuple[int, int]]:
        """The merkle node ids whose hashes the tile holds, in order."""
        first = self.index * WIDTH
        return [(self.node_level, first + i) for i in range(self.width)]

    def leaves(self) -> range:
        """The ledger indexes an entry bundle holds."""
        first = self.index * WIDTH
        return range(first, first + self.width)

    def path(self) -> str:
        kind = "entries" if self.entries else str(self.level)
        suffix = "" if self.width == WIDTH else f".p/{self.width}"
        return f"tile/{kind}/{encode_index(self.index)}{suffix}"

    def leaves_needed(self) -> int:
        """The smallest tree size that holds this tile."""
        span: int = WIDTH ** (0 if self.entries else self.level)
        return (self.index * WIDTH + self.width) * span


ENTRIES = -1


def encode_index(n: int) -> str:
    if n < 0:
        raise TileError("a tile index is not negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


_PATH = re.compile(r"tile/(0|[1-9][0-9]?|entries)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?")


def parse(path: str) -> Tile:
    """A tile path relative to the log's prefix. Raises TileError for anything else."""
    m = _PATH.fullmatch(path)
    if m is None:
        raise TileError(f"{path!r} is not a tile path: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]")
    kind, digits, width = m.groups()
    level = ENTRIES if kind == "entries" else int(kind)
    if level > MAX_LEVEL:
        raise TileError(f"tile level {level} is above {MAX_LEVEL}")
    groups = digits.split("/")
    if len(groups) > 1 and groups[0] == "x000":
        raise TileError(f"{path!r}: a tile index has no leading zero groups")
    index = int("".join(g.lstrip("x") for g in groups))
    w = WIDTH if width is None else int(width)
    if not 1 <= w < WIDTH + (width is None):
        raise TileError(f"{path!r}: a partial tile is 1 to 255 wide")
    return Tile(level, index, w)


def for_size(size: int) -> Iterator[Tile]:
    """Every tile and entry bundle of a tree of size leaves: full tiles, then the partial
    one of each level (none where the level's width is a multiple of 256)."""
    level, n = 0, size
    while n > 0:
        full, partial = divmod(n, WIDTH)
        for i in range(full):
            yield Tile(level, i, WIDTH)
            if level == 0:
                yield Tile(ENTRIES, i, WIDTH)
        if partial:
            yield Tile(level, full, partial)
            if level == 0:
                yield Tile(ENTRIES, full, partial)
        level, n = level + 1, full
        if level > MAX_LEVEL:
            break


def in_tree(tile: Tile, size: int) -> bool:
    """Whether a tree of size leaves holds this tile: its hashes are all complete subtrees
    of the tree (a partial tile of a smaller width than the tree's is still in it)."""
    return tile.leaves_needed() <= size


def bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise TileError(f"an entry of {len(e)} bytes does not fit an entry bundle (at most {MAX_ENTRY})")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def unbundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle, in order."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise TileError("an entry bundle ends inside a length prefix")
        n = int.from_bytes(data[i : i + 2], "big")
        if i + 2 + n > len(data):
            raise TileError("an entry bundle ends inside an entry")
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return out
