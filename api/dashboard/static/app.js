// The dashboard: filters + drill state → GraphQL cube queries → KPI tiles and Plotly charts.
import {
  AuthRequired, CATALOG, GEO, cube, gql, partialMonths, priorRange, setToken, watchWarehouse, where,
} from "./cube.js";
import * as charts from "./charts.js";

const $ = (sel) => document.querySelector(sel);

function defaultRange() {
  const to = new Date();
  const from = new Date(Date.UTC(to.getUTCFullYear() - 1, to.getUTCMonth(), to.getUTCDate() + 1));
  return { from: from.toISOString().slice(0, 10), to: to.toISOString().slice(0, 10) };
}

const state = { range: defaultRange(), segment: "", channel: "", geo: [], cat: [], order: "" };
let generation = 0; // a newer refresh makes older answers stale

function status(text, error = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

// ------------------------------------------------------------------ state in the URL
// ?from=&to=&segment=&channel=&geo=Germany|Berlin&cat=Electronics&order=123: a reload or a
// shared link restores the filters, both drill paths and the order shown.
const SEP = "|";

/** The query string of a state. */
export function stateToQuery(s) {
  const q = new URLSearchParams();
  q.set("from", s.range.from);
  q.set("to", s.range.to);
  if (s.segment) q.set("segment", s.segment);
  if (s.channel) q.set("channel", s.channel);
  if (s.geo.length) q.set("geo", s.geo.join(SEP));
  if (s.cat.length) q.set("cat", s.cat.join(SEP));
  if (s.order) q.set("order", s.order);
  return q.toString();
}

/** The state a query string describes (what it leaves out keeps its default). */
export function stateFromQuery(search) {
  const q = new URLSearchParams(search);
  const iso = /^\d{4}-\d{2}-\d{2}$/;
  const s = { range: defaultRange(), segment: "", channel: "", geo: [], cat: [], order: "" };
  const from = q.get("from") || "", to = q.get("to") || "";
  if (iso.test(from) && iso.test(to) && from <= to) s.range = { from, to };
  s.segment = q.get("segment") || "";
  s.channel = q.get("channel") || "";
  s.geo = (q.get("geo") || "").split(SEP).filter(Boolean).slice(0, GEO.length - 1);
  s.cat = (q.get("cat") || "").split(SEP).filter(Boolean).slice(0, CATALOG.length - 1);
  s.order = /^\d+$/.test(q.get("order") || "") ? q.get("order") : "";
  return s;
}

function saveState() {
  const query = stateToQuery(state);
  if (location.search.slice(1) !== query) history.replaceState(null, "", `?${query}`);
}

// ---------------------------------------------------------------------------- filters
async function loadOptions() {
  const data = await cube(`{
    countries: cube(orderBy: [{customers: {country: ASC}}]) { customers { country } }
    segments: cube(orderBy: [{customers: {segment: ASC}}]) { customers { segment } }
    channels: cube(orderBy: [{orders: {channel: ASC}}]) { orders { channel } }
  }`);
  const fill = (sel, values) => {
    sel.length = 1; // keep "all"
    for (const v of values) {
      if (v == null) continue;
      const o = document.createElement("option");
      o.value = o.textContent = v;
      sel.append(o);
    }
  };
  fill($("#f-country"), data.countries.map((r) => r.customers.country));
  fill($("#f-segment"), data.segments.map((r) => r.customers.segment));
  fill($("#f-channel"), data.channels.map((r) => r.orders.channel));
}

function syncForm() {
  $("#f-from").value = state.range.from;
  $("#f-to").value = state.range.to;
  $("#f-country").value = state.geo[0] || "";
  $("#f-segment").value = state.segment;
  $("#f-channel").value = state.channel;
}

function readForm() {
  const from = $("#f-from").value, to = $("#f-to").value;
  if (from && to && from <= to) state.range = { from, to };
  const country = $("#f-country").value;
  if ((state.geo[0] || "") !== country) state.geo = country ? [country] : [];
  state.segment = $("#f-segment").value;
  state.channel = $("#f-channel").value;
}

// ------------------------------------------------------------------------------- KPIs
const KPIS = [
  { key: "revenue", label: "Revenue", fmt: (v) => money(v) },
  { key: "orders", label: "Orders", fmt: (v) => int(v) },
  { key: "aov", label: "Average order value", fmt: (v) => money(v, 2) },
  // a rate's change is a difference of percentages: percentage points, not a % of a %
  { key: "returnRate", label: "Return rate", fmt: (v) => pct(v), lowerIsBetter: true, rate: true },
  { key: "rating", label: "Average rating", fmt: (v) => (v == null ? "–" : v.toFixed(2)) },
  { key: "openTickets", label: "Open tickets", fmt: (v) => int(v), lowerIsBetter: true },
];
const money = (v, d = 0) => (v == null ? "–" : v.toLocaleString("en", {
  minimumFractionDigits: d, maximumFractionDigits: d }));
const int = (v) => (v == null ? "–" : Math.round(v).toLocaleString("en"));
const pct = (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`);

const KPI_QUERY = `query Kpis($s: CubeWhere, $sp: CubeWhere, $r: CubeWhere, $rp: CubeWhere,
    $f: CubeWhere, $fp: CubeWhere, $t: CubeWhere, $tp: CubeWhere) {
  s: cube(where: $s) { sales { revenue orderCount averageOrderValue } }
  sp: cube(where: $sp) { sales { revenue orderCount averageOrderValue } }
  r: cube(where: $r) { returns { returnRate } }
  rp: cube(where: $rp) { returns { returnRate } }
  f: cube(where: $f) { feedback { averageRating } }
  fp: cube(where: $fp) { feedback { averageRating } }
  t: cube(where: $t) { support { ticketCount } }
  tp: cube(where: $tp) { support { ticketCount } }
}`;

/** The variables of KPI_QUERY for a state: exported for the tests through window. */
export function kpiVariables(s) {
  const prior = priorRange(s.range);
  const open = (w) => ({ ...w, support: { ...w.support, status: { in: ["open", "in_progress"] } } });
  return {
    s: where(s, ["sales"]), sp: where(s, ["sales"], prior),
    r: where(s, ["returns", "sales"]), rp: where(s, ["returns", "sales"], prior),
    f: where(s, ["feedback"]), fp: where(s, ["feedback"], prior),
    t: open(where(s, ["support"])), tp: open(where(s, ["support"], prior)),
  };
}

async function loadKpis() {
  const d = await cube(KPI_QUERY, kpiVariables(state));
  const one = (rows, cubeName, m) => (rows[0] ? rows[0][cubeName][m] : null);
  const values = (p) => ({
    revenue: one(d[p.s], "sales", "revenue"), orders: one(d[p.s], "sales", "orderCount"),
    aov: one(d[p.s], "sales", "averageOrderValue"),
    returnRate: one(d[p.r], "returns", "returnRate"),
    rating: one(d[p.f], "feedback", "averageRating"),
    openTickets: one(d[p.t], "support", "ticketCount") ?? 0,
  });
  const now = values({ s: "s", r: "r", f: "f", t: "t" });
  const before = values({ s: "sp", r: "rp", f: "fp", t: "tp" });
  const box = $("#kpis");
  box.replaceChildren(...KPIS.map((k) => tile(k, now[k.key], before[k.key])));
}

function tile(k, value, prior) {
  const el = document.createElement("div");
  el.className = "kpi";
  el.dataset.kpi = k.key;
  el.dataset.value = value == null ? "" : String(value);
  const delta = document.createElement("div");
  if (value == null || prior == null || prior === 0) {
    delta.className = "delta flat";
    delta.textContent = "no prior-period figure";
  } else {
    const change = k.rate ? value - prior : (value - prior) / Math.abs(prior);
    const good = k.lowerIsBetter ? change < 0 : change > 0;
    delta.className = `delta ${Math.abs(change) < 0.0005 ? "flat" : good ? "up" : "down"}`;
    delta.dataset.change = String(change);
    const unit = k.rate ? " pp" : "%";
    delta.textContent = `${change >= 0 ? "▲ +" : "▼ "}${(change * 100).toFixed(1)}${unit} vs prior period`;
    if (k.rate) delta.title = "change in percentage points";
  }
  delta.title = `${delta.title ? `${delta.title}; ` : ""}prior period: ${k.fmt(prior)}`;
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = k.label;
  const v = document.createElement("div");
  v.className = "value";
  v.textContent = k.fmt(value);
  el.append(label, v, delta);
  return el;
}

// ----------------------------------------------------------------------------- charts
function chartQuery() {
  const geo = GEO[Math.min(state.geo.length, GEO.length - 1)];
  const cat = CATALOG[Math.min(state.cat.length, CATALOG.length - 1)];
  return `query Charts($s: CubeWhere, $o: CubeWhere, $ret: CubeWhere, $fb: CubeWhere) {
    month: cube(where: $s, orderBy: [{sales: {orderedAt: ASC}}]) {
      sales { revenue priorYear: revenue(compare: PRIOR_YEAR) orderedAt { month } } }
    segment: cube(where: $s, orderBy: [{sales: {revenue: DESC}}]) {
      customers { segment } sales { revenue } }
    status: cube(where: $o, orderBy: [{orders: {count: DESC}}]) { orders { status count } }
    geo: cube(where: $s, orderBy: [{sales: {revenue: DESC}}], limit: 12) {
      customers { label: ${geo} } sales { revenue } }
    cat: cube(where: $s, orderBy: [{sales: {revenue: DESC}}], limit: 12) {
      products { label: ${cat} } sales { revenue } }
    demo: cube(where: $s) { customers { ageBand gender } sales { customerCount } }
    returns: cube(where: $ret, orderBy: [{returns: {returnedAt: ASC}}]) {
      returns { count returnedAt { month } } }
    complaints: cube(where: $fb, orderBy: [{feedback: {createdAt: ASC}}]) {
      feedback { complaintCount createdAt { month } } }
  }`;
}

async function loadCharts() {
  const d = await cube(chartQuery(), {
    s: where(state, ["sales"]), o: where(state, ["orders"]),
    ret: where(state, ["returns"]), fb: where(state, ["feedback"]),
  });
  await Promise.all([
    charts.salesByMonth("c-month", d.month.map((r) => ({
      month: r.sales.orderedAt.month, revenue: r.sales.revenue, priorYear: r.sales.priorYear })),
    partialMonths(state.range)),
    charts.salesBySegment("c-segment", d.segment.map((r) => ({
      segment: r.customers.segment, revenue: r.sales.revenue })),
      (v) => showCell("sales", [{ member: "customers.segment", value: v }])),
    charts.orderStatus("c-status", d.status.map((r) => r.orders),
      (v) => showCell("orders", [{ member: "orders.status", value: v }])),
    charts.drillBars("c-geo", d.geo.map((r) => ({ label: r.customers.label,
      revenue: r.sales.revenue })), "geo", (v) => drill("geo", GEO, v), charts.PALETTE.series.geo),
    charts.drillBars("c-cat", d.cat.map((r) => ({ label: r.products.label,
      revenue: r.sales.revenue })), "cat", (v) => drill("cat", CATALOG, v),
    charts.PALETTE.series.category),
    charts.demographics("c-demo", d.demo.map((r) => ({ ageBand: r.customers.ageBand,
      gender: r.customers.gender, customers: r.sales.customerCount }))),
    charts.returnsAndComplaints("c-returns",
      d.returns.map((r) => ({ month: r.returns.returnedAt.month, count: r.returns.count })),
      d.complaints.map((r) => ({ month: r.feedback.createdAt.month,
        count: r.feedback.complaintCount })), partialMonths(state.range)),
  ]);
}

// --------------------------------------------------------------------------- drilling
function drill(key, levels, value) {
  if (state[key].length >= levels.length - 1 || value == null || value === "(none)") return;
  state[key] = [...state[key], value];
  syncForm();
  refresh();
}

function crumbs(key, levels, rootLabel) {
  const nav = $(`#b-${key}`);
  const parts = [rootLabel, ...state[key]];
  nav.replaceChildren();
  parts.forEach((p, i) => {
    if (i) {
      const sep = document.createElement("span");
      sep.className = "sep";
      sep.textContent = "›";
      nav.append(sep);
    }
    if (i === parts.length - 1) {
      const here = document.createElement("strong");
      here.textContent = p;
      nav.append(here);
    } else {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = p;
      b.addEventListener("click", () => {
        state[key] = state[key].slice(0, i);
        syncForm();
        refresh();
      });
      nav.append(b);
    }
  });
  const level = document.createElement("span");
  level.className = "sep";
  level.textContent = ` (by ${levels[Math.min(state[key].length, levels.length - 1)]})`;
  nav.append(level);
}

// ------------------------------------------------------------------------ at-risk panel
const RISK_QUERY = `query Risk($filter: OrderFilter) {
  orders(filter: $filter, orderBy: [{orderedAt: DESC}], first: 100) {
    totalCount
    edges { node { id status orderedAt totalAmount channel
      predictedStatus { label probabilities { label probability } } } }
  }
}`;

/** The OrderFilter of the open orders under a dashboard state: its dates, customer
 *  (segment, geography drill) and catalog drill; the channel is checked on the rows. */
export function riskFilter(s) {
  const next = new Date(Date.parse(`${s.range.to}T00:00:00Z`) + 86400000).toISOString().slice(0, 10);
  const f = { status: { in: ["PENDING", "PAID", "SHIPPED"] },
    orderedAt: { gte: `${s.range.from}T00:00:00Z`, lt: `${next}T00:00:00Z` } };
  const customer = {};
  if (s.segment) customer.segment = { eq: s.segment.toUpperCase() };
  s.geo.forEach((v, i) => (customer[GEO[i]] = { eq: v }));
  if (Object.keys(customer).length) f.customer = { some: customer };
  if (s.cat.length) {
    const product = {};
    s.cat.forEach((v, i) => (product[CATALOG[i]] = { eq: v }));
    f.items = { some: { product: { some: product } } };
  }
  return f;
}

function message(box, stateName, text) {
  const msg = document.createElement("p");
  msg.className = "message";
  msg.dataset.state = stateName;
  msg.textContent = text;
  box.replaceChildren(msg);
}

async function loadRisk() {
  const box = $("#risk");
  const body = await gql(RISK_QUERY, { filter: riskFilter(state) });
  const codes = new Set((body.errors || []).map((e) => e.extensions?.code));
  if (!body.data?.orders) {
    const e = (body.errors || [])[0] || {};
    message(box, "error", `Open orders could not be loaded: ${e.extensions?.code || "ERROR"}: ${e.message}`);
    return;
  }
  const edges = body.data.orders.edges
    .filter((e) => !state.channel || e.node.channel.toLowerCase() === state.channel.toLowerCase());
  const scored = edges
    .map((e) => e.node)
    .filter((n) => n.predictedStatus)
    .map((n) => {
      const p = Object.fromEntries(n.predictedStatus.probabilities.map((x) => [x.label, x.probability]));
      const cancel = p.cancelled ?? 0, ret = p.returned ?? 0;
      return { ...n, cancel, ret, risk: Math.max(cancel, ret) };
    })
    .sort((a, b) => b.risk - a.risk)
    .slice(0, 10);
  if (!scored.length) {
    message(box, "unavailable", !edges.length
      ? "No open orders for these filters."
      : codes.has("MODEL_UNAVAILABLE")
        ? "Predictions are unavailable: no active order-status model (train one with `cdms ml train`)."
        : "Predictions are unavailable for the open orders (not loaded into the warehouse yet).");
    return;
  }
  const table = document.createElement("table");
  table.innerHTML = "<thead><tr><th>Order</th><th>Status</th><th>Ordered</th><th>Total</th>" +
    "<th>P(cancel)</th><th>P(return)</th></tr></thead>";
  const tbody = document.createElement("tbody");
  for (const n of scored) {
    const tr = document.createElement("tr");
    const first = document.createElement("td");
    const link = document.createElement("a");
    link.href = `?${stateToQuery({ ...state, order: n.id })}`;
    link.textContent = `#${n.id}`;
    link.dataset.order = n.id;
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      showOrder(n.id);
    });
    first.append(link);
    tr.append(first);
    for (const v of [n.status.toLowerCase(), n.orderedAt.slice(0, 10),
      Number(n.totalAmount).toLocaleString("en", { minimumFractionDigits: 2 }),
      pct(n.cancel), pct(n.ret)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    tbody.append(tr);
  }
  table.append(tbody);
  box.replaceChildren(table);
}

// -------------------------------------------------------------- behavioural segments
// The RFM snapshot of the month holding the range's end: customers and revenue per
// segment, and the from x to migration matrix of that month (cubes rfm, segmentMigration).
const SEGMENT_QUERY = `query Segments($r: CubeWhere, $m: CubeWhere) {
  sizes: cube(where: $r, timezone: "UTC", orderBy: [{rfm: {customers: DESC}}]) {
    rfm { segment customers monthRevenue } }
  moves: cube(where: $m, timezone: "UTC", limit: 200) {
    segmentMigration { fromSegment toSegment customers } }
}`;

/** The first day of the month holding the range's end, and the variables of its query. */
export function segmentVariables(s) {
  const month = `${s.range.to.slice(0, 7)}-01`;
  return { month, r: { rfm: { month: { inDateRange: [month, month] } } },
    m: { segmentMigration: { month: { inDateRange: [month, month] } } } };
}

function table(head, rows) {
  const t = document.createElement("table");
  const tr = document.createElement("tr");
  for (const h of head) {
    const th = document.createElement("th");
    th.textContent = h;
    tr.append(th);
  }
  const thead = document.createElement("thead");
  thead.append(tr);
  const tbody = document.createElement("tbody");
  for (const row of rows) {
    const r = document.createElement("tr");
    row.forEach((v, i) => {
      const td = document.createElement(i === 0 ? "th" : "td");
      if (v instanceof Node) td.append(v);
      else td.textContent = v;
      r.append(td);
    });
    tbody.append(r);
  }
  t.append(thead, tbody);
  return t;
}

async function loadSegments() {
  const { month, r, m } = segmentVariables(state);
  $("#rfm-month").textContent = `(${month.slice(0, 7)})`;
  const body = await gql(SEGMENT_QUERY, { r, m });
  if (!body.data?.sizes) {
    const e = (body.errors || [])[0] || {};
    message($("#segments"), "error", `Segments could not be loaded: ${e.extensions?.code || "ERROR"}: ${e.message}`);
    message($("#migration"), "error", "");
    return;
  }
  const sizes = body.data.sizes.map((x) => x.rfm);
  if (!sizes.length) {
    message($("#segments"), "unavailable", "No RFM snapshot for this month (run the ETL).");
    $("#migration").replaceChildren();
    return;
  }
  const total = sizes.reduce((a, x) => a + x.customers, 0) || 1;
  $("#segments").replaceChildren(table(["Segment", "Customers", "Share", "Revenue in the month"],
    sizes.map((x) => [x.segment, int(x.customers), pct(x.customers / total), money(x.monthRevenue)])));
  const moves = body.data.moves.map((x) => x.segmentMigration);
  const names = sizes.map((x) => x.segment);
  const froms = [...new Set(moves.map((x) => x.fromSegment))]
    .sort((a, b) => (names.indexOf(a) + 1 || 99) - (names.indexOf(b) + 1 || 99));
  const cell = new Map(moves.map((x) => [`${x.fromSegment}\u0000${x.toSegment}`, x.customers]));
  const button = (f, t) => {
    const n = cell.get(`${f}\u0000${t}`) ?? 0;
    if (!n) return int(0);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link";
    b.dataset.from = f;
    b.dataset.to = t;
    b.textContent = int(n);
    b.title = `The customers who moved from ${f} to ${t}`;
    b.addEventListener("click", () => showMigrants(month, f, t));
    return b;
  };
  $("#migration").replaceChildren(table(["from \\ to", ...names],
    froms.map((f) => [f, ...names.map((t) => button(f, t))])));
}

// ------------------------------------------------------------------ customers at risk
// The customers who spent most in the range, ranked by spend x P(no order in 90 days)
// (Customer.churnRisk); each links to the customer in GraphiQL.
const SPEND_QUERY = `query Spend($w: CubeWhere) {
  cube(where: $w, orderBy: [{sales: {revenue: DESC}}], limit: 50) {
    sales { revenue } customers { customerId } } }`;
const CHURN_QUERY = `query Churn($ids: [ID!]) {
  customers(filter: {id: {in: $ids}}, first: 50) { edges { node { id firstName lastName
    segment country churnRisk { label probability } } } } }`;

async function loadAtRisk() {
  const box = $("#at-risk");
  const spend = await cube(SPEND_QUERY, { w: where(state, ["sales"]) });
  const revenue = new Map();
  for (const row of spend.cube) {
    const id = String(row.customers.customerId);
    revenue.set(id, (revenue.get(id) || 0) + row.sales.revenue);
  }
  if (!revenue.size) {
    message(box, "unavailable", "No sales for these filters.");
    return;
  }
  const body = await gql(CHURN_QUERY, { ids: [...revenue.keys()] });
  const nodes = (body.data?.customers?.edges || []).map((e) => e.node).filter((n) => n.churnRisk);
  if (!nodes.length) {
    const codes = new Set((body.errors || []).map((e) => e.extensions?.code));
    message(box, "unavailable", codes.has("MODEL_UNAVAILABLE")
      ? "Churn risk is unavailable: no active churn_risk model (train one with `cdms ml train`)."
      : "Churn risk is unavailable for these customers.");
    return;
  }
  const rows = nodes.map((n) => {
    const p = n.churnRisk.probability; // the risk itself, whatever the label
    const value = revenue.get(String(n.id)) || 0;
    return { ...n, p, value, score: p * value };
  }).sort((a, b) => b.score - a.score).slice(0, 10);
  box.replaceChildren(table(["Customer", "Segment", "Country", "Revenue", "P(churn)", "At stake"],
    rows.map((n) => {
      const link = document.createElement("a");
      const q = `{ customer(id: "${n.id}") { id email firstName lastName segment country ` +
        "summary { orderCount lifetimeValue lastOrderAt } churnRisk { label probability } } }";
      link.href = `/graphql?query=${encodeURIComponent(q)}`;
      link.dataset.customer = n.id;
      link.textContent = `#${n.id} ${n.firstName} ${n.lastName}`;
      return [link, n.segment.toLowerCase(), n.country, money(n.value), pct(n.p), money(n.score)];
    })));
}

// ------------------------------------------------------------- a chart cell's orders
// The orders behind the clicked bar or slice: the chart's own query (the same where) narrowed
// to the cell's member, one cube row whose drill is the API's orders connection restricted
// to the cell (cube { drill { orders } }), a page of CELL_PAGE orders.
const CELL_PAGE = 20;
const CELL_MEASURE = { sales: "sales { orderCount }", orders: "orders { count }" };
const cellQuery = (cubeName) => `query CellOrders($w: CubeWhere, $first: Int!) {
  cube(where: $w, limit: 1) { ${CELL_MEASURE[cubeName]}
    drill { orders(first: $first, orderBy: [{orderedAt: DESC}]) { totalCount
      edges { node { id status orderedAt channel totalAmount customer { segment } } } } } } }`;
const CELL_COLUMNS = [["Order", (n) => n.id], ["Ordered", (n) => n.orderedAt.slice(0, 10)],
  ["Status", (n) => n.status.toLowerCase()], ["Channel", (n) => n.channel.toLowerCase()],
  ["Total", (n) => money(Number(n.totalAmount), 2)],
  ["Segment", (n) => n.customer.segment.toLowerCase()]];

/** The where of a chart narrowed to a cell: each member ("cube.dimension") equal to its
 * value (null: the empty member). */
export function cellWhere(base, cell) {
  const out = JSON.parse(JSON.stringify(base || {}));
  for (const { member, value } of cell) {
    const [cubeName, dim] = member.split(".");
    out[cubeName] = { ...(out[cubeName] || {}),
      [dim]: value === null ? { set: false } : { equals: value } };
  }
  return out;
}

function closeButton(box) {
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "Close";
  close.addEventListener("click", () => { box.hidden = true; });
  return close;
}

function orderLink(id) {
  const link = document.createElement("a");
  link.href = `?${stateToQuery({ ...state, order: String(id) })}`;
  link.textContent = `#${id}`;
  link.dataset.order = String(id);
  link.addEventListener("click", (ev) => {
    ev.preventDefault();
    showOrder(id);
  });
  return link;
}

async function showCell(cubeName, cell) {
  const box = $("#cell");
  box.hidden = false;
  const title = document.createElement("h2");
  const label = cell.map((c) => `${c.member} = ${c.value ?? "(none)"}`).join(", ");
  title.textContent = `Orders behind ${label}`;
  const close = closeButton(box);
  const w = cellWhere(where(state, [cubeName]), cell);
  const body = await gql(cellQuery(cubeName), { w, first: CELL_PAGE });
  if (!body.data?.cube) {
    const e = (body.errors || [])[0] || {};
    const msg = document.createElement("p");
    msg.className = "message";
    msg.textContent = `The orders could not be loaded: ${e.extensions?.code || "ERROR"}: ${e.message}`;
    box.replaceChildren(title, msg, close);
    return;
  }
  const drill = body.data.cube[0]?.drill.orders || { totalCount: 0, edges: [] };
  const nodes = drill.edges.map((e) => e.node);
  box.dataset.cube = cubeName;
  box.dataset.total = String(drill.totalCount);
  const count = document.createElement("p");
  count.textContent = `${int(drill.totalCount)} orders` +
    (drill.totalCount > nodes.length ? `, the latest ${nodes.length} shown` : "");
  const rows = nodes.map((n) => CELL_COLUMNS.map(([, value], i) => (i === 0 ? orderLink(value(n)) : value(n))));
  box.replaceChildren(title, count, table(CELL_COLUMNS.map(([name]) => name), rows), close);
}

// ------------------------------------------------------- a migration cell's customers
// From segment x to segment x month -> the customers who moved so (segmentMigration), by
// their revenue in the month; names from the operational customers; each links to GraphiQL.
const MIGRANTS_QUERY = `query Migrants($w: CubeWhere) {
  cube(where: $w, timezone: "UTC", orderBy: [{segmentMigration: {revenue: DESC}}], limit: 200) {
    segmentMigration { customerId revenue } customers { country } } }`;
const NAMES_QUERY = `query Names($ids: [ID!], $n: Int!) {
  customers(filter: {id: {in: $ids}}, first: $n) { edges { node { id firstName lastName } } } }`;

async function showMigrants(month, from, to) {
  const box = $("#migrants");
  box.hidden = false;
  const title = document.createElement("h2");
  title.textContent = `Customers from ${from} to ${to} (${month.slice(0, 7)})`;
  const close = closeButton(box);
  const w = { segmentMigration: { month: { inDateRange: [month, month] },
    fromSegment: { equals: from }, toSegment: { equals: to } } };
  const moved = (await cube(MIGRANTS_QUERY, { w })).cube;
  const ids = [...new Set(moved.map((r) => String(r.segmentMigration.customerId)))];
  const names = new Map();
  if (ids.length) {
    const body = await gql(NAMES_QUERY, { ids, n: Math.min(ids.length, 500) });
    for (const e of body.data?.customers?.edges || []) {
      names.set(String(e.node.id), `${e.node.firstName} ${e.node.lastName}`);
    }
  }
  box.dataset.total = String(ids.length);
  box.dataset.from = from;
  box.dataset.to = to;
  const count = document.createElement("p");
  count.textContent = `${int(ids.length)} customers`;
  const rows = moved.map((r) => {
    const id = String(r.segmentMigration.customerId);
    const link = document.createElement("a");
    const q = `{ customer(id: "${id}") { id email firstName lastName segment country ` +
      "summary { orderCount lifetimeValue lastOrderAt } churnRisk { label probability } } }";
    link.href = `/graphql?query=${encodeURIComponent(q)}`;
    link.dataset.customer = id;
    link.textContent = `#${id} ${names.get(id) || ""}`.trim();
    return [link, r.customers.country, money(r.segmentMigration.revenue, 2)];
  });
  box.replaceChildren(title, count, table(["Customer", "Country", "Revenue in the month"], rows), close);
}

// ------------------------------------------------------------------------ order details
const ORDER_QUERY = `query Order($id: ID!) { order(id: $id) {
  id status orderedAt channel paymentMethod totalAmount itemCount
  customer { id firstName lastName segment country city }
  items { lineNo quantity lineTotal product { name category } }
  statusHistory { toStatus changedAt }
  predictedStatus { label probabilities { label probability } }
} }`;

async function showOrder(id) {
  state.order = id ? String(id) : "";
  saveState();
  const box = $("#order");
  if (!state.order) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const body = await gql(ORDER_QUERY, { id: state.order });
  const o = body.data?.order;
  const title = document.createElement("h2");
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "Close";
  close.addEventListener("click", () => showOrder(""));
  if (!o) {
    const e = (body.errors || [])[0];
    title.textContent = `Order #${state.order}: ${e ? `${e.extensions?.code}: ${e.message}` : "not found"}`;
    box.replaceChildren(title, close);
    return;
  }
  title.textContent = `Order #${o.id}: ${o.status.toLowerCase()}`;
  const facts = document.createElement("p");
  facts.textContent = `${o.orderedAt.slice(0, 10)} · ${o.channel.toLowerCase()} · ` +
    `${o.paymentMethod.toLowerCase().replaceAll("_", " ")} · ${o.itemCount} items · total ` +
    `${Number(o.totalAmount).toLocaleString("en", { minimumFractionDigits: 2 })} · customer ` +
    `#${o.customer.id} ${o.customer.firstName} ${o.customer.lastName} ` +
    `(${o.customer.segment.toLowerCase()}, ${o.customer.city}, ${o.customer.country})`;
  const lines = document.createElement("ul");
  for (const it of o.items) {
    const li = document.createElement("li");
    li.textContent = `${it.quantity} × ${it.product.name} (${it.product.category}): ` +
      Number(it.lineTotal).toLocaleString("en", { minimumFractionDigits: 2 });
    lines.append(li);
  }
  const history = document.createElement("p");
  history.textContent = "History: " + o.statusHistory
    .map((h) => `${h.toStatus.toLowerCase()} ${h.changedAt.slice(0, 16).replace("T", " ")}`).join(" → ");
  box.replaceChildren(title, facts, lines, history, close);
}

// ------------------------------------------------------------------------------ wiring
async function refresh() {
  const mine = ++generation;
  lastRefresh = Date.now();
  saveState();
  status("loading…");
  crumbs("geo", GEO, "all countries");
  crumbs("cat", CATALOG, "all categories");
  try {
    await Promise.all([loadKpis(), loadCharts()]);
    if (mine === generation) {
      status(`${state.range.from} to ${state.range.to}`);
    }
    await loadRisk().catch((err) => message($("#risk"), "error",
      `Open orders could not be loaded: ${err.message}`));
    await loadSegments().catch((err) => message($("#segments"), "error",
      `Segments could not be loaded: ${err.message}`));
    await loadAtRisk().catch((err) => message($("#at-risk"), "error",
      `Customers at risk could not be loaded: ${err.message}`));
    if (mine === generation) document.body.dataset.ready = String(mine);
  } catch (err) {
    fail(err);
  }
}

function fail(err) {
  if (err instanceof AuthRequired) {
    $("#token-form").hidden = false;
    status("a token is needed", true);
  } else {
    status(`error: ${err.message}`, true);
  }
}

async function start() {
  Object.assign(state, stateFromQuery(location.search));
  syncForm();
  $("#filters").addEventListener("change", () => { readForm(); syncForm(); refresh(); });
  $("#f-reset").addEventListener("click", () => {
    Object.assign(state, { range: defaultRange(), segment: "", channel: "", geo: [], cat: [], order: "" });
    syncForm();
    refresh();
  });
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("#token").value.trim());
    $("#token-form").hidden = true;
    start2();
  });
  await start2();
}

