"""``cdms report``: the charts of ``api.report_charts`` as PNG files plus an ``index.html``.

One style for every chart (seaborn ``whitegrid``), 1440 x 720 px (12 x 6 in at 120 dpi), a
title and axis labels with units; under each chart a one-line finding computed from the
same DataFrame that was plotted.

Names in the data (a country, a product's name or category) are drawn as the text they are:
never as mathtext (``$...$``), with control characters written as their escapes
(``db.errors.printable``). A report is written whole or not at all: rendered in a
temporary folder beside ``out``, then moved in, ``index.html`` last.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import seaborn as sns  # type: ignore[import-untyped]
from cycler import cycler
from matplotlib.figure import Figure
from sqlalchemy.engine import Engine

from api.report_charts import CHARTS, Chart, Period
from db.errors import CdmsError, printable

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 6.0, 120
WIDTH_PX, HEIGHT_PX = int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI)


class RenderError(CdmsError):
    """A chart that could not be drawn (nothing of the report is written)."""

    code = "RENDER"


@dataclass(frozen=True)
class Rendered:
    chart: Chart
    png: Path
    finding: str
    data: pd.DataFrame


@contextmanager
def house_style() -> Iterator[None]:
    """The report's one style, applied only while rendering (global rcParams untouched)."""
    style = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("notebook", font_scale=1.1),
        "axes.prop_cycle": cycler(color=sns.color_palette("deep")),
        "axes.titleweight": "bold",
        "figure.facecolor": "white",
        # a label is text: "$...$" in a name is not mathtext (an unknown command raised at
        # savefig, a known one changed the label), and no TeX is run on it
        "text.parse_math": False,
        "text.usetex": False,
    }
    with mpl.rc_context(style):
        yield


def draw(chart: Chart, data: pd.DataFrame) -> Figure:
    """The chart's figure (no pyplot: figures are not kept in a global registry)."""
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    if data.empty:
        ax.text(0.5, 0.5, "no data in this period", ha="center", va="center", fontsize=16)
        ax.set_axis_off()
    else:
        chart.plot(plain(data), ax)
    ax.set_title(chart.title)
    return fig


def plain(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with every text value as :func:`db.errors.printable` shows it: a control
    character has no glyph (matplotlib warned, quoting it raw, on stderr) and is drawn as its
    escape, as the CLI prints it."""
    frame = data.copy()
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            frame[col] = frame[col].map(lambda v: printable(v) if isinstance(v, str) else v)
    frame.attrs = dict(data.attrs)
    return frame


def render(
    engine: Engine,
    out: Path,
    period: Period,
    *,
    on_chart: Callable[[Chart], None] | None = None,
) -> list[Rendered]:
    """Query, plot and save every chart, write ``index.html``, all in a temporary folder
    inside ``out`` (on its filesystem, whatever is mounted or linked there); then move the
    files into ``out``, ``index.html`` last. A chart that cannot be drawn is a
    :class:`RenderError` and ``out`` is left as it was (not there, if it was not)."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".report.", suffix=".partial", dir=out))
    try:
        done = _render_into(engine, work, period, on_chart)
        (work / "index.html").write_text(index_html(done, period), encoding="utf-8")
        for r in done:
            os.replace(work / r.png.name, out / r.png.name)
        os.replace(work / "index.html", out / "index.html")
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [Rendered(r.chart, out / r.png.name, r.finding, r.data) for r in done]


def _render_into(
    engine: Engine, work: Path, period: Period, on_chart: Callable[[Chart], None] | None
) -> list[Rendered]:
    done: list[Rendered] = []
    with engine.connect() as conn, house_style():
        for chart in CHARTS:
            data = chart.data(conn, period)
            png = work / f"{chart.name}.png"
            try:
                draw(chart, data).savefig(png, dpi=DPI)
                finding = chart.finding(data) if not data.empty else "No data in this period."
            except OSError:
                raise  # the folder's, told as such (error[OS])
            except Exception as exc:  # matplotlib's and pandas' own, of any class
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise RenderError(
                    f"chart {chart.name} could not be drawn: {first}", chart=chart.name
                ) from exc
            done.append(Rendered(chart, png, finding, data))
            if on_chart is not None:
                on_chart(chart)
    return done


def index_html(items: list[Rendered], period: Period) -> str:
    esc = html.escape
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = "\n".join(
        f"""<section id="{esc(r.chart.name)}">
  <h2>{esc(r.chart.title)}</h2>
  <img src="{esc(r.png.name)}" width="{WIDTH_PX}" height="{HEIGHT_PX}"
       alt="{esc(r.chart.title)}">
  <p class="finding">{esc(printable(r.finding))}</p>
</section>"""
        for r in items
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cdms report ({esc(period.label())})</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1480px;
         padding: 0 1rem; color: #222; }}
  img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
  .finding {{ font-size: 1.1rem; margin: .5rem 0 2.5rem; }}
  header p {{ color: #555; }}
</style>
</head>
<body>
<header>
  <h1>cdms report</h1>
  <p>Period: {esc(period.label())}. Generated {stamp} from cube queries over the
     warehouse (the numbers the GraphQL <code>cube</code> API returns).</p>
</header>
{sections}
</body>
</html>
"""
