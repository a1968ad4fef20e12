"""Domain exceptions raised low and mapped to a stable code in one place.

Every exception carries a ``code`` (the GraphQL ``extensions.code`` and the CLI's
``error[CODE]``) and ``fields`` (structured details a client can act on).

Errors raised by our own triggers and procedures use SQLSTATEs of class ``CD``
(see ``SQLSTATE_CODES``); their ``DETAIL`` is a JSON object that becomes ``fields``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, ClassVar

# Our own SQLSTATEs, raised by db/sql/*.sql with
#   RAISE EXCEPTION USING ERRCODE = 'CD001', MESSAGE = '...', DETAIL = json_build_object(...)::text;
SQLSTATE_CODES: dict[str, str] = {
    "CD001": "OUT_OF_STOCK",
    "CD002": "INVALID_TRANSITION",
    "CD003": "NOT_FOUND",
    "CD004": "BAD_USER_INPUT",
    "CD005": "CONFLICT",
    "CD006": "FORBIDDEN",
    "CD007": "RATE_LIMITED",
}

# Standard SQLSTATEs worth a specific code.
_STANDARD_CODES: dict[str, str] = {
    "23505": "CONFLICT",  # unique_violation
    "23503": "BAD_USER_INPUT",  # foreign_key_violation
    "23514": "BAD_USER_INPUT",  # check_violation
    "23502": "BAD_USER_INPUT",  # not_null_violation
    "22P02": "BAD_USER_INPUT",  # invalid_text_representation
    "22003": "BAD_USER_INPUT",  # numeric_value_out_of_range
    "22007": "BAD_USER_INPUT",  # invalid_datetime_format
    "22008": "BAD_USER_INPUT",  # datetime_field_overflow
    "54000": "BAD_USER_INPUT",  # program_limit_exceeded (a value too long for an index)
    "40001": "CONFLICT",  # serialization_failure
    "40P01": "CONFLICT",  # deadlock_detected
    "55P03": "CONFLICT",  # lock_not_available
    "57014": "TIMEOUT",  # query_canceled (statement_timeout)
    "42501": "FORBIDDEN",  # insufficient_privilege (row-level security)
}


# An error echoes at most this many characters of a value a client sent (a value may be as
# long as the request body allows: a megabyte echoed twice is no answer).
ECHO_MAX = 64


def shown(value: Any) -> str:
    """``value`` as an error message quotes it: its ``repr``, or its first ``ECHO_MAX``
    characters with an ellipsis and its length when longer."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= ECHO_MAX:
        return repr(value)
    return f"{text[:ECHO_MAX] + '…'!r} ({len(text):,} characters)"


def printable(text: str) -> str:
    """``text`` with each character ``str.isprintable`` refuses (C0 and C1 controls such as
    ESC, bidirectional overrides such as U+202E, line breaks) written as its Python escape
    (``\\x1b``, ``\\u202e``): a name as a terminal, a chart or a page may show it, where an
    escape sequence would otherwise run on the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clipped(value: Any) -> Any:
    """``value`` as an error's ``extensions.value`` carries it: as text (a number as sent:
    ``10.555``, ``inf`` and ``nan`` too, which JSON cannot carry as numbers), past
    ``ECHO_MAX`` characters its first ones with an ellipsis (:func:`shown` tells the length);
    a boolean or null as such."""
    if isinstance(value, bool) or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    if len(text) <= ECHO_MAX:
        return text
    return text[:ECHO_MAX] + "…"


class CdmsError(Exception):
    """Base of every expected failure. ``code`` is stable and public."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields

    def __str__(self) -> str:
        return self.message


class BadUserInputError(CdmsError):
    code = "BAD_USER_INPUT"


class QueryTooComplexError(CdmsError):
    """A request past a size limit (``limit``: the limit), refused before it is built."""

    code = "QUERY_TOO_COMPLEX"


class NotFoundError(CdmsError):
    code = "NOT_FOUND"


class OutOfStockError(CdmsError):
    code = "OUT_OF_STOCK"


class InvalidTransitionError(CdmsError):
    code = "INVALID_TRANSITION"


class ConflictError(CdmsError):
    code = "CONFLICT"


class ForbiddenError(CdmsError):
    code = "FORBIDDEN"


class LimitReachedError(CdmsError):
    """A quota the shop's rules set (e.g. a customer's feedback a day) is used up;
    ``retryAfter``: seconds until the next write is taken."""

    code = "RATE_LIMITED"


class TimeoutError_(CdmsError):
    code = "TIMEOUT"


class DatabaseUnavailableError(CdmsError):
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str = "the database is unavailable; try again shortly") -> None:
        super().__init__(message)


def busy_error() -> DatabaseUnavailableError:
    """The pool had no free connection in time (more concurrent requests than connections):
    what SQLAlchemy's ``TimeoutError`` (not a DBAPIError) is to a client."""
    return DatabaseUnavailableError("the server is busy (no database connection free); try again")


class WarehouseLoadingError(CdmsError):
    """The warehouse has never been loaded yet (a first start loads it in the background):
    cube and other warehouse-backed fields answer this until the first run succeeds."""

    code = "WAREHOUSE_LOADING"


class DataDirError(CdmsError):
    code = "DATA_DIR"


class ConfigError(CdmsError):
    code = "CONFIG"


class AlreadyRunningError(CdmsError):
    code = "ALREADY_RUNNING"


