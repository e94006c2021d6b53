"""Billing a session to its token without the token in the ledger (docs/charging.md).

The operator holds one secret. Each charger gets its own token key, derived from it:
HMAC-SHA256(secret, "wattproof token key" || device id), written into the board's
configuration by `wattproof provision --token-secret FILE`. The charger sends only
HMAC-SHA256(token key, token). The operator, who holds the secret and the list of tokens it
accepts (TOKENS_FILE, never served), finds a session's token by computing the same HMAC
over that list. Pure: no Flask, no database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

LABEL = b"wattproof token key"


@dataclass(frozen=True)
class Token:
    uid: str  # as the reader gives it (the RFID UID in hex, or the contract id)
    contract_id: str
    type: str = "RFID"  # OCPI TokenType


def charger_key(secret: bytes, device_id: str) -> bytes:
    """The token key of one charger: breaking a board open gives away that charger's only."""
    return hmac.new(secret, LABEL + device_id.encode(), hashlib.sha256).digest()


def token_hash(key: bytes, uid: str) -> bytes:
    """What the charger sends for a token (firmware reading.keyed_token_hash)."""
    return hmac.new(key, uid.encode(), hashlib.sha256).digest()


def load_secret(path: str | Path) -> bytes:
    """The operator's secret: a file of 64 hex digits (32 random bytes)."""
    text = Path(path).read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: the token secret is 64 hex digits") from None
    if len(secret) != 32:
        raise ValueError(f"{path}: the token secret is 64 hex digits (32 bytes), not {len(secret)} bytes")
    return secret


def load_tokens(path: str | Path) -> list[Token]:
    """The tokens the operator accepts: a JSON list of {"uid", "contract_id"?, "type"?}."""
    entries = json.loads(Path(path).read_text())
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of tokens")
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("uid"), str) or not e["uid"]:
            raise ValueError(f"{path}: every token has a uid (a string)")
        out.append(Token(e["uid"], str(e.get("contract_id", e["uid"])), str(e.get("type", "RFID"))))
    return out


class Attribution:
    """Finds the token of a charger's token hash; one table per charger, built once."""

    def __init__(self, secret: bytes, tokens: list[Token]) -> None:
        self.secret, self.tokens = secret, tokens
        self._tables: dict[str, dict[bytes, Token]] = {}

    def find(self, device_id: str, hashed: bytes) -> Token | None:
        table = self._tables.get(device_id)
        if table is None:
            key = charger_key(self.secret, device_id)
            table = self._tables[device_id] = {token_hash(key, t.uid): t for t in self.tokens}
        return table.get(hashed)
