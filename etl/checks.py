"""Data-quality checks over the warehouse, and the content checksum of ``dw``.

Checks (each named ``<table>.<what>``; ``cdms etl check`` and every run execute them all):

* reconciliation - row counts and money totals of each fact equal those of its ``app``
  source (``etl/sql/checks.sql``), excluding rows changed after the warehouse's bound;
* dimensions - every ``app`` customer/product loaded before the bound has a current version
  with the same tracked attributes;
* keys - every fact's dimension key exists and is the version valid at the fact's event time;
* scd2 - per natural id: versions neither overlap nor leave gaps, exactly one is current;
* dim_date - contiguous days.

All of it runs in one REPEATABLE READ snapshot (rolled back: it only writes temp tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.load import data_columns
from etl.steps import DIM_STEPS, FACT_STEPS, STEPS, Step, load_sql


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    app: Decimal | None  # expected (source side), when the check compares two figures
    dw: Decimal | None  # found in the warehouse
    detail: str = ""

    @property
    def difference(self) -> Decimal | None:
        if self.app is None or self.dw is None:
            return None
        return self.dw - self.app

    def describe(self) -> str:
        if self.ok:
            return f"{self.name}: ok"
        if self.difference is not None and self.detail == "":
            return f"{self.name}: app {self.app} vs dw {self.dw} (difference {self.difference:+})"
        return f"{self.name}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "app": None if self.app is None else str(self.app),
            "dw": None if self.dw is None else str(self.dw),
            "detail": self.detail,
        }


def run_checks(engine: Engine) -> list[CheckResult]:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin() as trans:
            try:
                return checks_in(conn)
            finally:
                trans.rollback()  # only temporary tables were written


def checks_in(conn: Connection) -> list[CheckResult]:
    bound = conn.execute(
        sa.text("SELECT CASE WHEN count(*) = :n THEN min(high_water) END FROM dw.etl_watermark"),
        {"n": len(STEPS)},
    ).scalar_one_or_none()
    results: list[CheckResult] = []
    named = load_sql("checks")
    for step in FACT_STEPS:
        results += _reconcile(conn, step, named[step.name], bound)
    for step in DIM_STEPS:
        for measure, app, dw in conn.execute(
            sa.text(named[step.name]), {"bound": bound or "infinity"}
        ):
            results.append(_compare(f"{step.name}.{measure}", app, dw))
    results += _key_checks(conn)
    results += _scd2_checks(conn)
    results.append(_dim_date_check(conn))
    return results


def _compare(name: str, app: Any, dw: Any) -> CheckResult:
    a, w = Decimal(app), Decimal(dw)
    return CheckResult(name=name, ok=a == w, app=a, dw=w)


def _reconcile(conn: Connection, step: Step, sql: str, bound: datetime | None) -> list[CheckResult]:
    cols = ", ".join(step.key_columns)
    key_ddl = ", ".join(f"{c} {t} NOT NULL" for c, t in step.key)
    conn.execute(sa.text("DROP TABLE IF EXISTS _keys"))
    conn.execute(sa.text(f"CREATE TEMP TABLE _keys ({key_ddl}, PRIMARY KEY ({cols}))"))
    if bound is not None:
        # Rows changed (or deleted) at or after the bound: excluded on both sides.
        conn.execute(sa.text(step.sql()["changed"]), {"lo": bound, "hi": "infinity"})
    late_dw = f"({', '.join(f'w.{c}' for c in step.key_columns)}) IN (SELECT {cols} FROM _keys)"
    late_app = f"{step.scope_expr} IN (SELECT {cols} FROM _keys)"
    text = sql.replace("{late_app}", late_app).replace("{late_dw}", late_dw)
    rows = conn.execute(sa.text(text)).all()
    conn.execute(sa.text("DROP TABLE _keys"))
    return [_compare(f"{step.name}.{m}", a, w) for m, a, w in rows]


def _key_checks(conn: Connection) -> list[CheckResult]:
    """Each fact key exists and is the dimension version valid at the event time."""
    out = []
    for step in FACT_STEPS:
        for ref in step.dims:
            dim = f"dw.{ref.dimension}"
            stmt = f"""
                SELECT count(*) FROM {step.table} AS w
                LEFT JOIN {dim} AS d ON d.{ref.key_column} = w.{ref.key_column}
                WHERE w.{ref.key_column} IS NOT NULL
                  AND (d.{ref.key_column} IS NULL
                       OR d.{ref.id_column} <> w.{ref.id_column}
                       OR NOT (w.{step.event_column} >= d.valid_from
                               AND w.{step.event_column} < d.valid_to))
            """
            bad = int(conn.execute(sa.text(stmt)).scalar_one())
            out.append(
                CheckResult(
                    name=f"{step.name}.{ref.key_column}",
                    ok=bad == 0,
                    app=None,
                    dw=None,
                    detail=f"{bad} row(s) whose {ref.key_column} is missing from {dim} "
                    f"or not the version valid at {step.event_column}",
                )
            )
    return out


def _scd2_checks(conn: Connection) -> list[CheckResult]:
    out = []
    for step in DIM_STEPS:
        natural = step.key_columns[0]
        ranges = f"""
            SELECT count(*) FILTER (WHERE prev_to > valid_from),
                   count(*) FILTER (WHERE prev_to < valid_from),
                   count(*) FILTER (WHERE prev_to IS NULL AND valid_from <> '-infinity')
            FROM (SELECT valid_from,
                         lag(valid_to) OVER (PARTITION BY {natural} ORDER BY valid_from) AS prev_to
                  FROM {step.table}) AS v
        """
        overlaps, gaps, late_first = conn.execute(sa.text(ranges)).one()
        out.append(
            CheckResult(
                name=f"{step.name}.scd2_ranges",
                ok=overlaps == gaps == late_first == 0,
                app=None,
                dw=None,
                detail=f"{overlaps} overlapping, {gaps} gapped validity range(s), "
                f"{late_first} first version(s) not starting at -infinity",
            )
        )
        current = f"""
            SELECT count(*) FROM (
                SELECT {natural} FROM {step.table}
                GROUP BY {natural} HAVING count(*) FILTER (WHERE is_current) <> 1) AS x
        """
        bad = int(conn.execute(sa.text(current)).scalar_one())
        out.append(
            CheckResult(
                name=f"{step.name}.one_current",
                ok=bad == 0,
                app=None,
                dw=None,
                detail=f"{bad} {natural}(s) without exactly one current version",
            )
        )
    return out


def _dim_date_check(conn: Connection) -> CheckResult:
    n, span = conn.execute(
        sa.text("SELECT count(*), coalesce(max(date) - min(date) + 1, 0) FROM dw.dim_date")
    ).one()
    return CheckResult(
        name="dim_date.contiguous",
        ok=n == span,
        app=None,
        dw=None,
        detail=f"{n} day(s) over a span of {span}",
    )


# ---------------------------------------------------------------------------------------
# content checksum
# ---------------------------------------------------------------------------------------
def checksums(conn: Connection) -> dict[str, str]:
    """md5 per dw table over natural content: surrogate keys are replaced by the dimension
    row's (natural id, valid_from), so two warehouses with the same content compare equal
    however their identity columns were numbered (and whichever runs wrote them: the
    lineage column is left out)."""
    out: dict[str, str] = {}
    out["dim_date"] = _md5(conn, "dw.dim_date", ["w.*"], [], ["w.date_key"])
    for step in DIM_STEPS:
        surrogate = data_columns(conn, step.table)[0]
        cols = [f"w.{c}" for c in data_columns(conn, step.table) if c != surrogate]
        order = [f"w.{step.key_columns[0]}", "w.valid_from"]
        out[step.name] = _md5(conn, step.table, cols, [], order)
    for step in FACT_STEPS:
        keys = {d.key_column for d in step.dims}
        cols = [f"w.{c}" for c in data_columns(conn, step.table) if c not in keys]
        joins = []
        for i, ref in enumerate(step.dims):
            alias = f"d{i}"
            cols += [f"{alias}.{ref.id_column}", f"{alias}.valid_from"]
            joins.append(
                f"LEFT JOIN dw.{ref.dimension} AS {alias}"
                f" ON {alias}.{ref.key_column} = w.{ref.key_column}"
            )
        order = [f"w.{c}" for c in step.key_columns]
        out[step.name] = _md5(conn, step.table, cols, joins, order)
    return out


def _md5(conn: Connection, table: str, cols: list[str], joins: list[str], order: list[str]) -> str:
    stmt = (
        f"SELECT md5(coalesce(string_agg(ROW({', '.join(cols)})::text, E'\\n'"
        f" ORDER BY {', '.join(order)}), '')) FROM {table} AS w {' '.join(joins)}"
    )
    return str(conn.execute(sa.text(stmt)).scalar_one())
