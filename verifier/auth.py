"""API keys with roles. Devices need none: a packet is authenticated by its signature.

A token is "wp_<key id>_<secret>"; the database keeps only SHA-256(secret). Roles:
admin (everything), installer (enrollments signed by its own installer, revocations of the
devices that installer enrolled), utility (devices, readings, energy, packets), auditor
(devices, ledger entries), account (the certificates of one registry account: its holdings,
transfers and claims; read access to bundles and matching). Checkpoints, proofs and the log
key are public: anyone may check the ledger. Keys may expire; revocation takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from verifier.certificates import registry
from verifier.devices import lifecycle
from verifier.storage import Connection, transaction
from verifier.wire.problems import Problem

ROLES = ("admin", "installer", "utility", "auditor", "account")
KEY_STATUSES = ("active", "expired", "revoked")
LAST_USED_EVERY_S = 60  # last_used_at is written at most this often per key (a write per request would cost)
_last_written: dict[str, float] = {}


@dataclass(frozen=True)
class Caller:
    key_id: str
    name: str
    role: str
    installer: str | None  # installer keys act for this installer only
    account: str | None = None  # account keys act for this registry account only


def create_key(
    db: Connection,
    name: str,
    role: str,
    expires_at: int | None = None,
    installer: str | None = None,
    account: str | None = None,
) -> str:
    """Stores a new API key and returns its token (shown once). An installer key names the
    registered installer whose signatures it may submit, an account key the registry account
    it acts for; no other role names either."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 100:
        raise ValueError("name the key's user (1 to 100 characters)")
    if role == "installer":
        if not installer:
            raise ValueError("an installer key acts for one installer: name it (--installer NAME)")
        if not lifecycle.installer_active(db, installer):
            raise ValueError(f"no active installer {installer!r}: register it first (wattproof installers register)")
    elif installer:
        raise ValueError("only installer keys name an installer")
    if role == "account":
        if not account:
            raise ValueError("an account key acts for one registry account: name it (--account ID)")
        if not registry.account_exists(db, account):
            raise ValueError(f"no account {account!r}: create it first (wattproof accounts create)")
    elif account:
        raise ValueError("only account keys name an account")
    now = int(time.time())
    if expires_at is not None and expires_at <= now:
        raise ValueError("the expiry must be in the future")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    db.execute(
        "INSERT INTO api_keys (key_id, name, role, secret_hash, created_at, expires_at, installer, account_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (key_id, name, role, hashlib.sha256(secret.encode()).digest(), now, expires_at, installer, account),
    )
    return f"wp_{key_id}_{secret}"


def list_keys(db: Connection) -> list[dict[str, Any]]:
    """Every key without its secret: id, name, role, installer or account, created, expires,
    last used, revoked."""
    rows = db.execute(
        "SELECT key_id, name, role, installer, created_at, expires_at, last_used_at, revoked, account_id FROM api_keys"
        " ORDER BY created_at, key_id"
    )
    now = time.time()
    return [
        {
            "key_id": r[0],
            "name": r[1],
            "role": r[2],
            "installer": r[3],
            "account": r[8],
            "created_at": r[4],
            "expires_at": r[5],
            "last_used_at": r[6],
            "status": "revoked" if r[7] else "expired" if r[5] is not None and r[5] <= now else "active",
        }
        for r in rows
    ]


def revoke_key(db: Connection, key_id: str) -> None:
    """Revokes a key at once; raises LookupError for an unknown id."""
    if db.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,)).rowcount == 0:
        raise LookupError(f"no API key {key_id}")


def identify(db: Connection, authorization: str | None) -> Caller:
    """The caller of a bearer token in an Authorization header; raises Problem otherwise."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith("wp_"):
        raise Problem("unauthorized", "Authorization", "send Authorization: Bearer <API key>")
    _, key_id, secret = (token.split("_", 2) + ["", ""])[:3]
    row = db.execute(
        "SELECT name, role, secret_hash, revoked, expires_at, installer, account_id FROM api_keys WHERE key_id = ?",
        (key_id,),
    ).fetchone()
    digest = hashlib.sha256(secret.encode()).digest()
    if row is None or row[3] or not hmac.compare_digest(bytes(row[2]), digest):
        raise Problem("unauthorized", "Authorization", "unknown or revoked API key")
    now = time.time()
    if row[4] is not None and row[4] <= now:
        raise Problem("unauthorized", "Authorization", "this API key expired: ask the operator for a new one")
    if now - _last_written.get(key_id, 0) >= LAST_USED_EVERY_S:
        _last_written[key_id] = now
        with transaction(db):
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE key_id = ?", (int(now), key_id))
    return Caller(key_id, str(row[0]), str(row[1]), row[5], row[6])


def by_key_id(db: Connection, key_id: str) -> Caller | None:
    """The caller of a key the web pages signed in with (its id in the session cookie), or
    None when it is unknown, revoked or expired: signing out takes no more than revoking."""
    row = db.execute(
        "SELECT name, role, revoked, expires_at, installer, account_id FROM api_keys WHERE key_id = ?", (key_id,)
    ).fetchone()
    if row is None or row[2] or (row[3] is not None and row[3] <= time.time()):
        return None
    return Caller(key_id, str(row[0]), str(row[1]), row[4], row[5])


# -- the web pages' sessions (verifier/web): ended on the server by sign-out ------------------


def session_open(db: Connection, sid: str, key_id: str) -> bool:
    """Whether a web session is open: of this key, not signed out, not past its hours."""
    row = db.execute("SELECT key_id, expires_at, ended_at FROM web_sessions WHERE sid = ?", (sid,)).fetchone()
    return row is not None and row[0] == key_id and row[2] is None and int(row[1]) > time.time()


def start_session(db: Connection, key_id: str, hours: int) -> str:
    """A new web session of the key for hours; its random id (sessions long over are forgotten)."""
    now = int(time.time())
    sid = secrets.token_urlsafe(24)
    with transaction(db):
        db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now - 86400,))
        db.execute(
            "INSERT INTO web_sessions (sid, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (sid, key_id, now, now + hours * 3600),
        )
    return sid


def end_session(db: Connection, sid: str) -> None:
    """Signs a web session out on the server: its cookie, or a copy, signs no one in after."""
    with transaction(db):
        db.execute("UPDATE web_sessions SET ended_at = ? WHERE sid = ? AND ended_at IS NULL", (int(time.time()), sid))
