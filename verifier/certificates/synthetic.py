"""Synthetic certificates for benchmarks: bundles and a claim written behind the ledger's
back (no issuance or claim entries), so that a year of claimed certificates for thousands of
consumers takes seconds. Nothing in the verifier calls these; `wattproof ledger audit`
refuses a database that holds such rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verifier.certificates.registry import BUNDLE_COLUMNS
from verifier.storage import Connection


def add_claimed(db: Connection, bundles: Sequence[Sequence[Any]], claim: Sequence[Any]) -> None:
    """Inside a write transaction: bundles (BUNDLE_COLUMNS rows) and the claim that cancelled
    them (claim_id, holder, beneficiary, consumer_device, period_start, period_end, quantity,
    claimed_at)."""
    db.insert_rows("bundles", BUNDLE_COLUMNS, bundles)
    db.execute(
        "INSERT INTO claims (claim_id, holder, beneficiary, consumer_device, period_start, period_end, quantity,"
        " claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        tuple(claim),
    )
