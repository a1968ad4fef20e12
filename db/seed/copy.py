"""Column arrays → PostgreSQL COPY text, streamed in chunks.

A ``Table`` holds one list of already formatted strings per column; the formatters below
turn numpy arrays into those strings without a Python loop over rows where numpy can do it.
Times are int64 seconds since the Unix epoch (UTC); money is int64 cents.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import psycopg

NULL = "\\N"
NEVER = np.iinfo(np.int64).max  # "this event does not happen" in a time array

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

ProgressFn = Callable[[str, int, int], None]
"""progress(stage, done, total): called as a stage advances (rows for tables)."""


@dataclass(frozen=True)
class Table:
    name: str  # schema-qualified
    columns: tuple[str, ...]
    data: tuple[Sequence[str], ...]

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.data):
            raise ValueError(f"{self.name}: {len(self.columns)} columns, {len(self.data)} arrays")
        lengths = {len(col) for col in self.data}
        if len(lengths) > 1:
            raise ValueError(f"{self.name}: columns of different lengths {sorted(lengths)}")

    @property
    def rows(self) -> int:
        return len(self.data[0]) if self.data else 0


def _tod_table() -> npt.NDArray[np.object_]:
    """'HH:MM:SS+00' for every second of a day."""
    return np.array(
        [f"{h:02d}:{m:02d}:{s:02d}+00" for h in range(24) for m in range(60) for s in range(60)],
        dtype=object,
    )


_TOD = _tod_table()
_CENTS = np.array([f".{i:02d}" for i in range(100)], dtype=object)
_DAY = 86_400


def _day_texts(days: IntArray, suffix: str) -> npt.NDArray[np.object_]:
    """'YYYY-MM-DD' + suffix for every element of ``days`` (epoch day numbers)."""
    lo, hi = int(days.min()), int(days.max())
    span = np.arange(lo, hi + 1).astype("datetime64[D]")
    table = np.array([f"{d}{suffix}" for d in np.datetime_as_string(span, unit="D")], dtype=object)
    out: npt.NDArray[np.object_] = table[days - lo]
    return out


def ints(values: npt.NDArray[np.integer]) -> list[str]:
    return list(map(str, np.asarray(values, dtype=np.int64).tolist()))


def ints_or_null(values: npt.NDArray[np.integer], present: BoolArray) -> list[str]:
    out = np.array(ints(values), dtype=object)
    out[~present] = NULL
    result: list[str] = out.tolist()
    return result


def money(cents: npt.NDArray[np.integer]) -> list[str]:
    """Cents as exact decimal text (1999 → '19.99')."""
    c = np.asarray(cents, dtype=np.int64)
    return list(map(operator.add, map(str, (c // 100).tolist()), _CENTS[c % 100].tolist()))


def money_or_null(cents: IntArray, present: BoolArray) -> list[str]:
    out = np.array(money(cents), dtype=object)
    out[~present] = NULL
    result: list[str] = out.tolist()
    return result


def timestamps(seconds: IntArray) -> list[str]:
    """UTC timestamps ('2025-11-28 09:15:02+00'); ``NEVER`` becomes NULL.

    Built from two lookup tables (days in range, seconds of the day): no per-row formatting.
    """
    missing = seconds == NEVER
    fill = 0 if missing.all() else int(seconds[~missing].min())  # keeps the day table short
    safe = np.where(missing, fill, seconds)
    day = safe // _DAY
    head = _day_texts(day, " ")
    tail = _TOD[safe - day * _DAY]
    if missing.any():
        head[missing] = NULL
        tail[missing] = ""
    return list(map(operator.add, head.tolist(), tail.tolist()))


def dates(days: IntArray) -> list[str]:
    out: list[str] = _day_texts(np.asarray(days, dtype=np.int64), "").tolist()
    return out


def escape(value: str) -> str:
    """COPY text escaping for one free-text value."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def pick(pool: Sequence[str], index: npt.NDArray[np.integer]) -> list[str]:
    """``pool[index]`` for every index (pool values are escaped here)."""
    escaped = np.array([escape(v) for v in pool], dtype=object)
    out: list[str] = escaped[np.asarray(index)].tolist()
    return out


def pick_or_null(pool: Sequence[str], index: npt.NDArray[np.integer]) -> list[str]:
    """Like ``pick``; a negative index is NULL."""
    escaped = np.array([*(escape(v) for v in pool), NULL], dtype=object)
    idx = np.asarray(index).copy()
    idx[idx < 0] = len(pool)
    out: list[str] = escaped[idx].tolist()
    return out


def constant(value: str, n: int) -> list[str]:
    return [escape(value)] * n


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
            parts = [col[start:stop] for col in table.data]
            text = "\n".join(map("\t".join, zip(*parts, strict=True))) + "\n"
            copy.write(text.encode())
            if progress:
                progress(stage, stop, total)
    return total
