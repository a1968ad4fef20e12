"""The report's charts, each one cube query → DataFrame → plot → one-line finding.

Every number comes from ``semantic.service.execute`` (the planner behind GraphQL ``cube``);
there is no SQL here. ``api.report`` renders the charts to PNG and writes ``index.html``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns  # type: ignore[import-untyped]
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter
from sqlalchemy.engine import Connection

from semantic.model import Granularity
from semantic.query import (
    Compare,
    Condition,
    CubeQuery,
    DimensionField,
    MeasureField,
    Member,
    Op,
    OrderItem,
)
from semantic.service import execute

MONEY = "revenue, currency units"
# one colour per series and status, shared with the dashboard
PALETTE: dict[str, dict[str, str]] = json.loads(
    (Path(__file__).parent / "dashboard" / "static" / "palette.json").read_text()
)


@dataclass(frozen=True)
class Period:
    """Inclusive local dates; ``None`` leaves that side open."""

    start: date | None = None
    end: date | None = None

    def condition(self, time_member: str) -> tuple[Condition, ...]:
        m = _mem(time_member)
        if self.start and self.end:
            return (Condition(m, Op.IN_DATE_RANGE, (self.start.isoformat(), self.end.isoformat())),)
        if self.start:
            return (Condition(m, Op.AFTER_DATE, (_day_before(self.start),)),)
        if self.end:
            return (Condition(m, Op.BEFORE_DATE, (_day_after(self.end),)),)
        return ()

    def label(self) -> str:
        if not self.start and not self.end:
            return "all dates"
        return f"{self.start or '…'} to {self.end or '…'}"


def _day_before(d: date) -> str:
    return date.fromordinal(d.toordinal() - 1).isoformat()


def _day_after(d: date) -> str:
    return date.fromordinal(d.toordinal() + 1).isoformat()


def _mem(ref: str) -> Member:
    cube, _, name = ref.partition(".")
    return Member(cube, name)


def measure(ref: str, alias: str, compare: Compare | None = None) -> MeasureField:
    return MeasureField(alias, _mem(ref), compare)


def dim(ref: str, alias: str, granularity: Granularity | None = None) -> DimensionField:
    return DimensionField(alias, _mem(ref), granularity)


def _order(*refs: str) -> tuple[OrderItem, ...]:
    """``"cube.member"`` ascending, ``"-cube.member"`` descending."""
    return tuple(OrderItem(_mem(r.lstrip("-")), descending=r.startswith("-")) for r in refs)


def run(conn: Connection, query: CubeQuery) -> pd.DataFrame:
    """A cube query's rows as a DataFrame whose columns are the field aliases, in order."""
    result = execute(conn, query)
    cols = [d.alias for d in query.dimensions] + [m.alias for m in query.measures]
    return pd.DataFrame([[r[c] for c in cols] for r in result.rows], columns=cols)


@dataclass(frozen=True)
class Chart:
    name: str  # file stem
    title: str
    query: Callable[[Connection, Period], CubeQuery]
    plot: Callable[[pd.DataFrame, Axes], None]
    finding: Callable[[pd.DataFrame], str]  # of a non-empty answer (api.report words an empty one)
    # more cube answers the finding needs, kept in ``df.attrs`` (not plotted)
    facts: Callable[[Connection, Period, pd.DataFrame], dict[str, Any]] | None = None

    def data(self, conn: Connection, period: Period) -> pd.DataFrame:
        df = run(conn, self.query(conn, period))
        if self.facts is not None and not df.empty:
            df.attrs.update(self.facts(conn, period, df))
        return df


def _pct(a: float, b: float) -> str:
    if not b:
        return "n/a"
    return f"{(a - b) / b * 100:+.1f}%"


def _money_axis(ax: Axes, x: bool = False) -> None:
    (ax.set_xlabel if x else ax.set_ylabel)(MONEY)
    (ax.xaxis if x else ax.yaxis).set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


