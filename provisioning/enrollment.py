"""Building enrollment requests: the installer vouches, the board proves it holds its key.

The board signs its proof of possession itself (over its serial line in provisioning;
`sign_on_virtual_board` runs the signing in a virtual board's flash for tests); the
installer's Ed25519 key signs the record, the challenge and that proof (docs/devices.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardware import micropython
from verifier.devices import identity
from verifier.wire import strict_cbor

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
    pop = sign_pop(identity.pop_message(device, challenge))
    return strict_cbor.dumps(
        {
            "device": device,
            "challenge": challenge,
            "pop": pop,
            "installer": installer.name,
            "installer_sig": installer.sign(identity.installer_message(device, challenge, pop)),
        }
    )


def sign_on_virtual_board(flash: Path) -> PopSigner:
    """Signs with the device key of the virtual board whose flash folder is flash, on that board."""

    def sign(message: bytes) -> bytes:
        # The message file sits beside the flash, not in it: the board may be running, and a
        # file that comes and goes in its flash would be counted by its free-space check.
        with tempfile.NamedTemporaryFile(dir=flash.parent, suffix=".msg") as f:
            f.write(message)
            f.flush()
            result = micropython.run(SIGN_POP, f.name, paths=(micropython.compiled_firmware(),), cwd=flash)
        if result.returncode != 0:
            raise RuntimeError(f"the board could not sign: {result.stderr.strip()}")
        return bytes.fromhex(result.stdout.strip())

    return sign
