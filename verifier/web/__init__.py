"""The web pages: server-rendered HTML for utilities, community operators and auditors.

A person signs in with an API key; the session cookie then holds only the key's id and the
session's random id (signed, HttpOnly, SameSite=Lax, Secure when the request came over TLS),
and every request checks both again: revoking the key signs the person out, and signing out
ends the session on the server (table web_sessions), so a copied cookie is worth nothing
after it. Sign-in attempts are limited per client address and per key id. Every form carries a CSRF token bound
to the session. The key's role decides which pages the navigation offers and which a view
answers; the ledger and the verify page are public, as the log's read path is.

Pages live in verifier/web/pages.py, charts in charts.py (SVG drawn here, no JavaScript
library), templates and the stylesheet beside them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup

from verifier import auth
from verifier.http.access import get_db
from verifier.log import note
from verifier.web import charts
from verifier.wire.problems import Problem

F = TypeVar("F", bound=Callable[..., Any])
bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static/web")

# What each role's navigation offers (admin: everything). Public pages need no sign-in.
NAV = (
    ("web.overview", "Overview", ("utility", "auditor", "installer")),
    ("web.devices", "Devices", ("utility", "auditor", "installer")),
    ("web.certificates", "Certificates", ("utility", "auditor", "account")),
    ("web.matching", "Matching", ("utility", "auditor", "account")),
    ("web.communities", "Communities", ("utility", "auditor")),
    ("web.sessions", "Charging", ("utility", "auditor")),
    ("web.ledger", "Ledger", None),
    ("web.verify", "Verify", None),
)
SESSION_HOURS = 8
SIGNIN_BURST, SIGNIN_PER_S = 10, 10 / 60  # wrong keys: 10 at once, then one every 6 s (per address, per key id)


class _Sessions(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the request came over TLS (or a TLS proxy that
    says so), without a setting to forget."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def init_app(app: Flask, log_signer: note.Signer) -> None:
    """Registers the pages. The session key derives from the log key, which every worker of
    one verifier shares (docs/operations.md), so a cookie one worker set, another accepts."""
    app.secret_key = hmac.new(log_signer.seed, b"wattproof web session cookies", hashlib.sha256).hexdigest()
    app.session_interface = _Sessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="wattproof_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    from verifier.devices.ingest import RateLimiter
    from verifier.web import (  # noqa: F401 - each registers its views on bp
        certificates,
        charging,
        communities,
        devices,
        ledger,
        matching,
        overview,
        signin,
        verify,
    )

    app.extensions["wattproof.signin_limiter"] = RateLimiter(SIGNIN_PER_S, SIGNIN_BURST)
    # the API's handler of HTTP errors answers a page's address with a page
    app.extensions["wattproof.page_error"] = lambda e: error_page_for(e) if is_page_path(request.path) else None

    app.register_blueprint(bp)


# -- who is signed in ---------------------------------------------------------------------


def caller() -> auth.Caller | None:
    """The signed-in person's key, checked again on this request, with the session (None:
    signed out, by the key's revocation or expiry, the session's sign-out or its 8 hours)."""
    if "web_caller" not in g:
        key_id, sid = session.get("key_id"), session.get("sid")
        who = None
        if isinstance(key_id, str) and isinstance(sid, str) and auth.session_open(get_db(primary=True), sid, key_id):
            who = auth.by_key_id(get_db(primary=True), key_id)
        g.web_caller = who
    found: auth.Caller | None = g.web_caller
    return found


def start_session(key_id: str) -> None:
    """Signs a person in: a new session row and cookie (whatever session the browser had ends)."""
    end_session()
    sid = auth.start_session(get_db(), key_id, SESSION_HOURS)
    session.clear()
    session.permanent = True
    session["key_id"], session["sid"] = key_id, sid


def end_session() -> None:
    """Signs out: the session ends on the server, so its cookie (or a copy) signs no one in."""
    sid = session.get("sid")
    if isinstance(sid, str):
        auth.end_session(get_db(), sid)
    session.clear()


def signin_wait(token: str) -> float:
    """Seconds this client (and the key id it names) must wait before another sign-in attempt."""
    limiter = current_app.extensions["wattproof.signin_limiter"]
    return float(max(limiter.wait(f"addr:{request.remote_addr}"), limiter.wait(f"key:{_key_id(token)}")))


def signin_failed(token: str) -> None:
    """A wrong key counts against the client's address and against the key id it named."""
    limiter = current_app.extensions["wattproof.signin_limiter"]
    limiter.charge(f"addr:{request.remote_addr}", 1)
    limiter.charge(f"key:{_key_id(token)}", 1)


