// Plotly renderers: each takes the element id and the cube rows it plots.
// Colours come from palette.json (one per status and per series, shared with `cdms report`);
// time axes are ordered chronologically whatever order the rows come in. Names from the data
// reach Plotly through plotText (escaped: never a link or a style); a click gives back the
// name itself, found by the point's index.
/* global Plotly */
import PALETTE from "./palette.json" with { type: "json" };
import { plotText } from "./plot-text.js";

export { PALETTE };
const CONFIG = { responsive: true, displaylogo: false, displayModeBar: false };
const FALLBACK = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
export const MONEY = "currency units";

function layout(extra = {}) {
  return {
    margin: { l: 16, r: 16, t: 32, b: 16 },
    autosize: true,
    font: { family: "system-ui, sans-serif", size: 12 },
    // the legend above the plot: never over the axis titles or the tick labels
    legend: { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom" },
    hoverlabel: { namelength: -1 },
    ...extra,
    xaxis: { automargin: true, ...(extra.xaxis || {}) },
    yaxis: { automargin: true, ...(extra.yaxis || {}) },
  };
}

function draw(id, traces, extra) {
  const empty = traces.every((t) => !(t.x || t.values || []).length);
  const lay = layout(extra);
  if (empty) {
    lay.annotations = [{ text: "no data for these filters", showarrow: false,
      xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];
    lay.xaxis = { visible: false };
    lay.yaxis = { visible: false };
  }
  return Plotly.react(id, traces, lay, CONFIG);
}

const month = (iso) => iso.slice(0, 7);
const MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** "2026-03" → "Mar 2026": the full label of a month in tooltips. */
export const monthLabel = (ym) => `${MONTH_NAMES[Number(ym.slice(5, 7)) - 1]} ${ym.slice(0, 4)}`;

/** Rows sorted by their month (ISO text sorts chronologically). */
export function byMonth(rows) {
  return [...rows].sort((a, b) => (month(a.month) < month(b.month) ? -1 : month(a.month) > month(b.month) ? 1 : 0));
}

/** A category axis of months in calendar order, labelled so that none is clipped or
 *  overlaps: upright labels where the chart is narrow (a phone). */
function monthAxis(id, months, extra = {}) {
  const all = [...new Set(months)].sort();
  const width = document.getElementById(id).clientWidth || 800;
  return { type: "category", categoryorder: "array", categoryarray: all,
    tickangle: width / Math.max(all.length, 1) < 60 ? -90 : -45, automargin: true, ...extra };
}

const colorOf = (map, key, i) => map[key] || FALLBACK[i % FALLBACK.length];

const NO_PARTIAL = { has: () => false };
/** A month's tooltip name, saying when it holds only part of its days. */
const monthTip = (m, partial) =>
  monthLabel(m) + (partial.has(m) ? " (partial: only part of its days)" : "");

/** Revenue per month beside the prior year's. `partial` (has(month) → bool) marks the months
 *  that hold only part of their days: hatched, and "(partial)" in the tooltip. */
export function salesByMonth(id, rows, partial = NO_PARTIAL) {
  const sorted = byMonth(rows);
  const x = sorted.map((r) => month(r.month));
  const cut = x.map((m) => partial.has(m));
  const labels = x.map((m) => monthTip(m, partial));
  return draw(id, [
    { type: "bar", name: "revenue", x, y: sorted.map((r) => r.revenue), customdata: labels,
      marker: { color: PALETTE.series.revenue,
        pattern: { shape: cut.map((p) => (p ? "/" : "")), solidity: 0.4 } },
      hovertemplate: `%{customdata}<br>revenue: %{y:,.0f} ${MONEY}<extra></extra>` },
    { type: "bar", name: "prior year", x, y: sorted.map((r) => r.priorYear), customdata: labels,
      marker: { color: PALETTE.series.priorYear },
      hovertemplate: `%{customdata}, a year earlier<br>revenue: %{y:,.0f} ${MONEY}<extra></extra>` },
  ], { barmode: "group", yaxis: { title: { text: `revenue (${MONEY})` }, tickformat: "~s" },
       xaxis: monthAxis(id, x) });
}

/** Calls onPick(values[i]) for a click on the i-th bar or slice: the drill-through to the
 *  cell's rows. */
function pickable(p, onPick, values) {
  if (!onPick) return p;
  return p.then((el) => {
    if (!el.__cdmsCell) {
      el.on("plotly_click", (ev) => el.__cdmsCellPick &&
        el.__cdmsCellPick(el.__cdmsCellValues[ev.points[0].pointNumber]));
      el.__cdmsCell = true;
    }
    el.__cdmsCellPick = onPick;
    el.__cdmsCellValues = values;
    return el;
  });
}

export function salesBySegment(id, rows, onPick) {
  return pickable(draw(id, [{
    type: "bar", x: rows.map((r) => plotText(r.segment)), y: rows.map((r) => r.revenue),
    marker: { color: PALETTE.series.segment }, cliponaxis: false,
    text: rows.map((r) => Math.round(r.revenue).toLocaleString("en")), textposition: "auto",
    hovertemplate: `segment %{x}<br>revenue: %{y:,.0f} ${MONEY}<extra>click for the rows</extra>`,
  }], { yaxis: { title: { text: `revenue (${MONEY})` }, tickformat: "~s" } }),
  onPick, rows.map((r) => r.segment));
}

export function orderStatus(id, rows, onPick) {
  const total = rows.reduce((a, r) => a + r.count, 0) || 1;
  return pickable(draw(id, [{
    type: "pie", hole: 0.45, labels: rows.map((r) => plotText(r.status)),
    values: rows.map((r) => r.count),
    sort: false, direction: "clockwise", automargin: true,
    marker: { colors: rows.map((r, i) => colorOf(PALETTE.status, r.status, i)) },
    // every slice labelled: inside when it has room, outside (with a line) when small
    textinfo: "label+percent",
    textposition: rows.map((r) => (r.count / total >= 0.08 ? "inside" : "outside")),
    insidetextorientation: "horizontal",
    hovertemplate: "%{label}: %{value:,} orders (%{percent})<extra>click for the orders</extra>",
  }], { showlegend: false, margin: { l: 24, r: 24, t: 32, b: 24 } }),
  onPick, rows.map((r) => r.status));
}

/** Horizontal bars whose click calls onPick(label): the drill-down charts. */
export function drillBars(id, rows, label, onPick, color) {
  const sorted = [...rows].reverse();
  const labels = sorted.map((r) => r.label ?? "(none)");
  const p = draw(id, [{
    type: "bar", orientation: "h", y: labels.map(plotText),
    x: sorted.map((r) => r.revenue), marker: { color },
    hovertemplate: `%{y}<br>revenue: %{x:,.0f} ${MONEY}<extra>click to drill down</extra>`,
  }], { xaxis: { title: { text: `revenue (${MONEY})` }, tickformat: "~s" },
        yaxis: { type: "category" }, meta: label });
  return p.then((el) => {
    if (!el.__cdmsDrill) {
      el.on("plotly_click", (ev) => el.__cdmsPick &&
        el.__cdmsPick(el.__cdmsLabels[ev.points[0].pointNumber]));
      el.__cdmsDrill = true;
    }
    el.__cdmsPick = onPick;
    el.__cdmsLabels = labels;
    return el;
  });
}

export function demographics(id, rows) {
  const genders = [...new Set(rows.map((r) => r.gender ?? "unknown"))].sort();
  const bands = [...new Set(rows.map((r) => r.ageBand ?? "unknown"))].sort();
  const traces = genders.map((g, i) => ({
    type: "bar", name: plotText(g), x: bands.map(plotText),
    y: bands.map((b) => rows.filter((r) => (r.ageBand ?? "unknown") === b &&
      (r.gender ?? "unknown") === g).reduce((a, r) => a + r.customers, 0)),
    marker: { color: colorOf(PALETTE.gender, g, i) },
    hovertemplate: `${plotText(g)}, aged %{x}<br>%{y:,} customers who bought<extra></extra>`,
  }));
  return draw(id, traces, { barmode: "group", xaxis: { title: { text: "age band (years)" } },
    yaxis: { title: { text: "customers who bought" } } });
}

/** Return requests (bars) and complaints (a line) per month; `partial` marks the months
 *  that hold only part of their days, as in salesByMonth: hatched bars, hollow markers,
 *  "(partial)" in the tooltips. */
export function returnsAndComplaints(id, returns, complaints, partial = NO_PARTIAL) {
  const r = byMonth(returns), c = byMonth(complaints);
  const x = [...r, ...c].map((row) => month(row.month));
  const rx = r.map((row) => month(row.month)), cx = c.map((row) => month(row.month));
  return draw(id, [
    { type: "bar", name: "return requests", x: rx, y: r.map((row) => row.count),
      marker: { color: PALETTE.series.returns,
        pattern: { shape: rx.map((m) => (partial.has(m) ? "/" : "")), solidity: 0.4 } },
      customdata: rx.map((m) => monthTip(m, partial)),
      hovertemplate: "%{customdata}<br>%{y:,} return requests<extra></extra>" },
    { type: "scatter", mode: "lines+markers", name: "complaints", x: cx,
      y: c.map((row) => row.count),
      marker: { color: PALETTE.series.complaints,
        symbol: cx.map((m) => (partial.has(m) ? "circle-open" : "circle")) },
      line: { color: PALETTE.series.complaints },
      customdata: cx.map((m) => monthTip(m, partial)),
      hovertemplate: "%{customdata}<br>%{y:,} complaints<extra></extra>" },
  ], { xaxis: monthAxis(id, x), yaxis: { title: { text: "count" } } });
}
