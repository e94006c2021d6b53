"""Configuration of the verifier: defaults, a TOML file, WATTPROOF_* environment variables."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from verifier.log import note

DEFAULTS: dict[str, Any] = {
    "DATABASE": None,  # a SQLite file (WAL) or a postgresql:// URL; required
    "LOG_ORIGIN": "wattproof.local/ledger",  # the checkpoint origin and the log key's name
    "LOG_KEY_FILE": None,  # PRIVATE+KEY file of the log's Ed25519 key; default DATABASE + ".logkey"
    "RATE_PACKETS_PER_S": 20.0,  # per device, in each worker process
    "RATE_BURST": 600,  # packets a device may send at once (a backlog after an outage)
    # Per client address: packets that cost work and stored nothing (duplicates, refusals).
    # A device's new packets never draw on this, and duplicates never draw on the device's.
    "RATE_CLIENT_WASTE_PER_S": 10.0,
    "RATE_CLIENT_WASTE_BURST": 300,
    # Checkpoints (docs/ledger.md): signed in the transaction of every batch that grows the
    # log, and by each server process every interval when the log grew otherwise (0: never).
    "CHECKPOINT_AFTER_BATCH": True,
    # A PostgreSQL hot standby of DATABASE (streaming replication): GET requests read from
    # it, writes go to DATABASE; a read that must write runs again on DATABASE ("": none).
    "READ_DATABASE": "",
    # With many small requests (a fleet's 15-reading packets, each its own batch), a
    # checkpoint per request costs a signature and a row each: a process then signs after a
    # batch only when its last such checkpoint is this old (0: after every batch).
    "CHECKPOINT_MIN_GAP_S": 0.0,
    "CHECKPOINT_INTERVAL_S": 60.0,
    # Witnesses (docs/ledger.md): each "<submission URL> <cosignature/v1 verifier key>"; every
    # server process asks them to cosign the latest checkpoint every interval, each request
    # bounded by the timeout (a witness that is down never holds anything else up).
    "WITNESSES": [],
    "WITNESS_INTERVAL_S": 5.0,
    "WITNESS_TIMEOUT_S": 3.0,
    # Certificates (docs/certificates.md): each server process issues the complete hours of
    # every producer every interval (0: only when an operator asks); bundles expire after
    # CERTIFICATE_EXPIRY_S.
    "CERTIFICATE_INTERVAL_S": 300.0,
    "CERTIFICATE_EXPIRY_S": 2 * 365 * 86400,
    # OCPI (docs/charging.md): the charge point operator's party, the tariff of its CDRs,
    # the most CDRs one page holds.
    "OCPI_COUNTRY_CODE": "FR",
    "OCPI_PARTY_ID": "WTP",
    "OCPI_PAGE_LIMIT": 1000,
    "TARIFF_CURRENCY": "EUR",
    "TARIFF_PER_KWH": "0.30",
    "TARIFF_PER_HOUR": "0.00",
    "TARIFF_VAT": "0.20",
    # Billing sessions to tokens (docs/charging.md): the operator's secret (64 hex digits)
    # that chargers' token keys derive from, and the JSON list of the tokens it accepts.
    # Both private to the operator; without them a CDR names a token by its hash only.
    "TOKEN_SECRET_FILE": None,
    "TOKENS_FILE": None,
    # Third-party chargers' OCMF records that name their user in the clear (ID) are refused:
    # the ledger is read by auditors. True keeps them (the operator answers for it).
    "OCMF_KEEP_IDENTIFICATION": False,
    # The web pages' session cookie is Secure over TLS; True makes it Secure always (behind a
    # proxy that ends TLS and talks plain HTTP to the verifier). docs/web.md.
    "SESSION_COOKIE_SECURE": False,
    # Behind a reverse proxy (docs/operations.md): the proxy's address (or "*" for any, when
    # only the proxy can reach the verifier) whose X-Forwarded-For waitress trusts, and how
    # many proxies in a row add to it. Unset: the connection's own address is the client's.
    "TRUSTED_PROXY": None,
    "TRUSTED_PROXY_COUNT": 1,
}


class SettingsError(ValueError):
    """A settings file or value that cannot be used; the message says which and why."""


def load_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file: the same names as DEFAULTS, in lower or upper case."""
    try:
        with open(path, "rb") as f:
            return {k.upper(): v for k, v in tomllib.load(f).items()}
    except FileNotFoundError:
        raise SettingsError(f"no settings file at {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path} is not valid TOML: {e}") from None


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """WATTPROOF_NAME=value settings; values are read as JSON where they parse (numbers, booleans)."""
    out: dict[str, Any] = {}
    for key, raw in (os.environ if environ is None else environ).items():
        if not key.startswith("WATTPROOF_") or key[10:] not in DEFAULTS:
            continue
        try:
            out[key[10:]] = json.loads(raw)
        except ValueError:
            out[key[10:]] = raw
    return out


