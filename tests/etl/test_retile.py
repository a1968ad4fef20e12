"""etl.retile against sorting everything: random months, random changes, every tile count
the rules allow, months smaller than the edges (every row fetched) and empty ones."""

from __future__ import annotations

import random

import pytest

from etl import retile


def _ntile(keys: list[tuple[int, int]], tiles: int) -> dict[tuple[int, int], int]:
    """What PostgreSQL's ntile(tiles) OVER (ORDER BY value, id) gives."""
    e = retile.ends(len(keys), tiles)
    return {k: retile.tile_of(p, e) for p, k in enumerate(sorted(keys), start=1)}


def test_ends_follow_postgresql_ntile() -> None:
    # ntile(5) over 12 rows: 3, 3, 2, 2, 2; over 3 rows: 1, 1, 1, then empty tiles
    assert retile.ends(12, 5) == [0, 3, 6, 8, 10, 12]
    assert [retile.tile_of(p, retile.ends(12, 5)) for p in range(1, 13)] == [
        1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5,
    ]  # fmt: skip
    assert [retile.tile_of(p, retile.ends(3, 5)) for p in (1, 2, 3)] == [1, 2, 3]


@pytest.mark.parametrize("seed", range(300))
def test_retile_equals_sorting_everything(seed: int) -> None:
    rng = random.Random(seed)
    tiles = rng.choice([2, 3, 5, 10])
    n = rng.choice([0, 1, 3, 7, 40, 200, 1000])
    spread = rng.choice([5, 50, 10_000])  # few distinct values: many ties, broken by id
    old = [(rng.randrange(spread), cid) for cid in range(n)]
    stored = _ntile(old, tiles)
    # keys: customers whose rows are redone; some have no row left, some are new
    keys = rng.sample(range(n + 20), rng.randint(0, min(30, n + 20)))
    removed = [k for k in old if k[1] in keys]
    fresh = [(rng.randrange(spread), cid) for cid in keys if rng.random() < 0.85]
    new = [k for k in old if k[1] not in keys] + fresh
    truth = _ntile(new, tiles)

    w = retile.edge_rows(len(removed), len(fresh))
    by_tile: dict[int, list[tuple[int, int]]] = {}
    for k in sorted(old):
        by_tile.setdefault(stored[k], []).append(k)
    last = {s: by_tile.get(s, [])[::-1][:w] for s in range(1, tiles)}
    first = {s: by_tile.get(s, [])[:w] for s in range(2, tiles + 1)}
    fetched = retile.positions(n, tiles, last, first)
    assert all(sorted(old).index(k) + 1 == p for k, p in fetched.items())

    got = retile.retile(n, tiles, fetched, removed, fresh)
    for k, t in got.items():
        assert truth[k] == t, (k, t, truth[k])
    assert set(fresh) <= set(got)
    # every row not given a tile keeps its stored one
    for k in new:
        if k not in got:
            assert truth[k] == stored[k], k
