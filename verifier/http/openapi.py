"""GET /v1/openapi.json: the API as an OpenAPI 3.1 document (checked against real answers in the tests)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from verifier import auth
from verifier.certificates import registry
from verifier.charging.sessions import STATES as SESSION_STATES
from verifier.communities import operation
from verifier.devices import charge_point, identity, lifecycle, records
from verifier.http.fields import FIELDS, describe
from verifier.wire.problems import TYPE_BASE, TYPES
from verifier.wire.times import MAX_TIME

WIDENED = {  # a period answered in whole intervals: what was asked, what is answered
    "from": {"type": "integer", "description": "Unix seconds: the start of the first whole interval answered"},
    "to": {"type": "integer", "description": "Unix seconds: the end of the last whole interval answered"},
    "from_time": {"type": "string", "description": "from, ISO 8601 UTC"},
    "to_time": {"type": "string", "description": "to, ISO 8601 UTC"},
    "asked_from": {"type": "integer", "description": "Unix seconds: the from asked"},
    "asked_to": {"type": "integer", "description": "Unix seconds: the to asked"},
    "widened": {"type": "boolean", "description": "true when the period asked was widened to whole intervals"},
}

bp = Blueprint("openapi", __name__)

HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 UTC, beside the Unix seconds"}
NULLABLE_INT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROBLEM = {
    "description": "RFC 9457 problem details; the type is one of the stable types listed in docs/protocol.md",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}
SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail", "field"],
        "properties": {
            "type": {"type": "string", "enum": [TYPE_BASE + slug for slug in TYPES]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {"type": "string"},
            "expected_seq": {"type": "integer"},
            "retry_after": {"type": "number"},
            "id": {"type": "string", "description": "names the server's log record of an internal error"},
        },
    },
    "PacketAnswer": {
        "type": "object",
        "required": ["status", "device_id", "seq", "header_hash", "ledger_index", "anomalies"],
        "additionalProperties": False,
        "properties": {
            "status": {"enum": ["accepted", "duplicate"]},
            "device_id": {"type": "string"},
            "seq": {"type": "integer", "minimum": 0},
            "header_hash": HEX,
            "ledger_index": {"type": "integer", "minimum": 0},
            "anomalies": {"type": "integer", "minimum": 0},
        },
    },
    "BatchAnswer": {
        "type": "object",
        "required": ["results", "accepted", "duplicate", "refused"],
        "additionalProperties": False,
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "oneOf": [
                        _ref("PacketAnswer"),
                        {
                            "type": "object",
                            "required": ["status", "problem"],
                            "additionalProperties": False,
                            "properties": {"status": {"const": "refused"}, "problem": _ref("Problem")},
                        },
                    ]
                },
            },
            "accepted": {"type": "integer", "minimum": 0},
            "duplicate": {"type": "integer", "minimum": 0},
            "refused": {"type": "integer", "minimum": 0},
        },
    },
    "Receipt": {
        "type": "object",
        "required": [
            "device_id",
            "fingerprint",
            "already_enrolled",
            "ledger_index",
            "leaf_hash",
            "tree_size",
            "inclusion_proof",
            "checkpoint",
        ],
        "additionalProperties": False,
        "properties": {
            "device_id": {"type": "string"},
            "fingerprint": HEX,
            "already_enrolled": {"type": "boolean"},
            "ledger_index": {"type": "integer"},
            "leaf_hash": HEX,
            "tree_size": {"type": "integer"},
            "inclusion_proof": {"type": "array", "items": HEX},
            "checkpoint": {"type": "string"},
        },
    },
    "Device": {
        "type": "object",
        "required": [
            "device_id",
            "role",
            "status",
            "flagged",
            "fingerprint",
            "enrolled_ledger_index",
            "meter_model",
            "meter_serial",
        ],
        "properties": {
            "device_id": {"type": "string"},
            "role": {"enum": [*identity.ROLES, identity.OCMF_ROLE]},
            "status": {"enum": list(lifecycle.STATUSES)},
            "flagged": {"type": "boolean"},
            "fingerprint": HEX,
            "enrolled_ledger_index": {"type": "integer"},
            "key_id": HEX,
            "key_ledger_index": {"type": "integer", "description": "the entry that set the current key"},
            "packets": {"type": "integer", "minimum": 0, "description": "accepted packets (one device only)"},
            "last_seq": {"type": ["integer", "null"], "description": "its last accepted packet (one device only)"},
            "technology": {"type": "string"},
            "generation_register": {
                "enum": ["import_wh", "export_wh"],
                "description": "producers: the register that carries the generation",
            },
            "capacity_w": {"type": "integer"},
            "location": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            "grid_area": {"type": "string"},
            "meter_model": {"type": "string"},
            "meter_serial": {"type": "string"},
        },
    },
    "DeviceList": {
        "type": "object",
        "required": ["devices", "next_cursor"],
        "properties": {
            "devices": {"type": "array", "items": _ref("Device")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "SessionPoint": {
        "type": "object",
        "required": ["reading", "ts", "time", "quality", "register_wh"],
        "properties": {
            "reading": {"type": ["integer", "null"], "description": "its reading number (null: in an OCMF record)"},
            "ts": {"type": "integer"},
            "time": TIME,
            "quality": {"enum": list(records.QUALITIES.values())},
            "register_wh": {"type": "integer"},
        },
    },
    "GreenShare": {
        "type": ["object", "null"],
        "description": "the session's energy covered hour by hour by certificates claimed for the charger and by"
        " its community's allocation (docs/charging.md); null while open or when disputed",
        "required": ["energy_wh", "green_wh", "certificates_wh", "community_wh", "share"],
        "properties": {
            "energy_wh": {"type": "integer", "minimum": 0},
            "green_wh": {"type": "integer", "minimum": 0},
            "certificates_wh": {"type": "integer", "minimum": 0},
            "community_wh": {"type": "integer", "minimum": 0},
            "share": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "hours": {
                "type": "array",
                "description": "one session only: its hours",
                "items": {
                    "type": "object",
                    "required": ["start", "start_time", "energy_wh", "green_wh", "certificates_wh", "community_wh"],
                    "properties": {
                        "start": {"type": "integer"},
                        "start_time": TIME,
                        "energy_wh": {"type": "integer"},
                        "green_wh": {"type": "integer"},
                        "certificates_wh": {"type": "integer"},
                        "community_wh": {"type": "integer"},
                        "charger_load_wh": {"type": "integer"},
                        "charger_green_wh": {"type": "integer"},
                    },
                },
            },
        },
    },
    "Session": {
        "type": "object",
        "required": ["device_id", "session_id", "connector", "state", "start", "stop", "energy_wh", "green", "source"],
        "properties": {
            "device_id": {"type": "string"},
            "session_id": {"type": "string"},
            "connector": {"type": "integer"},
            "state": {"enum": list(SESSION_STATES)},
            "start": _ref("SessionPoint"),
            "stop": {"oneOf": [_ref("SessionPoint"), {"type": "null"}]},
            "energy_wh": NULLABLE_INT,
            "duration_s": NULLABLE_INT,
            "stop_reason": {"type": ["string", "null"]},
            "token": {"type": "string"},
            "ocmf_verified": {"type": ["boolean", "null"]},
            "disputed": {"type": ["string", "null"]},
            "sample_count": {"type": "integer"},
            "source": {"enum": ["board", "ocmf"]},
            "green": _ref("GreenShare"),
            "readings": {"type": "array", "items": {"type": "integer"}},
            "samples": {"type": "array", "items": _ref("SessionPoint")},
        },
    },
    "Reading": {
        "type": "object",
        "required": ["number", "kind", "ts", "quality"],
        "properties": {
            "number": {"type": "integer"},
            "kind": {"enum": ["meter", "session", "device"]},
            "ts": {"type": "integer"},
            "time": TIME,
            "quality": {"enum": list(records.QUALITIES.values())},
            "import_wh": {"type": "integer"},
            "export_wh": {"type": "integer"},
            "power_w": {"type": "integer"},
            "event": {"type": "string"},
            "session_id": HEX,
            "connector": {"type": "integer"},
            "register_wh": {"type": "integer"},
            "token_hash": HEX,
            "reason": {"type": "integer"},
            "ocmf_sig": HEX,
            "detail": {"type": "string"},
            "value": {"type": "integer"},
            "packet": {
                "type": "object",
                "description": "the packet that holds the reading: its seq and its ledger entry",
                "required": ["seq", "ledger_index"],
                "properties": {"seq": {"type": "integer"}, "ledger_index": {"type": "integer"}},
            },
        },
    },
    "Readings": {
        "type": "object",
        "required": ["device_id", "readings", "next_cursor"],
        "properties": {
            "device_id": {"type": "string"},
            "readings": {"type": "array", "items": _ref("Reading")},
            "next_cursor": NULLABLE_INT,
        },
    },
    "Bundle": {
        "type": "object",
        "description": "A granular certificate bundle (EnergyTag registry API v2 field names); 1 certificate = 1 Wh",
        "required": [
            "issuance_id",
            "bundle_id_range_start",
            "bundle_id_range_end",
            "bundle_quantity",
            "face_value",
            "energy_carrier",
            "energy_source",
            "technology",
            "device_id",
            "device_capacity_w",
            "grid_area",
            "production_starting_interval",
            "production_ending_interval",
            "issuance_date",
            "issuing_body",
            "status",
            "expiry_date",
            "ledger_index",
            "issuance_ledger_index",
        ],
        "properties": {
            "issuance_id": {"type": "string"},
            "bundle_id_range_start": {"type": "integer"},
            "bundle_id_range_end": {"type": "integer"},
            "bundle_quantity": {"type": "integer", "minimum": 1, "description": "certificates (Wh)"},
            "face_value": {"type": "integer", "description": "Wh per certificate"},
            "energy_carrier": {"type": "string"},
            "energy_source": {"type": "string"},
            "technology": {"type": "string"},
            "device_id": {"type": "string"},
            "device_capacity_w": {"type": "integer"},
            "device_location": {"type": "array", "items": {"type": "integer"}},
            "grid_area": {"type": "string"},
            "country": {
                "type": ["string", "null"],
                "pattern": "^[A-Z]{2}$",
                "description": "ISO 3166-1 alpha-2, from the grid area's prefix; null when the grid area names none",
            },
            "production_starting_interval": {"type": "integer"},
            "production_ending_interval": {"type": "integer"},
            "production_starting_interval_time": TIME,
            "production_ending_interval_time": TIME,
            "issuance_date": {"type": "integer"},
            "issuance_date_time": TIME,
            "issuing_body": {"type": "string"},
            "status": {"type": "string"},
            "expiry_date": {"type": "integer"},
            "expiry_date_time": TIME,
            "ledger_index": {"type": "integer", "description": "the entry that last changed this range"},
            "issuance_ledger_index": {
                "type": "integer",
                "description": "the entry that issued it: GET /v1/certificates/{it}/provenance is its provenance file",
            },
            "account_id": {"type": ["string", "null"], "description": "the holder (null: the issuing body)"},
            "claim_id": {**NULLABLE_INT, "description": "the claim that cancelled it"},
        },
    },
    "Bundles": {
        "type": "object",
        "required": ["bundles", "next_cursor", "face_value_wh"],
        "properties": {
            "bundles": {"type": "array", "items": _ref("Bundle")},
            "next_cursor": NULLABLE_INT,
            "face_value_wh": {"type": "integer"},
        },
    },
    "Moved": {
        "type": "object",
        "required": ["ledger_index", "quantity_wh", "bundles"],
        "properties": {
            "ledger_index": {"type": "integer", "description": "the action's ledger entry"},
            "quantity_wh": {"type": "integer"},
            "bundles": {"type": "array", "items": _ref("Bundle"), "description": "the ranges named, as they now are"},
        },
    },
    "Claim": {
        "type": "object",
        "required": [
            "claim_id",
            "holder",
            "beneficiary",
            "consumer_device",
            "consumption_period_start",
            "consumption_period_end",
            "quantity_wh",
            "claimed_at",
            "claimed_time",
        ],
        "properties": {
            "claim_id": {"type": "integer", "description": "the claim entry's ledger index"},
            "holder": {"type": ["string", "null"]},
            "beneficiary": {"type": "string"},
            "consumer_device": {"type": ["string", "null"]},
            "consumption_period_start": {"type": "integer"},
            "consumption_period_end": {"type": "integer"},
            "quantity_wh": {"type": "integer"},
            "claimed_at": {"type": "integer"},
            "claimed_time": TIME,
        },
    },
    "Statement": {
        "type": "object",
        "description": "The cancellation statement of one claim batch",
        "required": ["claim_id", "ledger_index", "beneficiary", "quantity_wh", "by_energy_source_wh", "bundles"],
        "properties": {
            "claim_id": {"type": "integer"},
            "ledger_index": {"type": "integer"},
            "claimed_at": {"type": "integer"},
            "claimed_time": TIME,
            "holder": {"type": ["string", "null"]},
            "beneficiary": {"type": "string"},
            "consumer_device": {"type": ["string", "null"]},
            "consumption_period_start": {"type": "integer"},
            "consumption_period_end": {"type": "integer"},
            "consumption_period_start_time": TIME,
            "consumption_period_end_time": TIME,
            "quantity_wh": {"type": "integer"},
            "by_energy_source_wh": {"type": "object", "additionalProperties": {"type": "integer"}},
            "bundles": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Account": {
        "type": "object",
        "required": ["account_id", "name", "kind", "created_at", "ledger_index", "devices", "balance_wh"],
        "properties": {
            "account_id": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"enum": list(registry.ACCOUNT_KINDS)},
            "created_at": {"type": "integer"},
            "created_time": TIME,
            "ledger_index": {"type": "integer"},
            "devices": {"type": "array", "items": {"type": "string"}},
            "balance_wh": {
                "type": "object",
                "description": "Wh held, by status (active, claimed, withdrawn, expired)",
                "additionalProperties": {"type": "integer"},
            },
        },
    },
    "Matching": {
        "type": "object",
        "required": ["device_id", "account_id", "from", "to", "summary", "hours"],
        "properties": {
            "device_id": {"type": ["string", "null"]},
            "account_id": {"type": ["string", "null"]},
            "from": {"type": "integer"},
            "to": {"type": "integer"},
            "summary": {
                "type": "object",
                "required": [
                    "load_wh",
                    "claimed_wh",
                    "matched_wh",
                    "hourly_match",
                    "volume_match",
                    "hours_not_covered",
                ],
                "properties": {
                    "hourly_match": {"type": ["number", "null"], "description": "sum min(L, G) / sum L, 0..1"},
                    "volume_match": {"type": ["number", "null"], "description": "min(1, sum G / sum L)"},
                    "hours_not_covered": {"type": "array", "items": {"type": "integer"}},
                },
            },
            "hours": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start", "load_wh", "claimed_wh", "matched_wh", "unmatched_wh", "excess_wh", "match"],
                },
            },
        },
    },
    "Community": {
        "type": "object",
        "required": ["community_id", "name", "grid_area", "currency", "members", "settings"],
        "properties": {
            "community_id": {"type": "string"},
            "name": {"type": "string"},
            "grid_area": {"type": "string"},
            "currency": {"type": "string"},
            "members": {"type": "array", "items": {"type": "object"}},
            "settings": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Issued": {
        "type": "object",
        "required": ["issued", "issued_wh", "skipped", "bundles"],
        "properties": {
            "issued": {"type": "integer"},
            "issued_wh": {"type": "integer"},
            "skipped": {"type": "integer", "description": "hours decided without a bundle"},
            "bundles": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Energy": {
        "type": "object",
        "required": ["device_id", "interval", "intervals", "from", "to", "asked_from", "asked_to", "widened"],
        "properties": {
            **WIDENED,
            "device_id": {"type": "string"},
            "interval": {"enum": list(records.INTERVALS)},
            "generation_register": {
                "enum": ["import_wh", "export_wh"],
                "description": "producers: the register generation_wh is taken from",
            },
            "intervals": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["start", "end", "start_time", "end_time", "import_wh", "export_wh", "quality"],
                    "properties": {
                        "start": {"type": "integer"},
                        "end": {"type": "integer"},
                        "start_time": TIME,
                        "end_time": TIME,
                        "import_wh": {"type": ["integer", "null"], "description": "whole Wh"},
                        "export_wh": {"type": ["integer", "null"], "description": "whole Wh"},
                        "generation_wh": {"type": ["integer", "null"], "description": "producers: whole Wh"},
                        "quality": {
                            "enum": list(records.QUALITY_RANK),
                            "description": "docs/energy.md",
                        },
                        "covered_from": {"type": "integer", "description": "partial: where the readings begin"},
                        "covered_to": {"type": "integer", "description": "partial: where the readings end"},
                        "covered_from_time": TIME,
                        "covered_to_time": TIME,
                    },
                },
            },
        },
    },
    "ApiKey": {
        "type": "object",
        "required": ["key_id", "name", "role", "installer", "created_at", "expires_at", "last_used_at", "status"],
        "properties": {
            "key_id": {"type": "string"},
            "name": {"type": "string"},
            "role": {"enum": list(auth.ROLES)},
            "installer": {"type": ["string", "null"]},
            "account": {"type": ["string", "null"], "description": "account keys: the registry account"},
            "created_at": {"type": "integer"},
            "expires_at": {**NULLABLE_INT, "description": FIELDS["expires_at"]},
            "last_used_at": {**NULLABLE_INT, "description": FIELDS["last_used_at"]},
            "created_time": TIME,
            "expires_time": {"type": ["string", "null"]},
            "last_used_time": {"type": ["string", "null"]},
            "status": {"enum": list(auth.KEY_STATUSES)},
            "token": {"type": "string", "description": "only in the answer that created the key"},
        },
    },
    "LedgerAction": {
        "type": "object",
        "required": ["ledger_index"],
        "properties": {"ledger_index": {"type": "integer"}},
    },
    "InclusionProof": {
        "type": "object",
        "required": ["index", "tree_size", "leaf_hash", "proof"],
        "properties": {
            "index": {"type": "integer"},
            "tree_size": {"type": "integer"},
            "leaf_hash": HEX,
            "proof": {"type": "array", "items": HEX},
        },
    },
    "ConsistencyProof": {
        "type": "object",
        "required": ["from", "to", "proof"],
        "properties": {
            "from": {"type": "integer"},
            "to": {"type": "integer"},
            "proof": {"type": "array", "items": HEX},
        },
    },
    "LedgerEntry": {
        "type": "object",
        "required": ["index", "kind", "device_id", "entry", "leaf_hash"],
        "properties": {
            "index": {"type": "integer"},
            "kind": {"type": "string"},
            "device_id": {"type": ["string", "null"]},
            "entry": HEX,
            "leaf_hash": HEX,
        },
    },
    "PacketHeader": {
        "type": "object",
        "required": [
            "device_id",
            "seq",
            "header",
            "root",
            "count",
            "ledger_index",
            "leaf_hash",
            "tree_size",
            "inclusion_proof",
            "checkpoint",
        ],
        "properties": {
            "device_id": {"type": "string"},
            "seq": {"type": "integer"},
            "header": HEX,
            "root": HEX,
            "count": {"type": "integer"},
            "first_time": {"type": "string"},
            "last_time": {"type": "string"},
            "ledger_index": {"type": "integer"},
            "leaf_hash": HEX,
            "tree_size": {"type": "integer"},
            "inclusion_proof": {"type": "array", "items": HEX},
            "checkpoint": {"type": "string"},
        },
    },  # fmt: skip
    "PacketWithProofs": {
        "type": "object",
        "required": [
            "device_id",
            "seq",
            "packet",
            "header",
            "ledger_index",
            "tree_size",
            "inclusion_proof",
            "checkpoint",
        ],
        "properties": {
            "device_id": {"type": "string"},
            "seq": {"type": "integer"},
            "packet": HEX,
            "header": {
                "type": "object",
                "required": ["root", "count", "first_ts", "last_ts", "first_time", "last_time", "prev"],
            },
            "ledger_index": {"type": "integer"},
            "tree_size": {"type": "integer"},
            "inclusion_proof": {"type": "array", "items": HEX},
            "checkpoint": {"type": "string"},
        },
    },
}


def _op(summary: str, ok: dict[str, Any], security: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, "4XX": PROBLEM, "5XX": PROBLEM}, **extra}
    op["security"] = [{"apiKey": []}] if security else []
    return op


CBOR_BODY = {"required": True, "content": {"application/cbor": {"schema": {"type": "string", "format": "binary"}}}}
TEXT = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
CHECKPOINT_PATTERN = "^[^\\n]+\\n(0|[1-9][0-9]*)\\n[A-Za-z0-9+/]{43}=\\n\\n\\u2014 "  # origin, size, root, a signature
CHECKPOINT_TEXT = {
    "description": "OK",
    "content": {"text/plain": {"schema": {"type": "string", "pattern": CHECKPOINT_PATTERN}}},
}
NAME_PATTERN = "^[a-z0-9][a-z0-9._-]{0,63}$"
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "description": "a key the client makes for this request: the same request again within 24 hours gets the"
    " same answer (header Idempotency-Replayed: true) instead of a second action; another request under the"
    " same key is refused (422)",
}
SESSION_PARAM = {"name": "session_id", "in": "path", "required": True, "schema": HEX}
DEVICE_PARAM = {
    "name": "device_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": NAME_PATTERN},
}
MAX_INDEX = 2**63 - 1
SEQ_PARAM = {"name": "seq", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
PROVENANCE = {
    "description": "The provenance certificate (docs/provenance.md): check it with `wattproof verify`",
    "content": {"application/json": {"schema": {"type": "object", "required": ["format", "kind", "checkpoint"],
                "properties": {"format": {"type": "string"}, "kind": {"type": "string"},
                               "checkpoint": {"type": "string"}}}}},
}  # fmt: skip


def _q(name: str, schema: dict[str, Any], required: bool = False, description: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        param["description"] = description
    return param


def _int(low: int = 0, high: int = MAX_INDEX, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


TIME_QUERY = {
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


def _key_body() -> dict[str, Any]:
    """POST /v1/keys: an installer key names its installer; no other key names one."""
    body = _json_body(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "role": {"type": "string", "enum": list(auth.ROLES)},
            "installer": {
                "type": "string",
                "pattern": NAME_PATTERN,
                "description": "installer keys only: the registered installer they act for",
            },
            "account": {
                "type": "string",
                "pattern": NAME_PATTERN,
                "description": "account keys only: the registry account they act for",
            },
            "expires": {**TIME_QUERY, "description": "Unix seconds or ISO 8601; in the future (else 422)"},
        },
        ["name", "role"],
    )
    schema = body["content"]["application/json"]["schema"]
    schema["allOf"] = [
        {
            "if": {"properties": {"role": {"const": role}}},
            "then": {"required": [field]},
            "else": {"not": {"required": [field]}},
        }
        for role, field in (("installer", "installer"), ("account", "account"))
    ]
    return body


ACCOUNT = {"type": "string", "pattern": NAME_PATTERN}
RANGES = {
    "type": "array",
    "minItems": 1,
    "maxItems": 1000,
    "description": "certificate id ranges [start, end], inclusive; each within one bundle (else 409)",
    "items": {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
    },
}


COMMUNITY_PARAM = {"name": "community_id", "in": "path", "required": True, "schema": ACCOUNT}
CSV_QUANTITIES = operation.CSV_QUANTITIES
SETTINGS = {
    "price_per_kwh": {"type": "string", "pattern": r"^[0-9]{1,6}(\.[0-9]{1,6})?$", "description": "decimal"},
    "step_s": {"type": "integer", "enum": list(operation.STEPS), "description": "default: 1800 before 2025, 900 since"},
    "key": {"type": "string", "enum": list(operation.KEYS), "default": "dynamic"},
    "coefficients": {
        "type": "object",
        "description": "static key: device id -> decimal coefficient (sum at most 1)",
        "additionalProperties": {"type": "string", "pattern": r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$"},
    },
}


def _withdraw_body() -> dict[str, Any]:
    body = _json_body(
        {
            "ranges": RANGES,
            "issuance_id": {"type": "string", "maxLength": 200, "description": "every active bundle of one hour"},
            "reason": {"type": "string", "maxLength": 500},
        },
        ["reason"],
    )
    body["content"]["application/json"]["schema"]["oneOf"] = [{"required": ["ranges"]}, {"required": ["issuance_id"]}]
    return body


def _json_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_SHORT = {"type": "string", "minLength": 1, "maxLength": 64}
CHARGE_POINT = {
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
OCMF_CHARGER = {
    "device_id": {"type": "string", "pattern": NAME_PATTERN},
    "public_key": {"type": "string", "pattern": "^[0-9A-Fa-f]{182}$", "description": "hex DER SubjectPublicKeyInfo"},
    "gateway_serial": {
        **_SHORT,
        "description": "the OCMF GS its records carry (where they carry none, give meter_serial, the MS they carry)",
    },
    "gateway_id": {**_SHORT, "description": "the OCMF GI its records carry"},
    "meter_model": _SHORT,
    "meter_serial": _SHORT,
    "capacity_w": {"type": "integer", "minimum": 1, "maximum": 10**9},
    "grid_area": _SHORT,
    "location": {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "prefixItems": [
            {"type": "integer", "minimum": -90_000_000, "maximum": 90_000_000},
            {"type": "integer", "minimum": -180_000_000, "maximum": 180_000_000},
        ],
        "items": {"type": "integer"},
        "description": "[latitude, longitude] in microdegrees",
    },
    "charge_point": CHARGE_POINT,
}
REASON_BODY = _json_body({"reason": {"type": "string", "maxLength": 200}}, [])


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "wattproof verifier",
        "version": "1",
        "description": "Signed energy data from devices, an append-only ledger, records for utilities."
        " Unknown query parameters are refused (400); times are Unix seconds or ISO 8601 and come back as both.",
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "API key wp_<id>_<secret>; roles admin, installer, utility, auditor",
            }
        },
    },
    "paths": {
        "/v1/packets": {
            "post": _op(
                "A device's packet (docs/protocol.md); authenticated by its signature",
                {"200": _json(_ref("PacketAnswer"), "Duplicate"), "201": _json(_ref("PacketAnswer"), "Accepted")},
                security=False,
                requestBody=CBOR_BODY,
            )
        },
        "/v1/packets/batch": {
            "post": _op(
                "Up to 256 packets in one request (CBOR array of byte strings); one result each, in order",
                {"200": _json(_ref("BatchAnswer"))},
                security=False,
                requestBody=CBOR_BODY,
            )
        },
        "/v1/installers": {
            "post": _op(
                "Register an installer's Ed25519 key (admin)",
                {"201": _json(_ref("LedgerAction"))},
                requestBody=_json_body(
                    {
                        "name": {"type": "string", "pattern": NAME_PATTERN},
                        "public_key": {
                            "type": "string",
                            "pattern": "^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$",
                            "description": "base64 of the 32-byte Ed25519 key",
                        },
                    },
                    ["name", "public_key"],
                ),
            )
        },
        "/v1/installers/{name}/revoke": {
            "post": _op(
                "Revoke an installer (admin): its signatures enroll nothing more",
                {"200": _json(_ref("LedgerAction"))},
                parameters=[
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": NAME_PATTERN},
                    }
                ],
            )
        },
        "/v1/enrollments/challenge": {
            "post": _op(
                "A single-use enrollment challenge (installer)",
                {"200": _json({"type": "object", "required": ["challenge", "expires_in_s"]})},
            )
        },
        "/v1/enrollments": {
            "post": _op(
                "Enroll a device (installer, with its own installer's signature; or admin): docs/devices.md",
                {"200": _json(_ref("Receipt")), "201": _json(_ref("Receipt"))},
                requestBody=CBOR_BODY,
            )
        },
        "/v1/ocmf/chargers": {
            "post": _op(
                "Enroll a third-party Eichrecht charger by its OCMF public key (installer, admin): docs/charging.md",
                {"200": _json(_ref("Receipt")), "201": _json(_ref("Receipt"))},
                requestBody=_json_body(OCMF_CHARGER, ["device_id", "public_key"]),
            )
        },
        "/v1/ocmf": {
            "post": _op(
                "OCMF records a third-party charger signed: text (a record a line, each maybe followed by its"
                " public key) or the S.A.F.E. XML container; all appended to the ledger, or none (admin)",
                {
                    "200": _json({"type": "object", "required": ["records"]}),
                    "201": _json({"type": "object", "required": ["records"]}),
                },
                requestBody={
                    "required": True,
                    "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/xml": {"schema": {"type": "string"}},
                    },
                },
            )
        },
        "/v1/devices": {
            "get": _op(
                "Devices (installer, utility, auditor)",
                {"200": _json(_ref("DeviceList"))},
                parameters=[
                    _q("cursor", {"type": "string", "pattern": NAME_PATTERN}, description="next_cursor of a page"),
                    _q("limit", _int(1, 1000, 100)),
                ],
            )
        },
        "/v1/devices/{device_id}": {
            "get": _op("One device", {"200": _json(_ref("Device"))}, parameters=[DEVICE_PARAM])
        },
        "/v1/devices/{device_id}/revoke": {
            "post": _op(
                "Revoke a device (the installer that enrolled it, or admin)",
                {"200": _json(_ref("LedgerAction"))},
                parameters=[DEVICE_PARAM],
                requestBody=REASON_BODY,
            )
        },
        "/v1/devices/{device_id}/clear-flag": {
            "post": _op(
                "End a device's quarantine after an equivocation was looked into (admin)",
                {"200": _json(_ref("LedgerAction"))},
                parameters=[DEVICE_PARAM],
                requestBody=_json_body({"reason": {"type": "string", "minLength": 1, "maxLength": 200}}, ["reason"]),
            )
        },
        "/v1/devices/{device_id}/rotate": {
            "post": _op(
                "Rotate a device's key, signed by old and new key over the current key id and key_ledger_index",
                {"200": _json(_ref("LedgerAction"))},
                security=False,
                parameters=[DEVICE_PARAM],
                requestBody=CBOR_BODY,
            )
        },
        "/v1/devices/{device_id}/readings": {
            "get": _op(
                "Readings by time, cursor pagination (utility, auditor)",
                {"200": _json(_ref("Readings"))},
                parameters=[
                    DEVICE_PARAM,
                    _q("from", TIME_QUERY),
                    _q("to", TIME_QUERY),
                    _q("cursor", _int(), description="next_cursor of a page"),
                    _q("limit", _int(1, 5000, 500)),
                ],
            )
        },
        "/v1/devices/{device_id}/sessions": {
            "get": _op(
                "A charger's charging sessions that start in [from, to), maybe of one state (utility, auditor)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["device_id", "sessions"],
                            "properties": {
                                "device_id": {"type": "string"},
                                "sessions": {"type": "array", "items": _ref("Session")},
                            },
                        }
                    )
                },
                parameters=[
                    DEVICE_PARAM,
                    _q("from", TIME_QUERY),
                    _q("to", TIME_QUERY),
                    _q("state", {"type": "string", "enum": list(SESSION_STATES)}),
                ],
            )
        },
        "/v1/devices/{device_id}/sessions/{session_id}": {
            "get": _op(
                "One charging session with its samples and the readings that prove it (utility, auditor)",
                {"200": _json({"allOf": [_ref("Session"), {"required": ["samples"]}]})},
                parameters=[DEVICE_PARAM, SESSION_PARAM],
            )
        },
        "/v1/devices/{device_id}/sessions/{session_id}/ocmf": {
            "get": _op(
                "The session's OCMF record: text (record, then the public key as hex DER SPKI) or the S.A.F.E."
                " XML container (utility, auditor)",
                {
                    "200": {
                        "description": "OK",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/xml": {"schema": {"type": "string"}},
                        },
                    }
                },
                parameters=[
                    DEVICE_PARAM,
                    SESSION_PARAM,
                    _q("format", {"type": "string", "enum": ["text", "xml"], "default": "text"}),
                ],
            )
        },
        "/v1/devices/{device_id}/energy": {
            "get": _op(
                "Energy per interval from the registers (utility, auditor); at most 8784 intervals",
                {"200": _json(_ref("Energy"))},
                parameters=[
                    DEVICE_PARAM,
                    _q("from", TIME_QUERY, True),
                    _q("to", TIME_QUERY, True),
                    _q("interval", {"type": "string", "enum": list(records.INTERVALS), "default": "1h"}),
                ],
            )
        },
        "/v1/certificates": {
            "get": _op(
                "Certificate bundles by production hour, in id order, cursor pagination (utility, auditor, account)",
                {"200": _json(_ref("Bundles"))},
                parameters=[
                    _q("device_id", {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}),
                    _q("account_id", ACCOUNT, description="the holder"),
                    _q("status", {"type": "string", "enum": list(registry.STATUSES)}),
                    _q("claim_id", _int(), description="the bundles one claim cancelled"),
                    _q("from", TIME_QUERY),
                    _q("to", TIME_QUERY),
                    _q("cursor", _int(), description="next_cursor of a page"),
                    _q("limit", _int(1, 1000, 100)),
                ],
            )
        },
        "/v1/certificates/issue": {
            "post": _op(
                "Issue every complete, measured producer hour not decided yet (admin)",
                {"200": _json(_ref("Issued"))},
            )
        },
        "/v1/certificates/transfer": {
            "post": _op(
                "Move certificate id ranges to another account; a range inside a bundle splits it (account, admin)",
                {"201": _json(_ref("Moved"))},
                parameters=[IDEMPOTENCY_KEY],
                requestBody=_json_body(
                    {
                        "ranges": RANGES,
                        "to_account": ACCOUNT,
                        "from_account": {**ACCOUNT, "description": "an account key's own; admin: absent = issuer"},
                    },
                    ["ranges", "to_account"],
                ),
            )
        },
        "/v1/certificates/claim": {
            "post": _op(
                "Cancel certificate ranges for a beneficiary and consumption period; answers the statement",
                {"201": _json(_ref("Statement"))},
                parameters=[IDEMPOTENCY_KEY],
                requestBody=_json_body(
                    {
                        "ranges": RANGES,
                        "beneficiary": {**ACCOUNT, "description": "default: the holder"},
                        "holder": {**ACCOUNT, "description": "an account key's own; admin: absent = issuer"},
                        "period_start": TIME_QUERY,
                        "period_end": TIME_QUERY,
                        "consumer_device": {"type": "string", "pattern": NAME_PATTERN},
                    },
                    ["ranges", "period_start", "period_end"],
                ),
            )
        },
        "/v1/certificates/withdraw": {
            "post": _op(
                "The issuing body takes back active or expired certificates (admin)",
                {"201": _json(_ref("Moved"))},
                parameters=[IDEMPOTENCY_KEY],
                requestBody=_withdraw_body(),
            )
        },
        "/v1/matching": {
            "get": _op(
                "Hourly matching of a consumer device or account: load against claimed certificates (utility,"
                " auditor, account); at most 8784 hours",
                {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {"schema": _ref("Matching")},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    }
                },
                parameters=[
                    _q("device_id", {"type": "string", "pattern": NAME_PATTERN}, description="or account_id"),
                    _q("account_id", ACCOUNT, description="or device_id"),
                    _q("from", TIME_QUERY, True),
                    _q("to", TIME_QUERY, True),
                    _q("format", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
                ],
            )
        },
        "/v1/claims": {
            "get": _op(
                "Claim batches in ledger order, cursor pagination (utility, auditor, account)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["claims", "next_cursor"],
                            "properties": {
                                "claims": {"type": "array", "items": _ref("Claim")},
                                "next_cursor": NULLABLE_INT,
                            },
                        }
                    )
                },
                parameters=[
                    _q("beneficiary", ACCOUNT),
                    _q("cursor", _int(), description="next_cursor of a page"),
                    _q("limit", _int(1, 1000, 100)),
                ],
            )  # fmt: skip
        },
        "/v1/claims/{claim_id}": {
            "get": _op(
                "One claim's cancellation statement (utility, auditor, account)",
                {"200": _json(_ref("Statement"))},
                parameters=[{"name": "claim_id", "in": "path", "required": True, "schema": _int()}],
            )
        },
        "/v1/accounts": {
            "get": _op(
                "Every registry account with its devices and balances (utility, auditor, account)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["accounts"],
                            "properties": {"accounts": {"type": "array", "items": _ref("Account")}},
                        }
                    )
                },
            ),  # fmt: skip
            "post": _op(
                "Create a registry account, as a ledger entry (admin)",
                {"201": _json(_ref("Account"))},
                requestBody=_json_body(
                    {
                        "account_id": ACCOUNT,
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                        "kind": {"enum": list(registry.ACCOUNT_KINDS)},
                    },
                    ["account_id", "name", "kind"],
                ),
            ),
        },
        "/v1/accounts/{account_id}/devices": {
            "post": _op(
                "The account now owns the device: its later hours are issued to it (admin)",
                {"201": _json({"type": "object", "required": ["account_id", "device_id", "ledger_index"]})},
                parameters=[{"name": "account_id", "in": "path", "required": True, "schema": ACCOUNT}],
                requestBody=_json_body({"device_id": {"type": "string", "pattern": NAME_PATTERN}}, ["device_id"]),
            )
        },
        "/v1/communities": {
            "get": _op("Every energy community with its members and settings", {"200": _json({"type": "object"})}),
            "post": _op(
                "Create an energy community with its first settings (admin)",
                {"201": _json(_ref("Community"))},
                requestBody=_json_body(
                    {
                        "community_id": ACCOUNT,
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                        "grid_area": {"type": "string", "maxLength": 64},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "from": {**TIME_QUERY, "description": "the first step (on a step boundary, else 422)"},
                        **SETTINGS,
                    },
                    ["community_id", "name", "from"],
                ),
            ),
        },
        "/v1/communities/{community_id}": {
            "get": _op(
                "One community: members and settings history",
                {"200": _json(_ref("Community"))},
                parameters=[COMMUNITY_PARAM],
            ),  # fmt: skip
        },
        "/v1/communities/{community_id}/members": {
            "post": _op(
                "A producer or consumer device joins, from a time, maybe until one (admin)",
                {"201": _json(_ref("Community"))},
                parameters=[COMMUNITY_PARAM],
                requestBody=_json_body(
                    {"device_id": {"type": "string", "pattern": NAME_PATTERN}, "from": TIME_QUERY, "until": TIME_QUERY},
                    ["device_id", "from"],
                ),
            )
        },
        "/v1/communities/{community_id}/members/{device_id}/end": {
            "post": _op(
                "A membership ends: the one that began at from, at until (exclusive; until = from: it never took"
                " effect); only ever shortens a membership (admin)",
                {"201": _json(_ref("Community"))},
                parameters=[COMMUNITY_PARAM, DEVICE_PARAM],
                requestBody=_json_body({"from": TIME_QUERY, "until": TIME_QUERY}, ["from", "until"]),
            )
        },
        "/v1/communities/{community_id}/settings": {
            "post": _op(
                "Settings in force from a step on: step, allocation key, price (admin)",
                {"201": _json(_ref("Community"))},
                parameters=[COMMUNITY_PARAM],
                requestBody=_json_body({"from": TIME_QUERY, **SETTINGS}, ["from"]),
            )
        },
        "/v1/communities/{community_id}/coefficients": {
            "post": _op(
                "Per-step coefficients for the per-step key: CSV Horodate;<member>;... (admin)",
                {"201": _json({"type": "object", "required": ["community_id", "ledger_index", "steps"]})},
                parameters=[COMMUNITY_PARAM],
                requestBody={"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
            )
        },
        "/v1/communities/{community_id}/allocation": {
            "get": _op(
                "Allocation per step and member (JSON), or one quantity per step as CSV; at most 3000 steps",
                {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {"schema": {"type": "object", "required": ["community_id", "steps"]}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    }
                },
                parameters=[
                    COMMUNITY_PARAM,
                    _q("from", TIME_QUERY, True),
                    _q("to", TIME_QUERY, True),
                    _q("format", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
                    _q("quantity", {"type": "string", "enum": list(CSV_QUANTITIES), "default": "allocated"}),
                ],
            )
        },
        "/v1/communities/{community_id}/settlement": {
            "get": _op(
                "The month's settlement statement at the community's price",
                {"200": _json({"type": "object", "required": ["community_id", "month", "flows", "total_amount"]})},
                parameters=[
                    COMMUNITY_PARAM,
                    _q("month", {"type": "string", "pattern": "^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"}, True),
                ],
            )
        },
        "/v1/packets/{device_id}/{seq}": {
            "get": _op(
                "A packet with its ledger proof and a checkpoint (utility, auditor)",
                {"200": _json(_ref("PacketWithProofs"))},
                parameters=[DEVICE_PARAM, {"name": "seq", "in": "path", "required": True, "schema": _int()}],
            )
        },
        "/v1/keys": {
            "get": _op("Every API key, without secrets (admin)", {"200": _json({"type": "object"})}),
            "post": _op(
                "Create an API key (admin); the token is in this answer only",
                {"201": _json(_ref("ApiKey"))},
                requestBody=_key_body(),
            ),
        },
        "/v1/keys/{key_id}/revoke": {
            "post": _op(
                "Revoke an API key at once (admin)",
                {"200": _json({"type": "object", "required": ["key_id", "status"]})},
                parameters=[{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/v1/ledger/key": {"get": _op("The log's public key, C2SP verifier-key form", {"200": TEXT}, security=False)},
        "/v1/ledger/checkpoint": {
            "get": _op(
                "The latest checkpoint, a C2SP signed note: origin, size and base64 root hash lines, an empty line,"
                " the log's signature line and the witnesses' cosignature lines",
                {"200": CHECKPOINT_TEXT},
                security=False,
            )
        },
        "/v1/ledger/proof/inclusion": {
            "get": _op(
                "Inclusion proof by index, or by device and seq (not both); size defaults to the ledger's",
                {"200": _json(_ref("InclusionProof"))},
                security=False,
                parameters=[
                    _q("index", _int()),
                    _q("size", _int(1)),
                    _q("device", {"type": "string", "pattern": NAME_PATTERN}),
                    _q("seq", _int()),
                ],
            )
        },
        "/v1/ledger/proof/consistency": {
            "get": _op(
                "Consistency proof between two tree sizes; to defaults to the ledger's",
                {"200": _json(_ref("ConsistencyProof"))},
                security=False,
                parameters=[_q("from", _int(1), True), _q("to", _int(1))],
            )
        },
        "/v1/ledger/entries/{index}": {
            "get": _op(
                "One ledger entry (public, as the tiles under /log/ are)",
                {"200": _json(_ref("LedgerEntry"))},
                security=False,
                parameters=[{"name": "index", "in": "path", "required": True, "schema": _int()}],
            )
        },
        "/v1/packets/{device_id}/{seq}/header": {
            "get": _op(
                "A packet's signed header (no reading), its ledger entry, inclusion proof and checkpoint (public)",
                {"200": _json(_ref("PacketHeader"))},
                security=False,
                parameters=[DEVICE_PARAM, SEQ_PARAM],
            )
        },
        "/v1/packets/{device_id}/{seq}/certificate": {
            "get": _op(
                "The packet's provenance certificate (utility, auditor)",
                {"200": PROVENANCE},
                parameters=[DEVICE_PARAM, SEQ_PARAM],
            )  # fmt: skip
        },
        "/v1/devices/{device_id}/readings/{number}/certificate": {
            "get": _op(
                "A reading's provenance certificate (utility, auditor)",
                {"200": PROVENANCE},
                parameters=[DEVICE_PARAM, {"name": "number", "in": "path", "required": True, "schema": _int()}],
            )  # fmt: skip
        },
        "/v1/devices/{device_id}/sessions/{session_id}/certificate": {
            "get": _op(
                "A charging session's provenance certificate (utility, auditor)",
                {"200": PROVENANCE},
                parameters=[DEVICE_PARAM, SESSION_PARAM],
            )  # fmt: skip
        },
        "/v1/certificates/{ledger_index}/provenance": {
            "get": _op(
                "A granular certificate's provenance certificate, by its issuance entry (utility, auditor, account)",
                {"200": PROVENANCE},
                parameters=[{"name": "ledger_index", "in": "path", "required": True, "schema": _int()}],
            )  # fmt: skip
        },
        "/v1/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"})}, security=False),
        },
    },
}


describe(DOCUMENT)  # every field its meaning, unit and sign (verifier/http/fields.py)


@bp.get("/v1/openapi.json")
def openapi() -> Response:
    return jsonify(DOCUMENT)
