"""``warehouseStatus`` and ``warehouseUpdated``: how fresh the warehouse is (``etl.status``).

The warehouse (and so cubes, the dashboard and stored predictions) trails the shop by the
pipeline's lag. ``warehouseStatus`` reads it on request; ``warehouseUpdated`` tells a
subscriber each time a run publishes a new warehouse version (``NOTIFY cdms_etl_done``,
sent in the transaction that publishes it; one LISTEN per process, the hub of
schema.subscriptions). For staff (admin, analyst, service): the pipeline refuses customers
(FORBIDDEN) by the fields' roles.

The notification is only a wake-up (any role may NOTIFY): its payload must be a JSON object
with an integer ``version`` (else it is skipped, a warning), and the event is the
warehouse status read from ``dw`` then, told only when its version is newer than the last
one told (or the one current when the subscription began). A forged notification tells
nothing, and publishes in quick succession may be told as one event, of the newest: what
is queued makes one read, and what arrives meanwhile or within ``GAP_S`` of it one more
(``schema.subscriptions.batch``), so a flood of forged ones costs a read per GAP_S.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import AsyncGenerator

import strawberry

from etl import status as etl_status
from schema.catalog import STAFF
from schema.context import Info, typed
from schema.subscriptions import batch, db_gate, hub, payload_ints


@strawberry.enum(description="The state of the last pipeline run.")
class WarehouseRunState(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@strawberry.type(description="A pipeline run published a new warehouse version.")
class WarehouseUpdate:
    version: int = strawberry.field(
        description="Warehouse version: a new one each time a pipeline run publishes changes (a"
        " cached cube answer is served at a later version only when no version since changed"
        " what it read)."
    )
    newest_change_at: dt.datetime | None = strawberry.field(
        description="The newest change of the shop the warehouse holds (null: none yet)."
    )
    lag_seconds: float = strawberry.field(
        description="Seconds since the oldest change of the shop the warehouse does not hold"
        " yet; 0 when it holds them all. It keeps growing while loads fail."
    )


@strawberry.type(description="How fresh the warehouse (cubes, dashboard, stored predictions) is.")
class WarehouseStatus(WarehouseUpdate):  # its fields, then the last run's
    last_run_at: dt.datetime | None = strawberry.field(
        description="When the last pipeline run ended (started, while it runs); null: never."
    )
    state: WarehouseRunState | None = strawberry.field(
        description="The last run's state; null: never ran."
    )
    error: str | None = strawberry.field(
        description="Why the last run failed, in the API's words: the step that failed and the"
        " class of its database error (e.g. 'step fact_orders failed and was rolled back:"
        " integrity constraint violation (SQLSTATE class 23)'), how many data-quality checks"
        " failed, or that it was interrupted. The database's own message is the operator's:"
        " the server's log and the run log (dw.etl_run)."
    )


def _status(s: etl_status.WarehouseStatus) -> WarehouseStatus:
    return WarehouseStatus(
        version=s.version,
        newest_change_at=s.newest_change_at,
        lag_seconds=s.lag_seconds,
        last_run_at=s.last_run_at,
        state=None if s.state is None else WarehouseRunState(s.state),
        error=s.failure,
    )


def _update(s: etl_status.WarehouseStatus) -> WarehouseUpdate:
    return WarehouseUpdate(
        version=s.version, newest_change_at=s.newest_change_at, lag_seconds=s.lag_seconds
    )


@strawberry.type
class WarehouseQueries:
    @typed(
        strawberry.field(
            metadata={"roles": STAFF},
            description="How fresh the warehouse is: its version, the newest change it holds,"
            " the lag, and the last pipeline run.",
        )
    )
    async def warehouse_status(self, info: Info) -> WarehouseStatus:
        return _status(await info.context.db.run(etl_status.warehouse_status))


@strawberry.type
class WarehouseSubscriptions:
    @typed(
        strawberry.subscription(
            metadata={"roles": STAFF},
            description="An event each time a pipeline run publishes a new warehouse version.",
        )
    )
    async def warehouse_updated(self, info: Info) -> AsyncGenerator[WarehouseUpdate, None]:
        ctx = info.context
        try:
            # before listening: a publish in between is told with the next one
            gate = db_gate(ctx.engine)  # as orderStatusChanged's events (its docstring)
            await ctx.hold(gate)
            told = (await ctx.db.run(etl_status.warehouse_status)).version
            await ctx.close()
            notes = hub(ctx.engine, etl_status.UPDATED_CHANNEL)
            async with notes.subscribe() as queue:
                last = float("-inf")
                while True:
                    hints: list[tuple[int, str]] = []
                    payloads, overflowed = await batch(notes, queue, last)
                    for payload in payloads:
                        hint = payload_ints(payload, "version")
                        if hint is None:
                            notes.ignore("no version", payload)
                        else:
                            hints.append((hint[0], payload))
                    if not hints and not overflowed:
                        continue
                    await ctx.hold(gate)
                    status = await ctx.db.run(etl_status.warehouse_status)
                    await ctx.close()  # no transaction stays open between events
                    last = asyncio.get_running_loop().time()
                    for version, payload in hints:  # a genuine one is sent with its version
                        if version > status.version:
                            notes.ignore("a version the warehouse has not published", payload)
                    if status.version > told:
                        told = status.version
                        await ctx.hold(gate)  # released when the caller closes ctx
                        yield _update(status)
                        await ctx.close()
        finally:
            await ctx.close()
