"""The API's request and answer types, declared once (pydantic v2 over TypedDicts: the
answers are the dicts the views build, the bodies the dicts they read). The views validate
request bodies with these types (verifier/http/__init__.py json_body) and the OpenAPI
document is generated from them and from each view's declaration (verifier/http/openapi.py).
Enumerations are the areas' own (declared once there); what a field means, with its unit,
is in fields.py and written into the document by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import (
    Annotated,
    Any,
    NotRequired,  # pydantic reads these on Python 3.11
)

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, with_config
from typing_extensions import TypedDict

from verifier import auth
from verifier.certificates import registry
from verifier.charging.sessions import STATES as SESSION_STATES
from verifier.communities import operation
from verifier.devices import charge_point, identity, lifecycle, records
from verifier.wire.problems import TYPE_BASE, TYPES
from verifier.wire.times import MAX_TIME

MAX_INDEX = 2**63 - 1
NAME_PATTERN = "^[a-z0-9][a-z0-9._-]{0,63}$"
CLOSED = ConfigDict(extra="forbid")  # additionalProperties: false


def one_of(values: Iterable[Any], description: str | None = None) -> Any:
    """A value among an area's enumeration: its schema is the enum, and a body's value outside
    it is refused."""
    allowed = list(values)

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(map(str, allowed))}")
        return value

    schema: dict[str, Any] = {"enum": allowed}
    if description:
        schema["description"] = description
    kind = int if allowed and all(isinstance(v, int) for v in allowed) else str
    return Annotated[kind, AfterValidator(check), WithJsonSchema(schema)]


Hex = Annotated[str, Field(pattern="^[0-9a-f]*$")]
TIME_TEXT = {"type": "string", "format": "date-time", "description": "ISO 8601 UTC, beside the Unix seconds"}
Time = Annotated[str, WithJsonSchema(TIME_TEXT)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Count = Annotated[int, Field(ge=0)]
TIME_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_TIME},
        {
            "type": "string",
            "format": "date-time",
            "pattern": r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3])"
            r":[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
        },
    ],
    "description": "Unix seconds, or an RFC 3339 date-time with Z or an offset (2026-11-30T23:00:00+01:00), from"
    " 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z; a date that does not exist (February 30th) is refused",
}
# A time a person gives: Unix seconds or ISO 8601; the view parses it (records.parse_time).
GivenTime = Annotated[int | str, WithJsonSchema(TIME_SCHEMA)]


# --- problems ------------------------------------------------------------------------------


@with_config(ConfigDict(extra="ignore"))  # open, inside closed answers too
class Problem(TypedDict):
    """RFC 9457 problem details; the type is one of the stable types listed in docs/protocol.md."""

    type: one_of([TYPE_BASE + slug for slug in TYPES])  # type: ignore[valid-type]
    title: str
    status: int
    detail: str
    field: str
    expected_seq: NotRequired[int]
    retry_after: NotRequired[float]
    id: NotRequired[Annotated[str, Field(description="names the server's log record of an internal error")]]


# --- devices and packets -------------------------------------------------------------------


@with_config(CLOSED)
class PacketAnswer(TypedDict):
    status: one_of(["accepted", "duplicate"])  # type: ignore[valid-type]
    device_id: str
    seq: Count
    header_hash: Hex
    ledger_index: Count
    anomalies: Count


@with_config(CLOSED)
class Refused(TypedDict):
    status: Annotated[str, WithJsonSchema({"const": "refused"})]
    problem: Problem


@with_config(CLOSED)
class BatchAnswer(TypedDict):
    results: list[PacketAnswer | Refused]
    accepted: Count
    duplicate: Count
    refused: Count


@with_config(CLOSED)
class Receipt(TypedDict):
    device_id: str
    fingerprint: Hex
    already_enrolled: bool
    ledger_index: int
    leaf_hash: Hex
    tree_size: int
    inclusion_proof: list[Hex]
    checkpoint: str


Register = one_of(["import_wh", "export_wh"], "producers: the register that carries the generation")


class Device(TypedDict):
    device_id: str
    role: one_of([*identity.ROLES, identity.OCMF_ROLE])  # type: ignore[valid-type]
    status: one_of(lifecycle.STATUSES)  # type: ignore[valid-type]
    flagged: bool
    fingerprint: Hex
    enrolled_ledger_index: int
    meter_model: str
    meter_serial: str
    key_id: NotRequired[Hex]
    key_ledger_index: NotRequired[Annotated[int, Field(description="the entry that set the current key")]]
    packets: NotRequired[Annotated[int, Field(ge=0, description="accepted packets (one device only)")]]
    last_seq: NotRequired[Annotated[int | None, Field(description="its last accepted packet (one device only)")]]
    technology: NotRequired[str]
    generation_register: NotRequired[Register]  # type: ignore[valid-type]
    capacity_w: NotRequired[int]
    location: NotRequired[Annotated[list[int], Field(min_length=2, max_length=2)]]
    grid_area: NotRequired[str]


class DeviceList(TypedDict):
    devices: list[Device]
    next_cursor: str | None


class SessionPoint(TypedDict):
    reading: Annotated[int | None, Field(description="its reading number (null: in an OCMF record)")]
    ts: int
    time: Time
    quality: one_of(records.QUALITIES.values())  # type: ignore[valid-type]
    register_wh: int


class GreenHour(TypedDict):
    start: int
    start_time: Time
    energy_wh: int
    green_wh: int
    certificates_wh: int
    community_wh: int
    charger_load_wh: NotRequired[int]
    charger_green_wh: NotRequired[int]


class GreenShare(TypedDict):
    """The session's energy covered hour by hour by certificates claimed for the charger and by
    its community's allocation (docs/charging.md)."""

    energy_wh: Count
    green_wh: Count
    certificates_wh: Count
    community_wh: Count
    share: Annotated[float | None, Field(ge=0, le=1)]
    hours: NotRequired[Annotated[list[GreenHour], Field(description="one session only: its hours")]]


