"""What each API view declares about itself, once, beside its code: a summary, its answers
by status (types of verifier/http/types.py, or other media), its body, its query parameters
and headers, and whether it is public. The OpenAPI document is generated from these and the
URL map (verifier/http/openapi.py); `only_args()` takes the declared query names; a route
without a declaration fails the document's generation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

View = TypeVar("View", bound=Callable[..., Any])

HEX_SCHEMA = {"type": "string", "pattern": "^[0-9a-f]*$"}


@dataclass(frozen=True)
class Media:
    """An answer or body that is not one JSON type: media type -> a type or a JSON Schema."""

    content: Mapping[str, Any]
    description: str = "OK"


@dataclass(frozen=True)
class Param:
    """A query parameter or a header: its name, a type or JSON Schema, whether it is required."""

    name: str
    schema: Any
    required: bool = False
    description: str = ""
    where: str = "query"


@dataclass(frozen=True)
class Operation:
    summary: str
    answers: Mapping[int, Any]  # status -> a type, (type, description), or Media
    body: Any = None  # a type (a JSON body), Media, or None
    query: Sequence[Param] = ()
    headers: Sequence[Param] = ()
    public: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def query_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.query)


def operation(
    summary: str,
    answers: Mapping[int, Any],
    body: Any = None,
    query: Sequence[Param] = (),
    headers: Sequence[Param] = (),
    public: bool = False,
) -> Callable[[View], View]:
    """Declares the view under it (put it right below the route decorator)."""

    def mark(view: View) -> View:
        view.__api__ = Operation(summary, answers, body, tuple(query), tuple(headers), public)  # type: ignore[attr-defined]
        return view

    return mark


def declared(view: Callable[..., Any]) -> Operation | None:
    found = getattr(view, "__api__", None)
    return found if isinstance(found, Operation) else None


# --- parameters several views share ----------------------------------------------------------

MAX_INDEX = 2**63 - 1
NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}


def integer(low: int = 0, high: int = MAX_INDEX, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


def cursor(schema: dict[str, Any] | None = None) -> Param:
    return Param("cursor", schema or integer(), description="next_cursor of a page")


def limit(high: int, default: int) -> Param:
    return Param("limit", integer(1, high, default))


def times(required: bool = False) -> tuple[Param, Param]:
    """from and to: a period, the first not after the second (else 400 naming from)."""
    from verifier.http.types import TIME_SCHEMA

    return Param("from", TIME_SCHEMA, required), Param("to", TIME_SCHEMA, required)


def enum(values: Any, default: Any = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if default is not None:
        schema["default"] = default
    return schema


IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    description="a key the client makes for this request: the same request again within 24 hours gets the same"
    " answer (header Idempotency-Replayed: true) instead of a second action; another request under the same key is"
    " refused (422)",
    where="header",
)
CBOR = Media({"application/cbor": {"type": "string", "format": "binary"}})
TEXT = Media({"text/plain": {"type": "string"}})
CHECKPOINT_PATTERN = "^[^\\n]+\\n(0|[1-9][0-9]*)\\n[A-Za-z0-9+/]{43}=\\n\\n\\u2014 "  # origin, size, root, a signature
CHECKPOINT_TEXT = Media({"text/plain": {"type": "string", "pattern": CHECKPOINT_PATTERN}})
