"""The one place that gives every GraphQL error its ``extensions.code``.

- ``CdmsError`` (raised by db/, filters, resolvers) → its ``code`` and ``fields``;
  a database error a resolver let through is mapped the same way (``from_db_error``).
  Its fields and message are told in the API's terms (``api_error``): the procedures and
  triggers write the database's (``product_id``, ``delivered``, ``order_item``, a table's
  name, ids and amounts as JSON numbers).
- Query limits (depth, aliases, tokens) → ``QUERY_TOO_COMPLEX``.
- Other parse/validation errors (unknown field, wrong type) → ``BAD_USER_INPUT``.
- Anything else → ``INTERNAL`` with a masked message; the real error and its stack trace
  are logged server-side with the request id, which the client also receives.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from db.errors import ECHO_MAX, CdmsError, QueryTooComplexError, camel, from_db_error, snake
from schema.catalog import ENTITIES, Kind

log = logging.getLogger("cdms.api")

INTERNAL_MESSAGE = "Internal server error; quote the requestId when reporting it."

_COMPLEXITY_MARKERS = (
    "exceeds maximum operation depth",
    "aliases found. Allowed:",
    "tokens. Parsing aborted",
)


# what graphql-core quotes: names in single quotes, literals as GraphQL writes them
_QUOTED = re.compile(r"'[^'\n]*'|\"(?:[^\"\\\n]|\\.)*\"")
MESSAGE_MAX = 1_000


def bounded(message: str, *, quoted: bool = True) -> str:
    """``message`` quoting at most ``ECHO_MAX`` characters of each name or value (graphql-core
    quotes them whole: a 200,000-character field name or literal came back in full), and at
    most ``MESSAGE_MAX`` characters in all. ``quoted=False``: the total only (our own
    messages quote through db.errors.shown already)."""
    if len(message) <= 2 * ECHO_MAX:
        return message
    if quoted:
        message = _QUOTED.sub(_clip, message)
    if len(message) > MESSAGE_MAX:
        message = f"{message[:MESSAGE_MAX]}… ({len(message):,} characters)"
    return message


def _clip(match: re.Match[str]) -> str:
    quote, inner = match[0][0], match[0][1:-1]
    if len(inner) <= ECHO_MAX:
        return match[0]
    return f"{quote}{inner[:ECHO_MAX]}…{quote} ({len(inner):,} characters)"


# --- a domain error in the API's terms (docs/api.md, "Formats") ------------------------

# keys whose value is a status (an enum of the API: the database's value upper-cased)
_ENUM_KEYS = ("from", "to", "status")
# the same for the extensions only: the message says it in words ("the load is running")
_STATE_KEYS = ("state",)
# the fields that hold money, as the API names them (Decimal: strings)
_MONEY_FIELDS = frozenset(
    c.name
    for e in ENTITIES.values()
    for c in e.cols.values()
    if c.kind in (Kind.MONEY, Kind.DECIMAL)
) | {"cost"}  # (a product's cost is written, never read through the API)
# in an error about a money field: amounts the database computed (two decimals) and the
# value the client gave (as given)
_AMOUNT_KEYS = frozenset({"min", "max", "gross"})


# The API's type of an entity the database names: by its table (a write guard's ``table``:
# ``order_items``), by the procedures' word for it (``entity``: ``order_item``, the type's
# name in snake_case) or by another word the database or ml uses (``ticket``).
_TYPES: dict[str, str] = {
    **{e.table.split(".", 1)[1]: e.name for e in ENTITIES.values()},
    **{snake(e.name): e.name for e in ENTITIES.values()},
    "ticket": "SupportTicket",
    "support ticket": "SupportTicket",
    "model_version": "Model",
}


def _word(text: str, old: str, new: str) -> str:
    """``text`` with the first whole-word ``old`` spelled ``new``."""
    if not old or old == new:
        return text
    return re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", lambda _: new, text, count=1)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _json_safe(value: Any) -> Any:
    """An exact number (a Decimal) or a float JSON has no number for (``inf``, ``nan``) as
    text: a response must never fail to render (Starlette refuses non-finite floats)."""
    if isinstance(value, Decimal) or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    return value


def api_error(exc: CdmsError) -> tuple[str, dict[str, Any]]:
    """The message and extensions of ``exc``: :func:`api_terms`."""
    return api_terms(exc.code, exc.message, exc.fields)


def api_terms(code: str, message: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An error's message and extensions (``code`` first) in the API's terms, whoever
    raised it (a procedure's or a trigger's JSON detail, or Python):

    - keys in camelCase (``product_id`` → ``productId``), and so is the ``field`` named,
      in the extensions and the message;
    - the ``entity`` as its GraphQL type (``order_item`` → ``OrderItem``); a write guard's
      ``table`` becomes the ``entity`` too, and its ``app.<table>`` in the message the
      type: no table name reaches a client;
    - ids (``id``, a database's ``<x>_id`` and an ``<x>Id`` such as ``runId``) as
      strings, as the API's ``ID``;
    - statuses (``from``, ``to``, ``status``) as the API's enum values (``DELIVERED``),
      in the extensions and the message, and a run's ``state`` (``RUNNING``, as
      ``WarehouseStatus.state``) in the extensions;
    - in an error about a money field (``refundAmount``, ``discount``, ...) the amounts
      (``min``, ``max``, ``gross``) as strings with two decimals, and the ``value`` given
      as a string, as given;
    - any other exact number (a Decimal), and a float JSON cannot hold, as a string;
    - the message bounded as :func:`bounded` bounds it (a value quoted in it is cut).
    """
    out: dict[str, Any] = {"code": code}
    for key, value in fields.items():
        if key == "field" and isinstance(value, str):
            message = _word(message, value, camel(value))
            value = camel(value)
        elif key == "table":
            name = _TYPES.get(str(value))
            message = _word(message, f"app.{value}", name or "the object")
            if name is not None and "entity" not in fields:
                out["entity"] = name
            continue
        elif key == "entity" and isinstance(value, str):
            value = _TYPES.get(value, value)
        elif (key == "id" or key.endswith(("_id", "Id"))) and _is_number(value):
            value = str(value)
        elif key in _ENUM_KEYS and isinstance(value, str):
            message = _word(message, value, value.upper())
            value = value.upper()
        elif key in _STATE_KEYS and isinstance(value, str):
            value = value.upper()
        out[camel(key)] = value
    if out.get("field") in _MONEY_FIELDS:
        for key in _AMOUNT_KEYS & out.keys():
            if _is_number(out[key]):
                out[key] = f"{Decimal(str(out[key])):.2f}"
        if _is_number(out.get("value")):
            out["value"] = str(out["value"])
    extensions = {k: _json_safe(v) for k, v in out.items()}
    return bounded(message, quoted=False), extensions


