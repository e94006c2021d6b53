"""What enrollment and key rotation sign, and the checks of those signatures: pure functions,
no database (verifier/devices/lifecycle.py keeps the state; provisioning and the audit use these too)."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verifier.devices import charge_point
from verifier.wire import cose, strict_cbor
from verifier.wire.packet import DEVICE_ID
from verifier.wire.problems import Problem

ROLES = ("producer", "consumer", "charger")
# Meters that count one flow only (their reading carries it as import_wh): on a producer,
# that flow is the generator's output.
UNKNOWN_SERIAL = "unknown"  # a meter_serial for a meter that gives none (an S0 pulse meter): never checked
GENERATION_REGISTERS = ("import_wh", "export_wh")  # where a producer's generation may be counted
ONE_REGISTER_METERS = ("s0", "pzem004t")  # firmware/meters: a pulse counter; the PZEM-004T counts one energy


def generation_register_of(meter_model: str) -> str:
    """The register a producer's generation is on, from what its meter measures."""
    return "import_wh" if meter_model in ONE_REGISTER_METERS else "export_wh"


POP_CONTEXT = "wattproof enrollment pop"
INSTALLER_CONTEXT = "wattproof enrollment"
ROTATION_CONTEXT = "wattproof key rotation"


def pop_message(device: dict[str, Any], challenge: bytes) -> bytes:
    """What the device signs (ES256) to prove it holds its key."""
    return strict_cbor.dumps([POP_CONTEXT, device, challenge])


def installer_message(device: dict[str, Any], challenge: bytes, pop: bytes) -> bytes:
    """What the installer signs (Ed25519) to vouch for the installation."""
    return strict_cbor.dumps([INSTALLER_CONTEXT, device, challenge, pop])


def rotation_message(device_id: str, new_key: bytes, current_kid: bytes, key_index: int) -> bytes:
    """What both the old and the new device key sign (ES256) for a rotation: bound to the key it
    replaces and to the ledger entry that set that key, so a recorded rotation cannot be replayed
    once the key has changed again."""
    return strict_cbor.dumps([ROTATION_CONTEXT, device_id, new_key, current_kid, key_index])


def legacy_rotation_message(device_id: str, new_key: bytes) -> bytes:
    """The first release's rotation message (no binding); only the audit of old entries uses it."""
    return strict_cbor.dumps([ROTATION_CONTEXT, device_id, new_key])


def check_es256(point: bytes, message: bytes, signature: bytes, field: str) -> None:
    try:
        cose.verify_es256_message(point, message, signature)
    except ValueError:
        raise Problem("bad-signature", field, "signature does not verify") from None


