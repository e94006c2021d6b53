"""The registry's state as a verifiable map: every certificate id range with its holder and
status, as the leaves of a Merkle tree whose root the log commits to (docs/provenance.md,
"The status of a certificate").

The registry splits the certificate ids it issued into bundles that never overlap; each is
one leaf, in id order. A `registry-state` ledger entry holds the tree's root and its number
of leaves, and is always the last entry of the checkpoint that a certificate file is made
against: the state it commits to is the registry's at that checkpoint. A file proves its
certificate's status with the leaves that cover its ids, consecutive in the tree and tiling
the ids exactly, so that no claim, transfer, withdrawal or expiry can be left out. The audit
replays the registry and recomputes every committed root.

Pure (cbor2 via strict_cbor, hashlib via merkle): `wattproof verify` uses it offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from verifier.wire import merkle, strict_cbor

ENTRY_KIND = "registry-state"
STATUSES = ("Active", "Claimed", "Withdrawn")  # as stored; Expired is Active past expires_at


@dataclass(frozen=True)
class Leaf:
    start: int  # the first certificate id of the range
    end: int  # the last, inclusive
    holder: str | None  # the account holding it; None: the issuing body
    status: str  # Active, Claimed or Withdrawn
    expires_at: int  # Unix seconds: an Active range is Expired from then on
    changed_at: int  # the ledger entry that last changed the range (its issuance, transfer, claim, withdrawal)
    claim: int | None  # the claim entry that cancelled it, when Claimed

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"start": self.start, "end": self.end, "status": self.status,
                                  "expires_at": self.expires_at, "changed_at": self.changed_at}  # fmt: skip
        if self.holder is not None:
            fields["holder"] = self.holder
        if self.claim is not None:
            fields["claim"] = self.claim
        return fields

    def encode(self) -> bytes:
        """The leaf's deterministic CBOR. cbor2's canonical encoding is the same bytes for these
        maps (text keys shorter than 24 bytes: RFC 7049's length-first order is RFC 8949's
        bytewise order; unsigned integers and text values) and four times faster than
        strict_cbor.dumps, which a registry of 100,000 bundles feels; a test holds them equal."""
        return cbor2.dumps(self.fields(), canonical=True)

    @classmethod
    def decode(cls, raw: bytes) -> Leaf:
        """A leaf from its bytes; ValueError when they are not one."""
        try:
            f = strict_cbor.loads(raw)
        except Exception as e:  # noqa: BLE001 - any decoding failure is "not a leaf"
            raise ValueError(f"not deterministic CBOR: {e}") from None
        if not isinstance(f, dict) or set(f) - {"start", "end", "holder", "status", "expires_at", "changed_at",
                                                 "claim"}:  # fmt: skip
            raise ValueError("not a registry leaf")
        ints = ("start", "end", "expires_at", "changed_at")
        if not all(isinstance(f.get(k), int) for k in ints) or f.get("status") not in STATUSES:
            raise ValueError("a registry leaf needs start, end, status, expires_at and changed_at")
        holder, claim = f.get("holder"), f.get("claim")
        if holder is not None and not isinstance(holder, str) or claim is not None and not isinstance(claim, int):
            raise ValueError("a registry leaf's holder is text and its claim an entry index")
        if not 0 < f["start"] <= f["end"] or (f["status"] == "Claimed") != (claim is not None):
            raise ValueError("a registry leaf's range or claim is malformed")
        return cls(f["start"], f["end"], holder, f["status"], f["expires_at"], f["changed_at"], claim)


def leaf_of(bundle: Any) -> Leaf:
    """The leaf of a registry.Bundle (the live registry's and the audit's replay alike)."""
    return Leaf(bundle.start, bundle.end, bundle.holder, bundle.status, bundle.expires_at, bundle.ledger_idx,
                bundle.claim_id)  # fmt: skip


def hashes(leaves: Sequence[Leaf]) -> list[bytes]:
    return [merkle.leaf_hash(leaf.encode()) for leaf in leaves]


def root(leaves: Sequence[Leaf]) -> bytes:
    """The tree's root over leaves in id order."""
    return merkle.root(hashes(leaves))


def entry_fields(leaves: Sequence[Leaf], time: int) -> dict[str, Any]:
    """The body of a registry-state entry committing to leaves (in id order) at time."""
    return {"root": root(leaves), "bundles": len(leaves), "time": time}


def covering(leaves: Sequence[Leaf], lo: int, hi: int) -> tuple[int, int]:
    """The positions [first, last] of the leaves that hold ids lo..hi (leaves in id order)."""
    import bisect

    starts = [leaf.start for leaf in leaves]
    first = bisect.bisect_right(starts, lo) - 1
    last = bisect.bisect_right(starts, hi) - 1
    if first < 0 or leaves[first].end < lo or leaves[last].end < hi:
        raise LookupError(f"certificate ids {lo}..{hi} are not all in the registry")
    return first, last
