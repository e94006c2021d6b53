"""API keys with roles. Devices need none: a packet is authenticated by its signature.

A token is "wp_<key id>_<secret>"; the database keeps only SHA-256(secret). Roles:
admin (everything), installer (enrollments, revocations), utility (devices, readings,
energy, packets), auditor (devices, ledger entries). Checkpoints, proofs and the log key
are public: anyone may check the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from verifier.db import get_db
from verifier.problems import Problem

ROLES = ("admin", "installer", "utility", "auditor")
F = TypeVar("F", bound=Callable[..., Any])


def create_key(db: sqlite3.Connection, name: str, role: str) -> str:
    """Stores a new API key and returns its token (shown once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    db.execute(
        "INSERT INTO api_keys (key_id, name, role, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        (key_id, name, role, hashlib.sha256(secret.encode()).digest(), int(time.time())),
    )
    return f"wp_{key_id}_{secret}"


def identify(db: sqlite3.Connection, authorization: str | None) -> tuple[str, str]:
    """(name, role) of the bearer token in an Authorization header; raises Problem otherwise."""
    if not authorization or not authorization.startswith("Bearer wp_"):
        raise Problem("unauthorized", "Authorization", "send Authorization: Bearer <API key>")
    _, key_id, secret = (authorization[len("Bearer ") :].split("_", 2) + ["", ""])[:3]
    row = db.execute("SELECT name, role, secret_hash, revoked FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
    digest = hashlib.sha256(secret.encode()).digest()
    if row is None or row[3] or not hmac.compare_digest(bytes(row[2]), digest):
        raise Problem("unauthorized", "Authorization", "unknown or revoked API key")
    return str(row[0]), str(row[1])


def require(*roles: str) -> Callable[[F], F]:
    """View decorator: the caller's API key must have one of roles (admin always may)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name, role = identify(get_db(), request.headers.get("Authorization"))
            if role != "admin" and role not in roles:
                raise Problem("forbidden", "Authorization", f"the {role} role may not do this")
            g.api_key_name, g.api_key_role = name, role
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