def check_installer_sig(public_key: bytes, device: dict[str, Any], challenge: bytes, pop: bytes, sig: bytes) -> None:
    """The installer's Ed25519 signature over the enrollment, or a bad-signature problem."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, installer_message(device, challenge, pop))
    except (InvalidSignature, ValueError):
        raise Problem("bad-signature", "installer_sig", "the installer's signature does not verify") from None


def check_location(location: Any, field: str) -> None:
    """[latitude, longitude] in microdegrees, or None."""
    if location is not None and not (
        len(location) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in location)
        and -90_000_000 <= location[0] <= 90_000_000
        and -180_000_000 <= location[1] <= 180_000_000
    ):
        raise Problem("invalid-field", field, "expected [latitude, longitude] in microdegrees")


def check_device_record(device: Any) -> dict[str, Any]:
    """The device record of an enrollment, checked field by field."""
    if not isinstance(device, dict):
        raise Problem("invalid-field", "device", "expected a map")
    required = {
        "device_id": str,
        "public_key": bytes,
        "role": str,
        "capacity_w": int,
        "grid_area": str,
        "meter_model": str,
        "meter_serial": str,
    }
    optional = {"technology": str, "location": list, "generation_register": str, "charge_point": dict}
    for key in device:
        if key not in required and key not in optional:
            raise Problem("invalid-field", f"device.{key}", "unknown field")
    for key, kind in required.items():
        if not isinstance(device.get(key), kind) or isinstance(device.get(key), bool):
            raise Problem("invalid-field", f"device.{key}", f"missing or not {kind.__name__}")
    for key, kind in optional.items():
        if key in device and not isinstance(device[key], kind):
            raise Problem("invalid-field", f"device.{key}", f"expected {kind.__name__}")
    if not DEVICE_ID.fullmatch(device["device_id"]):
        raise Problem("invalid-field", "device.device_id", "expected [a-z0-9][a-z0-9._-]{0,63}")
    if device["role"] not in ROLES:
        raise Problem("invalid-field", "device.role", f"one of {', '.join(ROLES)}")
    if device["role"] == "producer" and "technology" not in device:
        raise Problem("invalid-field", "device.technology", "producers name their technology (solar-pv, wind ...)")
    if "generation_register" in device and (
        device["role"] != "producer" or device["generation_register"] not in GENERATION_REGISTERS
    ):
        raise Problem(
            "invalid-field",
            "device.generation_register",
            "producers only: import_wh (a meter that counts the generator's output, such as an S0 meter on the"
            " inverter) or export_wh (a two-way meter at the connection point; the default)",
        )
    if not 0 < device["capacity_w"] <= 10**9:
        raise Problem("invalid-field", "device.capacity_w", "expected watts, 1 to 10^9")
    if "charge_point" in device:
        if device["role"] != "charger":
            raise Problem("invalid-field", "device.charge_point", "chargers only")
        charge_point.check_charge_point(device["charge_point"])
    check_location(device.get("location"), "device.location")
    try:
        cose.public_key_from_point(device["public_key"])
    except ValueError:
        raise Problem("invalid-field", "device.public_key", "expected an uncompressed P-256 point") from None
    return device


OCMF_ROLE = "ocmf-charger"  # a charger that is not ours: it signs OCMF, never packets
_OCMF_REQUIRED = {"device_id": str, "public_key": bytes, "role": str, "meter_model": str, "meter_serial": str}
_OCMF_OPTIONAL = {"gateway_serial": str, "gateway_id": str, "capacity_w": int, "grid_area": str, "location": list,
                  "charge_point": dict}  # fmt: skip


def check_ocmf_charger(device: Any) -> dict[str, Any]:
    """The record that enrolls a third-party Eichrecht charger by its OCMF public key
    (docs/charging.md): which gateway (OCMF GI and GS) signs its records, with which key."""
    if not isinstance(device, dict):
        raise Problem("invalid-field", "charger", "expected an object")
    for key in device:
        if key not in _OCMF_REQUIRED and key not in _OCMF_OPTIONAL:
            raise Problem("invalid-field", key, "unknown field")
    for key, kind in (_OCMF_REQUIRED | _OCMF_OPTIONAL).items():
        value = device.get(key)
        if (key in _OCMF_REQUIRED or key in device) and (not isinstance(value, kind) or isinstance(value, bool)):
            raise Problem("invalid-field", key, f"missing or not {'a list' if kind is list else kind.__name__}")
    if not DEVICE_ID.fullmatch(device["device_id"]):
        raise Problem("invalid-field", "device_id", "expected [a-z0-9][a-z0-9._-]{0,63}")
    if device["role"] != OCMF_ROLE:
        raise Problem("invalid-field", "role", OCMF_ROLE)
    if "gateway_serial" not in device and device["meter_serial"] == UNKNOWN_SERIAL:
        # a charger whose records leave GS empty (an eBee's) is known by its meter's serial (MS)
        raise Problem("invalid-field", "gateway_serial", "name the gateway serial (GS) its records carry, or, where"
                      " they carry none, its meter serial (MS) as meter_serial")  # fmt: skip
    for key in ("gateway_serial", "gateway_id", "meter_model", "meter_serial", "grid_area"):
        if key in device and not 0 < len(device[key]) <= 64:
            raise Problem("invalid-field", key, "1 to 64 characters, as the charger's OCMF record writes it")
    if "capacity_w" in device and not 0 < device["capacity_w"] <= 10**9:
        raise Problem("invalid-field", "capacity_w", "expected watts, 1 to 10^9")
    if "charge_point" in device:
        charge_point.check_charge_point(device["charge_point"])
    check_location(device.get("location"), "location")
    from verifier.wire import ocmf  # the OCMF curves (ocmf imports nothing of the enrollment rules)

    try:
        ocmf._key(bytes(device["public_key"]))
    except ValueError:
        raise Problem("invalid-field", "public_key", "expected an EC public key of a curve OCMF names") from None
    return device


def fingerprint(point: bytes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo, hex: what a label or a receipt shows."""
    return hashlib.sha256(cose.spki_der(point)).hexdigest()
