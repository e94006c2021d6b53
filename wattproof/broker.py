"""A local mosquitto for `wattproof demo --transport mqtt` and the tests: one listener on
127.0.0.1 (plain or TLS), persistence in its folder, and, when it has users, the rules of
docs/operations.md ("Boards over MQTT"): no anonymous client, a password file (the lines
provisioning writes), and an ACL by which a device publishes only its own packets and reads
only its own receipts while the bridges read every packet and write every receipt."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from provisioning.provision import broker_password_line

# The ACL of docs/operations.md: %u is the client's user name, a device's id.
ACL = (
    "pattern write wattproof/%u/packet\n"
    "pattern read wattproof/%u/receipt\n"
    "\n"
    "user bridge\n"
    "topic read wattproof/+/packet\n"
    "topic write wattproof/+/receipt\n"
)


def mosquitto() -> str:
    """The mosquitto executable (Debian's is in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Packets a subscriber's session may queue beyond its in-flight ones. mosquitto's default,
# 1,000, silently drops the rest: a bridge behind a burst of a fleet's packets (a city's
# boards after an outage, 1,000 a second) would see packets lost for it, which each board
# sends again only when its receipt fails to come (docs/operations.md).
MAX_QUEUED = 1_000_000
# Messages sent to a session and not yet acknowledged: a bridge acknowledges a batch's
# packets after its commit, so this bounds its batches (mosquitto's default, 20, would keep
# them at 20 packets; the bridge takes up to 64 a batch).
MAX_INFLIGHT = 128


class LocalBroker:
    """mosquitto in folder; users None lets anyone in (a test of the bridge's own checks),
    a dict of {user: password} turns on the password file and the ACL; tls is (certificate
    file, key file) for an mqtts listener."""

    def __init__(
        self,
        folder: Path,
        users: dict[str, str] | None = None,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.folder = folder
        self.users = users
        self.port = port or free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}" if self.tls else f"mqtt://127.0.0.1:{self.port}"

    @property
    def passwords(self) -> Path:
        """The password file; provisioning adds each board's line to it (then reload())."""
        return self.folder / "passwords"

    def start(self, timeout: float = 10) -> None:
        conf = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.folder}/",
                "log_dest stderr", f"max_queued_messages {MAX_QUEUED}",
                f"max_inflight_messages {MAX_INFLIGHT}"]  # fmt: skip
        if self.tls:
            conf += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        if self.users is not None:
            if not self.passwords.exists():
                self.passwords.write_text("".join(broker_password_line(u, p) + "\n" for u, p in self.users.items()))
                self.passwords.chmod(0o600)
            (self.folder / "acl").write_text(ACL)
            conf += ["allow_anonymous false", f"password_file {self.passwords}", f"acl_file {self.folder / 'acl'}"]
        else:
            conf += ["allow_anonymous true"]
        if os.geteuid() == 0:  # mosquitto started as root drops to the user mosquitto, who cannot read the folder
            conf += ["user root"]
        (self.folder / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 (the process holds it)
        self.proc = subprocess.Popen([mosquitto(), "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=log, stderr=log)  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto stopped at start: {self._tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout:g} s: {self._tail()}")

    def reload(self) -> None:
        """mosquitto reads its password file and ACL again (SIGHUP): the boards provisioned since."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)

    def reload_on_change(self) -> None:
        """Reloads whenever the password file changes (provisioning adds a board's line), as
        a systemd path unit does in production (docs/operations.md), until stop()."""
        import threading

        def watch() -> None:
            seen = None
            while self.proc is not None and self.proc.poll() is None:
                try:
                    stat = self.passwords.stat()
                    now = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
                except FileNotFoundError:
                    now = None
                if seen is not None and now != seen:
                    self.reload()
                seen = now
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def _tail(self) -> str:
        log = self.folder / "mosquitto.log"
        return log.read_text(errors="replace")[-600:] if log.exists() else ""