class Session(TypedDict):
    device_id: str
    session_id: str
    connector: int
    state: one_of(SESSION_STATES)  # type: ignore[valid-type]
    start: SessionPoint
    stop: SessionPoint | None
    energy_wh: int | None
    green: Annotated[
        GreenShare | None, Field(description="the session's green share; null while open or when disputed")
    ]
    source: one_of(["board", "ocmf"])  # type: ignore[valid-type]
    duration_s: NotRequired[int | None]
    stop_reason: NotRequired[str | None]
    token: NotRequired[str]
    ocmf_verified: NotRequired[bool | None]
    disputed: NotRequired[str | None]
    sample_count: NotRequired[int]
    readings: NotRequired[list[int]]
    samples: NotRequired[list[SessionPoint]]
    ledger_index: NotRequired[int]
    pagination: NotRequired[str | None]


class Sessions(TypedDict):
    device_id: str
    sessions: list[Session]


class OneSession(Session):
    samples: list[SessionPoint]  # type: ignore[misc]


class PacketRef(TypedDict):
    """The packet that holds the reading: its seq and its ledger entry."""

    seq: int
    ledger_index: int


class Reading(TypedDict):
    number: int
    kind: one_of(records.KINDS.values())  # type: ignore[valid-type]
    ts: int
    quality: one_of(records.QUALITIES.values())  # type: ignore[valid-type]
    time: NotRequired[Time]
    import_wh: NotRequired[int]
    export_wh: NotRequired[int]
    power_w: NotRequired[int]
    event: NotRequired[str]
    session_id: NotRequired[Hex]
    connector: NotRequired[int]
    register_wh: NotRequired[int]
    token_hash: NotRequired[Hex]
    reason: NotRequired[int]
    ocmf_sig: NotRequired[Hex]
    detail: NotRequired[str]
    value: NotRequired[int]
    packet: NotRequired[PacketRef]


class Readings(TypedDict):
    device_id: str
    readings: list[Reading]
    next_cursor: int | None


class EnergyInterval(TypedDict):
    start: int
    end: int
    start_time: Time
    end_time: Time
    import_wh: Annotated[int | None, Field(description="whole Wh")]
    export_wh: Annotated[int | None, Field(description="whole Wh")]
    quality: one_of(records.QUALITY_RANK, "docs/energy.md")  # type: ignore[valid-type]
    generation_wh: NotRequired[Annotated[int | None, Field(description="producers: whole Wh")]]
    covered_from: NotRequired[Annotated[int, Field(description="partial: where the readings begin")]]
    covered_to: NotRequired[Annotated[int, Field(description="partial: where the readings end")]]
    covered_from_time: NotRequired[Time]
    covered_to_time: NotRequired[Time]


