"""What each field of the API's answers and bodies means, with its unit and sign: declared
once by name, and written into every schema of the OpenAPI document that lacks its own
description (verifier/http/openapi.py). A test holds every field of the document described."""

from __future__ import annotations

from typing import Any

UNIX = "Unix seconds, UTC"

FIELDS: dict[str, str] = {
    # energy and power
    "import_wh": "the import register (energy drawn from the grid), cumulative, Wh, 0 or more",
    "export_wh": "the export register (energy fed into the grid), cumulative, Wh, 0 or more",
    "power_w": "instantaneous active power, W; positive while importing, negative while exporting",
    "register_wh": "the charger's meter register, cumulative, Wh",
    "energy_wh": "energy, Wh, 0 or more: the difference of two register readings",
    "green_wh": "the part of the energy covered by certificates or a community's local production, Wh",
    "certificates_wh": "the part covered by claimed certificates, Wh",
    "community_wh": "the part covered by the community's allocation, Wh",
    "charger_green_wh": "the charger's green supply in the hour, Wh",
    "charger_load_wh": "the charger's load in the hour, Wh",
    "issued_wh": "certificates issued by this request, Wh (one certificate is 1 Wh)",
    "quantity_wh": "certificates, Wh (one certificate is 1 Wh)",
    "face_value_wh": "Wh per certificate: 1",
    "by_energy_source_wh": "the claimed Wh by energy source (solar, wind, ...)",
    "capacity_w": "the device's rated power, W",
    "device_capacity_w": "the producing device's rated power, W",
    "share": "green_wh / energy_wh, 0 to 1 (null when there is no energy)",
    # times
    "ts": f"when the reading was taken, {UNIX}",
    "start": f"the start, {UNIX}",
    "end": f"the end (exclusive), {UNIX}",
    "stop": "the stop reading (null while the session is open)",
    "from": f"the start of the period, {UNIX}",
    "to": f"the end of the period (exclusive), {UNIX}",
    "created_at": f"when it was made, {UNIX}",
    "expires_at": f"when it expires, {UNIX} (null: never)",
    "expires_time": "expires_at, ISO 8601 UTC",
    "last_used_at": f"when the key was last used (written at most once a minute), {UNIX}",
    "last_used_time": "last_used_at, ISO 8601 UTC",
    "claimed_at": f"when the claim was made, {UNIX}",
    "first_time": "the first reading's time, ISO 8601 UTC",
    "last_time": "the last reading's time, ISO 8601 UTC",
    "issuance_date": f"when the certificates were issued, {UNIX}",
    "expiry_date": f"when the certificates expire, {UNIX}",
    "production_starting_interval": f"the start of the production hour, {UNIX}",
    "production_ending_interval": f"the end of the production hour (exclusive), {UNIX}",
    "consumption_period_start": f"the start of the consumption period the claim is for, {UNIX}",
    "consumption_period_end": f"the end of the consumption period (exclusive), {UNIX}",
    "duration_s": "the session's duration, seconds",
    "retry_after": "seconds to wait before trying again",
    "interval": "the interval's length: 15m, 1h or 1d",
    # places
    "location": "[latitude, longitude] in microdegrees (WGS 84; north and east positive)",
    "device_location": "[latitude, longitude] of the producing device in microdegrees (north and east positive)",
    "grid_area": "the grid area the device is connected in (an ISO 3166 country prefix, then the operator's area)",
    "country": "ISO 3166-1 country code",
    "address": "the street address of the charge point",
    "city": "the city of the charge point",
    "postal_code": "the postal code of the charge point",
    # identities
    "device_id": "the device's id: [a-z0-9][a-z0-9._-]{0,63}",
    "account_id": "the registry account's id (null: the issuing body)",
    "community_id": "the community's id",
    "session_id": "the charging session's id, hex",
    "issuance_id": "the issuance's id: device_id/production_starting_interval",
    "claim_id": "the claim's ledger index (null when not claimed)",
    "key_id": "the API key's id (the token is wp_<key id>_<secret>)",
    "installer": "the registered installer",
    "holder": "the account holding the certificates (null: the issuing body)",
    "beneficiary": "the account the certificates were claimed for",
    "to_account": "the account the certificates go to",
    "consumer_device": "the consumer device the claim is for (null: the account's whole load)",
    "name": "a name for people",
    "role": "the device's role: producer, consumer, charger, ocmf-charger; or an API key's role",
    "kind": "what it is, by its kind",
    "issuing_body": "the issuing body: the log's origin name",
    "meter_model": "the meter's model",
    "meter_serial": "the meter's serial number ('unknown' where its bus gives none and none was entered)",
    "technology": "the producer's technology (solar-pv, wind, ...)",
    "energy_source": "the energy source (solar, wind, ...)",
    "energy_carrier": "electricity",
    "currency": "ISO 4217 currency code",
    "charge_point": "the charger's OCPI location, EVSE and connector",
    "location_id": "the OCPI location id",
    "evse_uid": "the OCPI EVSE uid",
    "evse_id": "the eMI3 EVSE id",
    "connector_id": "the OCPI connector id",
    "connector": "the connector number, from 1",
    "connector_standard": "the OCPI connector standard",
    "connector_format": "the OCPI connector format: SOCKET or CABLE",
    "power_type": "the OCPI power type: AC_1_PHASE, AC_3_PHASE or DC",
    "token": "the token's hash as the charger saw it (never the token itself)",
    "token_hash": "HMAC-SHA256 of the ID token, hex (never the token itself)",
    "fingerprint": "SHA-256 of the key's DER SubjectPublicKeyInfo, hex",
    # the ledger
    "ledger_index": "the ledger entry's index, from 0",
    "enrolled_ledger_index": "the ledger index of the device's enrollment",
    "index": "the ledger entry's index, from 0",
    "seq": "the packet's number in the device's chain, from 0",
    "expected_seq": "the seq the device's chain continues with",
    "number": "the reading's number on its device, from 0",
    "count": "how many",
    "tree_size": "the ledger's size (entries) the proof is to",
    "leaf_hash": "SHA-256(0x00 || entry), hex",
    "root": "a Merkle root, hex",
    "header": "the packet's COSE_Sign1 header, hex",
    "header_hash": "SHA-256 of the packet's header bytes, hex",
    "entry": "the ledger entry's deterministic CBOR, base64",
    "inclusion_proof": "the RFC 9162 inclusion proof: hashes, hex",
    "proof": "the proof's hashes, hex",
    "checkpoint": "the signed checkpoint (C2SP signed note) the proof is to",
    "packet": "the packet holding it: its seq and ledger index",
    "next_cursor": "the cursor of the next page (null: the last page)",
    "anomalies": "what ingest found unusual in the packet (recorded, not refused)",
    "ocmf_sig": "the charger's DER ECDSA signature of the session's OCMF record, hex",
    "ocmf_verified": "whether the OCMF record's signature verifies with the charger's key",
    # states
    "status": "the state, by its name",
    "state": "the session's state: active, completed, completed-after-power-loss or disputed",
    "quality": "how the value was measured: measured, interpolated, partial, disputed or missing (readings: time"
    " quality unknown, informative or synchronised)",
    "disputed": "why the session is disputed (null: it is not)",
    "flagged": "true while an equivocation of the device is under review",
    "duplicate": "true when the packet was in the ledger already (acknowledged again, counted once)",
    "already_enrolled": "true when the same enrollment was made before (answered again)",
    "accepted": "packets appended by this request",
    "refused": "packets refused by this request",
    "results": "one result per packet, in order",
    "event": "the event: start, sample or stop (sessions); boot, clock set, power loss, meter fault, ... (devices)",
    "reason": "the reason given",
    "stop_reason": "why the session stopped, in words",
    "source": "where the value comes from",
    "value": "a number that belongs to the event",
    "sample_count": "readings between the session's start and stop",
    "samples": "the session's readings between its start and stop",
    # collections
    "readings": "the readings, in order",
    "intervals": "the intervals, in time order",
    "hours": "hour by hour",
    "hours_not_covered": "hours whose load the certificates claimed for it do not cover",
    "bundles": "the certificate bundles",
    "issued": "how many bundles were issued",
    "devices": "the devices",
    "members": "the community's members",
    "settings": "the settings, each in force from its time on",
    "summary": "the period's totals",
    "key": "the allocation key: dynamic, static or per-step",
    "bundle_id_range_start": "the bundle's first certificate id (1 Wh each)",
    "bundle_id_range_end": "the bundle's last certificate id, inclusive",
    "sessions": "the charging sessions",
    "claims": "the claims",
    "accounts": "the registry accounts",
    "format": "the provenance file's format: wattproof.org/provenance/v1 (docs/provenance.md)",
    # problems
    "type": "the problem type's URI (stable)",
    "title": "the problem type's title",
    "detail": "what was wrong with this request, in words",
    "field": "the field, parameter or header the problem is about",
}


def describe(schema: Any) -> None:
    """Gives every property of schema (recursively) that has no description its FIELDS one."""
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            for name, prop in props.items():
                if isinstance(prop, dict) and "description" not in prop and "$ref" not in prop and name in FIELDS:
                    props[name] = {**prop, "description": FIELDS[name]}  # a copy: schemas share their parts
        for value in schema.values():
            describe(value)
    elif isinstance(schema, list):
        for value in schema:
            describe(value)
