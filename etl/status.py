"""How fresh the warehouse is: its version, the newest change it holds, the lag, the last run.

The lag is measured on the sources, not on the runs: the oldest change to an ``app`` table
(or captured delete) that a load step has not applied yet, i.e. whose ``updated_at``
(``deleted_at``) is at or after that step's watermark. Caught up, it is 0; while loads fail
those changes stay and the lag keeps growing, whatever the runs report. The probes are
index lookups on the ``updated_at`` indexes (about a millisecond in all), so the API's
``warehouseStatus``, ``/healthz`` and the change-driven loop call it freely.

After a run that published a new warehouse version, the pipeline sends
``NOTIFY cdms_etl_done`` with :meth:`WarehouseStatus.as_json` of that moment (the
``warehouseUpdated`` subscription).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.iso import iso
from etl.steps import STEPS

UPDATED_CHANNEL = "cdms_etl_done"
INTERRUPTED = "interrupted: the run was stopped (SIGINT)"  # dw.etl_run.error of a Ctrl-C
# dw.etl_run.error of a run whose process died (marked so by the next run)
DIED = "interrupted: the process ended before the run finished"

# the classes of SQLSTATE a failed step may tell (PostgreSQL's Appendix A; CD: ours)
SQLSTATE_CLASSES = {
    "08": "connection exception",
    "0A": "feature not supported",
    "21": "cardinality violation",
    "22": "data exception",
    "23": "integrity constraint violation",
    "25": "invalid transaction state",
    "40": "transaction rollback",
    "42": "syntax error or access rule violation",
    "53": "insufficient resources",
    "54": "program limit exceeded",
    "55": "object not in prerequisite state",
    "57": "operator intervention",
    "58": "system error",
    "CD": "a rule of the shop",
    "P0": "PL/pgSQL error",
    "XX": "internal error",
}
# what runner.step_error puts before the operator's message
_STEP_CODE = re.compile(r"SQLSTATE ([0-9A-Z]{2})[0-9A-Z]{3}: |error\[([A-Z_]{1,40})\]: ")


@dataclass(frozen=True)
class WarehouseStatus:
    version: int  # dw.etl_state.version: bumped when a run publishes changes
    newest_change_at: datetime | None  # the newest source change the warehouse holds
    oldest_pending_at: datetime | None  # the oldest source change it does not hold yet
    lag_seconds: float  # now - oldest_pending_at; 0 when caught up
    last_run_id: int | None
    last_run_at: datetime | None  # when the last run finished (started, while running)
    state: str | None  # of the last run: running / succeeded / failed; None: never ran
    error: str | None  # the last run's error, when it failed: the operator's words
    failing_since: datetime | None  # start of the first failed run since the last success
    failures: int  # failed runs since the last success
    # the last run's failure in the API's words (warehouseStatus.error): the step and the
    # SQLSTATE class or our code, never the database's message (:func:`told`)
    failure: str | None = None

    @property
    def caught_up(self) -> bool:
        return self.oldest_pending_at is None

    @property
    def ok(self) -> bool:
        """Loads are not failing (the last run did not fail)."""
        return self.state != "failed"

    def as_json(self) -> dict[str, Any]:
        """The status as JSON (camelCase, ISO times): ``/healthz`` detail, NOTIFY payload."""

        def opt(t: datetime | None) -> str | None:
            return None if t is None else iso(t)

        return {
            "version": self.version,
            "newestChangeAt": opt(self.newest_change_at),
            "lagSeconds": self.lag_seconds,
            "lastRunId": self.last_run_id,
            "lastRunAt": opt(self.last_run_at),
            "state": self.state,
            "error": self.error,
            "failingSince": opt(self.failing_since),
            "failures": self.failures,
        }


def warehouse_status(conn: Connection) -> WarehouseStatus:
    """The warehouse's freshness, read in ``conn``'s transaction (any role that reads
    ``dw`` and every ``app`` row: the owner, or the API's staff roles)."""
    row = conn.execute(_statement()).one()
    (version, now, pending, newest, run_id, status, started, finished, error) = row[:9]
    failing_since, failures, step, step_error, failed_checks = row[9:]
    lag = 0.0 if pending is None else max((now - pending).total_seconds(), 0.0)
    return WarehouseStatus(
        version=int(version),
        newest_change_at=newest,
        oldest_pending_at=pending,
        lag_seconds=round(lag, 3),
        last_run_id=None if run_id is None else int(run_id),
        last_run_at=finished or started,
        state=status,
        error=error if status == "failed" else None,
        failing_since=failing_since,
        failures=int(failures),
        failure=told(error, step, step_error, failed_checks) if status == "failed" else None,
    )


def told(error: str | None, step: str | None, step_error: str | None, failed_checks: int) -> str:
    """A failed run as a client may read it: which step failed, and the class of its
    SQLSTATE or our own code; how many data-quality checks failed; our words for an
    interrupted run. The database's message (names of tables and constraints, values)
    stays with the operator: dw.etl_run, dw.etl_run_step and the server's log."""
    if step is not None:
        said = f"step {step} failed and was rolled back"
        code = _STEP_CODE.match(step_error or "")
        if code is None:
            return said
        if code[2] is not None:
            return f"{said}: {code[2]}"
        name = SQLSTATE_CLASSES.get(code[1], "a database error")
        return f"{said}: {name} (SQLSTATE class {code[1]})"
    if error in (INTERRUPTED, DIED):
        return error
    if failed_checks:
        return f"{failed_checks} data-quality check{'s' if failed_checks > 1 else ''} failed"
    return "the run failed (the server's log tells why)"


def health(conn: Connection) -> dict[str, Any]:
    """The ``/healthz`` detail of the warehouse (:meth:`WarehouseStatus.as_json`, with
    ``"ok"``: loads are not failing)."""
    status = warehouse_status(conn)
    return {"ok": status.ok, **status.as_json()}


def _watermark_of(steps: list[str]) -> str:
    """The watermark every one of ``steps`` has passed: -infinity while one has none."""
    names = ", ".join(f"'{s}'" for s in steps)
    return (
        f"(SELECT CASE WHEN count(*) = {len(steps)} THEN min(high_water)"
        f" ELSE '-infinity'::timestamptz END FROM dw.etl_watermark WHERE step IN ({names}))"
    )


@cache
def _statement() -> sa.TextClause:
    """One statement: the version, clock, oldest pending and newest applied change, the
    last run and the failure streak. Generated from the steps' declared sources."""
    by_table: dict[str, list[str]] = defaultdict(list)
    by_delete: dict[str, list[str]] = defaultdict(list)
    for step in STEPS:
        for table in step.change_sources:
            by_table[table].append(step.name)
        for source in step.delete_sources:
            by_delete[source].append(step.name)
    pending, newest = [], []
    for table, steps in by_table.items():
        wm = _watermark_of(steps)
        pending.append(f"(SELECT min(updated_at) FROM {table} WHERE updated_at >= {wm})")
        newest.append(f"(SELECT max(updated_at) FROM {table} WHERE updated_at < {wm})")
    for source, steps in by_delete.items():
        wm = _watermark_of(steps)
        where = f"FROM dw.etl_source_delete WHERE source = '{source}'"
        pending.append(f"(SELECT min(deleted_at) {where} AND deleted_at >= {wm})")
        newest.append(f"(SELECT max(deleted_at) {where} AND deleted_at < {wm})")
    return sa.text(
        f"""
        SELECT s.version, clock_timestamp(), least({", ".join(pending)}),
               greatest({", ".join(newest)}),
               r.run_id, r.status, r.started_at, r.finished_at, r.error,
               f.since, f.failures, st.step, st.error,
               (SELECT count(*) FROM jsonb_array_elements(
                    CASE jsonb_typeof(r.checks) WHEN 'array' THEN r.checks END) AS c
                WHERE c -> 'ok' = 'false'::jsonb)
        FROM dw.etl_state AS s
        LEFT JOIN LATERAL (SELECT run_id, status, started_at, finished_at, error, checks
                           FROM dw.etl_run ORDER BY run_id DESC LIMIT 1) AS r ON true
        LEFT JOIN LATERAL (SELECT step, error FROM dw.etl_run_step
                           WHERE run_id = r.run_id AND status = 'failed'
                           ORDER BY position DESC LIMIT 1) AS st ON true
        CROSS JOIN LATERAL (
            SELECT min(started_at) AS since, count(*) AS failures FROM dw.etl_run
            WHERE status = 'failed'
              AND run_id > coalesce((SELECT max(run_id) FROM dw.etl_run
                                     WHERE status = 'succeeded'), 0)) AS f
        """
    )