# --- monthly sales with the prior year beside it ---------------------------------------
def q_monthly(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(
            measure("sales.revenue", "revenue"),
            measure("sales.revenue", "prior_year", Compare.PRIOR_YEAR),
        ),
        dimensions=(dim("sales.orderedAt", "month", Granularity.MONTH),),
        filters=p.condition("sales.orderedAt"),
        order=_order("sales.orderedAt"),
    )


def partial_months(months: list[str], p: Period, today: date) -> set[str]:
    """The months ("YYYY-MM") of ``months`` that hold only part of their days: the month
    still running (``today``'s, or later) and a month the period starts or ends inside."""
    partial = {m for m in months if m >= f"{today:%Y-%m}"}
    if p.start and p.start.day != 1:
        partial.add(f"{p.start:%Y-%m}")
    if p.end and _day_after(p.end)[8:10] != "01":
        partial.add(f"{p.end:%Y-%m}")
    return partial & set(months)


def facts_partial(conn: Connection, p: Period, df: pd.DataFrame) -> dict[str, Any]:
    """The partial months of a chart over months (``partial_months``, today in UTC)."""
    months = [str(m)[:7] for m in df["month"]]
    return {"partial": sorted(partial_months(months, p, datetime.now(UTC).date()))}


PARTIAL_NOTE = "   (hatched: partial month, only part of its days)"
PARTIAL_ALPHA = 0.55  # a partial month's bar of the period (hatched)


def plot_monthly(df: pd.DataFrame, ax: Axes) -> None:
    months = [m[:7] for m in df["month"]]
    partial = set(df.attrs.get("partial", ()))
    x = range(len(months))
    hatch = ["//" if m in partial else "" for m in months]
    ax.bar(
        [i - 0.2 for i in x],
        df["prior_year"].fillna(0),
        width=0.4,
        label="prior year",
        color=PALETTE["series"]["priorYear"],
    )
    bars = ax.bar(
        [i + 0.2 for i in x],
        df["revenue"],
        width=0.4,
        label="this period",
        color=PALETTE["series"]["revenue"],
    )
    for bar, h in zip(bars, hatch, strict=True):
        if h:  # a month with only part of its days: not a collapse
            bar.set_hatch(h)
            bar.set_alpha(PARTIAL_ALPHA)
    labels = [f"{m}*" if m in partial else m for m in months]
    ax.set_xticks(list(x), labels, rotation=60, ha="right", fontsize=9)
    ax.set_xlabel(
        "month of order" + ("   (* partial month: only part of its days)" if partial else "")
    )
    _money_axis(ax)
    # keys of their own: a key copies its series' first bar, hatched when the range starts
    # inside a month, as if every bar of the period were partial
    revenue = PALETTE["series"]["revenue"]
    keys = [
        Patch(facecolor=PALETTE["series"]["priorYear"], label="prior year"),
        Patch(facecolor=revenue, label="this period"),
    ]
    if partial:  # at either end of the range, or the running month
        keys.append(
            Patch(facecolor=revenue, hatch="//", alpha=PARTIAL_ALPHA, label="partial month")
        )
    ax.legend(handles=keys)


def _year_earlier(d: date) -> date:
    return (
        d.replace(year=d.year - 1, day=28)
        if (d.month, d.day) == (2, 29)
        else d.replace(year=d.year - 1)
    )


def _revenue_between(conn: Connection, start: date, end: date) -> float:
    q = CubeQuery(
        measures=(measure("sales.revenue", "revenue"),),
        filters=Period(start, end).condition("sales.orderedAt"),
    )
    df = run(conn, q)
    return 0.0 if df.empty or pd.isna(df["revenue"].iloc[0]) else float(df["revenue"].iloc[0])


