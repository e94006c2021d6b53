"""RFC 9457 problem details: every way the verifier says no, with a stable type.

Each problem has a slug; its `type` URI is TYPE_BASE + slug and never changes
once published (docs/protocol.md lists them). Plain Python raises these; the
HTTP layer renders them as application/problem+json.
"""

from __future__ import annotations

from typing import Any

TYPE_BASE = "https://wattproof.org/problems/"

# slug -> (HTTP status, title)
TYPES: dict[str, tuple[int, str]] = {
    "malformed-cbor": (400, "The body is not deterministic CBOR of the packet profile"),
    "invalid-field": (400, "A field is missing, unknown or of the wrong type"),
    "packet-too-large": (413, "The packet exceeds the size limit"),
    "batch-too-large": (413, "The batch carries more packets than allowed"),
    "too-many-readings": (400, "The packet carries more readings than allowed"),
    "reading-too-large": (400, "A reading exceeds the size limit"),
    "unsupported-version": (400, "The packet format version is not supported"),
    "unsupported-algorithm": (400, "The signature algorithm is not supported"),
    "unsupported-media-type": (415, "The body must be application/cbor"),
    "unknown-device": (403, "The device is not enrolled"),
    "unknown-key": (403, "The key id is not the device's key"),
    "bad-signature": (400, "The header signature does not verify"),
    "count-mismatch": (400, "The reading count does not match the readings"),
    "merkle-root-mismatch": (400, "The readings do not hash to the signed Merkle root"),
    "timestamp-out-of-range": (400, "A timestamp lies outside the packet's range or order"),
    "reading-number-gap": (400, "Reading numbers do not follow each other"),
    "sequence-conflict": (409, "The packet does not continue the device's chain"),
    "equivocation": (409, "Another packet with this sequence number was already accepted"),
    "not-found": (404, "No such resource"),
    "unauthorized": (401, "An API key is needed"),
    "forbidden": (403, "This API key's role may not do this"),
    "device-revoked": (403, "The device was revoked"),
    "unknown-installer": (403, "The installer is not registered, or was revoked"),
    "already-enrolled": (409, "The device id or key is enrolled already"),
    "meter-in-use": (409, "The meter is enrolled on another active device"),
    "already-exists": (409, "It exists already"),
    "community-overlap": (409, "The device is a member of another community over that time"),
    "session-open": (409, "The charging session has not stopped yet: its proof needs its stop"),
    "bad-challenge": (400, "The enrollment challenge is unknown, used or expired"),
    "timestamp-in-future": (422, "A reading is timed in the future beyond the allowed skew"),
    "rate-limited": (429, "Too many packets from this device: retry later"),
    "bad-request": (400, "The request is malformed"),
    "method-not-allowed": (405, "The resource does not support this method"),
    "body-too-large": (413, "The request body exceeds the size limit"),
    "headers-too-large": (431, "The request headers exceed the size limit"),
    "not-implemented": (501, "The request uses an HTTP feature the verifier does not implement"),
    "device-flagged": (403, "The device is quarantined after an equivocation"),
    "stale-key-rotation": (409, "The rotation is not signed over the device's current key"),
    "storage-unavailable": (503, "The verifier's database is unavailable; retry later"),
    "unprocessable": (422, "The request is well formed but asks for what the verifier cannot give"),
    "certificates-unavailable": (409, "The certificates are not active, held and in one bundle as the action needs"),
    "unknown-account": (422, "No such account"),
    "malformed-ocmf": (400, "The body is not OCMF records (plain, hex or in a S.A.F.E. XML container)"),
    "unknown-charger": (422, "No active third-party charger is enrolled for the record's gateway and key"),
    "bad-ocmf-signature": (422, "The OCMF record's signature does not verify with its charger's enrolled key"),
    "unsupported-ocmf-algorithm": (422, "The OCMF record is signed with an algorithm this verifier does not check"),
    "ocmf-overlap": (409, "The record's register range overlaps a record already in the ledger"),
    "ocmf-unpaired": (409, "The end record has no begin record of its session to close"),
    "ocmf-identification": (422, "The record names its user in the clear, and the ledger keeps no raw token"),
    "malformed-witness-request": (400, "The body is not `old N`, proof lines, an empty line and a checkpoint"),
    "unknown-log": (404, "The witness does not follow a log of this origin"),
    "untrusted-checkpoint": (403, "No signature on the checkpoint verifies with the log's trusted key"),
    "bad-consistency-proof": (422, "The consistency proof from the witness's checkpoint does not verify"),
    "internal-error": (500, "The verifier failed to answer; the id names its log record"),
}


class Problem(ValueError):
    """A refusal with a stable kind (slug), the field it concerns and a human detail."""

    def __init__(self, kind: str, field: str, detail: str, **extra: Any) -> None:
        if kind not in TYPES:
            raise KeyError(f"unregistered problem type {kind!r}")
        super().__init__(f"{field}: {detail}")
        self.kind = kind
        self.field = field
        self.detail = detail
        self.extra = extra

    @property
    def status(self) -> int:
        return TYPES[self.kind][0]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": TYPE_BASE + self.kind,
            "title": TYPES[self.kind][1],
            "status": self.status,
            "detail": self.detail,
            "field": self.field,
            **self.extra,
        }


class PacketError(Problem):
    """A packet is rejected for what it contains."""
