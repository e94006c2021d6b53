"""schemathesis against a live `wattproof serve`: every operation of /v1/openapi.json, with an
admin key and without one, bounded in examples. Zero 5xx, zero answers outside the
document, and every error answer is problem+json. The database holds devices, packets,
certificates with transfers and claims, a community and charging sessions, and the positive
cases draw path parameters (device, community, claim, certificate, session ids) from its real
rows as often as from the generator, so every read path meets real rows.

CBOR bodies: the document describes them as binary; a hook makes some of them CBOR maps
of the fields the operation expects (with values of any CBOR type) so that the checks past
the decoder are reached too, not only the decoder's refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.transport.serialization import serialize_binary

from tests import forge
from tests.conftest import serve
from tests.enroll import api_key, enroll_key
from verifier.wire.packet import GENESIS, decode_packet

pytestmark = pytest.mark.fuzz  # a slow tier: `make check` leaves it out, `make test` runs it

EXAMPLES = 30  # per operation and mode: about 40 s for the whole document, both modes
CBOR_FIELDS = {
    "/v1/enrollments": ["device", "challenge", "pop", "installer", "installer_sig"],
    "/v1/devices/{device_id}/rotate": ["new_public_key", "old_sig", "new_sig", "key_index"],
}
cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.binary(max_size=80) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@schemathesis.serializer("application/cbor")
def _cbor(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return value.data if isinstance(value, _Encoded) else serialize_binary(value)


class _Encoded:
    """A body the hook encoded already (a CBOR map, a real packet)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"cbor {self.data.hex()}"


def _structured(path: str) -> st.SearchStrategy[Any]:
    fields = CBOR_FIELDS.get(path)
    if fields is None:  # packets: real signed ones, replayed or out of order, or arrays of them
        return st.sampled_from(PACKETS or [b""]).map(lambda p: _Encoded(p))
    return st.fixed_dictionaries({}, optional={f: cbor_values for f in fields}).map(lambda d: _Encoded(cbor2.dumps(d)))


PACKETS: list[bytes] = []


def _server(db: Path) -> Iterator[str]:
    proc, url = serve(db, 0, {"WATTPROOF_RATE_CLIENT_WASTE_BURST": "1000000", "WATTPROOF_RATE_BURST": "1000000"})
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


REAL: dict[str, list[Any]] = {}  # path parameter -> values of real rows (filled by live)


def _real_rows(db: Path) -> None:
    """Communities, certificates with a transfer and a claim, charging sessions (the green
    share's setting), and the ids a read path names, from the database itself."""
    from tests.test_green import _setting
    from verifier import storage
    from verifier.charging import sessions

    conn = storage.connect(db)
    try:
        _setting(conn)
        REAL.update(
            device_id=["pv-1", "pv-2", "charger-g", "forge-1"],
            community_id=["rue"],
            account_id=["sun", "cpo"],
            claim_id=[int(r[0]) for r in conn.execute("SELECT claim_id FROM claims")],
            ledger_index=[int(r[0]) for r in conn.execute("SELECT ledger_idx FROM certificates LIMIT 5")],
            index=[0, 1, 5],
            seq=[0, 1],
            number=[0, 7, 30],
            session_id=[s.session_id for s in sessions.for_device(conn, "charger-g")],
        )
    finally:
        conn.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db = tmp_path_factory.mktemp("fuzz") / "v.sqlite"
    from verifier.app import create_app

    create_app({"DATABASE": str(db)})
    _real_rows(db)
    key = forge.new_key()
    enroll_key(db, "forge-1", key)
    prev = GENESIS
    for seq in range(3):
        data = forge.simple(key, seq=seq, prev=prev, first_number=3 * seq, t0=1795000000 + 300 * seq)
        PACKETS.append(data)
        prev = decode_packet(data).header_hash
    PACKETS.append(forge.simple(key, seq=0, t0=1795000001))  # an equivocation
    admin = api_key(db, "admin")
    for url in _server(db):
        yield url, admin