def facts_monthly(conn: Connection, p: Period, df: pd.DataFrame) -> dict[str, Any]:
    """Like for like: the latest year's revenue up to its last day of sales in the period,
    and the same days a year earlier (a month that has only begun is compared with the same
    days of that month, not with the whole of it)."""
    last = run(
        conn,
        CubeQuery(
            measures=(measure("sales.revenue", "revenue"),),
            dimensions=(dim("sales.orderedAt", "day", Granularity.DAY),),
            filters=p.condition("sales.orderedAt"),
            order=_order("-sales.orderedAt"),
            limit=1,
        ),
    )
    partial = facts_partial(conn, p, df)
    if last.empty:
        return partial
    end = date.fromisoformat(str(last["day"].iloc[0])[:10])
    start = max(date(end.year, 1, 1), p.start or date.min)
    return {
        **partial,
        "like_for_like": {
            "start": start,
            "end": end,
            "revenue": _revenue_between(conn, start, end),
            "prior": _revenue_between(conn, _year_earlier(start), _year_earlier(end)),
        },
    }


def f_monthly(df: pd.DataFrame) -> str:
    peak = df.loc[df["revenue"].idxmax()]
    lfl = df.attrs.get("like_for_like")
    if not lfl:
        return f"Peak month {str(peak['month'])[:7]}."
    start, end = lfl["start"], lfl["end"]
    vs = (
        f", {_pct(lfl['revenue'], lfl['prior'])} against the same days of {start.year - 1}"
        f" ({_year_earlier(start):%m-%d} to {_year_earlier(end):%m-%d})"
        if lfl["prior"]
        else ""
    )
    return (
        f"Revenue from {start:%Y-%m-%d} to {end:%Y-%m-%d} was {lfl['revenue']:,.0f}{vs}; "
        f"peak month {str(peak['month'])[:7]}."
    )


# --- top categories over time ------------------------------------------------------------
def _top(conn: Connection, p: Period, ref: str, n: int) -> tuple[str, ...]:
    q = CubeQuery(
        measures=(measure("sales.revenue", "revenue"),),
        dimensions=(dim(ref, "name"),),
        filters=p.condition("sales.orderedAt"),
        order=_order("-sales.revenue", ref),
        limit=n,
    )
    return tuple(str(v) for v in run(conn, q)["name"])


def _over_time(ref: str, n: int) -> Callable[[Connection, Period], CubeQuery]:
    def query(conn: Connection, p: Period) -> CubeQuery:
        top = _top(conn, p, ref, n)
        return CubeQuery(
            measures=(measure("sales.revenue", "revenue"),),
            dimensions=(
                dim("sales.orderedAt", "month", Granularity.MONTH),
                dim(ref, "name"),
            ),
            filters=(*p.condition("sales.orderedAt"), Condition(_mem(ref), Op.IN, top or ("",))),
            order=_order("sales.orderedAt", ref),
        )

    return query


def plot_over_time(df: pd.DataFrame, ax: Axes) -> None:
    """One line per name, in the house colours. The legend is given its lines and names:
    matplotlib (and so seaborn's ``hue`` legend) leaves out a label starting with "_"."""
    frame = df.assign(month=pd.to_datetime(df["month"]))
    names = list(dict.fromkeys(str(n) for n in frame["name"]))
    lines = [
        ax.plot(
            rows["month"], rows["revenue"], marker="o", markeredgecolor="w", markeredgewidth=0.75
        )[0]
        for rows in (frame[frame["name"] == n] for n in names)
    ]
    partial = sorted(set(df.attrs.get("partial", ())))
    for m in partial:  # a band over the month: its points hold only part of its days
        start = pd.Timestamp(f"{m}-01")
        ax.axvspan(start - pd.Timedelta(days=12), start + pd.Timedelta(days=12),
                   facecolor="none", edgecolor="0.6", hatch="//", linewidth=0)  # fmt: skip
    ax.set_xlabel("month of order" + (PARTIAL_NOTE if partial else ""))
    _money_axis(ax)
    ax.legend(lines, names, fontsize=9)


