"""Watermarks: how far each step has loaded, and how far a run may safely read.

The classic hole of an ``updated_at`` watermark: a transaction that began before the
watermark moved (so its ``now()``, hence its rows' ``updated_at``, is older) but commits
after it is never read. We avoid it with a *horizon*: before a run's first step,

    horizon = least(now(), start of the oldest transaction open in this database)

Every source row with ``updated_at < horizon`` was written by a transaction that had already
ended when the horizon was taken (an open one started at or after the horizon; a later one
after it), so it is visible to every step's snapshot. Each step reads ``[watermark,
horizon)`` and sets its watermark to the horizon in the same transaction as its writes.
Rows changed at or after the horizon wait for the next run. A session left idle in a
transaction holds the horizon back (those rows are loaded later, never lost).

The horizon bounds what the next run must read again, not what a run may load: a
dimension step also loads the rows it lacks whatever their ``updated_at`` (every row in a
full run), so that each fact a run loads finds its customer and product
(``etl/sql/dim_customer.sql``). Those beyond the window have an ``updated_at`` at or after
the horizon: the next run reads them again and finds no change.

A transaction publishes its start in pg_stat_activity a few microseconds after taking it;
to close that window the scan is repeated 50 ms later (in a new transaction, since the
activity view is cached per transaction) and the earlier of the two minima is kept.

Assumption, part of the contract in docs/architecture.md: ``updated_at`` (and
``dw.etl_source_delete.deleted_at``) is ``now()`` of the writing transaction, never a value
chosen by the writer.
"""

from __future__ import annotations

import time
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_OLDEST = sa.text(
    """
    SELECT least(CAST(:bound AS timestamptz), now(), min(xact_start))
    FROM pg_stat_activity
    WHERE datname = current_database() AND xact_start IS NOT NULL
      AND backend_type = 'client backend'
    """
)
RESCAN_DELAY_S = 0.05


def horizon(conn: Connection) -> datetime:
    """The run's horizon. Commits ``conn``: it must hold no snapshot the steps will use."""
    first = conn.execute(_OLDEST, {"bound": "infinity"}).scalar_one()
    conn.commit()
    time.sleep(RESCAN_DELAY_S)
    value = conn.execute(_OLDEST, {"bound": first}).scalar_one()
    conn.commit()
    assert isinstance(value, datetime)
    return value


def read(conn: Connection) -> dict[str, datetime]:
    rows = conn.execute(sa.text("SELECT step, high_water FROM dw.etl_watermark")).all()
    return {str(step): hw for step, hw in rows}


def get(conn: Connection, step: str) -> datetime | None:
    value = conn.execute(
        sa.text("SELECT high_water FROM dw.etl_watermark WHERE step = :s"), {"s": step}
    ).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


def advance(conn: Connection, step: str, high_water: datetime, run_id: int) -> None:
    """Move ``step``'s watermark (in the caller's transaction, with the step's writes)."""
    conn.execute(
        sa.text(
            """
            INSERT INTO dw.etl_watermark (step, high_water, run_id, updated_at)
            VALUES (:s, :hw, :run, now())
            ON CONFLICT (step) DO UPDATE
            SET high_water = EXCLUDED.high_water, run_id = EXCLUDED.run_id, updated_at = now()
            """
        ),
        {"s": step, "hw": high_water, "run": run_id},
    )


def reset(conn: Connection) -> None:
    conn.execute(sa.text("DELETE FROM dw.etl_watermark"))


def prune_deletes(conn: Connection, steps: list[str]) -> int:
    """Drop captured deletes that every step using them has passed; returns how many."""
    result = conn.execute(
        sa.text(
            """
            DELETE FROM dw.etl_source_delete
            WHERE deleted_at < (
                SELECT CASE WHEN count(*) = cardinality(CAST(:steps AS text[]))
                            THEN min(high_water) END
                FROM dw.etl_watermark WHERE step = ANY(CAST(:steps AS text[]))
            )
            """
        ),
        {"steps": steps},
    )
    return int(result.rowcount or 0)
