"""When ``cdms serve`` runs the pipeline: on changes (default), every N seconds, or never.

``continuous``: a daemon thread LISTENs on ``cdms_dw_change`` (every write to a source
table of the warehouse sends it, migration 0009). The first change heard after a quiet
spell starts a run DEBOUNCE_S (0.25 s, or ``floor`` if less) later, so that the writes of
one request or burst go together, and a run never starts less than ``floor`` after the
previous one ended (the changes heard meanwhile wait for it: a micro-batch). Under a steady
stream of writes runs follow each other ``floor`` apart, each taking what arrived during
the previous one and its pause (the change log is the database's, so nothing piles up: a
run takes whatever is there, and the pause bounds the share of the machine it takes). When
nothing is heard for ``ceiling`` seconds the loop looks for changes it may have missed (a
lost connection, a writer that bypassed the triggers) and runs if there are any. Before
each run it asks ``etl.status`` whether anything is pending, so a notification whose
change an earlier run already loaded costs no run.

``interval``: a run (if anything is pending) every ``interval`` seconds. ``off``: no runs.

A failed run is retried with back-off (``floor`` doubling up to ``ceiling``) and reported
at once; another process holding the lock (``cdms etl run``, another host's server) is
waited for. Successful runs are summed up in one line a minute. ``stop()`` wakes the thread
and waits for a run in flight a little; a run cut short by process exit is safe (each step
is one transaction, and the next run catches up).

Only one process of a server runs this: the child of ``cdms serve`` that answers no
request (api.pipeline_process); across processes and hosts the pipeline's advisory
lock keeps runs apart.
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from db.config import to_libpq_url
from db.errors import CdmsError
from db.listen import drain
from etl import pipeline, runner
from etl.errors import EtlBusyError
from etl.runner import RunResult
from etl.status import warehouse_status
from etl.steps import STEP_NAMES

CHANNEL = "cdms_dw_change"
SUMMARY_S = 60.0  # successful runs are reported once a minute, summed up
DEBOUNCE_S = 0.25  # the wait of the first change heard after a quiet spell
LONGEST_S = 365 * 86_400.0  # the longest interval a schedule may set (timers wait < 292 years)


def _shown(value: float) -> str:
    """A number as the operator wrote it, not in exponent form (1e+08)."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 1e12 or 0 < abs(value) < 1e-6:  # (not 300 digits, nor "-0")
        return f"{value:g}"
    return f"{value:.6f}".rstrip("0").rstrip(".")


class Mode(enum.StrEnum):
    CONTINUOUS = "continuous"
    INTERVAL = "interval"
    OFF = "off"


