"""The shape of an answer row: which JSON object holds which field under which key.

PostgreSQL builds each answer row as JSON (``json_build_object``) in this shape, so a
large answer reaches the client without per-cell Python work. GraphQL asks for nested
objects (``{"sales": {"revenue": 1.5, "orderedAt": {"month": "..."}}}``); the Python API
for flat ones keyed by field alias.

The statement never contains the keys themselves: it writes placeholders (``"@0"``,
``"@1"`` ... in document order), which ``rename`` swaps for the names with plain string
replacement (a JSON string value cannot contain ``"@0":`` unescaped). So the SQL text, and
the cached answer, depend on the layout (``skeleton``) but not on the aliases.
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


def placeholder(n: int) -> str:
    return f"@{n}"


def rename(text: str, names: list[str]) -> str:
    """``text`` (rows written with placeholder keys, ``"@0":``) with the real keys."""
    # the pattern ends with the closing quote, so "@1" never matches "@12"; a name never
    # starts with "@" (GraphQL names cannot; ``_key`` escapes the Python API's aliases)
    for n in range(len(names)):
        text = text.replace(f'"{placeholder(n)}":', f'"{_key(names[n])}":')
    return text


def _key(name: str) -> str:
    escaped = json.dumps(name)[1:-1]
    return "\\u0040" + escaped[1:] if escaped.startswith("@") else escaped


def flat(measures: list[str], dimensions: list[str], totals: str | None = None) -> Obj:
    """The Python API's row: every dimension and measure field at the top, by alias."""
    entries: list[tuple[str, Entry]] = [(a, DimensionOut(i)) for i, a in enumerate(dimensions)]
    entries += [(a, MeasureOut(j)) for j, a in enumerate(measures)]
    if totals is not None:
        entries.append((totals, TotalsOut()))
    return Obj(tuple(entries))
