"""OCMF: the record the charger firmware signs under MicroPython is byte for byte the one the
verifier rebuilds from a session's readings; pyocmf (code nobody here wrote) verifies its
signature and its Eichrecht checks, and refuses it with any byte changed. Records of other
chargers (the KEBA KCP30 vectors) parse and verify, or are refused."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pyocmf
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hardware import micropython
from tests.conftest import TEST_KEY_HEX
from verifier.wire import cose, ocmf

SCRIPT = micropython.ROOT / "tests" / "firmware" / "sign_ocmf.py"


def _point() -> bytes:
    key = ec.derive_private_key(int(TEST_KEY_HEX, 16), ec.SECP256R1())
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


CASES: list[Case] = [
    ("charger-1", 17, bytes(range(32)), (1_764_000_000, 2, 0), (1_764_005_400, 2, 11_100)),
    ("c", 0, None, (0, 0, 999), (59, 1, 1_000)),
    ("site.7_b-2", 123456, b"\xff" * 32, (951_782_400, 2, 123_456_789), (951_868_799, 1, 123_456_790)),  # 2000-02-29
    ("leap", 9, None, (4_107_542_399, 2, 5), (4_107_542_400, 2, 5)),  # 2100-02-28 -> 03-01
]


Case = tuple[str, int, bytes | None, tuple[int, int, int], tuple[int, int, int]]
Signed = list[tuple[Case, str, bytes]]


def _random_cases(n: int) -> list[Case]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        start = rng.randrange(0, 2**33)
        wh = rng.randrange(0, 10**9)
        token = rng.randbytes(32) if i % 2 else None
        out.append(
            (
                f"dev-{i}",
                rng.randrange(2**40),
                token,
                (start, rng.randrange(3), wh),
                (start + rng.randrange(86400 * 3), rng.randrange(3), wh + rng.randrange(10**6)),
            )
        )
    return out


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    cases = CASES + _random_cases(40)
    path = tmp_path_factory.mktemp("ocmf") / "cases.txt"
    path.write_text(
        "".join(
            f"{d} {n} {t.hex() if t else '-'} {' '.join(map(str, b))} {' '.join(map(str, e))}\n"
            for d, n, t, b, e in cases
        )
    )
    result = micropython.run(SCRIPT, TEST_KEY_HEX, str(path), paths=(micropython.ROOT / "firmware",))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 * len(cases), result.stdout[-2000:]
    return [(case, lines[2 * i], bytes.fromhex(lines[2 * i + 1].split()[0])) for i, case in enumerate(cases)]


def test_the_board_and_the_verifier_build_the_same_bytes(signed: Signed) -> None:
    for (device, number, token, begin, end), board_text, _ in signed:
        assert board_text == ocmf.payload(device, number, token, begin, end)


def test_board_records_verify_with_pyocmf_and_pass_the_eichrecht_checks(
    signed: Signed,
) -> None:
    spki = cose.spki_der(_point()).hex()
    for (_, _, _, begin, end), text, der in signed:
        record = ocmf.record(text, der)
        parsed = pyocmf.OCMF.from_string(record)
        assert parsed.verify_signature(spki)
        assert ocmf.verify(text, der, _point())
        if begin[1] == end[1] == 2 and end[2] >= begin[2]:
            assert parsed.check_eichrecht(errors_only=True) == []
            assert [r.RV for r in parsed.payload.RD] == [Decimal(begin[2]) / 1000, Decimal(end[2]) / 1000]
    s = int.from_bytes(_der_s(signed[0][2]), "big")
    assert s <= 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551 // 2, "low S"


def _der_s(der: bytes) -> bytes:
    r_len = der[3]
    return der[4 + r_len + 2 :]


def test_any_changed_byte_is_refused(signed: Signed) -> None:
    (_, _, _, _, _), text, der = signed[0]
    record = ocmf.record(text, der)
    spki = cose.spki_der(_point()).hex()
    start = len("OCMF|")
    for i in range(start, start + len(text)):
        changed = text[: i - start] + chr(ord(text[i - start]) ^ 1) + text[i - start + 1 :]
        assert not ocmf.verify(changed, der, _point())
        try:
            parsed = pyocmf.OCMF.from_string(ocmf.record(changed, der))
        except pyocmf.PyOCMFError:
            continue  # not even OCMF any more
        assert not parsed.verify_signature(spki), f"byte {i} changed and still verifies"
    assert pyocmf.OCMF.from_string(record).verify_signature(spki)


def test_keba_kcp30_record_parses_and_verifies(interop: Path) -> None:
    text, key = (interop / "ocmf" / "keba_kcp30_valid.txt").read_text().splitlines()[:2]
    record = ocmf.parse(text)
    assert ocmf.verify(record.payload, record.signature, ocmf.point_of(key))
    assert [(r.reason, r.wh) for r in record.readings] == [("B", 259), ("E", 259)]
    bad_text, _ = (interop / "ocmf" / "keba_kcp30_tampered_invalid.txt").read_text().splitlines()[:2]
    bad = ocmf.parse(bad_text)
    assert not ocmf.verify(bad.payload, bad.signature, ocmf.point_of(key))


def test_the_xml_container_round_trips_through_pyocmf(tmp_path: Path, signed: Signed) -> None:
    records = [(ocmf.record(text, der), _point()) for _, text, der in signed[:3]]
    path = tmp_path / "session.xml"
    path.write_text(ocmf.safe_xml(records))
    container = pyocmf.OcmfContainer.from_xml(path)
    assert len(container) == 3 and all(entry.verify_signature() for entry in container)
    assert [text for text, _ in ocmf.from_xml(path.read_bytes())] == [r for r, _ in records]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "OCMF|{}",
        "OCMF|not json|{}",
        'OCMF|{"RD":[]}|{"SD":"00"}',
        'OCMF|{"RD":[{"TM":"x","RV":1}]}|{"SD":"3006020101020101"}',
        'OCMF|{"RD":[]}|{"SA":"ECDSA-brainpool256r1-SHA256","SD":"3006020101020101"}',
    ],
)
def test_malformed_records_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(ocmf.OcmfError):
        ocmf.parse(bad)


def test_the_boards_token_hash_is_rfc_2104_hmac(tmp_path: Path) -> None:
    import hashlib
    import hmac

    keys = [b"", b"k" * 32, bytes(range(64)), bytes(range(100))]  # short, typical, a block, longer than a block
    script = tmp_path / "hmac_check.py"
    script.write_text(
        "import binascii, reading\n"
        + "".join(
            f"print(binascii.hexlify(reading.keyed_token_hash({k!r}, b'04A2B3C4D5E6F7')).decode())\n" for k in keys
        )
    )
    result = micropython.run(script, paths=(micropython.ROOT / "firmware",))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [hmac.new(k, b"04A2B3C4D5E6F7", hashlib.sha256).hexdigest() for k in keys]
