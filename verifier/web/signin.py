"""The pages' front door: the home page, sign-in and sign-out."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from verifier import auth, web
from verifier.http.access import get_db
from verifier.web import bp, caller, safe_next
from verifier.wire.problems import Problem


@bp.get("/")
def home() -> BaseResponse:
    who = caller()
    if who is None:
        return redirect(url_for("web.signin"))
    if who.role == "account":
        return redirect(url_for("web.certificates"))
    return redirect(url_for("web.overview"))


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    error, status, wait = None, 200, 0.0
    if request.method == "POST":
        token = request.form.get("api_key", "").strip()
        wait = web.signin_wait(token)
        if wait:
            error, status = f"Too many sign-in attempts: try again in {max(1, round(wait))} s.", 429
        else:
            try:
                who = auth.identify(get_db(), f"Bearer {token}")
            except Problem as e:
                web.signin_failed(token)
                error, status = e.detail, 401
            else:
                web.start_session(who.key_id)
                return redirect(safe_next(request.form.get("next")))
    answer = render_template("signin.html", error=error, next=request.values.get("next", ""))
    headers = {"Retry-After": str(max(1, round(wait)))} if status == 429 else {}
    return answer, status, headers


@bp.post("/signout")
def signout() -> BaseResponse:
    web.end_session()
    return redirect(url_for("web.signin"))
