// Plotly renderers: each takes the element id and the cube rows it plots.
/* global Plotly */

const CONFIG = { responsive: true, displaylogo: false, displayModeBar: false };
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];

function layout(extra = {}) {
  return {
    margin: { l: 60, r: 16, t: 8, b: 48 },
    autosize: true,
    font: { family: "system-ui, sans-serif", size: 12 },
    legend: { orientation: "h", y: -0.2 },
    ...extra,
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

export function salesByMonth(id, rows) {
  return draw(id, [
    { type: "bar", name: "revenue", x: rows.map((r) => month(r.month)), y: rows.map((r) => r.revenue),
      marker: { color: COLORS[0] } },
    { type: "bar", name: "prior year", x: rows.map((r) => month(r.month)),
      y: rows.map((r) => r.priorYear), marker: { color: "#aec7e8" } },
  ], { barmode: "group", yaxis: { title: { text: "revenue" }, tickformat: ",.0f" },
       xaxis: { type: "category" } });
}

export function salesBySegment(id, rows) {
  return draw(id, [{
    type: "bar", x: rows.map((r) => r.segment), y: rows.map((r) => r.revenue),
    marker: { color: COLORS[2] },
    text: rows.map((r) => Math.round(r.revenue).toLocaleString("en")), textposition: "auto",
  }], { yaxis: { title: { text: "revenue" }, tickformat: ",.0f" } });
}

export function orderStatus(id, rows) {
  return draw(id, [{
    type: "pie", hole: 0.45, labels: rows.map((r) => r.status), values: rows.map((r) => r.count),
    sort: false, textinfo: "percent", textposition: "inside",
    x: rows.map((r) => r.status),
  }], { showlegend: true, legend: { orientation: "v", x: 1, y: 0.5 },
        uniformtext: { minsize: 10, mode: "hide" } });
}

/** Horizontal bars whose click calls onPick(label): the drill-down charts. */
export function drillBars(id, rows, label, onPick, color) {
  const sorted = [...rows].reverse();
  const p = draw(id, [{
    type: "bar", orientation: "h", y: sorted.map((r) => r.label ?? "(none)"),
    x: sorted.map((r) => r.revenue), marker: { color },
    hovertemplate: "%{y}: %{x:,.0f}<extra>click to drill down</extra>",
  }], { margin: { l: 140, r: 16, t: 8, b: 40 }, xaxis: { title: { text: "revenue" },
        tickformat: ",.0f" }, yaxis: { type: "category", automargin: true }, title: undefined,
        meta: label });
  return p.then((el) => {
    if (!el.__cdmsDrill) {
      el.on("plotly_click", (ev) => el.__cdmsPick && el.__cdmsPick(ev.points[0].y));
      el.__cdmsDrill = true;
    }
    el.__cdmsPick = onPick;
    return el;
  });
}

export function demographics(id, rows) {
  const genders = [...new Set(rows.map((r) => r.gender ?? "unknown"))].sort();
  const bands = [...new Set(rows.map((r) => r.ageBand ?? "unknown"))].sort();
  const traces = genders.map((g, i) => ({
    type: "bar", name: g, x: bands,
    y: bands.map((b) => rows.filter((r) => (r.ageBand ?? "unknown") === b &&
      (r.gender ?? "unknown") === g).reduce((a, r) => a + r.customers, 0)),
    marker: { color: COLORS[i % COLORS.length] },
  }));
  return draw(id, traces, { barmode: "group", xaxis: { title: { text: "age band" } },
    yaxis: { title: { text: "customers who bought" } } });
}

export function returnsAndComplaints(id, returns, complaints) {
  return draw(id, [
    { type: "bar", name: "return requests", x: returns.map((r) => month(r.month)),
      y: returns.map((r) => r.count), marker: { color: COLORS[1] } },
    { type: "scatter", mode: "lines+markers", name: "complaints",
      x: complaints.map((r) => month(r.month)), y: complaints.map((r) => r.count),
      marker: { color: COLORS[3] } },
  ], { xaxis: { type: "category" }, yaxis: { title: { text: "count" } } });
}
