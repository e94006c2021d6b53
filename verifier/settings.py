"""Configuration of the verifier: defaults, a TOML file, WATTPROOF_* environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from verifier import note

DEFAULTS: dict[str, Any] = {
    "DATABASE": None,  # SQLite file (WAL); required
    "LOG_ORIGIN": "wattproof.local/ledger",  # the checkpoint origin and the log key's name
    "LOG_KEY_FILE": None,  # PRIVATE+KEY file of the log's Ed25519 key; default DATABASE + ".logkey"
    "RATE_PACKETS_PER_S": 20.0,  # per device, in each worker process
    "RATE_BURST": 600,  # packets a device may send at once (a backlog after an outage)
}


def load_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file: the same names as DEFAULTS, in lower or upper case."""
    with open(path, "rb") as f:
        return {k.upper(): v for k, v in tomllib.load(f).items()}


def log_signer(config: dict[str, Any]) -> note.Signer:
    """The log's signing key: read from LOG_KEY_FILE, or generated there (mode 0600) the first time."""
    path = Path(config["LOG_KEY_FILE"] or f"{config['DATABASE']}.logkey")
    if path.exists():
        signer = note.Signer.parse(path.read_text().strip())
        if signer.name != config["LOG_ORIGIN"]:
            raise ValueError(f"log key {path} is for {signer.name}, not {config['LOG_ORIGIN']}")
        return signer
    signer = note.Signer.generate(config["LOG_ORIGIN"])
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(signer) + "\n")
    try:
        os.link(tmp, path)  # atomic, and fails if another process made the key first
    except FileExistsError:
        return log_signer(config)
    finally:
        os.unlink(tmp)
    return signer
