"""``warehouseStatus`` and ``warehouseUpdated``: how fresh the warehouse is (``etl.status``).

The warehouse (and so cubes, the dashboard and stored predictions) trails the shop by the
pipeline's lag. ``warehouseStatus`` reads it on request; ``warehouseUpdated`` tells a
subscriber each time a run publishes a new warehouse version (``NOTIFY cdms_etl_done``,
sent in the transaction that publishes it; one LISTEN per process, the hub of
schema.subscriptions). For staff (admin, analyst, service): the pipeline refuses customers
(FORBIDDEN) by the fields' roles.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from db.config import to_libpq_url
from etl import status as etl_status
from schema.catalog import STAFF
from schema.context import Info
from schema.subscriptions import _typed, hub


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
    error: str | None = strawberry.field(description="The last run's error, when it failed.")


def _status(s: etl_status.WarehouseStatus) -> WarehouseStatus:
    return WarehouseStatus(
        version=s.version,
        newest_change_at=s.newest_change_at,
        lag_seconds=s.lag_seconds,
        last_run_at=s.last_run_at,
        state=None if s.state is None else WarehouseRunState(s.state),
        error=s.error,
    )


def _update(event: dict[str, Any]) -> WarehouseUpdate:
    newest = event.get("newestChangeAt")
    return WarehouseUpdate(
        version=int(event["version"]),
        newest_change_at=None if newest is None else dt.datetime.fromisoformat(newest),
        lag_seconds=float(event["lagSeconds"]),
    )


@strawberry.type
class WarehouseQueries:
    @_typed(
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
    @_typed(
        strawberry.subscription(
            metadata={"roles": STAFF},
            description="An event each time a pipeline run publishes a new warehouse version.",
        )
    )
    async def warehouse_updated(self, info: Info) -> AsyncGenerator[WarehouseUpdate, None]:
        ctx = info.context
        url = to_libpq_url(ctx.engine.url.render_as_string(hide_password=False))
        try:
            async with hub(url, etl_status.UPDATED_CHANNEL).subscribe() as queue:
                while True:
                    yield _update(await queue.get())
        finally:
            await ctx.close()
