# Readings as deterministic CBOR maps with small integer keys (docs/protocol.md).
# Every reading carries kind, its per-device reading number, time and time quality.

import hashlib

import cbor
import p256
from micropython import const

KIND_METER = const(1)
KIND_SESSION = const(2)
KIND_DEVICE = const(3)

# Time quality, as OCMF: unknown, informative (free-running clock), synchronised.
TIME_UNKNOWN = const(0)
TIME_INFORMATIVE = const(1)
TIME_SYNCHRONISED = const(2)

SESSION_START = const(1)
SESSION_SAMPLE = const(2)
SESSION_STOP = const(3)

EVENT_BOOT = const(1)
EVENT_CLOCK_SET = const(2)
EVENT_POWER_LOSS = const(3)
EVENT_METER_FAULT = const(4)
EVENT_TAMPER = const(5)
EVENT_KEY_ROTATION = const(6)
EVENT_JOURNAL_FULL = const(7)  # value: intervals coalesced while the journal was full


def _common(kind, number, ts, quality):
    return {0: kind, 1: number, 2: ts, 3: quality}


def meter_interval(number, ts, quality, import_wh, export_wh, power_w=None):
    """Cumulative import and export registers in Wh; optional power in W (negative = export)."""
    r = _common(KIND_METER, number, ts, quality)
    r[10] = import_wh
    r[11] = export_wh
    if power_w is not None:
        r[12] = power_w
    return cbor.encode(r)


def session_event(
    number, ts, quality, event, session_id, connector, register_wh, token_hash=None, reason=None, ocmf_sig=None
):
    r = _common(KIND_SESSION, number, ts, quality)
    r[20] = event
    r[21] = session_id
    r[22] = connector
    r[23] = register_wh
    if token_hash is not None:
        r[24] = token_hash
    if reason is not None:
        r[25] = reason
    if ocmf_sig is not None:
        r[26] = ocmf_sig
    return cbor.encode(r)


def device_event(number, ts, quality, event, detail=None, value=None):
    r = _common(KIND_DEVICE, number, ts, quality)
    r[30] = event
    if detail is not None:
        r[31] = detail
    if value is not None:
        r[32] = value
    return cbor.encode(r)


def token_hash(salt, token):
    """SHA-256(salt || token): a board without a token key (its sessions cannot be billed)."""
    h = hashlib.sha256(salt)
    h.update(token)
    return h.digest()


def keyed_token_hash(key, token):
    """HMAC-SHA256(token key, token): with the operator's token key, the only form in which
    an ID token leaves the board (docs/charging.md)."""
    return p256.hmac_sha256(key, token)
