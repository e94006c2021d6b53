"""Work a server process does on its own every interval (checkpoints, certificates)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from verifier.storage import Connection, Unavailable

log = logging.getLogger("wattproof.verifier")


class Periodic:
    """A daemon thread that runs work(db) every interval seconds on a connection of its own,
    reconnecting after the database went away; one bad round never ends it."""

    def __init__(
        self, name: str, connect: Callable[[], Connection], work: Callable[[Connection], Any], interval: float
    ) -> None:
        self.name, self.connect, self.work, self.interval = name, connect, work, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Periodic:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        db: Connection | None = None
        while not self.stopped.wait(self.interval):
            try:
                if db is None or not db.healthy():
                    db = self.connect()
                self.work(db)
            except Unavailable as e:
                log.warning("%s: %s; retrying in %.0f s", self.name, e, self.interval)
                db = None
            except Exception:  # noqa: BLE001 - the thread must outlive one bad round
                log.exception("%s failed; retrying in %.0f s", self.name, self.interval)
                db = None