class Energy(TypedDict):
    device_id: str
    interval: one_of(records.INTERVALS)  # type: ignore[valid-type]
    intervals: list[EnergyInterval]
    # a period answered in whole intervals: what was asked, what is answered
    from_: Annotated[int, Field(alias="from", description="Unix seconds: the start of the first whole interval")]
    to: Annotated[int, Field(description="Unix seconds: the end of the last whole interval answered")]
    asked_from: Annotated[int, Field(description="Unix seconds: the from asked")]
    asked_to: Annotated[int, Field(description="Unix seconds: the to asked")]
    widened: Annotated[bool, Field(description="true when the period asked was widened to whole intervals")]
    from_time: NotRequired[Annotated[str, Field(description="from, ISO 8601 UTC")]]
    to_time: NotRequired[Annotated[str, Field(description="to, ISO 8601 UTC")]]
    generation_register: NotRequired[
        one_of(["import_wh", "export_wh"], "producers: the register generation_wh is taken from")  # type: ignore[valid-type]
    ]


# --- certificates and the registry ---------------------------------------------------------


class Bundle(TypedDict):
    """A granular certificate bundle (EnergyTag registry API v2 field names); 1 certificate = 1 Wh."""

    issuance_id: str
    bundle_id_range_start: int
    bundle_id_range_end: int
    bundle_quantity: Annotated[int, Field(ge=1, description="certificates (Wh)")]
    face_value: Annotated[int, Field(description="Wh per certificate")]
    energy_carrier: str
    energy_source: str
    technology: str
    device_id: str
    device_capacity_w: int
    grid_area: str
    production_starting_interval: int
    production_ending_interval: int
    issuance_date: int
    issuing_body: str
    status: str
    expiry_date: int
    ledger_index: Annotated[int, Field(description="the entry that last changed this range")]
    issuance_ledger_index: Annotated[
        int, Field(description="the entry that issued it: GET /v1/certificates/{it}/provenance is its provenance file")
    ]
    device_location: NotRequired[list[int]]
    country: NotRequired[
        Annotated[
            str | None,
            WithJsonSchema(
                {
                    "type": ["string", "null"],
                    "pattern": "^[A-Z]{2}$",
                    "description": "ISO 3166-1 alpha-2, from the grid area's prefix; null when the grid area names"
                    " none",
                }
            ),
        ]
    ]
    production_starting_interval_time: NotRequired[Time]
    production_ending_interval_time: NotRequired[Time]
    issuance_date_time: NotRequired[Time]
    expiry_date_time: NotRequired[Time]
    account_id: NotRequired[Annotated[str | None, Field(description="the holder (null: the issuing body)")]]
    claim_id: NotRequired[Annotated[int | None, Field(description="the claim that cancelled it")]]


class Bundles(TypedDict):
    bundles: list[Bundle]
    next_cursor: int | None
    face_value_wh: int


class Moved(TypedDict):
    ledger_index: Annotated[int, Field(description="the action's ledger entry")]
    quantity_wh: int
    bundles: Annotated[list[Bundle], Field(description="the ranges named, as they now are")]


class Claim(TypedDict):
    claim_id: Annotated[int, Field(description="the claim entry's ledger index")]
    holder: str | None
    beneficiary: str
    consumer_device: str | None
    consumption_period_start: int
    consumption_period_end: int
    quantity_wh: int
    claimed_at: int
    claimed_time: Time


class Claims(TypedDict):
    claims: list[Claim]
    next_cursor: int | None


class Statement(TypedDict):
    """The cancellation statement of one claim batch."""

    claim_id: int
    ledger_index: int
    beneficiary: str
    quantity_wh: int
    by_energy_source_wh: dict[str, int]
    bundles: list[dict[str, Any]]
    claimed_at: NotRequired[int]
    claimed_time: NotRequired[Time]
    holder: NotRequired[str | None]
    consumer_device: NotRequired[str | None]
    consumption_period_start: NotRequired[int]
    consumption_period_end: NotRequired[int]
    consumption_period_start_time: NotRequired[Time]
    consumption_period_end_time: NotRequired[Time]


