"""The ledger (public): its entries, one entry, consistency between two checkpoints."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from flask import current_app, redirect, render_template, request, url_for

from verifier.devices import ingest
from verifier.http.access import get_db
from verifier.log import checkpoints, cosigning, ledger
from verifier.provenance import checks
from verifier.web import bp
from verifier.web.common import LEDGER_PAGE, int_query, log_signer
from verifier.wire import merkle
from verifier.wire.packet import DEVICE_ID
from verifier.wire.problems import Problem


def _search(db: Any, q: str) -> int | None:
    """An entry index from a search: a number (the index), DEVICE/SEQ (a packet), or a leaf
    hash (64 hex digits)."""
    q = q.strip()
    if q.isascii() and q.isdecimal() and len(q) < 19:
        return int(q)
    if re.fullmatch(r"[0-9a-fA-F]{64}", q):
        return ledger.find_leaf(db, bytes.fromhex(q))
    device_id, _, seq = q.rpartition("/")
    if DEVICE_ID.fullmatch(device_id) and seq.isascii() and seq.isdecimal() and len(seq) < 19:
        try:
            return ingest.packet_entry(db, device_id, int(seq))
        except LookupError:
            return None
    raise Problem("bad-request", "q", "search by entry index, by DEVICE/SEQ (a packet) or by leaf hash (64 hex digits)")


@bp.get("/ledger", endpoint="ledger")
def ledger_page() -> Any:
    db = get_db()
    q = request.args.get("q", "").strip()
    not_found = None
    if q:
        index = _search(db, q)
        if index is not None and index < ledger.size(db):
            return redirect(url_for("web.ledger_entry", index=index))
        not_found = q
    cp = checkpoints.latest(db)
    size = ledger.size(db)
    # a page of entries, newest first, ending before `before` (default: the newest); pages go back to entry 0
    before = min(int_query("before", size) or 0, size)
    recent = [ledger.entry(db, i) for i in range(max(0, before - LEDGER_PAGE), before)][::-1]
    configured = current_app.config.get("WITNESSES") or []
    return render_template(
        "ledger.html",
        q=q,
        not_found=not_found,
        checkpoint=cp,
        served=checkpoints.served(db, cp).decode() if cp else "",
        cosigned=checkpoints.cosigned_by(db, cp.size) if cp else [],
        size=size,
        recent=recent,
        before=before,
        older=recent[-1].index if recent and recent[-1].index > 0 else None,
        newer=min(size, before + LEDGER_PAGE) if before < size else None,
        configured=[w.split()[-1] for w in ([configured] if isinstance(configured, str) else configured)],
        witnesses=cosigning.known(db),
        log_key=str(log_signer().verifier()),
        now=int(time.time()),
    )


def _entry_words(body: dict[str, Any]) -> list[tuple[str, str]]:
    """An entry's fields as text (byte strings as hex, long ones shortened)."""
    out = []
    for k, v in body.items():
        if isinstance(v, bytes):
            text = v.hex() if len(v) <= 40 else f"{v[:32].hex()}… ({len(v)} bytes)"
        elif isinstance(v, dict | list):
            text = json.dumps(_plain(v))[:400]
        else:
            text = str(v)
        out.append((str(k), text))
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


@bp.get("/ledger/entries/<index:index>")
def ledger_entry(index: int) -> str:
    db = get_db()
    size = ledger.size(db)
    if index >= size:
        raise Problem("not-found", "index", f"no ledger entry {index}: the ledger has {size} entries")
    e = ledger.entry(db, index)
    cp = checkpoints.covering(db, index, log_signer())
    proof = ledger.inclusion_proof(db, index, cp.size)
    leaf = merkle.leaf_hash(e.raw)
    merkle.verify_inclusion(index, cp.size, leaf, proof, cp.root)  # what the page says, checked
    return render_template(
        "entry.html",
        e=e,
        fields=_entry_words(e.body),
        leaf=leaf.hex(),
        checkpoint=cp,
        proof=[h.hex() for h in proof],
        tlog_proof=checks.tlog_proof(index, proof, checkpoints.served(db, cp)),
        size=size,
    )


@bp.get("/ledger/consistency")
def ledger_consistency() -> str:
    db = get_db()
    size = ledger.size(db)
    first = int_query("from")
    second = int_query("to") or size
    result = None
    if first is not None:
        if not 0 < first <= second <= size:
            raise Problem("bad-request", "from", f"0 < from <= to <= {size} (the ledger's size)")
        old, new = checkpoints.at_size(db, first), checkpoints.at_size(db, second)
        proof = ledger.consistency_proof(db, first, second)
        root1, root2 = ledger.root(db, first), ledger.root(db, second)
        merkle.verify_consistency(first, second, root1, root2, proof)
        result = {"from": first, "to": second, "proof": [h.hex() for h in proof], "root1": root1.hex(),
                  "root2": root2.hex(), "signed1": old is not None, "signed2": new is not None}  # fmt: skip
    return render_template("consistency.html", size=size, first=first, second=second, result=result)
