"""Benchmark of ``cdms seed``: 100,000 customers and 1,000,000 orders into a fresh database.

Runs on the embedded server (``CDMS_DATA_DIR``), in a throw-away database
``cdms_bench_seed`` that is dropped afterwards, and prints seconds and rows/s per stage.
Usage: ``.venv/bin/python bench/seed.py [--customers N] [--orders M] [--seed S]``.
Target on a 2-core machine: under 120 s in total.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from db.config import DbSettings
from db.engine import dispose_engine, drop_database, ensure_database, with_database
from db.migrate import upgrade
from db.seed import seed
from db.server import embedded_url, stop_embedded

BENCH_DATABASE = "cdms_bench_seed"
_TICKS = os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds used by the PostgreSQL processes serving ``BENCH_DATABASE``.

    The machine is shared: wall time depends on what else runs, CPU time much less. Samples
    /proc twice a second for backends of the bench database and their parallel workers.
    """

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def _sample(self) -> None:
        titles: dict[str, str] = {}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    titles[proc.name] = (proc / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
        backends = {pid for pid, title in titles.items() if BENCH_DATABASE in title}
        workers = {
            pid
            for pid, title in titles.items()
            if "parallel worker for PID" in title
            and title.split("PID", 1)[1].split()[0].strip("\0") in backends
        }
        for pid in backends | workers:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
            self.seen[int(pid)] = max(cpu, self.seen.get(int(pid), 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    console = Console()
    settings = DbSettings.from_env()
    admin = embedded_url(settings.data_dir, "postgres")
    drop_database(admin, BENCH_DATABASE)
    ensure_database(admin, BENCH_DATABASE)
    url = with_database(admin, BENCH_DATABASE)
    try:
        upgrade(url)
        dispose_engine(url)
        marks: dict[str, float] = {}  # stage -> time of its last report
        totals: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            marks[stage] = time.perf_counter()
            totals[stage] = total

        console.print(
            f"seeding {args.customers:,} customers and {args.orders:,} orders "
            f"(seed {args.seed}) into {BENCH_DATABASE} ..."
        )
        started = time.perf_counter()
        cpu_started = time.process_time()
        with ServerCpu() as server:
            counts = seed(url, args.customers, args.orders, args.seed, report)
        elapsed = time.perf_counter() - started
        python_cpu = time.process_time() - cpu_started
    finally:
        dispose_engine(url)
        drop_database(admin, BENCH_DATABASE)
        if settings.database_url is None:
            stop_embedded(settings.data_dir)

    table = Table(title=f"cdms seed: {elapsed:.1f} s in total")
    table.add_column("stage")
    table.add_column("rows", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("rows/s", justify="right")
    previous = started
    for stage, mark in sorted(marks.items(), key=lambda kv: kv[1]):
        seconds = mark - previous
        previous = mark
        rows = counts.get(stage)
        table.add_row(
            stage if rows is None else f"app.{stage}",
            "" if rows is None else f"{rows:,}",
            f"{seconds:.1f}",
            "" if rows is None or seconds <= 0 else f"{rows / seconds:,.0f}",
        )
    table.add_row("analyze + commit", "", f"{started + elapsed - previous:.1f}", "")
    total_rows = sum(counts.values())
    table.add_row("total", f"{total_rows:,}", f"{elapsed:.1f}", f"{total_rows / elapsed:,.0f}",
                  style="bold")  # fmt: skip
    console.print(table)
    load = os.getloadavg()[0]
    console.print(
        f"CPU: python {python_cpu:.1f} s, PostgreSQL {server.seconds:.1f} s "
        f"(sum {python_cpu + server.seconds:.1f} s; the load average was {load:.1f} on "
        f"{os.cpu_count()} cores, so wall time includes waiting for other processes)"
    )


if __name__ == "__main__":
    main()
