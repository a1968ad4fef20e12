"""The request gate (schema/gate.py) shares its permits out by principal: one key holds at
most half of them and has at most a quarter of the queue waiting, so its flood of slow
requests leaves room for every other principal's (was: first come, first served, so a
key's 200 queued stock cubes put everyone else's requests behind them, to a 503)."""

from __future__ import annotations

import asyncio

import pytest

from db.errors import DatabaseUnavailableError
from schema.gate import Gate


def test_one_key_holds_half_the_permits_and_a_quarter_of_the_queue() -> None:
    async def scenario() -> None:
        gate = Gate(size=7, queue=8, wait_s=5.0)
        flood, other = gate.of("apikey:1"), gate.of("apikey:2")
        for _ in range(3):  # half of 7
            assert await flood.acquire()
        fourth = asyncio.ensure_future(flood.acquire())
        fifth = asyncio.ensure_future(flood.acquire())
        await asyncio.sleep(0.01)
        assert not fourth.done() and gate.held == 3  # four permits free, kept for others
        with pytest.raises(DatabaseUnavailableError):  # a third waiting: over 8 // 4
            await flood.acquire()
        # another principal is let in at once, ahead of the flood's waiters
        for _ in range(3):
            assert await asyncio.wait_for(other.acquire(), 0.5)
        assert gate.held == 6
        flood.release()  # the flood's own permit goes to its first waiter
        await asyncio.sleep(0.01)
        assert fourth.done() and not fifth.done() and gate.held == 6
        # the shared demo principal (no key): bound by the totals only
        anonymous = gate.of(None)
        assert await asyncio.wait_for(anonymous.acquire(), 0.5) and gate.held == 7
        late = asyncio.ensure_future(gate.of("customer:3").acquire())
        await asyncio.sleep(0.01)
        assert not late.done()  # every permit held: in turn
        anonymous.release()
        await asyncio.sleep(0.01)
        assert late.done() and not fifth.done()  # the flood stays at its share
        fifth.cancel()

    asyncio.run(scenario())


def test_a_waiter_of_a_full_key_times_out_busy_and_frees_its_place() -> None:
    async def scenario() -> None:
        gate = Gate(size=2, queue=4, wait_s=0.2)
        key = gate.of("jwt:a")
        assert await key.acquire()  # its share: one of two
        with pytest.raises(DatabaseUnavailableError):
            await key.acquire()  # waits 0.2 s for its own permit, then busy
        assert gate.waiting == 0 and gate.waiting_by["jwt:a"] == 0
        key.release()
        assert gate.held == 0 and not gate.held_by

    asyncio.run(scenario())


def test_heavy_requests_of_every_key_together_hold_half_the_permits() -> None:
    """Three analyst keys' cube queries (each up to the statement timeout) held every
    permit, and a customer's order waited 30 s for a 503 (the probe's verification run of
    2026-12-07): heavy requests hold at most half the permits together."""

    async def scenario() -> None:
        gate = Gate(size=7, queue=40, wait_s=5.0)
        analysts = [gate.of(f"apikey:{k}", heavy=True) for k in range(3)]
        for a in analysts:
            assert await asyncio.wait_for(a.acquire(), 0.5)
        assert gate.held == 3 and gate.heavy_held == 3
        waiting = [asyncio.ensure_future(a.acquire()) for a in analysts]
        await asyncio.sleep(0.01)
        assert not any(w.done() for w in waiting)  # four permits free, none for heavy ones
        order = gate.of("customer:1")  # a checkout goes ahead of them
        assert await asyncio.wait_for(order.acquire(), 0.5)
        analysts[0].release()  # a heavy permit back: the first heavy waiter takes it
        await asyncio.sleep(0.01)
        assert waiting[0].done() and not waiting[1].done() and gate.heavy_held == 3
        for w in waiting[1:]:
            w.cancel()

    asyncio.run(scenario())


