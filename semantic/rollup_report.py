"""Does each rollup pay for itself? ``cdms semantic rollups --explain``.

A rollup costs a table and a rebuild after every ETL run that changed the warehouse; it
pays when it is much smaller than the facts it summarizes (its *compression*: fact rows per
rollup row) and queries use it (*hits*: the cube queries it answered since it was first
built, counted by each API process and added up in ``dw_rollup.build``; cached answers and
the ETL's own refreshes do not count).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from semantic.model import Model
from semantic.rollups import ensure_schema, flush_hits, warehouse_version
from semantic.sources import ROLLUP_SCHEMA, rollup_table

MIN_COMPRESSION = 10.0  # below this a rollup saves less than an order of magnitude of rows


@dataclass(frozen=True)
class RollupStats:
    name: str
    rows: int
    source_rows: int
    hits: int
    built_at: datetime | None
    current: bool  # built from the warehouse's current version

    @property
    def compression(self) -> float:
        return self.source_rows / self.rows if self.rows else 0.0

    @property
    def verdict(self) -> str:
        if self.built_at is None:
            return "not built (cdms semantic rollups)"
        problems = []
        if self.rows and self.compression < MIN_COMPRESSION:
            problems.append(
                f"barely compresses: {self.compression:.1f} fact rows per rollup row"
                f" (under {MIN_COMPRESSION:.0f})"
            )
        if self.hits == 0:
            problems.append("no query has read it")
        if not self.current:
            problems.append("stale: the next ETL run rebuilds it")
        return "does not pay: " + "; ".join(problems) if problems else "pays for itself"


def explain(engine: Engine, model: Model) -> list[RollupStats]:
    out: list[RollupStats] = []
    with engine.begin() as conn:
        ensure_schema(conn)
        flush_hits(conn)
        version = warehouse_version(conn)
        built = {
            r.name: r
            for r in conn.execute(
                sa.text(
                    f"SELECT name, version, built_at, row_count, source_rows, hits"
                    f" FROM {ROLLUP_SCHEMA}.build"
                )
            )
        }
        for cube in model.cubes:
            for p in cube.pre_aggregations:
                name = f"{cube.name}.{p.name}"
                b = built.get(name)
                if b is None:
                    out.append(RollupStats(name, 0, 0, 0, None, False))
                    continue
                table = f"{ROLLUP_SCHEMA}.{rollup_table(cube.name, p)}"
                rows, source = conn.execute(  # as they are now: the ETL refreshes buckets
                    sa.text(f"SELECT count(*), coalesce(sum(source_rows), 0) FROM {table}")
                ).one()
                out.append(
                    RollupStats(
                        name=name,
                        rows=int(rows),
                        source_rows=int(source),
                        hits=int(b.hits),
                        built_at=b.built_at,
                        current=int(b.version) == version,
                    )
                )
    return out
