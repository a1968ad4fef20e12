"""Scalars: ``Decimal`` as a string with two decimals, ``DateTime`` ISO-8601 with offset,
``Date`` ``YYYY-MM-DD``.

Every ``Decimal`` input is an amount of money (prices, costs, discounts, refunds and the
filters over money columns): :func:`parse_money` refuses a third decimal and amounts no
money column holds, so no mutation can forget to (PostgreSQL would round "99.999" to
100.00 and "-0.004" to 0.00, past the rule that a price is not negative).

Values read from PostgreSQL arrive already written as the contract says (schema/sql.py):
the serializers pass such text through; they format the Python values of the resolver
roots (cube, models, predictions)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import strawberry

from db.errors import BadUserInputError, clipped, shown
from db.iso import iso

TWO_PLACES = Decimal("0.01")
# what a Decimal's text may be: ASCII digits, a point, an exponent (Python's Decimal() also
# takes blanks around it, "1_000" and other scripts' digits, which no client means as money)
DECIMAL_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
# every Decimal input is an amount of money: in cents, and below the widest money column
# (numeric(14,2), the orders' totals; prices, costs, discounts and refunds are numeric(12,2),
# whose bound the write names: schema.mutations)
MONEY_PLACES = 2
MONEY_BOUND = Decimal(10) ** 12


def serialize_decimal(value: Decimal | int | float | str) -> str:
    if isinstance(value, str):
        return value
    return str(Decimal(value).quantize(TWO_PLACES))


def parse_decimal(value: Any) -> Decimal:
    """A decimal number PostgreSQL's ``numeric`` can hold (any scale)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadUserInputError('Decimal must be a string such as "12.50"', reason="not a number")
    text = str(value)
    try:
        parsed = Decimal(text)
    except InvalidOperation:
        raise _not_a_number(value) from None
    if not parsed.is_finite() or (isinstance(value, str) and not DECIMAL_TEXT.fullmatch(text)):
        raise _not_a_number(value)
    if not parsed:  # any zero as 0: "0e-99999" names a scale numeric has not
        return Decimal(0)
    if not -16383 <= parsed.adjusted() <= 131071:  # PostgreSQL numeric's range
        raise BadUserInputError(
            f"decimal number out of range: {shown(value)}",
            reason="out of range",
            value=clipped(value),
        )
    return parsed


def parse_money(value: Any) -> Decimal:
    """A ``Decimal`` input: an amount of money, at most two decimals ("10.005" is no amount:
    PostgreSQL would round it) and below :data:`MONEY_BOUND`."""
    parsed = parse_decimal(value)
    if abs(parsed) >= MONEY_BOUND:
        raise BadUserInputError(
            f"an amount of money must be below {MONEY_BOUND:,}, got {shown(value)}",
            reason="out of range",
            value=clipped(value),
        )
    if decimals(parsed) > MONEY_PLACES:
        raise BadUserInputError(
            f"an amount of money has at most {MONEY_PLACES} decimals, got {shown(value)}",
            reason="too many decimals",
            value=clipped(value),
        )
    return parsed


def decimals(number: Decimal) -> int:
    """The decimals ``number`` needs ("1.50" one, "1e3" none), without rounding (a context's
    precision would: "1.0000000000000000000000000001" is not 1)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def _not_a_number(value: Any) -> BadUserInputError:
    return BadUserInputError(
        f"not a decimal number: {shown(value)}", reason="not a number", value=clipped(value)
    )


def parse_text(value: Any) -> str:
    """A string PostgreSQL can hold (text may not contain NUL)."""
    text = str(value)
    if "\x00" in text:
        raise BadUserInputError("text may not contain NUL (\\u0000)")
    return text


def parse_id(value: Any, what: str = "id") -> int:
    """A GraphQL ID (a database id) as an int, or BAD_USER_INPUT."""
    text = str(value)
    digits = text[1:] if text.startswith("-") else text
    if isinstance(value, bool) or not (digits.isascii() and digits.isdigit()):
        raise BadUserInputError(f"{what} must be a numeric id, got {shown(value)}", field=what)
    # (past 19 significant digits no id fits in a bigint; and Python refuses to convert a
    # string of more than 4,300 digits, leading zeros included: ValueError, not an answer)
    significant = digits.lstrip("0")
    if len(significant) > 19:
        raise BadUserInputError(f"{what} is out of range: {shown(value)}", field=what)
    n = -int(significant or "0") if text.startswith("-") else int(significant or "0")
    if not -(2**63) <= n < 2**63:
        raise BadUserInputError(f"{what} is out of range: {shown(value)}", field=what)
    return n


def serialize_iso(value: dt.date | dt.datetime | str) -> str:
    """A DateTime or Date: PostgreSQL's text passes through, a Python value is written."""
    return value if isinstance(value, str) else iso(value)


def parse_datetime(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise BadUserInputError("DateTime must be an ISO-8601 string with an offset")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadUserInputError(f"not an ISO-8601 date-time: {shown(value)}") from None
    if parsed.tzinfo is None:
        raise BadUserInputError(
            f"DateTime needs an offset (e.g. 2025-01-01T00:00:00Z): {shown(value)}"
        )
    return parsed


def parse_date(value: Any) -> dt.date:
    if not isinstance(value, str):
        raise BadUserInputError("Date must be an ISO-8601 string such as 2025-01-31")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadUserInputError(f"not an ISO-8601 date: {shown(value)}") from None


DecimalScalar = strawberry.scalar(
    name="Decimal",
    description='Exact decimal number, serialized as a string with two decimals ("12.50"). An'
    " input is an amount of money: at most two decimals, and below 10^12.",
    serialize=serialize_decimal,
    parse_value=parse_money,
)

DateTimeScalar = strawberry.scalar(
    name="DateTime",
    description='ISO-8601 date-time with offset ("2025-03-01T12:00:00+00:00").',
    serialize=serialize_iso,
    parse_value=parse_datetime,
)

# (Strawberry's own Date would call isoformat() on the text a read's JSON holds)
DateScalar = strawberry.scalar(
    name="Date",
    description="Date (isoformat)",
    serialize=serialize_iso,
    parse_value=parse_date,
)

SCALAR_MAP: dict[object, Any] = {
    Decimal: DecimalScalar,
    dt.datetime: DateTimeScalar,
    dt.date: DateScalar,
}
