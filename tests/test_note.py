"""Signed notes and checkpoints against the golang/mod, C2SP and transparency-dev vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.log import note


def _vars(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"


def test_golang_mod_signer_is_byte_exact(interop: Path) -> None:
    v = _vars(interop / "note" / "golang_mod_sumdb_note_peterneumann.txt")
    signer = note.Signer.parse(v["SKEY"])
    assert str(signer.verifier()) == v["VKEY"]
    assert str(signer) == v["SKEY"]
    assert note.sign(TEXT, signer) == (TEXT + "\n" + v["SIG_LINE"] + "\n").encode()


def test_golang_mod_note_with_two_signatures(interop: Path) -> None:
    v = _vars(interop / "note" / "golang_mod_sumdb_note_peterneumann.txt")
    data = (interop / "note" / "golang_mod_peterneumann_enoch.note").read_bytes()
    both = note.open_note(data, [note.Verifier.parse(v["VKEY"]), note.Verifier.parse(v["VKEY2"])])
    assert both.text == TEXT and both.verified_by == ("PeterNeumann", "EnochRoot")
    one = note.open_note(data, [note.Verifier.parse(v["VKEY2"])])
    assert one.verified_by == ("EnochRoot",) and one.unknown == 1


def test_c2sp_example(interop: Path) -> None:
    v = _vars(interop / "note" / "c2sp_signed_note_example.txt")
    data = (interop / "note" / "c2sp_signed_note_example.note").read_bytes()
    opened = note.open_note(data, [note.Verifier.parse(v["VKEY"])])
    assert opened.text == "This is an example message.\n" and opened.verified_by == ("example.com/foo",)


def test_transparency_dev_key_pairs(interop: Path) -> None:
    lines = [x for x in (interop / "note" / "formats_test_keys.txt").read_text().splitlines() if x and x[0] != "#"]
    pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]
    assert len(pairs) == 4
    for vkey, skey in pairs:
        signer = note.Signer.parse(skey)
        assert str(signer.verifier()) == vkey
        checkpoint = note.Checkpoint("example.com/log", 7, bytes(range(32)))
        signed = note.sign(checkpoint.text(), signer)
        opened = note.open_note(signed, [note.Verifier.parse(vkey)])
        assert note.Checkpoint.parse(opened.text) == checkpoint


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.replace(b"example message", b"example massage"),
        lambda b: b.replace(b"\n\n", b"\n"),
        lambda b: b[:-5] + b"AAAA\n",
        lambda b: b.replace("\u2014".encode(), b"-"),
    ],
)
def test_tampered_notes_are_refused(interop: Path, tamper: object) -> None:
    v = _vars(interop / "note" / "c2sp_signed_note_example.txt")
    data = (interop / "note" / "c2sp_signed_note_example.note").read_bytes()
    with pytest.raises(note.NoteError):
        note.open_note(tamper(data), [note.Verifier.parse(v["VKEY"])])  # type: ignore[operator]


def test_unknown_key_only_is_refused(interop: Path) -> None:
    data = (interop / "note" / "c2sp_signed_note_example.note").read_bytes()
    with pytest.raises(note.NoteError, match="no signature by a known key"):
        note.open_note(data, [note.Signer.generate("example.com/foo").verifier()])


def test_checkpoint_format_round_trip_and_refusals() -> None:
    cp = note.Checkpoint("wattproof.org/ledger/test", 12, b"\x01" * 32, ("extension line",))
    assert cp.text() == f"wattproof.org/ledger/test\n12\n{'AQEB' * 10}AQE=\nextension line\n"
    assert note.Checkpoint.parse(cp.text()) == cp
    for bad in ["origin\n012\nAAAA\n", "origin\n1\n", "origin\n1\nAAAA\n", "\n1\n" + "A" * 43 + "=\n"]:
        with pytest.raises(note.NoteError):
            note.Checkpoint.parse(bad)
    with pytest.raises(note.NoteError):
        note.Verifier.parse("name+00000000+AQID")
    with pytest.raises(note.NoteError):
        note.sign("no final newline", note.Signer.generate("x"))