// ------------------------------------------------------------------------ freshness
// "data as of" the newest shop change the warehouse holds; a new warehouse version (the
// warehouseUpdated subscription) refreshes the page, at most once per REFRESH_MS.
const REFRESH_MS = 5000;
let lastRefresh = 0;
let refreshTimer = null;

function asOf(w) {
  const el = $("#asof");
  el.dataset.version = String(w.version);
  el.textContent = w.newestChangeAt
    ? `data as of ${w.newestChangeAt.slice(0, 19).replace("T", " ")} UTC`
    : "no data loaded yet";
  el.hidden = false;
}

async function loadAsOf() {
  const body = await gql("{ warehouseStatus { version newestChangeAt } }");
  if (body.data?.warehouseStatus) asOf(body.data.warehouseStatus);
}

function onWarehouseUpdated(w) {
  asOf(w);
  if (refreshTimer) return;
  const wait = Math.max(0, lastRefresh + REFRESH_MS - Date.now());
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, wait);
}

async function start2() {
  try {
    await loadOptions();
    syncForm();
  } catch (err) {
    fail(err);
    return;
  }
  await loadAsOf().catch(() => {}); // a role without warehouseStatus: no "as of"
  await refresh();
  if (state.order) await showOrder(state.order);
  watchWarehouse(onWarehouseUpdated);
}

window.cdmsDashboard = { state, kpiVariables, KPI_QUERY, stateToQuery, riskFilter,
  segmentVariables };
start();
