"""What the replay carries from entry to entry: the report, the devices and installers as the
entries so far leave them, and the one failure it stops at (Bad, with its ledger index)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from verifier.certificates import registry
from verifier.storage import Connection
from verifier.wire import cose
from verifier.wire.packet import GENESIS


@dataclass
class Report:
    entries: int = 0
    packets: int = 0
    readings: int = 0
    checkpoints: int = 0
    anomalies: int = 0
    certificates: int = 0  # bundles issued
    certified_wh: int = 0
    seconds: float = 0.0
    problem: str | None = None
    index: int | None = None  # the ledger index the problem belongs to
    actions: int = 0  # registry actions: transfers, claims, withdrawals
    claimed_wh: int = 0
    registry_states: int = 0  # registry-state entries, each root recomputed
    # issuance id -> (fields, ledger index): what the certificates table must hold
    bundles: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict, repr=False)
    # the registry as the entries leave it: accounts, device owners, bundles, claims
    accounts: dict[str, tuple[str, str, int, int]] = field(default_factory=dict, repr=False)
    owners: dict[str, tuple[str, int]] = field(default_factory=dict, repr=False)
    holdings: registry.Holdings = field(default_factory=registry.Holdings, repr=False)
    claims: dict[int, tuple[Any, ...]] = field(default_factory=dict, repr=False)
    # the communities' tables as their entries leave them: table -> key -> row
    community_rows: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=dict, repr=False)
    cosignatures: int = 0  # witnesses' cosignatures checked against their keys
    ocmf_checks: int = 0  # stored OCMF checks of charger stops, made again
    cosignatures_unchecked: int = 0  # ... by witnesses whose keys the audit was not given
    ocmf_records: int = 0  # third-party chargers' records; their rows by (device, digest)
    ocmf_rows: dict[tuple[str, bytes], tuple[Any, ...]] = field(default_factory=dict, repr=False)
    # begin records signed apart, not closed yet: entry -> (charger, record)
    ocmf_open: dict[int, tuple[str, Any]] = field(default_factory=dict, repr=False)
    ocmf_spans: dict[str, list[tuple[int, int]]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.problem is None


class Bad(Exception):
    """The audit's verdict: the first problem, with the ledger index it belongs to."""

    def __init__(self, index: int | None, problem: str) -> None:
        super().__init__(problem)
        self.index, self.problem = index, problem


class EdgeDigest:
    """A device's register_edges rows folded in t order into a count and a SHA-256 (a later
    row at the same t replaces the one before it, as ingest's rows do)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.rows = 0
        self.last: tuple[Any, ...] | None = None

    def add(self, row: tuple[Any, ...] | None) -> None:
        if self.last is not None and (row is None or row[1] != self.last[1]):
            self.hash.update(repr(tuple(int(v) for v in self.last[1:])).encode())
            self.rows += 1
            self.last = None
        if row is not None:
            self.last = row

    def count(self) -> int:
        return self.rows + (self.last is not None)

    def finish(self) -> tuple[int, str]:
        self.add(None)
        return self.rows, self.hash.hexdigest()


@dataclass
class Device:
    key: bytes
    role: str
    attributes: dict[str, Any]
    enrolled_idx: int
    status: str = "active"
    flagged: bool = False
    seq: int = -1
    prev: bytes = GENESIS
    last_number: int = -1
    last_raw: bytes | None = None  # the last reading, the last meter reading, and whether a
    meter_raw: bytes | None = None  # meter-fault event followed it: the chain_heads row
    fault: bool = False
    span: int = 0  # its longest packet, last_ts - first_ts (chain_heads.span)
    packets: list[tuple[int, int]] = field(default_factory=list)  # (seq, ledger index)
    key_index: int = -1  # the entry that set the current key
    edges: EdgeDigest = field(default_factory=lambda: EdgeDigest())  # its register_edges rows
    unordered: bool = False

    def __post_init__(self) -> None:
        if self.key_index < 0:
            self.key_index = self.enrolled_idx


@dataclass
class Replay:
    """The state of a replay: the database (whose tables are compared at the end), the
    report, the installers (name -> (key, status)) and the devices as the entries leave them."""

    db: Connection
    report: Report
    installers: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    devs: dict[str, Device] = field(default_factory=dict)

    def device(self, device_id: str, index: int) -> Device:
        """An enrolled device, or Bad: the entry names a device never enrolled."""
        if device_id not in self.devs:
            raise Bad(index, f"entry for a device never enrolled: {device_id}")
        return self.devs[device_id]


# A ledger entry kind's handler: (replay, ledger index, the entry's device column, the entry).
Handler = Callable[[Replay, int, "str | None", dict[str, Any]], None]


def es256(point: bytes, message: bytes, signature: bytes) -> bool:
    try:
        cose.verify_es256_message(point, message, signature)
        return True
    except ValueError:
        return False
