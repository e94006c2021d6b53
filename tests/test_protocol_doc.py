"""docs/protocol.md is checked: its worked example verifies, and the firmware reproduces it."""

from __future__ import annotations

import re

from hardware import micropython
from verifier.wire import cose, merkle
from verifier.wire.packet import GENESIS, decode_packet, verify_packet
from verifier.wire.problems import TYPE_BASE, TYPES

DOC = (micropython.ROOT / "docs" / "protocol.md").read_text()
EXAMPLE_SCRIPT = micropython.ROOT / "tests" / "firmware" / "protocol_example.py"
# RFC 6979 A.2.5 public key X coordinate (as in the interop README).
RFC6979_UX = "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"


def _blocks() -> dict[str, bytes]:
    return {
        name: bytes.fromhex("".join(body.split()))
        for name, body in re.findall(r"```hex (\w+)\n(.*?)```", DOC, flags=re.S)
    }


def test_example_packet_verifies_as_documented() -> None:
    ex = _blocks()
    assert ex["public_key"][1:33].hex() == RFC6979_UX
    packet = decode_packet(ex["packet"])
    verify_packet(packet, ex["public_key"])
    h = packet.header
    assert (h.device_id, h.seq, h.prev, h.count) == ("example-meter-1", 0, GENESIS, 3)
    assert (h.first_ts, h.last_ts) == (1795000000, 1795000120)
    assert [r.raw for r in packet.readings] == [ex["reading0"], ex["reading1"], ex["reading2"]]
    assert packet.payload == ex["payload"] and packet.protected == ex["protected"]
    assert packet.signature == ex["signature"] and packet.kid == ex["kid"] == cose.key_id(ex["public_key"])
    assert cose.to_be_signed(ex["protected"], ex["payload"]) == ex["to_be_signed"]
    assert h.root == merkle.root([merkle.leaf_hash(ex[f"reading{i}"]) for i in range(3)])
    assert packet.header_hash == ex["next_prev"]
    assert f"The complete packet, {len(ex['packet'])} bytes" in DOC
    assert packet.readings[1].values == {"import_wh": 1204351, "export_wh": 880120, "power_w": 58}


def test_firmware_reproduces_the_example_byte_for_byte() -> None:
    result = micropython.run(EXAMPLE_SCRIPT)
    assert result.returncode == 0, result.stderr
    built = {name: bytes.fromhex(value) for name, value in (line.split() for line in result.stdout.splitlines())}
    assert built == _blocks()


def test_problem_table_matches_the_verifier() -> None:
    table = dict(re.findall(r"^\| `([a-z-]+)` \| (\d{3}) \|", DOC, flags=re.M))
    assert table == {slug: str(status) for slug, (status, _title) in TYPES.items()}
    assert TYPE_BASE in DOC


def test_operations_lists_every_setting() -> None:
    """docs/operations.md's settings table names every setting the verifier reads, and no other."""
    import re
    from pathlib import Path

    from verifier import settings

    text = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert listed == {name.lower() for name in settings.DEFAULTS}, sorted(
        listed ^ {n.lower() for n in settings.DEFAULTS}
    )
