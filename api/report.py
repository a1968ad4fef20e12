"""``cdms report``: the charts of ``api.report_charts`` as PNG files plus an ``index.html``.

One style for every chart (seaborn ``whitegrid``), 1440 x 720 px (12 x 6 in at 120 dpi), a
title and axis labels with units; under each chart a one-line finding computed from the
same DataFrame that was plotted.
"""

from __future__ import annotations

import html
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

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 6.0, 120
WIDTH_PX, HEIGHT_PX = int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI)


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
        chart.plot(data, ax)
    ax.set_title(chart.title)
    return fig


def render(
    engine: Engine,
    out: Path,
    period: Period,
    *,
    on_chart: Callable[[Chart], None] | None = None,
) -> list[Rendered]:
    """Query, plot and save every chart into ``out``, then write ``out/index.html``."""
    out.mkdir(parents=True, exist_ok=True)
    done: list[Rendered] = []
    with engine.connect() as conn, house_style():
        for chart in CHARTS:
            data = chart.data(conn, period)
            png = out / f"{chart.name}.png"
            draw(chart, data).savefig(png, dpi=DPI)
            finding = chart.finding(data) if not data.empty else "No data in this period."
            done.append(Rendered(chart, png, finding, data))
            if on_chart is not None:
                on_chart(chart)
    (out / "index.html").write_text(index_html(done, period), encoding="utf-8")
    return done


def index_html(items: list[Rendered], period: Period) -> str:
    esc = html.escape
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = "\n".join(
        f"""<section id="{esc(r.chart.name)}">
  <h2>{esc(r.chart.title)}</h2>
  <img src="{esc(r.png.name)}" width="{WIDTH_PX}" height="{HEIGHT_PX}"
       alt="{esc(r.chart.title)}">
  <p class="finding">{esc(r.finding)}</p>
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
