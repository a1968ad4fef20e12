"""``cdms report --out DIR [--from DATE --to DATE]``: PNG charts and an index.html."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from api.cli.common import app_engine, console, progress
from db.errors import BadUserInputError, CdmsError, printable


class WarehouseEmptyError(CdmsError):
    code = "WAREHOUSE_EMPTY"


# The monthly chart compares the same days a year earlier (year 1 has no year before it);
# a bound is the day after --to, and the cube computes with days before 9999-12-31.
FIRST_DAY, LAST_DAY = date(2, 1, 1), date(9999, 12, 29)


def _date(raw: str | None, option: str) -> date | None:
    if raw is None:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadUserInputError(
            f"{option} must be a date YYYY-MM-DD, got {raw!r}", field=option
        ) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadUserInputError(
            f"{option} must be a date between {FIRST_DAY} and {LAST_DAY},"
            f" got {raw!r} (leave it out for an open range)",
            field=option,
        )
    return day


def report(
    out_: str = typer.Option(
        ..., "--out", metavar="<path>", help="Folder for the PNG charts and index.html."
    ),
    from_: str = typer.Option(None, "--from", help="First day (YYYY-MM-DD, inclusive)."),
    to: str = typer.Option(None, "--to", help="Last day (YYYY-MM-DD, inclusive)."),
) -> None:
    """Render the report charts from cube queries into OUT (index.html + one PNG each)."""
    from api.extras import require

    require("report", "cdms report")
    from api.report import render
    from api.report_charts import CHARTS, Period
    from semantic.service import warehouse_state

    if not out_:  # (as a Path it would be "." - an unset variable - and fill this folder)
        raise BadUserInputError("--out is empty: name the folder to write to", field="--out")
    out = Path(out_)
    period = Period(_date(from_, "--from"), _date(to, "--to"))
    if period.start and period.end and period.start > period.end:
        raise BadUserInputError(f"--from {period.start} is after --to {period.end}", field="--from")
    if out.exists() and not out.is_dir():
        raise BadUserInputError(f"--out {out} exists and is not a folder", field="--out")
    engine = app_engine()
    with engine.connect() as conn:
        _, loaded, _ = warehouse_state(conn)
    if loaded is None:
        raise WarehouseEmptyError("the warehouse was never loaded: run `cdms etl run` first")
    with progress() as bar:
        task = bar.add_task("rendering charts", total=len(CHARTS))

        def advance(chart: object) -> None:
            name = getattr(chart, "name", "")
            bar.update(task, advance=1, description=f"rendered {name}")

        done = render(engine, out, period, on_chart=advance)
    for r in done:
        _say(f"  {r.png.name:<30} {r.finding}")
    _say(f"report: {out / 'index.html'} ({len(done)} charts, {period.label()})")


def _say(line: str) -> None:
    """``line`` on stdout as it is: it quotes names from the data (and the folder given), so
    control characters are escaped (an escape sequence would run on the terminal) and rich
    reads no markup (``[link=...]``), highlighting or emoji codes (``:name:``) in it."""
    console.print(printable(line), markup=False, highlight=False, emoji=False)