class Account(TypedDict):
    account_id: str
    name: str
    kind: one_of(registry.ACCOUNT_KINDS)  # type: ignore[valid-type]
    created_at: int
    ledger_index: int
    devices: list[str]
    balance_wh: Annotated[dict[str, int], Field(description="Wh held, by status (active, claimed, withdrawn, expired)")]
    created_time: NotRequired[Time]


class Accounts(TypedDict):
    accounts: list[Account]


class MatchingSummary(TypedDict):
    load_wh: int
    claimed_wh: int
    matched_wh: int
    hourly_match: Annotated[float | None, Field(description="sum min(L, G) / sum L, 0..1")]
    volume_match: Annotated[float | None, Field(description="min(1, sum G / sum L)")]
    hours_not_covered: list[int]


class MatchedHour(TypedDict):
    start: int
    load_wh: int
    claimed_wh: int
    matched_wh: int
    unmatched_wh: int
    excess_wh: int
    match: Any


class Matching(TypedDict):
    device_id: str | None
    account_id: str | None
    from_: Annotated[int, Field(alias="from")]
    to: int
    summary: MatchingSummary
    hours: list[MatchedHour]


class Issued(TypedDict):
    issued: int
    issued_wh: int
    skipped: Annotated[int, Field(description="hours decided without a bundle")]
    bundles: list[dict[str, Any]]


# --- communities ---------------------------------------------------------------------------


class Community(TypedDict):
    community_id: str
    name: str
    grid_area: str
    currency: str
    members: list[dict[str, Any]]
    settings: list[dict[str, Any]]


class Communities(TypedDict):
    communities: list[Community]


# --- keys and the ledger -------------------------------------------------------------------


class ApiKey(TypedDict):
    key_id: str
    name: str
    role: one_of(auth.ROLES)  # type: ignore[valid-type]
    installer: str | None
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    status: one_of(auth.KEY_STATUSES)  # type: ignore[valid-type]
    account: NotRequired[Annotated[str | None, Field(description="account keys: the registry account")]]
    created_time: NotRequired[Time]
    expires_time: NotRequired[str | None]
    last_used_time: NotRequired[str | None]
    token: NotRequired[Annotated[str, Field(description="only in the answer that created the key")]]


class ApiKeys(TypedDict):
    keys: list[ApiKey]


class LedgerAction(TypedDict):
    ledger_index: int


class InclusionProof(TypedDict):
    index: int
    tree_size: int
    leaf_hash: Hex
    proof: list[Hex]


class ConsistencyProof(TypedDict):
    from_: Annotated[int, Field(alias="from")]
    to: int
    proof: list[Hex]


class LedgerEntry(TypedDict):
    index: int
    kind: str
    device_id: str | None
    entry: Hex
    leaf_hash: Hex


class PacketHeader(TypedDict):
    device_id: str
    seq: int
    header: Hex
    root: Hex
    count: int
    ledger_index: int
    leaf_hash: Hex
    tree_size: int
    inclusion_proof: list[Hex]
    checkpoint: str
    first_time: NotRequired[str]
    last_time: NotRequired[str]


class PacketHeaderFields(TypedDict):
    root: Hex
    count: int
    first_ts: int
    last_ts: int
    first_time: Time
    last_time: Time
    prev: Hex


class PacketWithProofs(TypedDict):
    device_id: str
    seq: int
    packet: Hex
    header: PacketHeaderFields
    ledger_index: int
    tree_size: int
    inclusion_proof: list[Hex]
    checkpoint: str


class KeyRevoked(TypedDict):
    key_id: str
    status: str


class Assigned(TypedDict):
    account_id: str
    device_id: str
    ledger_index: int


class CoefficientsRecorded(TypedDict):
    community_id: str
    ledger_index: int
    steps: int


class Allocation(TypedDict):
    community_id: str
    steps: list[dict[str, Any]]


class Settlement(TypedDict):
    community_id: str
    month: str
    flows: list[dict[str, Any]]
    total_amount: str