def load(config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The one way settings are read, by the server and every command: defaults, then the TOML
    file (config_file, else WATTPROOF_CONFIG), then WATTPROOF_* variables, then overrides."""
    config = dict(DEFAULTS)
    config_file = config_file or os.environ.get("WATTPROOF_CONFIG")
    if config_file:
        config.update(load_file(config_file))
    config.update(from_environment())
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config


def _same_log(config: Mapping[str, Any], signer: note.Signer | None, path: Path) -> None:
    """Refuses a key (None: a key about to be made) that does not verify the database's latest
    checkpoint. A database that does not exist yet, or holds no checkpoint, takes any key."""
    from verifier import storage

    target = config.get("DATABASE")
    if not target or (not storage.is_url(str(target)) and not Path(str(target)).exists()):
        return
    try:
        db = storage.connect(str(target), upgrade=False, create=False)
    except Exception:  # noqa: BLE001 - not readable here: the command's own open says why
        return
    from verifier.log import checkpoints

    try:
        cp = checkpoints.latest(db)
    except Exception:  # noqa: BLE001 - no checkpoints table yet: a new log
        cp = None
    finally:
        db.close()
    if cp is None:
        return
    size, signed = cp.size, cp.note
    if signer is None:
        raise SettingsError(
            f"no log key at {path}, but the database holds the log's checkpoints up to {size:,} entries:"
            " restore the log's key file (a new key is only for a new log; with a new one the log would"
            " publish checkpoints that verify none of its earlier ones)"
        )
    try:
        opened = note.open_note(signed, [signer.verifier()])
    except note.NoteError:
        opened = None
    if opened is None or signer.name not in opened.verified_by:
        raise SettingsError(
            f"the log key {path} ({signer.verifier()}) does not verify the database's latest checkpoint"
            f" ({size:,} entries): this is another log's key; restore this log's key file"
        )


def log_key_path(config: Mapping[str, Any]) -> Path:
    if config["LOG_KEY_FILE"]:
        return Path(config["LOG_KEY_FILE"])
    if str(config["DATABASE"]).startswith(("postgresql://", "postgres://")):
        raise SettingsError(
            "LOG_KEY_FILE is required with PostgreSQL: every worker on every host signs with the same log key"
        )
    return Path(f"{config['DATABASE']}.logkey")


def log_signer(config: Mapping[str, Any], create: bool = True, check_log: bool = True) -> note.Signer:
    """The log's signing key: read from LOG_KEY_FILE, or generated there (mode 0600) the first
    time; with create=False a missing key is an error naming the path.

    One log, one identity: with check_log (every command that signs), a key must verify the
    latest checkpoint the database holds, and a new key is made only for a log that has
    none. A key file lost or pointed at the wrong path is refused, not replaced: a new key
    would publish checkpoints that verify none of the log's earlier ones."""
    path = log_key_path(config)
    if not path.exists() and not create:
        raise SettingsError(f"no log key at {path}: is the database path right?")
    if path.exists():
        signer = note.Signer.parse(path.read_text().strip())
        if signer.name != config["LOG_ORIGIN"]:
            raise ValueError(f"log key {path} is for {signer.name}, not {config['LOG_ORIGIN']}")
        if check_log:
            _same_log(config, signer, path)
        return signer
    if check_log:
        _same_log(config, None, path)
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