def test_waiting_heavy_requests_never_keep_a_free_permit_from_the_others() -> None:
    """The review of the first version: heavy waiters that could not fit filled the queue
    while half the permits were free, and a customer's request was refused busy."""

    async def scenario() -> None:
        gate = Gate(size=6, queue=8, wait_s=2.0)
        for k in range(3):
            assert await gate.of(f"apikey:{k}", heavy=True).acquire()
        demo = gate.of(None, heavy=True)  # the shared demo principal's cubes
        waiting = [asyncio.ensure_future(demo.acquire()) for _ in range(4)]
        await asyncio.sleep(0.01)
        assert gate.heavy_waiting == 4 and gate.held == 3
        with pytest.raises(DatabaseUnavailableError):  # heavy waiters: half the queue
            await demo.acquire()
        # three permits are free: a customer's request takes one at once
        assert await asyncio.wait_for(gate.of("customer:1").acquire(), 0.5)
        assert gate.held == 4
        for w in waiting:
            w.cancel()
        await asyncio.sleep(0.01)
        assert gate.heavy_waiting == 0 and gate.waiting == 0

    asyncio.run(scenario())


def test_one_key_leaves_a_heavy_permit_to_others_and_waits_in_a_quarter_of_the_queue() -> None:
    """The hostile review of 2026-12-07: heavy requests held at most ``share`` permits
    together, the same number as one key's own cap, and one key could queue 50 heavy ones
    against a heavy queue of 100. One analyst key keeping 53 slow cubes in flight made
    every other analyst's cube wait 4.5 s, then 503; a second such key filled the heavy
    queue, and any other cube was refused at once. Within the heavy class one key now
    leaves at least one permit to the others and has at most a quarter of its queue
    waiting. (Half the heavy permits, at first, left a lone analyst one cube at a time on
    an idle server: 30 cubes 2.6 s instead of 1.0.)"""

    async def scenario() -> None:
        gate = Gate(size=7, queue=200, wait_s=5.0)  # the defaults: 3 heavy permits, 100 waiting
        flood = gate.of("apikey:1", heavy=True)
        assert await flood.acquire() and await flood.acquire()  # alone: 2 of 3 at once
        queued = [asyncio.ensure_future(flood.acquire()) for _ in range(25)]  # 100 // 4
        await asyncio.sleep(0.01)
        assert gate.heavy_held == 2 and not any(q.done() for q in queued)
        with pytest.raises(DatabaseUnavailableError):  # a 26th heavy one waiting: busy
            await flood.acquire()
        # the key's non-heavy requests are bound by its own share only
        assert await asyncio.wait_for(gate.of("apikey:1").acquire(), 0.5)
        # another analyst's cube is served at once, ahead of the flood's waiters
        other = gate.of("apikey:2", heavy=True)
        assert await asyncio.wait_for(other.acquire(), 0.5)
        assert gate.heavy_held == 3
        # a second hostile key: its quarter of the heavy queue, and no more
        second = gate.of("apikey:3", heavy=True)
        queued += [asyncio.ensure_future(second.acquire()) for _ in range(25)]
        await asyncio.sleep(0.01)
        with pytest.raises(DatabaseUnavailableError):
            await second.acquire()
        assert gate.heavy_waiting == 50  # half the heavy queue: a third analyst still waits
        third = asyncio.ensure_future(gate.of("apikey:4", heavy=True).acquire())
        await asyncio.sleep(0.01)
        assert not third.done() and gate.heavy_waiting == 51
        other.release()  # the free heavy permit: the first waiter under its share
        await asyncio.sleep(0.01)
        assert gate.heavy_held == 3 and gate.heavy_held_by == {"apikey:1": 2, "apikey:3": 1}
        assert queued[25].done() and not third.done()
        flood.release()  # the flood's own heavy permit goes to its first waiter
        await asyncio.sleep(0.01)
        assert queued[0].done() and not queued[1].done() and not third.done()
        for q in [*queued[1:25], *queued[26:], third]:
            q.cancel()
        await asyncio.sleep(0.01)
        assert gate.heavy_waiting == 0 and not gate.heavy_waiting_by

    asyncio.run(scenario())


def test_heavy_shares_are_at_least_one() -> None:
    """A small pool (one request permit, a queue of 1): a key still gets its heavy permit
    and a heavy place in the queue."""

    async def scenario() -> None:
        gate = Gate(size=1, queue=1, wait_s=0.2)
        assert gate.heavy_share == 1 and gate.heavy_queue_share == 1
        cube = gate.of("apikey:1", heavy=True)
        assert await asyncio.wait_for(cube.acquire(), 0.5)
        cube.release()
        assert gate.held == 0 and gate.heavy_held == 0

    asyncio.run(scenario())
