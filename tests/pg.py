"""A throw-away PostgreSQL cluster for the test session: initdb into a temporary folder,
listening on 127.0.0.1 on a free port, stopped (and its folder removed) at the end.

PostgreSQL refuses to run as root; as root, the server runs as the `postgres` system user
that Debian's package creates. `make test` installs the package when it is missing.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql; make test does)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL server; new_database() hands each test a database of its own."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wattproof-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self._names = itertools.count()
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                "max_connections = 200\nshared_buffers = 128MB\nlog_min_messages = warning\n"
            )
        self.start()

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["runuser", "-u", "postgres", "--", *command] if self.as_root else list(command)
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(_bin("pg_ctl"), "-D", str(self.data), *args, check=check)

    def start(self) -> None:
        """Starts the server and waits for its port. After an immediate stop the old server's
        processes may still be going away (its lock file, its shared memory): pg_ctl is asked
        again then, and a start that fails for good says what pg_ctl and the server said."""
        said = []
        for _ in range(5):
            done = self.pg_ctl("-w", "-t", "60", "-l", str(self.root / "server.log"), "start", check=False)
            if done.returncode == 0:
                break
            said.append(f"pg_ctl start exited {done.returncode}: {done.stdout.strip()} {done.stderr.strip()}")
            time.sleep(1)
        else:
            raise RuntimeError("PostgreSQL did not start:\n" + "\n".join(said) + "\nserver log:\n" + self._log())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not open its port:\n" + "\n".join(said) + "\nserver log:\n" + self._log())

    def _log(self) -> str:
        try:
            return (self.root / "server.log").read_text()[-4000:]
        except OSError as e:
            return f"(no server log: {e})"

    def stop(self, mode: str = "fast") -> None:
        """Stops the server and waits until it is gone (its lock file removed, or its process
        ended): a start right after finds no remains of it."""
        self.pg_ctl("-w", "-m", mode, "stop", check=False)
        pid_file = self.data / "postmaster.pid"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split("\n", 1)[0])
            except (OSError, ValueError):
                return  # no lock file: stopped
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return  # the postmaster is gone; its stale lock file is cleared by the next start
            except PermissionError:
                pass  # alive (another user's)
            time.sleep(0.1)

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def new_database(self) -> str:
        import psycopg

        name = f"wp_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def replica(self) -> Replica:
        """A hot standby of this cluster, streaming from it: pg_basebackup, then started on a
        port of its own."""
        return Replica(self)


class Replica(Cluster):
    """A streaming replica (hot standby) of a primary cluster, made by pg_basebackup -R."""

    def __init__(self, primary: Cluster) -> None:  # noqa: D107 - not Cluster's initdb
        self.root = Path(tempfile.mkdtemp(prefix="wattproof-pg-replica-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = primary.as_root
        self._names = itertools.count()
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        self._run(_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-D", str(self.data), "-R", "-X", "stream", "-c", "fast", "--no-sync")  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"port = {self.port}\nunix_socket_directories = '{self.root}'\nhot_standby = on\n")
        self.start()

    def pause(self) -> None:
        """Stops replaying the primary's WAL: the standby lags from now on."""
        self._sql("SELECT pg_wal_replay_pause()")

    def resume(self) -> None:
        self._sql("SELECT pg_wal_replay_resume()")

    def _sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(statement)

    def database(self, primary_url: str) -> str:
        """The standby's URL of a database of the primary."""
        return self.url(primary_url.rsplit("/", 1)[1])


@contextmanager
def cluster_for(engine: str) -> Iterator[Cluster | None]:
    """For benchmarks that take --engine: a throw-away cluster for postgresql (stopped and
    removed after), None for sqlite."""
    cluster = Cluster() if engine == "postgresql" else None
    try:
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()


@contextmanager
def database_for(engine: str, folder: Path, name: str = "verifier.sqlite") -> Iterator[str]:
    """Where a benchmark keeps its data: a SQLite file in folder, or a new database of a
    throw-away PostgreSQL cluster."""
    with cluster_for(engine) as cluster:
        yield cluster.new_database() if cluster is not None else str(folder / name)


def run_on(engine: str, run: Callable[[str], int]) -> int:
    """run(target) on a database of the engine that lives as long as the call (benchmarks)."""
    with tempfile.TemporaryDirectory() as tmp, database_for(engine, Path(tmp)) as target:
        return run(target)
