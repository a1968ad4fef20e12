"""The planted churn pattern: lapsing customers whose order gaps lengthen, then stop.

Orders are first assigned as if nobody lapsed (``orders._assign_customers``); an order that
falls after its customer's lapse, or inside the fade before it with probability growing to 1
at the lapse, is handed to another customer drawn the same way, until every order is kept.
Redraws use their own random stream, so the orders stream and everything drawn from it
after the assignment are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from db.seed import relations as r
from db.seed.copy import NEVER, BoolArray, IntArray
from db.seed.people import DAY, People

_MAX_ROUNDS = 60


def lapse_times(rng: np.random.Generator, people: People, start: int, now: int) -> IntArray:
    """Per customer, the time after which they never order again (``NEVER``: they stay)."""
    n = people.size
    churns = rng.random(n) < r.CHURN_SHARE
    first = np.maximum(people.signup, start) + r.CHURN_EARLIEST_DAYS * DAY
    last = now + r.CHURN_LATEST_AFTER_END_DAYS * DAY
    at = first + (rng.random(n) * np.maximum(last - first, DAY)).astype(np.int64)
    out: IntArray = np.where(churns, at, NEVER).astype(np.int64)
    return out


def kept(rng: np.random.Generator, t: IntArray, lapse: IntArray) -> BoolArray:
    """Whether an order at ``t`` by a customer lapsing at ``lapse`` is kept."""
    fade = r.CHURN_FADE_DAYS * DAY
    # probability of keeping: 1 until the fade starts, falling (quadratically) to 0 at the lapse
    p = np.clip((lapse - t) / fade, 0.0, 1.0) ** 2
    out: BoolArray = rng.random(t.size) < p
    return out


def reassign(
    rng: np.random.Generator,
    t: IntArray,
    customer: IntArray,
    lapse: IntArray,
    draw: Callable[[np.random.Generator, IntArray], IntArray],
) -> IntArray:
    """Hand each order its customer would not have placed to another eligible customer."""
    out = customer.copy()
    todo = np.flatnonzero(~kept(rng, t, lapse[out]))
    for _ in range(_MAX_ROUNDS):
        if not todo.size:
            break
        out[todo] = draw(rng, t[todo])
        todo = todo[~kept(rng, t[todo], lapse[out[todo]])]
    return out
