"""The verifier as provisioning and the field commands see it: one HTTP client.

Every call answers the decoded body or raises ProvisionError with a sentence a
technician can act on (the verifier's problem type mapped to what to do).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ProvisionError(Exception):
    """A refusal with its reason, for the technician."""


class VerifierClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json", raw: bool = False
    ) -> tuple[int, Any]:
        """(status, body): JSON bodies decoded (raw: a success's body as bytes, as a file is
        kept), others as bytes. Unreachable: ProvisionError."""
        headers = {"Content-Type": ctype}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read()
                as_json = not raw and resp.headers.get_content_subtype().endswith("json")
                return resp.status, (json.loads(data) if as_json else data)
        except urllib.error.HTTPError as e:
            data = e.read()
            try:
                return e.code, json.loads(data)
            except ValueError:
                return e.code, {"detail": data[:200].decode(errors="replace")}
        except (urllib.error.URLError, OSError) as e:
            raise ProvisionError(f"the verifier at {self.url} is unreachable: {getattr(e, 'reason', e)}") from None

    def ping(self) -> str:
        """The log's public key (note verifier key): proves a wattproof verifier answers."""
        status, key = self.request("GET", "/v1/ledger/key")
        if status != 200:
            raise ProvisionError(f"{self.url} does not answer as a wattproof verifier (HTTP {status})")
        return bytes(key).decode().strip()

    def device(self, device_id: str) -> dict[str, Any] | None:
        """The verifier's record of a device, or None when it does not know the id."""
        status, answer = self.request("GET", f"/v1/devices/{_segment(device_id)}")
        if status == 404:
            return None
        if status != 200:
            raise refusal("reading the device", status, answer)
        result: dict[str, Any] = answer
        return result

    def challenge(self) -> dict[str, Any]:
        status, answer = self.request("POST", "/v1/enrollments/challenge", b"")
        if status != 200:
            raise refusal("asking for a challenge", status, answer)
        result: dict[str, Any] = answer
        return result

    def enroll(self, body: bytes) -> dict[str, Any]:
        """Posts a CBOR enrollment request; answers the receipt."""
        status, receipt = self.request("POST", "/v1/enrollments", body, "application/cbor")
        if status not in (200, 201):
            raise refusal("enrolling", status, receipt)
        result: dict[str, Any] = receipt
        return result

    def rotate(self, device_id: str, body: bytes) -> dict[str, Any]:
        status, answer = self.request("POST", f"/v1/devices/{_segment(device_id)}/rotate", body, "application/cbor")
        if status != 200:
            raise refusal("rotating the key", status, answer)
        result: dict[str, Any] = answer
        return result

    def revoke(self, device_id: str, reason: str) -> dict[str, Any]:
        body = json.dumps({"reason": reason}).encode()
        status, answer = self.request("POST", f"/v1/devices/{_segment(device_id)}/revoke", body)
        if status != 200:
            raise refusal("revoking", status, answer)
        result: dict[str, Any] = answer
        return result


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def refusal(what: str, status: int, answer: Any) -> ProvisionError:
    """The verifier's refusal as a sentence: what failed, the problem type, what to do."""
    kind = str(answer.get("type", "")).rsplit("/", 1)[-1] if isinstance(answer, dict) else ""
    detail = answer.get("detail", "") if isinstance(answer, dict) else ""
    field = answer.get("field", "") if isinstance(answer, dict) else ""
    hints = {
        "unauthorized": "the API key is missing, unknown, expired or revoked",
        "forbidden": f"{detail or 'this API key may not enroll boards'}",
        "unknown-installer": "the installer key is not registered with the verifier, or was revoked: "
        "ask an admin to register it (wattproof installer keygen prints what they need)",
        "already-enrolled": "this device id is enrolled with another key (or this key under another id): "
        "pick another id, or decommission the old device first",
    }
    if kind == "already-enrolled" and "revoked" in detail:
        hints[kind] = detail  # a revoked id is never reused: the verifier says what to do
    if kind == "bad-signature" and field == "installer_sig":
        hints["bad-signature"] = (
            "the installer key file does not match the key registered for this installer name:"
            " check --installer and --installer-key"
        )
    hint = hints.get(kind, "")
    return ProvisionError(f"{what}: the verifier refused (HTTP {status} {kind}): {hint or detail}")
