"""OCMF (Open Charge Metering Format) records: the one a charger of ours signs at the end of
a session, rebuilt byte for byte from its start and stop readings (docs/protocol.md 4.1),
and records of other chargers, parsed and verified over the payload bytes exactly as sent.
Also the forms a driver or an auditor uses: the two-line text (record, public key as hex DER
SubjectPublicKeyInfo) and the S.A.F.E. transparency software's XML container. Pure: no
database, no Flask."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from verifier.wire import cose, times

OBIS = "1-b:1.8.0"  # active energy imported, the register a charger bills
SYNC_FLAGS = "UIS"  # reading time quality 0 unknown, 1 informative, 2 synchronised
SIGNATURE_ALGORITHM = "ECDSA-secp256r1-SHA256"  # what our chargers sign with, and OCMF's default
MAX_RECORD = 16_384  # bytes of one OCMF string
MAX_DER = 140  # an ECDSA DER signature, up to P-521
# The OCMF signature algorithms (SA) checked: curve names as OCMF writes them, and the hash.
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1, "secp256k1": ec.SECP256K1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1,
    "secp192r1": ec.SECP192R1, "brainpoolP256r1": ec.BrainpoolP256R1, "brainpool256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1, "brainpool384r1": ec.BrainpoolP384R1,
}  # fmt: skip
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"SHA256": hashes.SHA256, "SHA512": hashes.SHA512}


class OcmfError(ValueError):
    """A record that is not OCMF we can check; the message says what is wrong."""


class UnsupportedAlgorithm(OcmfError):
    """A record signed with an algorithm this verifier cannot check (secp192k1, say)."""


def algorithm(name: str) -> tuple[ec.EllipticCurve, hashes.HashAlgorithm]:
    """The curve and hash of an OCMF signature algorithm (SA), or UnsupportedAlgorithm."""
    m = re.fullmatch(r"ECDSA-([A-Za-z0-9]+)-(SHA256|SHA512)", name)
    if m is None or m[1] not in CURVES:
        raise UnsupportedAlgorithm(
            f"signature algorithm {name[:40]!r}: the ones checked are ECDSA over"
            f" {', '.join(sorted(CURVES))} with SHA256 or SHA512"
        )
    return CURVES[m[1]](), HASHES[m[2]]()


# -- the record our chargers sign (the firmware's ocmf.py builds the same bytes) -----------


def timestamp(ts: int, quality: int) -> str:
    return times.strftime(ts, "%Y-%m-%dT%H:%M:%S,000+0000 ") + SYNC_FLAGS[quality]


def _reading(ts: int, quality: int, reason: str, wh: int) -> str:
    return (
        f'{{"TM":"{timestamp(ts, quality)}","TX":"{reason}","RV":{wh // 1000}.{wh % 1000:03d},'
        f'"RI":"{OBIS}","RU":"kWh","RT":"AC","EF":"","ST":"G"}}'
    )


def payload(
    device_id: str,
    stop_number: int,
    token_hash: bytes | None,
    begin: tuple[int, int, int],
    end: tuple[int, int, int],
) -> str:
    """The payload JSON of a session: begin and end are (ts, quality, register Wh)."""
    if token_hash is None:
        ident = '"IS":false,"IL":"NONE","IF":["RFID_NONE"],"IT":"NONE","ID":""'
    else:
        ident = f'"IS":true,"IL":"HEARSAY","IF":["RFID_PLAIN"],"IT":"LOCAL","ID":"{token_hash[:16].hex().upper()}"'
    return (
        f'{{"FV":"1.0","GI":"WATTPROOF","GS":"{device_id}","PG":"T{stop_number}",{ident},'
        f'"RD":[{_reading(*begin[:2], "B", begin[2])},{_reading(*end[:2], "E", end[2])}]}}'
    )


def signature_json(der: bytes) -> str:
    return f'{{"SA":"{SIGNATURE_ALGORITHM}","SD":"{der.hex().upper()}"}}'


def record(payload_text: str, der: bytes) -> str:
    """The complete OCMF string."""
    return f"OCMF|{payload_text}|{signature_json(der)}"


# -- any OCMF record -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    ts: int
    sync: str  # U, I, S, R (relative), as the record says
    reason: str  # TX: B begin, C charging, X exception, E end, L, R, A, P, S, T
    mwh: int  # the register in mWh (rounded down)
    obis: str
    status: str

    @property
    def wh(self) -> int:
        """The register in whole Wh, rounded down: consecutive sessions' differences still
        add up to the register."""
        return self.mwh // 1000


@dataclass(frozen=True)
class Record:
    text: str  # the OCMF string as received
    payload: str  # the payload bytes between the first and the last "|"
    fields: dict[str, Any]
    signature: bytes  # DER
    readings: list[Reading]
    algorithm: str = SIGNATURE_ALGORITHM  # SA


def parse(text: str) -> Record:
    """An OCMF string (plain or hex-encoded), checked for the fields a session needs."""
    text = text.strip()
    if len(text) > MAX_RECORD:
        raise OcmfError(f"an OCMF record is at most {MAX_RECORD} bytes")
    if not text.startswith("OCMF|") and re.fullmatch(r"[0-9A-Fa-f]+", text or "-"):
        try:
            text = bytes.fromhex(text).decode()
        except (ValueError, UnicodeDecodeError):
            raise OcmfError("hex that is not an OCMF string") from None
    if not text.startswith("OCMF|") or text.count("|") < 2:
        raise OcmfError("expected OCMF|{payload}|{signature}")
    body, _, signature_text = text[5:].rpartition("|")
    try:
        fields = json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
        signature = json.loads(signature_text, parse_constant=_no_constant)
    except ValueError as e:
        raise OcmfError(f"the payload or signature is not JSON: {e}") from None
    except RecursionError:
        raise OcmfError("the payload or signature is nested too deep to be an OCMF record") from None
    if not isinstance(fields, dict) or not isinstance(signature, dict):
        raise OcmfError("the payload and the signature are JSON objects")
    sa = str(signature.get("SA", SIGNATURE_ALGORITHM))  # OCMF's default
    algorithm(sa)
    encoding = signature.get("SE", "hex")
    if encoding not in ("hex", "base64") or signature.get("SM", "application/x-der") != "application/x-der":
        raise OcmfError("only DER signatures (SM application/x-der), hex or base64 (SE), are checked")
    try:
        raw = str(signature.get("SD", ""))
        der = bytes.fromhex(raw) if encoding == "hex" else base64.b64decode(raw, validate=True)
    except ValueError:
        raise OcmfError(f"SD is not {encoding}") from None
    if not 8 <= len(der) <= MAX_DER:
        raise OcmfError("SD is not an ECDSA DER signature")
    readings = _readings(fields)
    if not readings:
        raise OcmfError("the record has no readings (RD)")
    return Record(text, body, fields, der, readings, sa)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_TM = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:,([0-9]{3}))?([+-][0-9]{4}) ([UISR])")


def _time(raw: Any) -> tuple[int, str]:
    match = _TM.fullmatch(str(raw))
    if match is None:
        raise OcmfError(f"TM {raw!r}: expected 2019-08-13T10:03:15,000+0000 S")
    try:
        ts = int(datetime.strptime(match[1] + match[3], "%Y-%m-%dT%H:%M:%S%z").timestamp())
    except (ValueError, OverflowError, OSError):
        raise OcmfError(f"TM {raw!r}: not a date and time") from None
    if not times.in_range(ts):
        raise OcmfError(f"TM {raw!r}: expected {times.BOUND_TEXT}")
    return ts, match[4]


def _mwh(value: Any, unit: Any) -> int:
    if unit not in ("kWh", "Wh"):
        raise OcmfError(f"RU {unit!r}: energy in kWh or Wh")
    try:
        amount = Decimal(str(value)) * (1_000_000 if unit == "kWh" else 1000)
    except ArithmeticError:  # InvalidOperation, Overflow (1e999999)
        raise OcmfError(f"RV {str(value)[:40]!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise OcmfError(f"RV {value} {unit} is not an energy register")
    if amount >= 10**18:
        raise OcmfError(f"RV {value} {unit} is beyond any meter's register")
    return int(amount)


def _readings(fields: dict[str, Any]) -> list[Reading]:
    rows = fields.get("RD")
    if not isinstance(rows, list):
        return []
    out: list[Reading] = []
    last: dict[str, Any] = {}  # OCMF: a reading inherits what it leaves out from the one before
    for row in rows:
        if not isinstance(row, dict):
            raise OcmfError("a reading (RD) is a JSON object")
        merged = {**{k: v for k, v in last.items() if k in ("TM", "TX", "RI", "RU", "ST")}, **row}
        last = merged
        if "RV" not in merged or "TM" not in merged:
            raise OcmfError("a reading needs TM and RV")
        ts, sync = _time(merged["TM"])
        out.append(
            Reading(
                ts,
                sync,
                str(merged.get("TX", "")),
                _mwh(merged["RV"], merged.get("RU")),
                str(merged.get("RI", "")),
                str(merged.get("ST", "")),
            )
        )
    return out


def digest(record: Record) -> bytes:
    """What makes a record the same record: the SHA-256 of its payload (a second signature
    over the same payload is the same reading)."""
    return hashlib.sha256(record.payload.encode()).digest()


def billing(record: Record) -> list[Reading]:
    """The readings of the register the session is billed on. A record may carry further
    registers beside it (a KEBA's export or per-phase registers, its total counter): the
    billing register is the one whose readings begin with a begin (TX B) or end with an end
    (TX E); of several, the import of active energy (OBIS 1.8.x)."""
    by_register: dict[str, list[Reading]] = {}
    for r in record.readings:
        by_register.setdefault(r.obis, []).append(r)
    if len(by_register) == 1:
        return record.readings
    sessions = [o for o, rs in by_register.items() if rs[0].reason == "B" or rs[-1].reason == "E"]
    if len(sessions) > 1:
        sessions = [o for o in sessions if re.search(r"(^|:)1\.8\.", o)] or sessions
    if len(sessions) != 1:
        raise OcmfError(f"of the registers {', '.join(sorted(by_register))}, not one is the session's (a begin or"
                        " an end reading, the import of active energy where several are)")  # fmt: skip
    return by_register[sessions[0]]


SESSION, BEGIN, END = "session", "begin", "end"  # what a record holds of its session (part)


def part(record: Record) -> tuple[str, Reading, Reading]:
    """What a record holds of a charging session, with its first and last billing readings:
    the whole session (its first reading a begin, TX B, its last an end, TX E), or, where a
    charger signs the begin and the end in two records (OCPP's Transaction.Begin and .End),
    only the begin (a begin and no end) or only the end (an end and no begin). The register
    never goes back, nor the time but for a relative (R) one."""
    readings = billing(record)
    first, last = readings[0], readings[-1]
    reasons = {r.reason for r in readings}
    if first.reason == "B" and last.reason == "E" and len(readings) > 1:
        kind = SESSION
    elif first.reason == "B" and "E" not in reasons:
        kind = BEGIN
    elif last.reason == "E" and "B" not in reasons:
        kind = END
    else:
        raise OcmfError("not a charging session: its first reading is a begin (TX B), its last an end (TX E), or"
                        " it holds only the begin or only the end of one")  # fmt: skip
    _ordered(readings)
    return kind, first, last


def _ordered(readings: list[Reading]) -> None:
    for a, b in zip(readings, readings[1:], strict=False):
        if b.mwh < a.mwh:
            raise OcmfError(f"the register goes back from {a.mwh / 1e6} to {b.mwh / 1e6} kWh")
        if b.ts < a.ts and b.sync != "R":
            raise OcmfError("a reading is timed before the one it follows")


def session_span(record: Record) -> tuple[Reading, Reading]:
    """The begin and end readings of a record that is a whole charging session."""
    kind, first, last = part(record)
    if kind != SESSION:
        raise OcmfError(f"not a whole charging session: the record holds only its {kind}")
    return first, last


def pair(begin: Record, end: Record) -> tuple[Reading, Reading]:
    """The begin and end readings of a session a charger signed in two records: the same
    meter (MS) and billing register, the same identification where both name one, the end's
    register and time not before the begin's. Raises OcmfError saying what differs."""
    k1, first, _ = part(begin)
    k2, _, last = part(end)
    if (k1, k2) != (BEGIN, END):
        raise OcmfError(f"a begin record and an end record make a session, not a {k1} and a {k2}")
    if begin.fields.get("MS", "") != end.fields.get("MS", ""):
        raise OcmfError(f"the end is of meter {end.fields.get('MS')!r}, the begin of {begin.fields.get('MS')!r}")
    if first.obis != last.obis:
        raise OcmfError(f"the end is of register {last.obis}, the begin of {first.obis}")
    if identification(begin) and identification(end) and identification(begin) != identification(end):
        raise OcmfError("the end names another identification (ID) than the begin")
    _ordered([first, last])
    return first, last


def identification(record: Record) -> str | None:
    """The identification a record carries in the clear (an RFID UID, a contract id), if any."""
    ident = record.fields.get("ID")
    return str(ident) if record.fields.get("IS") and ident else None


def verify(payload_text: str, der: bytes, public_key: bytes, sa: str = SIGNATURE_ALGORITHM) -> bool:
    """ECDSA over the payload's bytes with the algorithm sa names (its curve must be the key's);
    public_key an uncompressed P-256 point or DER SPKI (any curve checked)."""
    try:
        curve, digest_algorithm = algorithm(sa)
        key = _key(public_key)
        if key.curve.name != curve.name:
            return False
        key.verify(der, payload_text.encode(), ec.ECDSA(digest_algorithm))
    except (InvalidSignature, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=256)
def _key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """A charger's key, parsed once: a year of its sessions is checked against the same key."""
    return cose.public_key_from_point(public_key) if public_key[:1] == b"\x04" else _spki(public_key)


def _spki(der: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in {c().name for c in CURVES.values()}:
        raise ValueError("not an EC key of a curve OCMF names")
    return key


def point_of(public_key_hex: str) -> bytes:
    """An OCMF public key (hex DER SPKI, as chargers print it) as the ledger keeps it: a P-256
    key as its uncompressed point (as our boards' keys), another curve's as its DER SPKI."""
    try:
        key = _spki(bytes.fromhex("".join(public_key_hex.split())))
    except ValueError:
        raise OcmfError("the public key is not hex DER SubjectPublicKeyInfo of an EC key OCMF names") from None
    if key.curve.name == "secp256r1":
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- the forms people paste or open --------------------------------------------------------


def two_lines(text: str, point: bytes) -> str:
    """The record and its public key (hex DER SPKI), one a line: what a driver pastes."""
    return f"{text}\n{cose.spki_der(point).hex().upper()}\n"


def safe_xml(records: list[tuple[str, bytes]], begin_and_end: bool = False) -> str:
    """The S.A.F.E. transparency software's XML container: one <value> a record, each
    with its public key; begin_and_end: the two records are one session's begin and end
    (one transactionId, contexts Transaction.Begin and Transaction.End)."""
    contexts = ("Transaction.Begin", "Transaction.End")
    values = "".join(
        f'  <value transactionId="{1 if begin_and_end else n}"'
        + (f' context="{contexts[n - 1]}"' if begin_and_end else "")
        + ">\n"
        f'    <signedData format="OCMF" encoding="plain">{escape(text)}</signedData>\n'
        f'    <publicKey encoding="plain">{cose.spki_der(point).hex().upper()}</publicKey>\n'
        "  </value>\n"
        for n, (text, point) in enumerate(records, 1)
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<values>\n{values}</values>\n'


def from_xml(data: bytes) -> list[tuple[str, str | None]]:
    """(OCMF string, public key hex or None) of each value in a S.A.F.E. XML container."""
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, DefusedXmlException) as e:
        raise OcmfError(f"not a S.A.F.E. XML container: {e}") from None
    out = []
    for value in root.iter("value"):
        signed = value.find("signedData")
        if signed is None or not (signed.text or "").strip():
            continue
        if signed.get("format", "OCMF") != "OCMF":
            raise OcmfError(f"signedData format {signed.get('format')!r}: only OCMF is read")
        key = value.find("publicKey")
        out.append((str(signed.text).strip(), None if key is None or not key.text else "".join(key.text.split())))
    if not out:
        raise OcmfError("the XML container holds no OCMF signedData")
    return out