def original_error(error: GraphQLError) -> BaseException | None:
    """What was raised behind ``error``: a CdmsError raised inside a scalar's parse_value
    arrives wrapped in graphql-core's errors once more."""
    orig = error.original_error
    while isinstance(orig, GraphQLError):
        orig = orig.original_error
    return orig


def classify(error: GraphQLError, request_id: str) -> GraphQLError:
    """``error`` with ``extensions.code`` set (and masked if unexpected); idempotent."""
    if error.extensions and "code" in error.extensions:
        return error
    orig = original_error(error)
    if orig is not None and not isinstance(orig, CdmsError):
        # a database error that escaped a resolver unmapped (e.g. the server went away
        # mid-request: SERVICE_UNAVAILABLE, not INTERNAL)
        orig = from_db_error(orig) or orig
    if isinstance(orig, CdmsError):
        message, ext = api_error(orig)
        return retold(error, message, ext)
    if orig is None:
        if any(m in error.message for m in _COMPLEXITY_MARKERS):
            return retold(error, error.message, {"code": QueryTooComplexError.code})
        return retold(error, bounded(error.message), {"code": "BAD_USER_INPUT"})
    log.error(
        "request %s: unexpected error at %s: %s",
        request_id,
        ".".join(map(str, error.path or [])) or "-",
        orig,
        exc_info=orig,
    )
    # masked: none of the unexpected error's own extensions either
    return retold(
        error, INTERNAL_MESSAGE, {"code": "INTERNAL", "requestId": request_id}, keep=False
    )


def retold(
    error: GraphQLError, message: str, ext: dict[str, Any], *, keep: bool = True
) -> GraphQLError:
    """``error`` told with ``message``, its extensions (``keep``) updated with ``ext``."""
    merged = {**(error.extensions or {}), **ext} if keep else ext
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=merged,
    )


class ErrorCodes(SchemaExtension):
    """Sets ``extensions.code`` on every error of the operation (and masks the unexpected),
    for queries and mutations (``on_operation``) and each subscription event."""

    def _classify(self, result: Any) -> None:
        errors = getattr(result, "errors", None)
        if not errors:
            return
        request_id = getattr(self.execution_context.context, "request_id", "-")
        result.errors = [classify(e, request_id) for e in errors]

    def on_operation(self) -> Iterator[None]:
        yield
        self._classify(self.execution_context.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        self._classify(result)
        yield None