def _key_id(token: str) -> str:
    parts = token.split("_", 2)
    return parts[1][:32] if len(parts) == 3 and parts[0] == "wp" else "?"


def allowed(roles: tuple[str, ...] | None) -> bool:
    if roles is None:
        return True
    who = caller()
    return who is not None and (who.role == "admin" or who.role in roles)


def page(*roles: str) -> Callable[[F], F]:
    """View decorator: signed in with one of roles (admin always may); else to the sign-in
    page, or 403 for a role that may not see it."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = caller()
            if who is None:
                return redirect(url_for("web.signin", next=request.full_path.rstrip("?")))
            if who.role != "admin" and who.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


@bp.before_request
def _check_csrf() -> None:
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not sent or not hmac.compare_digest(sent, str(session.get("csrf", ""))):
            abort(400, "the form expired or did not come from this site: reload the page and send it again")


@bp.after_request
def _headers(response: Response) -> Response:
    # The pages load nothing from elsewhere; a strict policy keeps it that way.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none';"
        " form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint not in ("web.static",):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_context_processor
def _context() -> dict[str, Any]:
    if request.blueprint != "web":
        return {}
    return {
        "me": caller(),
        "nav": [(endpoint, label) for endpoint, label, roles in NAV if allowed(roles)],
        "csrf_token": csrf_token,
        "wh": charts.wh_text,
        "when": when,
        "svg": lambda markup: Markup(markup),  # noqa: S704 - charts escape every text they draw
    }


def when(ts: int | None, form: str = "datetime") -> Markup:
    """A <time> the page's script shows in the viewer's time zone, UTC on hover."""
    if ts is None:
        return Markup("—")
    text = charts.utc_text(int(ts), "%Y-%m-%d" if form == "date" else "%Y-%m-%d %H:%M:%S")
    return Markup('<time datetime="{}" data-ts="{}" data-form="{}" title="{}">{}</time>').format(
        text[:-4].replace(" ", "T") + "Z", int(ts), form, text, text
    )


def safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no host): the sign-in never sends anyone away."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("web.home")
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else url_for("web.home")


# -- errors as pages ----------------------------------------------------------------------


def _error_page(status: int, title: str, detail: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, detail=detail), status


@bp.errorhandler(Problem)
def _problem(e: Problem) -> tuple[str, int]:
    return _error_page(e.status, e.kind.replace("-", " ").capitalize(), e.detail)


API_PREFIXES = ("/v1/", "/ocpi/", "/log/")


def is_page_path(path: str) -> bool:
    """Whether an address is the pages' (answered as pages) rather than the API's (problem+json)."""
    return not path.startswith(API_PREFIXES) and path not in ("/v1", "/ocpi", "/log")


def error_page_for(e: Any) -> tuple[str, int]:
    """An HTTP error outside any view (no route matched) on a page's address, as a page."""
    return _http_error(e)


@bp.errorhandler(400)
@bp.errorhandler(403)
@bp.errorhandler(404)
@bp.errorhandler(413)
def _http_error(e: Any) -> tuple[str, int]:
    titles = {400: "Bad request", 403: "Not for this role", 404: "Not found", 413: "File too large"}
    detail = {403: "Your key's role may not see this page.", 413: "The file is larger than this page takes."}
    code = int(getattr(e, "code", 400) or 400)
    return _error_page(code, titles.get(code, "Error"), detail.get(code) or str(getattr(e, "description", "")))
