"""ntile scores redone after a few rows changed, from the rows at the tiles' edges only.

``ntile(T)`` over ``N`` rows in the order of a unique key puts the row at position ``p``
(1-based) in the first tile whose end is at least ``p``: the first ``N % T`` tiles hold
``N // T + 1`` rows, the others ``N // T`` (:func:`ends`).

The stored rows are scored that way. A run removes the rows of a few keys (``removed``,
as stored) and adds their new values (``fresh``): a row that stays moves by at most
``len(removed)`` positions down or ``len(fresh)`` up, and a tile's end by at most the
change of ``N``. So with ``W = len(removed) + len(fresh) + 1``, a row more than ``W``
positions inside its tile keeps its score, and only the rows within ``W`` of a tile's
edge can move (:func:`edge_rows`: the last ``W`` of tiles ``1 .. T-1``, the first ``W``
of tiles ``2 .. T``, found by the score's index). :func:`retile` gives those rows, and
the fresh ones, their exact new positions and tiles: a row's new position is its old one,
less the removed rows before it, plus the fresh rows before it; a fresh row falls among
the fetched rows (its old neighbours' positions tell its own), or in a stretch between
them, which lies inside one tile.

Pure (no database): ``etl.load`` fetches and writes; ``tests/etl/test_retile.py`` checks
it against sorting everything.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

Key = tuple[Any, int]  # (the ordered value, the customer id): unique


def ends(n: int, tiles: int) -> list[int]:
    """The last position of each tile, ``[0, E_1, ..., E_T]`` (``E_0 = 0``)."""
    q, r = divmod(n, tiles)
    return [s * q + min(s, r) for s in range(tiles + 1)]


def tile_of(position: int, tile_ends: Sequence[int]) -> int:
    """The tile of a 1-based position: the first whose end is at least it."""
    return bisect_left(tile_ends, position)


def edge_rows(removed: int, fresh: int) -> int:
    """``W``: how many rows each side of every tile edge can change tile."""
    return removed + fresh + 1


def positions(
    n: int, tiles: int, last: Mapping[int, Sequence[Key]], first: Mapping[int, Sequence[Key]]
) -> dict[Key, int]:
    """The old positions of the fetched rows: ``last[s]`` the last rows of tile ``s`` from
    its end backwards, ``first[s]`` the first rows of tile ``s`` from its start."""
    e = ends(n, tiles)
    out: dict[Key, int] = {}
    for s, rows in last.items():
        out.update((k, e[s] - j) for j, k in enumerate(rows))
    for s, rows in first.items():
        out.update((k, e[s - 1] + 1 + j) for j, k in enumerate(rows))
    return out


def retile(
    n: int,
    tiles: int,
    fetched: Mapping[Key, int],
    removed: Sequence[Key],
    fresh: Sequence[Key],
) -> dict[Key, int]:
    """The new tile of every fetched row that stays (not in ``removed``) and of every fresh
    row. ``n``: the stored rows; ``fetched``: rows within ``edge_rows`` of each tile edge
    (or more: every row is fine), with their old positions."""
    old_ends = ends(n, tiles)
    new_ends = ends(n - len(removed) + len(fresh), tiles)
    gone = sorted(removed)
    added = sorted(fresh)
    gone_set = set(gone)
    by_key = sorted(fetched.items())
    keys = [k for k, _ in by_key]
    at = [p for _, p in by_key]
    out: dict[Key, int] = {}
    for k, p in by_key:
        if k not in gone_set:
            moved = p - bisect_left(gone, k) + bisect_left(added, k)
            out[k] = tile_of(moved, new_ends)
    for k in added:
        i = bisect_left(keys, k)  # fetched rows before k: keys[:i]
        below = at[i - 1] if i else 0
        after = at[i] if i < len(at) else n + 1
        if after == below + 1 or (below == n and i == len(at)):
            # k sits between two neighbouring old rows (or past the last): exact
            moved = below - bisect_left(gone, k) + bisect_left(added, k) + 1
            out[k] = tile_of(moved, new_ends)
        else:
            # k lies in a stretch of rows not fetched, inside one tile, which it keeps
            out[k] = tile_of(below + 1, old_ends)
    return out
