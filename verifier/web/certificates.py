"""Certificates: the bundles an account sees, an issuance, a claim, their provenance files."""

from __future__ import annotations

from flask import Response, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from verifier.certificates import registry
from verifier.http.access import get_db
from verifier.log import ledger
from verifier.provenance import build as pf
from verifier.web import bp, page
from verifier.web.common import PAGE, account_scope, int_query, provenance_download
from verifier.wire.problems import Problem


@bp.get("/certificates")
@page("utility", "auditor", "account")
def certificates() -> str:
    db = get_db()
    own = account_scope()
    account = own or request.args.get("account_id") or None
    if account is not None and not registry.ACCOUNT_ID.fullmatch(account):
        raise Problem("bad-request", "account_id", "an account id")
    status = request.args.get("status") or None
    if status is not None and status not in registry.STATUSES:
        raise Problem("bad-request", "status", f"one of {', '.join(registry.STATUSES)}")
    cursor = int_query("cursor")
    bundles, next_cursor = registry.list_bundles(db, 0, 2**62, cursor, PAGE, account_id=account, status=status)
    claims, _ = registry.claims(db, account, None, PAGE) if account else registry.claims(db, None, None, PAGE)
    return render_template(
        "certificates.html",
        account=account,
        own=own,
        accounts=[] if own else registry.accounts(db),
        status=status,
        inventory=registry.inventory(db, account),
        bundles=bundles,
        next_cursor=next_cursor,
        transfers=registry.actions(db, "transfer", account, 20),
        withdrawals=[] if own else registry.actions(db, "withdraw", None, 20),
        claims=claims,
        issuances=[] if own else registry.recent_issuances(db, limit=10),
    )


@bp.get("/certificates/<index:index>")
@page("utility", "auditor", "account")
def issuance(index: int) -> str:
    db = get_db()
    try:
        found = registry.issuance(db, index)
    except LookupError as e:
        raise Problem("not-found", "index", str(e)) from None
    bundles = registry.issuance_bundles(db, found["issuance_id"])
    own = account_scope()
    if own is not None and not any(b["account_id"] == own for b in bundles):
        abort(403)
    steps = []
    for b in bundles:
        entry = ledger.entry(db, b["ledger_index"]) if b["ledger_index"] != index else None
        steps.append((b, entry.kind if entry else "issuance", entry.body if entry else {}))
    return render_template("issuance.html", issuance=found, steps=steps, index=index)


@bp.get("/certificates/hour/<path:issuance_id>")
@page("utility", "auditor", "account")
def issuance_of(issuance_id: str) -> BaseResponse:
    index = registry.issuance_index(get_db(), issuance_id)
    if index is None:
        raise Problem("not-found", "issuance_id", f"no issuance {issuance_id}")
    return redirect(url_for("web.issuance", index=index))


@bp.get("/certificates/<index:index>/checks.json")
@page("utility", "auditor", "account")
def issuance_provenance(index: int) -> Response:
    db = get_db()
    own = account_scope()
    if own is not None:
        try:
            held = registry.issuance_bundles(db, registry.issuance(db, index)["issuance_id"])
        except LookupError as e:
            raise Problem("not-found", "index", str(e)) from None
        if not any(b["account_id"] == own for b in held):
            abort(403)
    return provenance_download(pf.for_certificate, "index", f"certificate-{index}.json", index)


@bp.get("/claims/<index:claim_id>")
@page("utility", "auditor", "account")
def claim(claim_id: int) -> str:
    try:
        found = registry.statement(get_db(), claim_id)
    except LookupError as e:
        raise Problem("not-found", "claim_id", str(e)) from None
    own = account_scope()
    if own is not None and own not in (found["holder"], found["beneficiary"]):
        abort(403)
    return render_template("claim.html", claim=found)
