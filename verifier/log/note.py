"""C2SP signed-note with Ed25519 keys, and the tlog-checkpoint format inside it.

Pure functions over text and bytes, no storage. A note is its text (ending in a newline),
a blank line, then signature lines "— <key name> <base64(key id || signature)>". Keys:
verifier keys are "<name>+<hex key id>+<base64(0x01 || public key)>", signer keys are
"PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>". The key id is the first four
bytes of SHA-256(name || 0x0A || 0x01 || public key).

Witness cosignatures (C2SP tlog-cosignature, Ed25519 `cosignature/v1`) are signature lines
of their own type: keys with type byte 0x04 (key id SHA-256(name || 0x0A || 0x04 || key)),
the signature a big-endian uint64 timestamp and an Ed25519 signature over
"cosignature/v1\ntime <timestamp>\n" followed by the note's text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04  # tlog-cosignature: a timestamped Ed25519 signature
_ALGS = (ALG_ED25519, ALG_COSIGNATURE_V1)
SIG_PREFIX = "\u2014 "  # em dash and a space
_NAME = re.compile(r"[^\s+\u2014]+")  # no spaces, no plus signs, not empty


class NoteError(ValueError):
    """A malformed key or note, or a signature that does not verify."""


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: its header line, its time line, the note's text."""
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise NoteError(f"bad key name {name!r}")
    return name


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public_key: bytes  # 32-byte Ed25519 public key
    alg: int = ALG_ED25519  # ALG_COSIGNATURE_V1: a witness's cosigning key

    @property
    def cosigner(self) -> bool:
        return self.alg == ALG_COSIGNATURE_V1

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        parts = vkey.split("+", 2)  # the base64 part may itself contain '+'
        if len(parts) != 3:
            raise NoteError("verifier key must be name+keyid+key")
        name, hex_id, b64 = parts
        try:
            kid, raw = bytes.fromhex(hex_id), base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise NoteError("verifier key id or key is not hex and base64") from None
        if len(kid) != 4 or len(raw) != 33 or raw[0] not in _ALGS:
            raise NoteError("verifier key is not an Ed25519 note key or cosignature/v1 key")
        if key_id(_check_name(name), raw[1:], raw[0]) != kid:
            raise NoteError("verifier key id does not match its key")
        return cls(name, kid, raw[1:], raw[0])

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([self.alg]) + self.public_key).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """An Ed25519 signature over message (a cosigner: see verify_cosignature)."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
            return True
        except InvalidSignature:
            return False

    def verify_cosignature(self, text: str, signature: bytes) -> int | None:
        """The timestamp of a valid cosignature/v1 of text, or None."""
        if len(signature) != 8 + 64:
            return None
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp >= 2**63 or not self.verify(cosigned_message(text, timestamp), signature[8:]):
            return None
        return timestamp


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes  # 32-byte Ed25519 private key
    alg: int = ALG_ED25519  # ALG_COSIGNATURE_V1: a witness's cosigning key

    @classmethod
    def parse(cls, skey: str) -> Signer:
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("signer key must be PRIVATE+KEY+name+keyid+key")
        _, _, name, hex_id, b64 = parts
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character
            raise NoteError("signer key is not base64") from None
        if len(raw) != 33 or raw[0] not in _ALGS:
            raise NoteError("signer key is not an Ed25519 note key or cosignature/v1 key")
        signer = cls(_check_name(name), raw[1:], raw[0])
        if signer.verifier().key_id.hex() != hex_id:
            raise NoteError("signer key id does not match its key")
        return signer

    @classmethod
    def generate(cls, name: str, alg: int = ALG_ED25519) -> Signer:
        seed = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return cls(_check_name(name), seed, alg)

    def verifier(self) -> Verifier:
        public = (
            Ed25519PrivateKey.from_private_bytes(self.seed)
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return Verifier(self.name, key_id(self.name, public, self.alg), public, self.alg)

    def __str__(self) -> str:
        kid = self.verifier().key_id.hex()
        return f"PRIVATE+KEY+{self.name}+{kid}+{base64.b64encode(bytes([self.alg]) + self.seed).decode()}"

    def signature_line(self, text: str, timestamp: int | None = None) -> str:
        """The note signature line of text; a cosigner's is a cosignature/v1 at timestamp."""
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        if self.alg == ALG_COSIGNATURE_V1:
            if timestamp is None or not 0 <= timestamp < 2**63:
                raise NoteError("a cosignature needs its time, 0 to 2^63 - 1 seconds")
            sig = timestamp.to_bytes(8, "big") + key.sign(cosigned_message(text, timestamp))
        else:
            sig = key.sign(text.encode())
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.verifier().key_id + sig).decode()}\n"


def sign(text: str, *signers: Signer) -> bytes:
    """The signed note: text (which must end in a newline), a blank line, one line per signer."""
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must end in a newline and have no blank line")
    return (text + "\n" + "".join(s.signature_line(text) for s in signers)).encode()


@dataclass(frozen=True)
class SignedNote:
    text: str
    verified_by: tuple[str, ...]  # names of the known keys whose signatures verified
    unknown: int  # signature lines from keys not among the verifiers
    cosigned: tuple[tuple[str, int], ...] = ()  # (witness name, time) of each valid cosignature


def open_note(note: bytes, verifiers: list[Verifier]) -> SignedNote:
    """Checks note against known verifiers. Raises NoteError unless at least one verifies."""
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note is not UTF-8") from None
    split = decoded.rfind("\n\n")
    if split < 0 or not decoded.endswith("\n"):
        raise NoteError("note has no signature block")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    by_id = {(v.name, v.key_id): v for v in verifiers}
    verified, unknown, cosigned = [], 0, []
    for line in block.splitlines():
        if not line.startswith(SIG_PREFIX):
            raise NoteError("malformed signature line")
        name, _, b64 = line[len(SIG_PREFIX) :].rpartition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character
            raise NoteError("signature is not base64") from None
        if len(raw) < 5:
            raise NoteError("signature too short")
        verifier = by_id.get((name, raw[:4]))
        if verifier is None:
            unknown += 1
            continue
        if verifier.cosigner:
            when = verifier.verify_cosignature(text, raw[4:])
            if when is None:
                raise NoteError(f"cosignature by witness {name} does not verify")
            cosigned.append((name, when))
        elif not verifier.verify(text.encode(), raw[4:]):
            raise NoteError(f"signature by {name} does not verify")
        verified.append(name)
    if not verified:
        raise NoteError("no signature by a known key")
    return SignedNote(text, tuple(verified), unknown, tuple(cosigned))


# -- tlog-checkpoint ---------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("checkpoint needs origin, size and root hash lines")
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin or not re.fullmatch(r"0|[1-9][0-9]*", size):
            raise NoteError("checkpoint origin or size malformed")
        try:
            root_hash = base64.b64decode(root, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character
            raise NoteError("checkpoint root is not base64") from None
        if len(root_hash) != 32:
            raise NoteError("checkpoint root is not 32 bytes")
        return cls(origin, int(size), root_hash, tuple(lines[3:-1]))