def _schema(url: str, seeded: bool = False) -> Any:
    # A well-formed request the verifier cannot answer as asked (a size beyond the ledger, an
    # expiry in the past) is a 409 or 422; a 400 for what the document allows is a failure.
    config = schemathesis.Config.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 404, 409, 422, 429]}}}
    )
    schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json", config=config)

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        operation = context.operation
        if operation is None or "application/cbor" not in str(operation.definition.raw.get("requestBody", "")):
            return st.just(body)
        return st.just(body) | _structured(operation.path)

    if seeded:

        @schema.hook
        def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy[Any]:
            """Half of the cases name real rows: the read paths past the lookups."""
            known = {k: st.sampled_from(REAL[k]) for k in path_parameters or {} if REAL.get(k)}
            if not known:
                return st.just(path_parameters)
            return st.just(path_parameters) | st.fixed_dictionaries(known).map(lambda d: {**path_parameters, **d})

    @schema.hook
    def filter_body(context: Any, body: Any) -> bool:
        return _real_times(body)

    @schema.hook
    def filter_query(context: Any, query: dict[str, Any] | None) -> bool:
        """Rules between parameters, stated in the document's words, not its schemas: from is
        not after to; a proof is asked by index or by device and seq. The verifier answers 400
        naming the parameter (tests/test_api_answers.py); the generator keeps to them here."""
        query = query or {}
        if not _real_times(query):
            return False
        first, last = _when(query.get("from")), _when(query.get("to"))
        if first is not None and last is not None and first > last:
            return False  # either may be Unix seconds or ISO 8601: compared as times
        if context.operation is not None and context.operation.path == "/v1/ledger/proof/inclusion":
            by_packet = "device" in query or "seq" in query
            return ("index" in query) != by_packet and (not by_packet or {"device", "seq"} <= set(query))
        return True

    return schema


TIME_FIELDS = ("from", "to", "until", "period_start", "period_end", "expires", "date_from", "date_to")


def _real_times(values: Any) -> bool:
    """The document's date-time strings name days that exist, within 1970..9999 (February 30th
    matches the pattern; RFC 3339 and the server refuse it): the generator keeps to them."""
    if not isinstance(values, dict):
        return True
    for name in TIME_FIELDS:
        value = values.get(name)
        if isinstance(value, str) and value[:1].isdigit() and "-" in value and _when(value) is None:
            return False
    return True


def _when(value: Any) -> int | None:
    """A from/to query value as the verifier reads it (None: not a time at all)."""
    from verifier.http import parse_time

    try:
        return parse_time(str(value)) if value is not None else None
    except ValueError:
        return None


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error answer is problem+json (schemathesis checks the rest against the document)."""
    if response.status_code >= 400:
        found = [v for k, v in response.headers.items() if k.lower() == "content-type"]
        kind = (found[0][0] if isinstance(found[0], list) else found[0]) if found else ""
        assert kind == "application/problem+json", f"{response.status_code} answered as {kind!r}"
    return None


def _check(url: str, headers: dict[str, str], operation: Any, mode: GenerationMode, examples: int) -> None:
    # A CBOR body is "binary" to the document: its profile is docs/protocol.md, which JSON
    # Schema cannot state, so any bytes are schema-valid and refusing them is right.
    # A CSV body likewise (docs/communities.md states its grammar), and OCMF records (docs/charging.md).
    bodies = operation.definition.raw.get("requestBody", {}).get("content", {})
    excluded = [positive_data_acceptance] if {"application/cbor", "text/csv", "text/plain"} & set(bodies) else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,  # the same cases on every run: a gate, not a lottery; widen EXAMPLES to explore
    )
    def check(case: Any) -> None:
        if not headers:
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        # A case whose headers are the invalid part (no Authorization, say) is sent as made:
        # adding the admin key to it would make a rejection look like an acceptance.
        meta = case.meta
        bad_headers = meta is not None and any(
            str(getattr(where, "value", where)) == "header" and info.mode.is_negative
            for where, info in meta.components.items()
        )
        case.call_and_validate(
            base_url=url,
            headers={} if bad_headers else headers,
            additional_checks=[problem_json],
            excluded_checks=excluded,
            timeout=30,
        )

    check()


def _run(url: str, headers: dict[str, str], examples: int) -> list[str]:
    """Every operation, positive then negative cases; the failures, one line each."""
    failures: list[str] = []
    operations = [result.ok() for result in _schema(url).get_all_operations()]
    seeded = [result.ok() for result in _schema(url, seeded=True).get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]  # the whole document, not a part
    assert [op.label for op in seeded] == [op.label for op in operations]
    for plain, real in zip(operations, seeded, strict=True):
        # positive cases may name real rows; negative ones are left as generated (a real id
        # put in place of a broken one would make a negative case valid)
        for operation, mode in ((real, GenerationMode.POSITIVE), (plain, GenerationMode.NEGATIVE)):
            try:
                _check(url, headers, operation, mode, examples)
            except Unsatisfiable:
                pass  # nothing to make negative (an operation without parameters, a binary body)
            except (Exception, BaseExceptionGroup) as e:  # reported all together below
                failures.append(f"{operation.label} ({mode.value}): {str(e)[:1500]}")
    return failures


def test_with_an_admin_key(live: tuple[str, str]) -> None:
    failures = _run(live[0], {"Authorization": f"Bearer {live[1]}"}, EXAMPLES)
    assert not failures, "\n\n".join(failures)


def test_without_a_key(live: tuple[str, str]) -> None:
    failures = _run(live[0], {}, EXAMPLES // 2)
    assert not failures, "\n\n".join(failures)
