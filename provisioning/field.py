"""Field commands on a provisioned board: status, logs, key rotation, decommissioning.

Connecting stops the board's gateway loop (mpremote's Ctrl-C); every command resets the
board when it is done, so that the loop runs again (decommission leaves it idle).
"""

from __future__ import annotations

import json
import time
from typing import Any

from hardware.flash import files
from provisioning.client import ProvisionError, VerifierClient
from provisioning.link import BoardError, BoardLink
from verifier.devices import identity
from verifier.wire import strict_cbor


def status(link: BoardLink) -> str:
    link.step = "status"
    if link.read_file(files.CONFIG) is None:
        raise ProvisionError(
            "this board holds no device: it was decommissioned, or never provisioned (wattproof provision)"
        )
    return link.run("import wattproof\nwattproof.status()").rstrip()


def logs(link: BoardLink) -> list[dict[str, Any]]:
    """The device events still on the board (not yet in an acknowledged packet), oldest first."""
    link.step = "logs"
    out = link.call("events")
    events: list[dict[str, Any]] = out["events"]
    return events


def _device_id(link: BoardLink) -> str:
    config = link.read_file(files.CONFIG)
    if config is None:
        raise ProvisionError("the board has no config.json: it was never provisioned (wattproof provision)")
    device_id: str = json.loads(config)["device_id"]
    return device_id


def _drain(link: BoardLink, force: bool, what: str) -> None:
    link.step = "sending what the board still holds"
    answer = link.call("flush", timeout=180)
    if answer["waiting"] and not force:
        raise ProvisionError(
            f"{answer['waiting']} packets still wait on the board for the verifier ({answer['result']}): "
            f"{what} would strand them; fix the board's network and try again (--force to accept the loss)"
        )


def rotate_key(link: BoardLink, verifier: VerifierClient, force: bool = False) -> dict[str, Any]:
    """A new key made on the board, signed by the old one, accepted by the verifier, then used.

    Packets the board holds are signed with the old key: they are sent first."""
    device_id = _device_id(link)
    known = verifier.device(device_id)
    if known is None:
        raise ProvisionError(f"device {device_id!r} is not enrolled with {verifier.url}")
    _drain(link, force, "a new key")
    link.step = "rotate-key: new key"
    new = link.call("rotation_begin")
    new_point = bytes.fromhex(new["public_key"])
    if known["fingerprint"] != identity.fingerprint(new_point):  # else: accepted before an interruption
        # Bound to the key it replaces and the ledger entry that set it: a recording cannot be replayed.
        key_index = int(known["key_ledger_index"])
        message = identity.rotation_message(device_id, new_point, bytes.fromhex(known["key_id"]), key_index).hex()
        link.step = "rotate-key: signatures"
        old_sig = bytes.fromhex(link.call("sign", message)["signature"])
        new_sig = bytes.fromhex(link.call("sign", message, new=True)["signature"])
        body = strict_cbor.dumps(
            {"new_public_key": new_point, "old_sig": old_sig, "new_sig": new_sig, "key_index": key_index}
        )
        verifier.rotate(device_id, body)
    link.step = "rotate-key: commit"
    link.call("rotation_commit")
    fingerprint = identity.fingerprint(new_point)
    stored = link.read_file(files.RECEIPT)
    if stored is not None:  # the enrollment receipt names the key the device now has
        receipt = json.loads(stored)
        receipt.update(fingerprint=fingerprint, rotated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        link.write_file(files.RECEIPT, json.dumps(receipt).encode())
    return {"device_id": device_id, "fingerprint": fingerprint, "kid": new["kid"]}


def decommission(link: BoardLink, verifier: VerifierClient, reason: str, force: bool = False) -> dict[str, Any]:
    """The verifier revokes the device; the board forgets its key, journal and config."""
    device_id = _device_id(link)
    known = verifier.device(device_id)
    revoked = "never enrolled" if known is None else "already revoked" if known["status"] != "active" else "now"
    if revoked == "now":
        _drain(link, force, "decommissioning")
        link.step = "decommission: revoke"
        verifier.revoke(device_id, reason)
    link.step = "decommission: wipe"
    wiped = link.call("wipe")
    link.remove(files.MAIN)  # the board waits at its REPL instead of starting a gateway without a key
    if wiped.get("key"):
        raise BoardError("the board still has a key file after the wipe")
    return {"device_id": device_id, "revoked": revoked, "wiped": True}