class NoDatabaseError(CdmsError):
    """No database where one was looked for (and the command must not create one)."""

    code = "NO_DATABASE"


class MissingExtraError(CdmsError):
    """A command needs an optional part of cdms that is not installed (api.extras)."""

    code = "MISSING_EXTRA"


class Terminated(BaseException):
    """SIGTERM or SIGHUP while a command cleans up after itself (``db.backup``): raised in
    the main thread as SIGINT raises ``KeyboardInterrupt``, so ``finally`` and ``except
    BaseException`` clean-ups run; the CLI exits with ``error[ABORTED]`` and 128 + the
    signal's number, as a shell reports a process the signal killed."""

    code: ClassVar[str] = "ABORTED"

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


_BY_CODE: dict[str, type[CdmsError]] = {
    cls.code: cls
    for cls in (
        BadUserInputError,
        NotFoundError,
        OutOfStockError,
        InvalidTransitionError,
        ConflictError,
        ForbiddenError,
        LimitReachedError,
        TimeoutError_,
        DatabaseUnavailableError,
    )
}


def _orig(exc: BaseException) -> BaseException:
    """The DBAPI exception behind a SQLAlchemy wrapper, or the exception itself."""
    return getattr(exc, "orig", None) or exc


def snake(name: str) -> str:
    """A camelCase name as the database spells it (``OrderItem`` -> ``order_item``)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def camel(name: str) -> str:
    """A snake_case name as the API spells it (Strawberry's rule: ``product_id`` ->
    ``productId``, ``orders_90d`` -> ``orders90d``: only a part's first letter is raised)."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _field(diag: Any) -> str | None:
    """The column a constraint error is about, as the API names it (``productId``), from
    the column name or a ``<table>_<column>_(key|fkey|check)`` constraint name."""
    column = getattr(diag, "column_name", None)
    if not column:
        constraint = getattr(diag, "constraint_name", None) or ""
        table = getattr(diag, "table_name", None) or ""
        for suffix in ("_key", "_fkey", "_check"):
            if constraint.startswith(f"{table}_") and constraint.endswith(suffix):
                column = constraint[len(table) + 1 : -len(suffix)]
                break
    if not column or not column.replace("_", "").isalnum():
        return None
    return camel(column)


# What a client is told for a standard SQLSTATE: the shop's words, never PostgreSQL's
# (its messages name tables, columns and constraints). {field} is the API's field name.
_MESSAGES: dict[str, tuple[str, str]] = {
    "23505": ("this {field} is already taken", "a row with these values already exists"),
    "23503": ("the {field} given does not exist", "a referenced row does not exist"),
    "23514": ("invalid {field}", "the values break a rule of the shop"),
    "23502": ("{field} is required", "a required value is missing"),
    "22P02": ("invalid value", "invalid value"),
    "22003": ("a number is out of range", "a number is out of range"),
    "22007": ("invalid date or time", "invalid date or time"),
    "22008": ("a date or time is out of range", "a date or time is out of range"),
    "54000": ("a value is too long", "a value is too long"),
    "40001": ("the request met a concurrent change; try again", ""),
    "40P01": ("the request met a concurrent change; try again", ""),
    "55P03": ("the request met a concurrent change; try again", ""),
    "57014": ("the statement took longer than the configured statement_timeout", ""),
    "42501": ("not allowed", ""),
}


def from_db_error(exc: BaseException) -> CdmsError | None:
    """Translate a database exception to a domain error, or None if it is unexpected.

    Accepts psycopg errors and SQLAlchemy's DBAPIError wrappers. Our own errors (class CD)
    keep the message and the JSON detail their procedure wrote; a standard error gets a
    message of the shop's and, where one can be told, the ``field`` it is about.
    """
    import psycopg

    orig = _orig(exc)
    if isinstance(orig, psycopg.OperationalError) and getattr(orig, "sqlstate", None) is None:
        return DatabaseUnavailableError()
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:
        if isinstance(orig, psycopg.DataError):
            # refused by psycopg before it reached the server: a value PostgreSQL cannot
            # hold, e.g. text with a NUL character (any text input or filter)
            return BadUserInputError(
                "invalid value: text may not contain NUL characters", reason="unrepresentable"
            )
        return None
    if sqlstate.startswith("08") or sqlstate in {"57P01", "57P02", "57P03"}:
        return DatabaseUnavailableError()
    code = SQLSTATE_CODES.get(sqlstate) or _STANDARD_CODES.get(sqlstate)
    if code is None:
        return None
    diag = getattr(orig, "diag", None)
    fields: dict[str, Any] = {}
    if sqlstate in SQLSTATE_CODES:
        message = (getattr(diag, "message_primary", None) or str(orig)).strip()
        detail = getattr(diag, "message_detail", None)
        try:
            # numbers with a fraction as Decimal: an amount keeps the digits PostgreSQL
            # wrote (36.10, not the float 36.1)
            parsed = json.loads(detail, parse_float=Decimal) if detail else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            fields = parsed
    else:
        with_field, without = _MESSAGES[sqlstate]
        name = _field(diag) if sqlstate.startswith("23") else None
        if name is not None:
            fields["field"] = name
            message = with_field.format(field=name)
        else:
            message = without or with_field
    cls = _BY_CODE.get(code, CdmsError)
    return cls(message, **fields)
