"""Column arrays → PostgreSQL COPY text, formatted and streamed chunk by chunk.

A ``Table`` holds one ``Column`` per table column: numpy arrays plus the function that
turns a slice of them into COPY text. Text is made per chunk while the previous chunk is
being parsed by the server, so memory stays at the size of the arrays, not of the text.
Times are int64 seconds since the Unix epoch (UTC); money is int64 cents.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

NULL = "\\N"
NEVER = np.iinfo(np.int64).max  # "this event does not happen" in a time array

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]

ProgressFn = Callable[[str, int, int], None]
"""progress(stage, done, total): called as a stage advances (rows for tables)."""


class Column:
    """One column: ``format(*(a[start:stop] for a in arrays))`` gives its COPY text."""

    __slots__ = ("_arrays", "_format")

    def __init__(self, format: Callable[..., list[str]], *arrays: Any) -> None:
        self._format = format
        self._arrays = arrays

    def __len__(self) -> int:
        return len(self._arrays[0])

    def text(self, start: int = 0, stop: int | None = None) -> list[str]:
        return self._format(*(a[start:stop] for a in self._arrays))


@dataclass(frozen=True)
class Table:
    name: str  # schema-qualified
    columns: tuple[str, ...]
    data: tuple[Column, ...]

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.data):
            raise ValueError(f"{self.name}: {len(self.columns)} columns, {len(self.data)} arrays")
        lengths = {len(col) for col in self.data}
        if len(lengths) > 1:
            raise ValueError(f"{self.name}: columns of different lengths {sorted(lengths)}")

    @property
    def rows(self) -> int:
        return len(self.data[0]) if self.data else 0

    def text(self, column: str) -> list[str]:
        """The whole column as COPY text."""
        return self.data[self.columns.index(column)].text()

    def with_text(self, column: str, values: list[str]) -> Table:
        """A copy with one column replaced by ready-made text."""
        data = list(self.data)
        data[self.columns.index(column)] = texts(values)
        return replace(self, data=tuple(data))


def _tod_table() -> ObjectArray:
    """'HH:MM:SS+00' for every second of a day."""
    return np.array(
        [f"{h:02d}:{m:02d}:{s:02d}+00" for h in range(24) for m in range(60) for s in range(60)],
        dtype=object,
    )


_TOD = _tod_table()
_CENTS = np.array([f".{i:02d}" for i in range(100)], dtype=object)
_DAY = 86_400
_FIRST_DAY = -25_567  # 1900-01-01
_LAST_DAY = 47_482  # 2100-01-01


@functools.cache
def _day_table(suffix: str) -> ObjectArray:
    """'YYYY-MM-DD' + suffix for every day from 1900 to 2100."""
    span = np.arange(_FIRST_DAY, _LAST_DAY + 1).astype("datetime64[D]")
    return np.array([f"{d}{suffix}" for d in np.datetime_as_string(span, unit="D")], dtype=object)


def _day_texts(days: IntArray, suffix: str) -> ObjectArray:
    if days.size and (days.min() < _FIRST_DAY or days.max() > _LAST_DAY):
        raise ValueError("dates must fall between 1900 and 2100")
    out: ObjectArray = _day_table(suffix)[days - _FIRST_DAY]
    return out


def _ints(values: IntArray) -> list[str]:
    return list(map(str, values.tolist()))


def _with_nulls(text: list[str], present: BoolArray) -> list[str]:
    if present.all():
        return text
    out = np.array(text, dtype=object)
    out[~present] = NULL
    result: list[str] = out.tolist()
    return result


def _ints_or_null(values: IntArray, present: BoolArray) -> list[str]:
    return _with_nulls(_ints(values), present)


def _money(cents: IntArray) -> list[str]:
    return list(map(operator.add, map(str, (cents // 100).tolist()), _CENTS[cents % 100].tolist()))


def _money_or_null(cents: IntArray, present: BoolArray) -> list[str]:
    return _with_nulls(_money(cents), present)


def _timestamps(seconds: IntArray) -> list[str]:
    missing = seconds == NEVER
    safe = np.where(missing, 0, seconds)
    day = safe // _DAY
    head = _day_texts(day, " ")
    tail = _TOD[safe - day * _DAY]
    if missing.any():
        head[missing] = NULL
        tail[missing] = ""
    return list(map(operator.add, head.tolist(), tail.tolist()))


def _dates(days: IntArray) -> list[str]:
    out: list[str] = _day_texts(days, "").tolist()
    return out


def _lookup(table: ObjectArray, index: IntArray) -> list[str]:
    out: list[str] = table[index].tolist()
    return out


def _identity(values: list[str]) -> list[str]:
    return values


def ints(values: npt.NDArray[np.integer]) -> Column:
    return Column(_ints, np.asarray(values, dtype=np.int64))


def ints_or_null(values: npt.NDArray[np.integer], present: BoolArray) -> Column:
    return Column(_ints_or_null, np.asarray(values, dtype=np.int64), present)


def money(cents: npt.NDArray[np.integer]) -> Column:
    """Cents as exact decimal text (1999 → '19.99')."""
    return Column(_money, np.asarray(cents, dtype=np.int64))


def money_or_null(cents: IntArray, present: BoolArray) -> Column:
    return Column(_money_or_null, np.asarray(cents, dtype=np.int64), present)


def timestamps(seconds: IntArray) -> Column:
    """UTC timestamps ('2025-11-28 09:15:02+00'); ``NEVER`` becomes NULL.

    Made of two lookup tables (days, seconds of the day): no per-row date formatting.
    """
    return Column(_timestamps, np.asarray(seconds, dtype=np.int64))


def dates(days: IntArray) -> Column:
    return Column(_dates, np.asarray(days, dtype=np.int64))


def booleans(values: BoolArray) -> Column:
    return pick(("f", "t"), values.astype(np.int64))


def texts(values: list[str]) -> Column:
    """Ready-made COPY text (already escaped)."""
    return Column(_identity, values)


def escape(value: str) -> str:
    """COPY text escaping for one free-text value."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def pick(pool: Sequence[str], index: npt.NDArray[np.integer]) -> Column:
    """``pool[index]`` for every index (pool values are escaped here)."""
    escaped = np.array([escape(v) for v in pool], dtype=object)
    return Column(functools.partial(_lookup, escaped), np.asarray(index, dtype=np.int64))


def pick_or_null(pool: Sequence[str], index: npt.NDArray[np.integer]) -> Column:
    """Like ``pick``; a negative index is NULL."""
    escaped = np.array([*(escape(v) for v in pool), NULL], dtype=object)
    idx = np.asarray(index, dtype=np.int64).copy()
    idx[idx < 0] = len(pool)
    return Column(functools.partial(_lookup, escaped), idx)


def constant(value: str, n: int) -> Column:
    return pick([value], np.zeros(n, dtype=np.int64))


def write_table(
    conn: psycopg.Connection[tuple[object, ...]],
    table: Table,
    progress: ProgressFn | None = None,
    chunk_rows: int = 50_000,
) -> int:
    """COPY every row of ``table``; return the number of rows written."""
    total = table.rows
    stage = table.name.split(".")[-1]
    if progress:
        progress(stage, 0, total)
    cols = ", ".join(table.columns)
    with conn.cursor() as cur, cur.copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
        for start in range(0, total, chunk_rows):
            stop = min(start + chunk_rows, total)
            parts = [col.text(start, stop) for col in table.data]
            text = "\n".join(map("\t".join, zip(*parts, strict=True))) + "\n"
            copy.write(text.encode())
            if progress:
                progress(stage, stop, total)
    return total