class Challenge(TypedDict):
    challenge: str
    expires_in_s: int


@with_config(CLOSED)
class ChallengesBody(TypedDict):
    count: Annotated[int, Field(ge=1, le=lifecycle.MAX_CHALLENGES)]


class Challenges(TypedDict):
    challenges: Annotated[list[str], Field(description="single-use challenges, hex: one for each board to sign")]
    expires_in_s: int


@with_config(CLOSED)
class Enrolled(Receipt):
    status: one_of(("enrolled", "already-enrolled"))  # type: ignore[valid-type]


@with_config(CLOSED)
class EnrollmentBatchAnswer(TypedDict):
    results: list[Enrolled | Refused]
    enrolled: Annotated[int, Field(ge=0, description="devices enrolled by this request")]
    already_enrolled: Annotated[int, Field(ge=0, description="devices this request found enrolled with the same key")]
    refused: Annotated[int, Field(ge=0, description="enrollments refused by this request")]


class OcmfImported(TypedDict):
    records: Any


class ProvenanceFile(TypedDict):
    """The provenance certificate (docs/provenance.md): check it with `wattproof verify`."""

    format: str
    kind: str
    checkpoint: str


# --- request bodies ------------------------------------------------------------------------


@with_config(CLOSED)
class Empty(TypedDict):
    """A body with nothing in it (where a body is optional and carries nothing)."""


Account_ = Annotated[str, Field(pattern=NAME_PATTERN)]
Ranges = Annotated[
    list[Annotated[list[Annotated[int, Field(ge=1, le=MAX_INDEX)]], Field(min_length=2, max_length=2)]],
    Field(min_length=1, max_length=1000,
          description="certificate id ranges [start, end], inclusive; each within one bundle (else 409)"),
]  # fmt: skip


@with_config(CLOSED)
class InstallerBody(TypedDict):
    name: Name
    public_key: Annotated[
        str,
        Field(pattern="^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$", description="base64 of the 32-byte Ed25519 key"),
    ]


@with_config(CLOSED)
class ReasonBody(TypedDict):
    reason: NotRequired[Annotated[str, Field(max_length=200)]]


@with_config(CLOSED)
class ClearFlagBody(TypedDict):
    reason: Annotated[str, Field(min_length=1, max_length=200)]


KEY_RULES: Any = {  # an installer key names its installer, an account key its account; no other key names one
    "allOf": [
        {
            "if": {"properties": {"role": {"const": role}}},
            "then": {"required": [field]},
            "else": {"not": {"required": [field]}},
        }
        for role, field in (("installer", "installer"), ("account", "account"))
    ]
}


