"""Per-request access: the thread's database connection and the caller's API key role."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request

from verifier import auth
from verifier.log import checkpoints, ledger
from verifier.storage import Connection, connect, transaction
from verifier.wire.problems import Problem

F = TypeVar("F", bound=Callable[..., Any])
_per_thread = threading.local()


def reads_from_replica() -> bool:
    """Whether this request reads from the hot standby (setting READ_DATABASE): a GET or
    HEAD, unless it met a write there and runs again on the primary (verifier/http/app.py)."""
    return (
        bool(current_app.config.get("READ_DATABASE")) and request.method in ("GET", "HEAD") and not g.get("on_primary")
    )


def get_db(primary: bool = False) -> Connection:
    """This server thread's connection, opened once and reused: opening one per request
    (and setting its pragmas) cost more than most requests' own work. A PostgreSQL
    connection the server dropped is replaced here, on the thread's next request. A read
    request gets the replica's (READ_DATABASE), unless primary."""
    replica = not primary and reads_from_replica()
    target = current_app.config["READ_DATABASE" if replica else "DATABASE"]
    key = (os.getpid(), target)  # a forked worker opens its own
    slot = "replica" if replica else "conn"
    held: tuple[tuple[int, str], Connection] | None = getattr(_per_thread, slot, None)
    db = None
    if held is not None:
        if held[0] == key and held[1].healthy():
            db = held[1]
        elif held[0][0] == os.getpid():
            held[1].close()  # another database (tests), or a connection the server dropped
    if db is None:
        db = connect(target, upgrade=False, create=False) if replica else connect(target, upgrade=False)
        setattr(_per_thread, slot, (key, db))
    db.rollback_if_open()  # a request that died mid-transaction must not leave it open
    return db


def own_account() -> str | None:
    """The account an account key's caller sees only (None: a role that sees every account)."""
    caller = getattr(g, "caller", None)
    return str(caller.account) if caller is not None and caller.role == "account" else None


def require(*roles: str) -> Callable[[F], F]:
    """View decorator: the caller's API key must have one of roles (admin always may)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller = auth.identify(get_db(primary=True), request.headers.get("Authorization"))
            if caller.role != "admin" and caller.role not in roles:
                raise Problem(
                    "forbidden",
                    "Authorization",
                    f"the {caller.role} role may not do this: it needs role {' or '.join(roles)} (or admin)",
                )
            g.caller = caller
            g.api_key_name, g.api_key_role = caller.name, caller.role
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


@contextmanager
def writing(db: Connection) -> Iterator[Connection]:
    """A request's write transaction. What it appended to the ledger is covered by a
    checkpoint signed in the same commit (setting CHECKPOINT_AFTER_BATCH), as a batch of
    packets is: the answer's ledger index is provable at once (docs/ledger.md)."""
    with transaction(db):
        yield db
        if current_app.config.get("CHECKPOINT_AFTER_BATCH") and ledger.appended_head(db) is not None:
            checkpoints.sign_current(db, current_app.extensions["wattproof.log_signer"])
