"""PostgreSQL's spelling of a time, for the values Python writes into answers.

Reads answer with PostgreSQL's JSON text, in sessions whose TimeZone is UTC: a timestamptz
is ``2026-12-07T17:37:59.91117+00:00`` (the fraction without its trailing zeros, none when
it is zero). Python's ``isoformat`` keeps six digits (``59.911170``): the same instant
would be spelled two ways in one API (docs/api.md, "Formats").
"""

from __future__ import annotations

import datetime as dt


def iso(value: dt.date | dt.datetime) -> str:
    """``value`` as PostgreSQL writes it in JSON: a date as ``2026-12-07``; an aware
    date-time in UTC with ``+00:00`` and the fraction's trailing zeros dropped."""
    if not isinstance(value, dt.datetime):
        return value.isoformat()
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    text = value.isoformat()
    if value.microsecond:
        head, _, rest = text.partition(".")
        text = f"{head}.{rest[:6].rstrip('0')}{rest[6:]}"
    return text
