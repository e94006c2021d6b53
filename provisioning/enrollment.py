"""Building enrollment requests: the installer vouches, the board proves it holds its key.

The board signs its proof of possession itself (`sign_on_virtual_board` runs the signing
on a virtual board's interpreter, in its flash); the installer's Ed25519 key signs the
record, the challenge and that proof (docs/devices.md).
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardware import micropython
from verifier import devices, strict_cbor

SIGN_POP = micropython.VIRTUAL / "sign_message.py"
PopSigner = Callable[[bytes], bytes]


class Installer:
    """An installer's Ed25519 key, registered with the verifier by an admin."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        self.name = name
        self.key = key

    @classmethod
    def generate(cls, name: str) -> Installer:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


def enrollment_request(device: dict[str, Any], challenge: bytes, sign_pop: PopSigner, installer: Installer) -> bytes:
    """The CBOR body of POST /v1/enrollments."""
    pop = sign_pop(devices.pop_message(device, challenge))
    return strict_cbor.dumps(
        {
            "device": device,
            "challenge": challenge,
            "pop": pop,
            "installer": installer.name,
            "installer_sig": installer.sign(devices.installer_message(device, challenge, pop)),
        }
    )


def sign_on_virtual_board(flash: Path) -> PopSigner:
    """Signs with the device key of the virtual board whose flash folder is flash, on that board."""

    def sign(message: bytes) -> bytes:
        with tempfile.NamedTemporaryFile(dir=flash, suffix=".msg") as f:
            f.write(message)
            f.flush()
            result = micropython.run(SIGN_POP, Path(f.name).name, paths=(micropython.compiled_firmware(),), cwd=flash)
        if result.returncode != 0:
            raise RuntimeError(f"the board could not sign: {result.stderr.strip()}")
        return bytes.fromhex(result.stdout.strip())

    return sign


def _request(url: str, method: str, token: str, body: bytes | None, content_type: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def enroll_over_http(
    url: str, token: str, device: dict[str, Any], sign_pop: PopSigner, installer: Installer
) -> dict[str, Any]:
    """Asks for a challenge, builds and posts the enrollment; returns the receipt."""
    status, answer = _request(url + "/v1/enrollments/challenge", "POST", token, b"", "application/json")
    if status != 200:
        raise RuntimeError(f"challenge refused: HTTP {status} {answer}")
    body = enrollment_request(device, bytes.fromhex(answer["challenge"]), sign_pop, installer)
    status, answer = _request(url + "/v1/enrollments", "POST", token, body, "application/cbor")
    if status not in (200, 201):
        raise RuntimeError(f"enrollment refused: HTTP {status} {answer.get('type')}: {answer.get('detail')}")
    receipt: dict[str, Any] = answer
    return receipt