def plot_totals(df: pd.DataFrame, ax: Axes) -> None:
    """Each name's total over the period as a horizontal bar, largest on top: readable where
    five lines of monthly points per product tangle."""
    totals = df.groupby("name")["revenue"].sum().sort_values()
    ax.barh([str(n) for n in totals.index], totals.to_numpy(), color=PALETTE["series"]["revenue"])
    _money_axis(ax, x=True)
    ax.set_ylabel("product")
    for i, v in enumerate(totals.to_numpy()):
        ax.annotate(f" {v:,.0f}", (float(v), i), va="center", fontsize=9)


def f_over_time(kind: str) -> Callable[[pd.DataFrame], str]:
    def finding(df: pd.DataFrame) -> str:
        by = df.groupby("name")["revenue"].sum().sort_values(ascending=False)
        return (
            f"Top {kind}: {by.index[0]} with {by.iloc[0]:,.0f} "
            f"({by.iloc[0] / by.sum() * 100:.0f}% of the top {len(by)})."
        )

    return finding


# --- returns -----------------------------------------------------------------------------
def q_return_reasons(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(measure("returns.count", "requests"), measure("returns.quantity", "units")),
        dimensions=(dim("returns.reason", "reason"),),
        filters=p.condition("returns.returnedAt"),
        order=_order("-returns.count", "returns.reason"),
    )


def plot_return_reasons(df: pd.DataFrame, ax: Axes) -> None:
    sns.barplot(
        df, x="requests", y="reason", color=PALETTE["series"]["returns"], saturation=1, ax=ax
    )
    ax.set_xlabel("return requests (count)")
    ax.set_ylabel("reason")


def f_return_reasons(df: pd.DataFrame) -> str:
    top = df.iloc[0]
    share = float(top["requests"]) / float(df["requests"].sum()) * 100
    return f"Most returns cite {top['reason']!s}: {share:.0f}% of {df['requests'].sum():,.0f}."


def q_return_categories(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(
            measure("returns.quantity", "units_returned"),
            measure("returns.returnRate", "return_rate"),
        ),
        dimensions=(dim("products.category", "category"),),
        filters=(*p.condition("returns.returnedAt"), *p.condition("sales.orderedAt")),
        order=_order("-returns.returnRate", "products.category"),
    )


def plot_return_categories(df: pd.DataFrame, ax: Axes) -> None:
    frame = df.assign(rate=df["return_rate"].fillna(0) * 100)
    sns.barplot(
        frame, x="rate", y="category", color=PALETTE["series"]["returns"], saturation=1, ax=ax
    )
    ax.set_xlabel("return rate (% of units sold)")
    ax.set_ylabel("category")
    # as many decimals as the tick step needs: 2.5, 5.0, 7.5 (not 2, 5, 8)
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=None))
    for i, units in enumerate(df["units_returned"].fillna(0)):
        ax.annotate(f" {units:,.0f} units", (float(frame["rate"].iloc[i]), i), va="center")


def f_return_categories(df: pd.DataFrame) -> str:
    rated = df.dropna(subset=["return_rate"])
    if rated.empty:
        return "No return rates in this period."
    hi, lo = rated.iloc[0], rated.iloc[-1]
    return (
        f"{hi['category']} has the highest return rate ({hi['return_rate'] * 100:.1f}% of units),"
        f" {lo['category']} the lowest ({lo['return_rate'] * 100:.1f}%)."
    )


# --- complaints and rating ------------------------------------------------------------------
def q_feedback(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(
            measure("feedback.complaintCount", "complaints"),
            measure("feedback.averageRating", "average_rating"),
        ),
        dimensions=(dim("feedback.createdAt", "month", Granularity.MONTH),),
        filters=p.condition("feedback.createdAt"),
        order=_order("feedback.createdAt"),
    )


