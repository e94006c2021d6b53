"""Serving the verifier: waitress, tuned so that a slow or huge request never holds a worker.

waitress reads every request (headers and body) in its event loop, buffering bodies, and
hands a request to a worker thread only once it is complete: a client that trickles its
body costs a socket and a buffer, never a thread. What it refuses itself (a body over the
limit, headers over the limit, garbage) is answered as problem+json like everything else.
`--workers N` forks N such processes on one listening socket (each with its own event loop
and threads); the parent restarts a worker that dies and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

from waitress import serve as waitress_serve
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from verifier.devices.ingest import MAX_BATCH_BYTES
from verifier.wire.problems import TYPE_BASE, TYPES

# The largest valid request is a full batch; its envelope (the CBOR array head and the byte
# string heads) is a few bytes a packet. Nothing bigger is ever read.
MAX_REQUEST_BYTES = MAX_BATCH_BYTES + (64 << 10)
MAX_HEADER_BYTES = 64 << 10
CONNECTION_LIMIT = 4000  # open connections per worker process; slow ones cost a socket each
CHANNEL_TIMEOUT_S = 30  # a connection silent this long is closed

_WAITRESS_PROBLEMS = {400: "bad-request", 413: "body-too-large", 431: "headers-too-large", 501: "not-implemented"}


class ProblemErrorTask(ErrorTask):
    """waitress' own refusals (before the application runs) as RFC 9457 problem+json."""

    def execute(self) -> None:
        error: Any = getattr(self.request, "error", None)
        code = int(getattr(error, "code", 400))
        kind = _WAITRESS_PROBLEMS.get(code, "bad-request" if code < 500 else "internal-error")
        path = str(getattr(self.request, "path", "") or "")
        if kind == "body-too-large" and path.startswith("/v1/packets"):
            kind = "packet-too-large"
        status, title = TYPES[kind]
        body = json.dumps(
            {
                "type": TYPE_BASE + kind,
                "title": title,
                "status": status,
                "detail": f"{error.reason}: {error.body}; the largest request is {MAX_REQUEST_BYTES} bytes",
                "field": "request",
            }
        ).encode()
        self.status = f"{status} {error.reason}"
        headers: Any = self.response_headers
        headers.append(("Content-Type", "application/problem+json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


def _raise_file_limit() -> None:
    """Every connection is a file descriptor: allow as many as the hard limit lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CONNECTION_LIMIT + 256
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def proxy_settings(config: Any) -> dict[str, Any]:
    """waitress' trusted-proxy settings from TRUSTED_PROXY / TRUSTED_PROXY_COUNT: the client
    address of a request through the proxy is the one it put in X-Forwarded-For; the header
    from anyone else is dropped, never believed."""
    proxy = config.get("TRUSTED_PROXY") if config is not None else None
    if not proxy:
        return {}
    return {
        "trusted_proxy": str(proxy),
        "trusted_proxy_count": int(config.get("TRUSTED_PROXY_COUNT") or 1),
        "trusted_proxy_headers": {"x-forwarded-for"},
        "clear_untrusted_proxy_headers": True,
    }


def waitress_settings(threads: int) -> dict[str, Any]:
    return {
        "threads": threads,
        "connection_limit": CONNECTION_LIMIT,
        "channel_timeout": CHANNEL_TIMEOUT_S,
        "cleanup_interval": 10,
        "max_request_body_size": MAX_REQUEST_BYTES,
        "max_request_header_size": MAX_HEADER_BYTES,
        "ident": "wattproof",
        # poll(), not select(): select() fails for good on a descriptor past 1,023, and every
        # held connection is a descriptor (CONNECTION_LIMIT is far above that).
        "asyncore_use_poll": True,
    }


PARTITIONS_EVERY_S = 86400  # how often a server looks for the packets' months ahead (start-up does too)


def _start_publisher(app: Any) -> None:
    """The interval checkpoint publisher of this process (verifier/log/checkpoints.py)."""
    from verifier import storage
    from verifier.certificates import issuance
    from verifier.log import checkpoints, cosigning

    if not app.config.get("DATABASE"):
        return  # not a verifier (a witness)
    target = app.config["DATABASE"]
    signer = app.extensions["wattproof.log_signer"]
    interval = float(app.config["CHECKPOINT_INTERVAL_S"] or 0)
    if interval > 0:
        checkpoints.IntervalPublisher(lambda: storage.connect(target, upgrade=False), signer, interval).start()
    every = float(app.config["CERTIFICATE_INTERVAL_S"] or 0)
    if every > 0:
        expiry = int(app.config["CERTIFICATE_EXPIRY_S"])
        issuance.IntervalIssuer(lambda: storage.connect(target, upgrade=False), signer.name, expiry, every).start()
    witnesses = cosigning.parse_all(app.config["WITNESSES"])
    if witnesses:
        interval, timeout = float(app.config["WITNESS_INTERVAL_S"]), float(app.config["WITNESS_TIMEOUT_S"])
        cosigning.Cosigner(lambda: storage.connect(target, upgrade=False), witnesses, interval, timeout).start()
    if storage.is_url(target):  # PostgreSQL: the packets' months ahead, for a server that runs for months
        from verifier.jobs import Periodic
        from verifier.storage import migrations

        connect = lambda: storage.connect(target, upgrade=False)  # noqa: E731
        Periodic("packet partitions", connect, migrations.keep_partitions, PARTITIONS_EVERY_S).start()


def serve(app: Any, listener: socket.socket, threads: int, workers: int = 1) -> None:
    """Serves app on an already bound listener until SIGTERM or SIGINT."""
    HTTPChannel.error_task_class = ProblemErrorTask
    _raise_file_limit()
    settings = {**waitress_settings(threads), **proxy_settings(getattr(app, "config", None))}
    if workers <= 1:
        _start_publisher(app)
        waitress_serve(app, sockets=[listener], **settings)
        return
    children: dict[int, int] = {}  # pid -> worker number

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _die_with_parent()
            try:
                _start_publisher(app)  # threads do not survive a fork: each worker its own
                waitress_serve(app, sockets=[listener], **settings)
            finally:
                os._exit(1)
        children[pid] = number

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for n in range(workers):
        start(n)
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        number = children.pop(pid, None)
        if number is not None and not stopping:
            print(f"worker {number} (pid {pid}) ended; starting another", file=sys.stderr, flush=True)
            time.sleep(0.2)
            start(number)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the parent dies, so no orphan keeps the port."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
