"""The pipeline's own process: ``cdms serve``'s start-up work (api.startup.Background), then
the ETL scheduler (etl/scheduler.py), in a child process that answers no request.

In the process that answered requests, every run of the pipeline held the interpreter's
lock for its Python parts, and a request waiting for it waited up to the switch interval
(5 ms) at a time (docs/benchmarks.md, issue 16). The child:

- ignores SIGINT and SIGTERM (a ^C or a service manager's TERM reaches the whole process
  group: the server stops the child itself, after its own requests). It stops when the
  server closes its end of a pipe (a run in flight gets ``GRACE_S`` to finish; one cut short
  is safe: each step is one transaction), or within a second of the server's death;
- is started again, with back-off, when it dies on its own (killed for memory while
  training, a crash in native code), and the server's log says so;
- runs at nice value ``CDMS_ETL_NICE`` (10; a server already niced further keeps its
  own), the start-up work included: where the server and the pipeline share the CPUs, the
  requests' Python goes first. Its PostgreSQL backends are left at the server's priority:
  a niced backend preempted while holding a lock the shop's sessions need (a buffer's,
  the WAL's, the snapshot's) makes them all wait (priority inversion). The process's own
  Python parts inside a transaction (scoring) are stretched as well, which holds that
  snapshot a little longer: measured, with the figures, in docs/benchmarks.md (issue 16).

This module imports only the standard library at the top: the child unpickles what it is
given before it can ignore a ^C, and the sooner it does, the smaller that window.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

GRACE_S = 40.0  # what stop() waits for the child (the child's own budget is 5 s + 30 s)
RESTART_S = (1.0, 60.0)  # the back-off of restarts: first, then doubling up to this


class PipelineProcess:
    """Runs, watches and stops the pipeline's child process (module docstring).
    ``schedule`` is ``(mode, interval_s, floor_s, ceiling_s)`` (etl.scheduler.Schedule);
    ``nice`` lowers the child's CPU priority (``CDMS_ETL_NICE``)."""

    def __init__(
        self,
        url: str,
        *,
        train: bool,
        schedule: tuple[str, float, float, float],
        nice: int = 0,
        hold_minutes: int = 0,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self._args = (url, train, schedule, nice, hold_minutes)
        self._report = report or print
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: Any = None
        self._stop_end: Connection | None = None  # closing it tells the child to stop
        self._watcher = threading.Thread(
            target=self._watch, name="cdms-pipeline-watch", daemon=True
        )

    def start(self) -> PipelineProcess:
        """Start the child (from the main thread: a ^C during its first moments is ignored by
        it), and watch it."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child
        try:
            self._spawn()
        finally:
            signal.signal(signal.SIGINT, previous)
        self._watcher.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            reader, writer = self._ctx.Pipe(duplex=False)
            process = self._ctx.Process(
                target=_main, args=(*self._args, reader), name="cdms-pipeline", daemon=True
            )
            process.start()
            reader.close()  # the child's end
            if self._stop_end is not None:  # the end of a child that died
                self._stop_end.close()
            self._process, self._stop_end = process, writer

    def _watch(self) -> None:
        delay = RESTART_S[0]
        while not self._stopping.is_set():
            with self._lock:
                process = self._process
            if process is None:
                return
            started = time.monotonic()
            wait([process.sentinel])
            process.join(5)  # (reaped: its exit code known)
            if self._stopping.is_set():
                return
            self._report(
                f"[yellow]pipeline process exited[/] (code {process.exitcode}); starting it"
                f" again in {delay:.0f} s"
            )
            if self._stopping.wait(delay):
                return
            # a child that ran a while before it died starts the back-off over
            delay = RESTART_S[0] if time.monotonic() - started > RESTART_S[1] else delay
            self._spawn()
            delay = min(RESTART_S[1], delay * 2)

    def stop(self, timeout_s: float = GRACE_S) -> None:
        """Tell the child to stop, wait up to ``timeout_s``, then kill it: it is gone when
        this returns (before the server stops the embedded PostgreSQL it loads into)."""
        with self._lock:
            self._stopping.set()
            process, end = self._process, self._stop_end
        if end is not None:
            end.close()
        if process is None:
            return
        process.join(timeout_s)
        if process.is_alive():
            process.kill()  # SIGTERM is ignored there
            process.join(5)


def _main(
    url: str,
    train: bool,
    schedule: tuple[str, float, float, float],
    nice: int,
    hold_minutes: int,
    told: Any,
) -> None:
    """The child: the start-up work, then the scheduler and the expiry of unpaid orders'
    holds (``hold_minutes``, 0: none; db/holds.py), at nice value ``nice``, until told or
    orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lower_priority(nice)
    from api.cli.common import console
    from api.startup import Background
    from db.engine import make_engine
    from db.holds import Expirer
    from etl.scheduler import Mode, Schedule, Scheduler, start

    mode, interval_s, floor_s, ceiling_s = schedule
    plan = Schedule(Mode(mode), interval_s, floor_s, ceiling_s)
    lock = threading.Lock()
    stopping = False
    schedulers: list[Scheduler | Expirer] = []

    if hold_minutes > 0:  # from the start, whatever the start-up work does
        engine = make_engine(url)  # (the process's one, as the start-up work's)
        schedulers.append(Expirer(engine, hold_minutes, console.print).start())

    def then() -> None:  # after the start-up work, in its thread
        with lock:  # (not started once stopping; one started is stopped below)
            if stopping:
                return
            found = start(url, plan, console.print)
            if found is not None:
                schedulers.append(found)

    background = Background(url, train=train, then=then).start()
    parent = multiprocessing.parent_process()
    watched = [told] + ([parent.sentinel] if parent is not None else [])
    while not wait(watched, timeout=1.0):  # the pipe closed, or the server gone
        pass
    with lock:
        stopping = True
    background.join(timeout=5)  # a load or training in flight: its transaction rolls back
    with lock:
        for scheduler in schedulers:
            scheduler.stop()


def lower_priority(nice: int) -> None:
    """Raise this process's nice value to ``nice`` (a higher one is kept; 0: unchanged).
    Called before any thread starts: on Linux a thread's nice value is its own, and the
    threads started later inherit it. Where the OS has no nice values (Windows): nothing."""
    if not hasattr(os, "getpriority"):
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > current:
            os.nice(nice - current)
    except OSError as exc:  # refused (a sandbox): the work runs at the server's priority
        print(f"pipeline process: CDMS_ETL_NICE={nice} not applied ({exc})", flush=True)
