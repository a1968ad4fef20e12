"""Scheduled incremental loads while ``cdms serve`` runs (``CDMS_ETL_INTERVAL`` seconds).

A daemon thread: sleeps ``interval`` seconds, runs the ETL, repeats. A run that finds
another in progress is skipped (the lock holder is doing the work); a failure is reported
and the next tick tries again. ``stop()`` wakes the thread and waits for a run in flight
a little; a load cut short by process exit is safe (every step is one transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from db.errors import CdmsError
from etl import runner
from etl.errors import EtlBusyError


class EtlScheduler:
    def __init__(self, url: str, interval_s: float, report: Callable[[str], None]) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.url = url
        self.interval_s = interval_s
        self.report = report
        self.runs = 0  # completed ticks (succeeded, skipped or failed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cdms-etl-scheduler", daemon=True)

    def start(self) -> EtlScheduler:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def tick(self) -> None:
        try:
            result = runner.run(self.url)
        except EtlBusyError:
            self.report("scheduled etl run skipped: another run is in progress")
        except CdmsError as exc:
            self.report(f"scheduled etl run failed: error[{exc.code}]: {exc.message}")
        except Exception as exc:  # keep serving; the next tick retries
            self.report(f"scheduled etl run failed: {type(exc).__name__}: {exc}")
        else:
            if result.changed:
                changes = sum(
                    s.counts.inserted + s.counts.updated + s.counts.deleted for s in result.steps
                )
                self.report(
                    f"scheduled etl run {result.run_id}: {changes:,} row change(s) "
                    f"in {result.seconds:.2f} s, warehouse version {result.version}"
                )
        finally:
            self.runs += 1


def start_if_enabled(
    url: str, interval_s: int, report: Callable[[str], None]
) -> EtlScheduler | None:
    """The running scheduler, or None when ``interval_s`` is 0 (off)."""
    if interval_s <= 0:
        return None
    return EtlScheduler(url, interval_s, report).start()
