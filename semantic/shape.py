"""The shape of an answer row: which JSON object holds which field under which key.

PostgreSQL builds each answer row as JSON (``json_build_object``) in this shape, so a
large answer reaches the client without per-cell Python work. GraphQL asks for nested
objects (``{"sales": {"revenue": 1.5, "orderedAt": {"month": "..."}}}``); the Python API
for flat ones keyed by field alias.

The keys are bound parameters of the statement, so its SQL text depends on the layout
(``skeleton``) but not on the aliases, and so does the result cache's key. A cached answer
keeps the keys it was computed with; the same question under other aliases gets them
swapped by ``retarget`` (plain string replacement: ``"key":`` cannot occur inside a JSON
string value, whose quotes are escaped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class MeasureOut:
    """The value of ``query.measures[index]``."""

    index: int


@dataclass(frozen=True)
class DimensionOut:
    """The value of ``query.dimensions[index]``."""

    index: int


@dataclass(frozen=True)
class TotalsOut:
    """The dimensions a subtotal row totals (labels such as ``sales.channel``)."""


@dataclass(frozen=True)
class Const:
    """A fixed string (``__typename``)."""

    value: str


@dataclass(frozen=True)
class Obj:
    """A JSON object: (key, value) in order."""

    entries: tuple[tuple[str, Entry], ...]


Entry = Obj | MeasureOut | DimensionOut | TotalsOut | Const


def keys(obj: Obj) -> list[str]:
    """Every key of the shape in document order (the placeholders' names)."""
    out: list[str] = []
    for key, value in obj.entries:
        out.append(key)
        if isinstance(value, Obj):
            out.extend(keys(value))
    return out


def skeleton(obj: Obj) -> object:
    """The shape without its keys (what the SQL text and the cache depend on)."""
    return [skeleton(v) if isinstance(v, Obj) else repr(v) for _, v in obj.entries]


def retarget(text: str, old: list[str], new: list[str]) -> str | None:
    """``text`` (rows keyed by ``old``, in document order) keyed by ``new``; None when that
    is ambiguous (one old key that must become two different ones)."""
    wanted: dict[str, str] = {}
    for a, b in zip(old, new, strict=True):
        if wanted.setdefault(a, b) != b:
            return None
    moves = {a: b for a, b in wanted.items() if a != b}
    if not moves:
        return text
    # through markers that no key can be (a NUL is escaped in JSON), so a new key that is
    # also an old one is never renamed twice
    for n, a in enumerate(moves):
        text = text.replace(f'"{_key(a)}":', f'"\x00{n}":')
    for n, b in enumerate(moves.values()):
        text = text.replace(f'"\x00{n}":', f'"{_key(b)}":')
    return text


def _key(name: str) -> str:
    return json.dumps(name)[1:-1]


def flat(measures: list[str], dimensions: list[str], totals: str | None = None) -> Obj:
    """The Python API's row: every dimension and measure field at the top, by alias."""
    entries: list[tuple[str, Entry]] = [(a, DimensionOut(i)) for i, a in enumerate(dimensions)]
    entries += [(a, MeasureOut(j)) for j, a in enumerate(measures)]
    if totals is not None:
        entries.append((totals, TotalsOut()))
    return Obj(tuple(entries))