@with_config(ConfigDict(extra="forbid", json_schema_extra=KEY_RULES))
class KeyBody(TypedDict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: one_of(auth.ROLES)  # type: ignore[valid-type]
    installer: NotRequired[
        Annotated[str, Field(pattern=NAME_PATTERN, description="installer keys only: the registered installer")]
    ]
    account: NotRequired[
        Annotated[str, Field(pattern=NAME_PATTERN, description="account keys only: the registry account")]
    ]
    expires: NotRequired[
        Annotated[
            int | str,
            WithJsonSchema({**TIME_SCHEMA, "description": "Unix seconds or ISO 8601; in the future (else 422)"}),
        ]
    ]


@with_config(CLOSED)
class TransferBody(TypedDict):
    ranges: Ranges
    to_account: Account_
    from_account: NotRequired[
        Annotated[str, Field(pattern=NAME_PATTERN, description="an account key's own; admin: absent = issuer")]
    ]


@with_config(CLOSED)
class ClaimBody(TypedDict):
    ranges: Ranges
    period_start: GivenTime
    period_end: GivenTime
    beneficiary: NotRequired[Annotated[str, Field(pattern=NAME_PATTERN, description="default: the holder")]]
    holder: NotRequired[
        Annotated[str, Field(pattern=NAME_PATTERN, description="an account key's own; admin: absent = issuer")]
    ]
    consumer_device: NotRequired[Name]


@with_config(
    ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": ["ranges"]}, {"required": ["issuance_id"]}]})
)
class WithdrawBody(TypedDict):
    reason: Annotated[str, Field(max_length=500)]
    ranges: NotRequired[Ranges]
    issuance_id: NotRequired[Annotated[str, Field(max_length=200, description="every active bundle of one hour")]]


@with_config(CLOSED)
class AccountBody(TypedDict):
    account_id: Account_
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: one_of(registry.ACCOUNT_KINDS)  # type: ignore[valid-type]


@with_config(CLOSED)
class AssignBody(TypedDict):
    device_id: Name


Price = Annotated[str, Field(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6})?$", description="decimal")]
Coefficients = Annotated[
    dict[str, Annotated[str, Field(pattern=r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$")]],
    Field(description="static key: device id -> decimal coefficient (sum at most 1)"),
]
Step = one_of(operation.STEPS, "default: 1800 before 2025, 900 since")
Key: Any = Annotated[one_of(operation.KEYS), Field(default="dynamic")]


@with_config(CLOSED)
class CommunityBody(TypedDict):
    community_id: Account_
    name: Annotated[str, Field(min_length=1, max_length=200)]
    from_: Annotated[GivenTime, Field(alias="from")]
    grid_area: NotRequired[Annotated[str, Field(max_length=64)]]
    currency: NotRequired[Annotated[str, Field(pattern="^[A-Z]{3}$")]]
    price_per_kwh: NotRequired[Price]
    step_s: NotRequired[Step]  # type: ignore[valid-type]
    key: NotRequired[Key]
    coefficients: NotRequired[Coefficients]


@with_config(CLOSED)
class MemberBody(TypedDict):
    device_id: Name
    from_: Annotated[GivenTime, Field(alias="from")]
    until: NotRequired[GivenTime]


@with_config(CLOSED)
class EndMemberBody(TypedDict):
    from_: Annotated[GivenTime, Field(alias="from")]
    until: GivenTime


@with_config(CLOSED)
class SettingsBody(TypedDict):
    from_: Annotated[GivenTime, Field(alias="from")]
    price_per_kwh: NotRequired[Price]
    step_s: NotRequired[Step]  # type: ignore[valid-type]
    key: NotRequired[Key]
    coefficients: NotRequired[Coefficients]


Short = Annotated[str, Field(min_length=1, max_length=64)]


def _charge_point_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            name: {
                "type": "string",
                "minLength": 1,
                **({"maxLength": length} if length else {}),
                **({"enum": list(charge_point.ENUMS[name])} if name in charge_point.ENUMS else {}),
                **({"pattern": "^[A-Z]{3}$"} if name == "country" else {}),
            }
            for name, (length, _) in charge_point.CHARGE_POINT_FIELDS.items()
        },
        "required": [name for name, (_, required) in charge_point.CHARGE_POINT_FIELDS.items() if required],
        "additionalProperties": False,
    }


@with_config(CLOSED)
class OcmfChargerBody(TypedDict):
    device_id: Name
    public_key: Annotated[
        str,
        Field(pattern="^([0-9A-Fa-f]{2}){64,256}$",
              description="hex DER SubjectPublicKeyInfo of the charger's EC key (the curves OCMF names)"),
    ]  # fmt: skip
    gateway_serial: NotRequired[
        Annotated[
            str,
            Field(min_length=1, max_length=64,
                  description="the OCMF GS its records carry (where they carry none, give meter_serial, the MS they"
                  " carry)"),
        ]
    ]  # fmt: skip
    gateway_id: NotRequired[
        Annotated[str, Field(min_length=1, max_length=64, description="the OCMF GI its records carry")]
    ]
    meter_model: NotRequired[Short]
    meter_serial: NotRequired[Short]
    capacity_w: NotRequired[Annotated[int, Field(ge=1, le=10**9)]]
    grid_area: NotRequired[Short]
    location: NotRequired[
        Annotated[
            list[int],
            WithJsonSchema(
                {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "prefixItems": [
                        {"type": "integer", "minimum": -90_000_000, "maximum": 90_000_000},
                        {"type": "integer", "minimum": -180_000_000, "maximum": 180_000_000},
                    ],
                    "items": {"type": "integer"},
                    "description": "[latitude, longitude] in microdegrees",
                }
            ),
        ]
    ]
    charge_point: NotRequired[Annotated[dict[str, Any], WithJsonSchema(_charge_point_schema())]]
