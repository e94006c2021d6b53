"""Verify (public): a provenance file checked in the browser's request, offline-style."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, render_template, request

from verifier.log import note
from verifier.provenance import checks
from verifier.web import bp
from verifier.web.common import MAX_UPLOAD, log_signer
from verifier.wire.problems import Problem


def _witness_keys(extra: str) -> list[note.Verifier]:
    configured = current_app.config.get("WITNESSES") or []
    texts = [w.split()[-1] for w in ([configured] if isinstance(configured, str) else configured)]
    texts += [line.strip() for line in extra.splitlines() if line.strip()]
    keys = []
    for text in texts:
        try:
            key = note.Verifier.parse(text)
        except note.NoteError as e:
            raise Problem("bad-request", "witnesses", f"{text[:60]!r}: {e}") from None
        if not key.cosigner:
            raise Problem("bad-request", "witnesses", f"{key.name} is not a witness's cosignature key")
        if key not in keys:
            keys.append(key)
    return keys


@bp.route("/verify", methods=["GET", "POST"])
def verify() -> Any:
    result, refused, name, status = None, None, None, 200
    extra = request.form.get("witnesses", "")
    if request.method == "POST":
        upload = request.files.get("certificate")
        if upload is None or not upload.filename:
            refused, status = checks.Refused("file", "choose a provenance certificate file to check"), 400
        else:
            name = upload.filename
            data = upload.read(MAX_UPLOAD + 1)
            if len(data) > MAX_UPLOAD:
                abort(413)
            keys = _witness_keys(extra)
            try:
                result = checks.verify(data, log_signer().verifier(), keys, None)
            except checks.Refused as e:
                refused = e  # the check ran: its verdict is the page (200), not an error
    return render_template(
        "verify.html",
        result=result,
        refused=refused,
        name=name,
        extra=extra,
        log_key=str(log_signer().verifier()),
        max_upload=MAX_UPLOAD,
    ), status