def plot_feedback(df: pd.DataFrame, ax: Axes) -> None:
    months = pd.to_datetime(df["month"])
    partial = set(df.attrs.get("partial", ()))
    bars = ax.bar(
        months,
        df["complaints"],
        width=20,
        color=PALETTE["series"]["complaints"],
        alpha=0.7,
        label="complaints",
    )
    ax.set_xlabel("month of feedback" + (PARTIAL_NOTE if partial else ""))
    ax.set_ylabel("complaints (count)")
    right = ax.twinx()
    right.plot(
        months,
        df["average_rating"],
        color=PALETTE["series"]["rating"],
        marker="o",
        label="average rating",
    )
    right.set_ylabel("average rating (1-5 stars)")
    right.set_ylim(1, 5)
    right.grid(False)
    ax.legend(
        handles=[*ax.get_legend_handles_labels()[0], *right.get_legend_handles_labels()[0]],
        loc="upper left",
    )
    for bar, m in zip(bars, df["month"], strict=True):  # after the legend: its key stays plain
        if str(m)[:7] in partial:  # a month with only part of its days: not a drop
            bar.set_hatch("//")
            bar.set_alpha(0.4)


def f_feedback(df: pd.DataFrame) -> str:
    worst = df.loc[df["complaints"].idxmax()]
    return (
        f"{df['complaints'].sum():,.0f} complaints; most in {str(worst['month'])[:7]} "
        f"({worst['complaints']:,.0f}); average rating ranged "
        f"{df['average_rating'].min():.2f}-{df['average_rating'].max():.2f}."
    )


# --- order status, segments, demographics -----------------------------------------------
def q_status(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(measure("orders.count", "orders"),),
        dimensions=(dim("orders.status", "status"),),
        filters=p.condition("orders.orderedAt"),
        order=_order("-orders.count", "orders.status"),
    )


def plot_status(df: pd.DataFrame, ax: Axes) -> None:
    sns.barplot(
        df,
        x="orders",
        y="status",
        hue="status",
        palette={s: PALETTE["status"].get(str(s), "#7f7f7f") for s in df["status"]},
        legend=False,
        saturation=1,  # the palette's colours as they are (seaborn dims bars by default)
        ax=ax,
    )
    ax.set_xlabel("orders (count)")
    ax.set_ylabel("status")


def f_status(df: pd.DataFrame) -> str:
    total = float(df["orders"].sum())
    share = dict(zip(df["status"], df["orders"] / total * 100, strict=True))
    lost = share.get("cancelled", 0.0) + share.get("returned", 0.0)
    return (
        f"{share.get('delivered', 0.0):.0f}% of {total:,.0f} orders were delivered; "
        f"{lost:.0f}% ended cancelled or returned."
    )


def q_segments(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(
            measure("sales.revenue", "revenue"),
            measure("sales.orderCount", "orders"),
            measure("sales.averageOrderValue", "average_order_value"),
        ),
        dimensions=(dim("customers.segment", "segment"),),
        filters=p.condition("sales.orderedAt"),
        order=_order("-sales.revenue", "customers.segment"),
    )


def plot_segments(df: pd.DataFrame, ax: Axes) -> None:
    sns.barplot(
        df, x="segment", y="revenue", color=PALETTE["series"]["segment"], saturation=1, ax=ax
    )
    ax.set_xlabel("customer segment")
    _money_axis(ax)
    for i, aov in enumerate(df["average_order_value"]):
        ax.annotate(
            f"avg order {aov:,.0f}", (i, float(df["revenue"].iloc[i])), ha="center", va="bottom"
        )


def f_segments(df: pd.DataFrame) -> str:
    top = df.iloc[0]
    share = float(top["revenue"]) / float(df["revenue"].sum()) * 100
    best = df.loc[df["average_order_value"].idxmax()]
    return (
        f"{top['segment']} brings {share:.0f}% of revenue; highest average order: "
        f"{best['segment']} ({best['average_order_value']:,.0f})."
    )


def q_age_gender(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(measure("sales.customerCount", "customers"),),
        dimensions=(dim("customers.ageBand", "age_band"), dim("customers.gender", "gender")),
        filters=p.condition("sales.orderedAt"),
        order=_order("customers.ageBand", "customers.gender"),
    )


