"""The deterministic encoder: its fast path (cbor2's canonical form, for maps keyed by text)
gives the very bytes of the profile's own encoder, and anything else takes the latter."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.wire import strict_cbor

INT64 = st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
LEAVES = st.one_of(INT64, st.binary(max_size=40), st.text(max_size=30))
TEXT_KEYED = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=30), inner, max_size=6)),
    max_leaves=25,
)
ANY_KEYED = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.one_of(INT64, st.text(max_size=3)), inner, max_size=6)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(TEXT_KEYED)
def test_text_keyed_values_encode_as_the_profile_does(value: Any) -> None:
    assert strict_cbor._text_keyed(value)
    encoded = strict_cbor.dumps(value)
    assert encoded == strict_cbor._dumps(value)
    strict_cbor.check(encoded)  # deterministic: keys in bytewise order, shortest heads


@settings(max_examples=400, deadline=None)
@given(ANY_KEYED)
def test_any_value_encodes_as_the_profile_does(value: Any) -> None:
    encoded = strict_cbor.dumps(value)
    assert encoded == strict_cbor._dumps(value)
    strict_cbor.check(encoded)


def test_where_the_two_orders_differ_the_profiles_order_wins() -> None:
    # RFC 7049's canonical order puts the shorter key first; RFC 8949's puts 0x19 before 0x61.
    value = {1000: 1, "a": 2}
    assert strict_cbor.dumps(value) == bytes.fromhex("a21903e801616102")
    assert cbor2.dumps(value, canonical=True) != strict_cbor.dumps(value)


@pytest.mark.parametrize("value", [True, None, 1.5, {"a": [None]}, 1 << 64, {"a": -(1 << 64) - 1}])
def test_what_is_outside_the_profile_is_refused(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        strict_cbor.dumps(value)
