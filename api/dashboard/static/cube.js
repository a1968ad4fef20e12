// GraphQL client and the cube `where` inputs the dashboard's filters become.
// Every number on the page comes from a `cube` query built here (or `orders` for the
// at-risk panel); nothing is computed from raw rows in the browser.

const TOKEN_KEY = "cdms.token";

export class AuthRequired extends Error {}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** POST /graphql; returns {data, errors}. Throws AuthRequired on 401, Error otherwise. */
export async function gql(query, variables = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const res = await fetch("/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  if (res.status === 401) throw new AuthRequired("the server asks for a token");
  const body = await res.json();
  if (!res.ok && !body.data) {
    const first = (body.errors || [])[0];
    throw new Error(first ? `${first.extensions?.code}: ${first.message}` : `HTTP ${res.status}`);
  }
  return body;
}

/**
 * Calls onUpdate({version, newestChangeAt, lagSeconds}) each time the warehouse publishes a
 * new version: the `warehouseUpdated` subscription over graphql-transport-ws (the token goes
 * in connection_init, as a browser WebSocket carries no headers). Reconnects with back-off
 * after a drop; gives up when the server refuses the token or the role (4401/4403, error).
 */
export function watchWarehouse(onUpdate) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = "subscription { warehouseUpdated { version newestChangeAt lagSeconds } }";
  let delay = 1000;
  let refused = false;
  const open = () => {
    const ws = new WebSocket(`${scheme}://${location.host}/graphql`, "graphql-transport-ws");
    ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init",
      payload: token() ? { Authorization: `Bearer ${token()}` } : {} }));
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "connection_ack") {
        delay = 1000;
        ws.send(JSON.stringify({ id: "warehouse", type: "subscribe", payload: { query } }));
      } else if (msg.type === "ping") {
        ws.send(JSON.stringify({ type: "pong" }));
      } else if (msg.type === "next" && msg.payload?.data?.warehouseUpdated) {
        onUpdate(msg.payload.data.warehouseUpdated);
      } else if (msg.type === "error" || (msg.type === "next" && msg.payload?.errors)) {
        refused = true; // e.g. FORBIDDEN for this role: polling would not help either
        ws.close();
      }
    };
    ws.onclose = (ev) => {
      if (refused || ev.code === 4401 || ev.code === 4403) return;
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 30000);
    };
  };
  open();
}

/** The months ("YYYY-MM") that hold only part of their days: the running month (UTC, as
 *  the dashboard's cube queries) and a month the date range starts or ends inside. */
export function partialMonths(range, today = new Date()) {
  const running = today.toISOString().slice(0, 7);
  const partial = new Set();
  if (range.from && range.from.slice(8, 10) !== "01") partial.add(range.from.slice(0, 7));
  if (range.to) {
    const next = new Date(`${range.to}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    if (next.getUTCDate() !== 1) partial.add(range.to.slice(0, 7));
  }
  return { has: (m) => m >= running || partial.has(m) };
}

/** data, or an Error naming the first GraphQL error when there is no data at all. */
export async function cube(query, variables = {}) {
  const body = await gql(query, variables);
  if (body.errors && body.errors.length) {
    const e = body.errors[0];
    throw new Error(`${e.extensions?.code || "ERROR"}: ${e.message}`);
  }
  return body.data;
}

// each fact cube's own time dimension, and which cubes join products / carry a channel
export const TIME = {
  sales: "orderedAt",
  orders: "orderedAt",
  returns: "returnedAt",
  feedback: "createdAt",
  support: "openedAt",
};
const WITH_PRODUCTS = new Set(["sales", "returns", "feedback"]);
const WITH_CHANNEL = new Set(["sales", "orders"]);
export const GEO = ["country", "region", "city"];
export const CATALOG = ["category", "subcategory", "brand"];

/**
 * The CubeWhere for the facts in `cubes` under the dashboard state `s`:
 * {range: {from, to}, segment, channel, geo: [country, region], cat: [category, subcategory]}.
 * The channel applies only when every fact has one (sales, orders); the catalog drill
 * only to facts that join products.
 */
export function where(s, cubes, range = s.range) {
  const w = {};
  for (const c of cubes) {
    const own = {};
    if (range) own[TIME[c]] = { inDateRange: [range.from, range.to] };
    if (s.channel && cubes.every((x) => WITH_CHANNEL.has(x))) own.channel = { equals: s.channel };
    w[c] = own;
  }
  const customers = {};
  if (s.segment) customers.segment = { equals: s.segment };
  s.geo.forEach((v, i) => (customers[GEO[i]] = { equals: v }));
  if (Object.keys(customers).length) w.customers = customers;
  if (cubes.some((c) => WITH_PRODUCTS.has(c)) && s.cat.length) {
    const products = {};
    s.cat.forEach((v, i) => (products[CATALOG[i]] = { equals: v }));
    w.products = products;
  }
  return w;
}

/** The same number of days immediately before `range` (both ends inclusive). */
export function priorRange(range) {
  const day = 86400000;
  const from = Date.parse(range.from + "T00:00:00Z");
  const to = Date.parse(range.to + "T00:00:00Z");
  const days = Math.round((to - from) / day) + 1;
  const iso = (t) => new Date(t).toISOString().slice(0, 10);
  return { from: iso(from - days * day), to: iso(from - day) };
}