def plot_age_gender(df: pd.DataFrame, ax: Axes) -> None:
    grid = df.fillna({"age_band": "unknown", "gender": "unknown"}).pivot_table(
        index="age_band", columns="gender", values="customers", aggfunc="sum", fill_value=0
    )
    sns.heatmap(
        grid,
        annot=True,
        fmt=",.0f",
        cmap="Blues",
        ax=ax,
        cbar_kws={"label": "customers who bought (count)"},
    )
    ax.set_xlabel("gender")
    ax.set_ylabel("age band (years, at signup)")


def f_age_gender(df: pd.DataFrame) -> str:
    top = df.loc[df["customers"].idxmax()]
    return f"Largest group: {top['gender']}, aged {top['age_band']} ({top['customers']:,.0f})."


def q_country(conn: Connection, p: Period) -> CubeQuery:
    return CubeQuery(
        measures=(measure("sales.customerCount", "customers"), measure("sales.revenue", "revenue")),
        dimensions=(dim("customers.country", "country"),),
        filters=p.condition("sales.orderedAt"),
        order=_order("-sales.customerCount", "customers.country"),
    )


def plot_country(df: pd.DataFrame, ax: Axes) -> None:
    """Revenue per country as bars, each labelled with its buying customers."""
    sns.barplot(df, x="revenue", y="country", color=PALETTE["series"]["geo"], saturation=1, ax=ax)
    _money_axis(ax, x=True)
    ax.set_ylabel("country")
    for i, (rev, n) in enumerate(zip(df["revenue"], df["customers"], strict=True)):
        ax.annotate(f" {n:,.0f} customers", (float(rev), i), va="center", fontsize=9)


def f_country(df: pd.DataFrame) -> str:
    top = df.iloc[0]
    share = float(top["customers"]) / float(df["customers"].sum()) * 100
    rich = df.loc[df["revenue"].idxmax()]
    rev_share = float(rich["revenue"]) / float(df["revenue"].sum()) * 100
    return (
        f"{top['country']} has the most buying customers: {share:.0f}% of them; "
        f"{rich['country']} brings the most revenue: {rich['revenue']:,.0f} "
        f"({rev_share:.0f}%)."
    )


CHARTS: Sequence[Chart] = (
    Chart(
        "monthly_sales",
        "Monthly revenue, with the prior year beside it",
        q_monthly,
        plot_monthly,
        f_monthly,
        facts_monthly,
    ),
    Chart(
        "top_categories",
        "Top 5 categories by revenue, per month",
        _over_time("products.category", 5),
        plot_over_time,
        f_over_time("category"),
        facts_partial,
    ),
    Chart(
        "top_products",
        "Top 5 products by revenue",
        _over_time("products.name", 5),
        plot_totals,
        f_over_time("product"),
    ),
    Chart(
        "returns_by_reason",
        "Return requests by reason",
        q_return_reasons,
        plot_return_reasons,
        f_return_reasons,
    ),
    Chart(
        "returns_by_category",
        "Return rate by category (units returned / units sold)",
        q_return_categories,
        plot_return_categories,
        f_return_categories,
    ),
    Chart(
        "complaints_rating",
        "Complaints and average rating per month",
        q_feedback,
        plot_feedback,
        f_feedback,
        facts_partial,
    ),
    Chart("order_status", "Order status mix", q_status, plot_status, f_status),
    Chart("sales_by_segment", "Revenue by customer segment", q_segments, plot_segments, f_segments),
    Chart(
        "demographics_age_gender",
        "Buying customers by age band and gender",
        q_age_gender,
        plot_age_gender,
        f_age_gender,
    ),
    Chart(
        "customers_by_country",
        "Revenue and buying customers by country",
        q_country,
        plot_country,
        f_country,
    ),
)


def chart(name: str) -> Chart:
    return next(c for c in CHARTS if c.name == name)