@dataclass(frozen=True)
class Schedule:
    mode: Mode = Mode.CONTINUOUS
    interval_s: float = 60.0  # interval mode: between two looks for changes
    floor_s: float = 1.0  # continuous: the least time from the end of a run to the next
    ceiling_s: float = 30.0  # continuous: the longest without looking; the longest back-off

    def __post_init__(self) -> None:
        """The one check of a schedule, in the words of the variables that set it
        (``cdms serve`` builds it from them: api/settings.py)."""
        # in every mode: a wrong value is a typo whichever mode reads it
        if not self.interval_s > 0:
            raise ValueError(
                f"CDMS_ETL_INTERVAL must be positive, got {_shown(self.interval_s)}"
                " (CDMS_ETL_MODE=off turns the scheduled loads off)"
            )
        if not 0 < self.floor_s <= self.ceiling_s:
            raise ValueError(
                "CDMS_ETL_MIN_INTERVAL must be positive and at most CDMS_ETL_MAX_INTERVAL,"
                f" got {_shown(self.floor_s)} and {_shown(self.ceiling_s)}"
            )
        for name, value in (
            ("CDMS_ETL_INTERVAL", self.interval_s),
            ("CDMS_ETL_MAX_INTERVAL", self.ceiling_s),
        ):
            if value > LONGEST_S:
                raise ValueError(
                    f"{name} must be at most {LONGEST_S:.0f} (a year), got {_shown(value)}"
                )

    def back_off(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed runs in a row: ``floor_s`` doubling up
        to ``ceiling_s`` (the exponent capped, so a long streak cannot overflow)."""
        return min(self.ceiling_s, self.floor_s * 2.0 ** min(failures, 64))


class Scheduler:
    def __init__(
        self,
        url: str,
        schedule: Schedule,
        report: Callable[[str], None],
        run: Callable[[], RunResult] | None = None,
    ) -> None:
        self.url = url
        self.schedule = schedule
        self.report = report
        self.run = run or (lambda: pipeline.run(url, check=False))
        self.runs = 0  # runs that succeeded
        self.failures = 0  # runs that failed since the last success
        self.skipped = 0  # looks that found nothing pending
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="cdms-etl-scheduler", daemon=True)
        self._listening = threading.Event()
        self._busy_reported = False
        self._notes: list[str] = []  # of the last run, reported once
        self._summary = _Summary()

    def start(self) -> Scheduler:
        self._thread.start()
        if self.schedule.mode is Mode.CONTINUOUS:
            self._listening.wait(timeout=10)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # -- the loops ---------------------------------------------------------------------
    def _main(self) -> None:
        if self.schedule.mode is Mode.CONTINUOUS:
            self._continuous()
        elif self.schedule.mode is Mode.INTERVAL:
            while not self._stop.wait(self.schedule.interval_s):
                self._attempt()

    def _continuous(self) -> None:
        s = self.schedule
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        due: float | None = time.monotonic()  # catch up with what came before the start
        last_end = float("-inf")
        last_look = time.monotonic()
        reconnect_delay = s.floor_s
        try:
            while not self._stop.is_set():
                if conn is None:
                    conn = self._listen()
                    if conn is None:
                        self._stop.wait(reconnect_delay)
                        reconnect_delay = min(reconnect_delay * 2, s.ceiling_s)
                        continue
                    reconnect_delay = s.floor_s
                    due = min(due or time.monotonic(), time.monotonic())  # what was missed
                now = time.monotonic()
                wait = (due - now) if due is not None else (last_look + s.ceiling_s - now)
                try:
                    heard = drain(conn, min(max(wait, 0.0), 0.5)) > 0
                except psycopg.Error as exc:
                    self.report(f"etl: lost the change notifications ({exc}); reconnecting")
                    conn.close()
                    conn = None
                    continue
                now = time.monotonic()
                if heard and due is None:
                    due = max(now + min(s.floor_s, DEBOUNCE_S), last_end + s.floor_s)
                if due is None and now >= last_look + s.ceiling_s:
                    due = now  # a look for changes nothing told us about
                if due is None or now < due:
                    continue
                with contextlib.suppress(psycopg.Error):  # (the next turn reconnects)
                    drain(conn, 0.0)  # what arrives from here on needs another run
                outcome = self._attempt()
                last_end = last_look = time.monotonic()
                if outcome == "failed":
                    due = last_end + s.back_off(self.failures)
                elif outcome == "busy":
                    due = last_end + max(s.floor_s, 1.0)
                else:
                    due = None
        finally:
            if conn is not None:
                conn.close()

    def _listen(self) -> psycopg.Connection[tuple[object, ...]] | None:
        conn = None
        try:
            conn = psycopg.connect(
                to_libpq_url(self.url),
                autocommit=True,
                application_name=f"cdms-etl listen (pid {os.getpid()})",
            )
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            self.report(f"etl: cannot listen for changes ({exc}); retrying")
            return None
        finally:
            self._listening.set()
        return conn

    # -- one attempt -------------------------------------------------------------------
    def _attempt(self) -> str:
        """Run the pipeline if anything is pending: "ran", "idle", "busy" or "failed"."""
        try:
            if not self._pending():
                self.skipped += 1
                return "idle"
            result = self.run()
        except EtlBusyError:
            if not self._busy_reported:
                self.report("etl: another run is in progress; waiting for it")
                self._busy_reported = True
            return "busy"
        except Exception as exc:  # keep serving; retried with back-off
            self.failures += 1
            what = (
                f"error[{exc.code}]: {exc.message}"
                if isinstance(exc, CdmsError)
                else (f"{type(exc).__name__}: {exc}")
            )
            retry = self.schedule.back_off(self.failures)
            self.report(
                f"etl run failed ({self.failures} in a row; retrying in {retry:.1f} s): {what}"
            )
            return "failed"
        self._busy_reported = False
        if self.failures:
            self.report(f"etl: run {result.run_id} succeeded after {self.failures} failure(s)")
        self.failures = 0
        self.runs += 1
        line = self._summary.add(result)
        if line:
            self.report(line)
        if result.notes != self._notes:  # once while it lasts (a run a second otherwise)
            for note in result.notes:
                self.report(f"etl: run {result.run_id}: {note}")
            self._notes = result.notes
        return "ran"

    def _pending(self) -> bool:
        """Something for a run to do: a source change not loaded, or a last run that did
        not succeed (its steps after the load may not have applied)."""
        with runner.etl_engine(self.url).connect() as conn:
            status = warehouse_status(conn)
        return not status.caught_up or status.state != "succeeded"


class _Summary:
    """Successful runs summed up once a minute (the first one at once)."""

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.runs = 0
        self.changes = 0
        self.seconds = 0.0
        self.first = True

    def add(self, result: RunResult) -> str | None:
        self.runs += 1
        self.changes += sum(
            s.counts.inserted + s.counts.updated + s.counts.deleted
            for s in result.steps
            if s.step in _LOAD
        )
        self.seconds = max(self.seconds, result.seconds)
        now = time.monotonic()
        if now - self.since < SUMMARY_S and not self.first:
            return None
        self.first = False
        line = (
            f"etl: {self.runs} run(s) in {now - self.since:.0f} s, {self.changes:,} row"
            f" change(s), longest {self.seconds:.2f} s; warehouse version {result.version}"
        )
        self.since, self.runs, self.changes, self.seconds = now, 0, 0, 0.0
        return line


_LOAD = set(STEP_NAMES)


def start(url: str, schedule: Schedule, report: Callable[[str], None]) -> Scheduler | None:
    """The running scheduler, or None when the mode is ``off``; ``report`` is told which
    (the operator reads the mode in the server's log)."""
    report(f"ETL mode {schedule.mode.value}: {describe(schedule)}")
    if schedule.mode is Mode.OFF:
        return None
    return Scheduler(url, schedule, report).start()


def describe(schedule: Schedule) -> str:
    """What the schedule does, in the words of the variables that set it."""
    if schedule.mode is Mode.OFF:
        return "no scheduled loads (cdms etl run loads by hand)"
    if schedule.mode is Mode.INTERVAL:
        return f"a load every {_shown(schedule.interval_s)} s (CDMS_ETL_INTERVAL)"
    return (
        f"a load soon after changes, at least {_shown(schedule.floor_s)} s apart"
        f" (CDMS_ETL_MIN_INTERVAL), a look at least every {_shown(schedule.ceiling_s)} s"
        " (CDMS_ETL_MAX_INTERVAL)"
    )
