// The cube builder: a GraphiQL plugin that builds a `cube` query from `cubeMeta` (pick
// measures, dimensions, a time dimension, filters, order and limit), shows its GraphQL,
// runs it and draws the answer, as Cube's playground does. "Open in a tab" puts the query
// in GraphiQL's editor. Values from the answer reach Plotly through plotText (escaped: a
// city's `<a href>` is text, never a link).
/* global React, GraphiQL, Plotly */
import { plotText } from "./plot-text.js";

const h = React.createElement;

const META_QUERY = `{ cubeMeta { name title
  measures { name title format }
  dimensions { name title type granularities values } } }`;

const OPS = {
  string: ["equals", "notEquals", "in", "notIn", "contains", "set"],
  number: ["equals", "notEquals", "gt", "gte", "lt", "lte", "in", "set"],
  boolean: ["equals", "set"],
  time: ["inDateRange", "beforeDate", "afterDate", "set"],
  measure: ["gt", "gte", "lt", "lte", "equals"],
};
const LISTS = new Set(["in", "notIn", "contains", "inDateRange"]);

/** A GraphQL input literal for a JSON value (object keys are names, strings quoted). */
export function literal(v) {
  if (Array.isArray(v)) return `[${v.map(literal).join(", ")}]`;
  if (v && typeof v === "object") {
    return `{${Object.entries(v).map(([k, x]) => `${k}: ${literal(x)}`).join(", ")}}`;
  }
  return JSON.stringify(v);
}

function member(meta, path) {
  const [cube, name] = path.split(".");
  const c = meta.find((x) => x.name === cube);
  if (!c) return null;
  const m = c.measures.find((x) => x.name === name);
  if (m) return { cube, name, kind: "measure", ...m };
  const d = c.dimensions.find((x) => x.name === name);
  return d ? { cube, name, kind: d.type, ...d } : null;
}

function filterValue(kind, op, raw) {
  const text = raw.trim();
  if (op === "set") return text !== "false";
  const one = (s) => (kind === "number" || kind === "measure" ? Number(s) : kind === "boolean" ? s === "true" : s);
  if (LISTS.has(op)) return text.split(",").map((s) => one(s.trim())).filter((s) => s !== "");
  return one(text);
}

/** The cube query for a builder state: {measures, dimensions, time, granularity, filters,
 *  order, limit} (members as "cube.member"). */
export function buildQuery(meta, s) {
  const fields = {};
  const add = (cube, text) => (fields[cube] = fields[cube] || []).push(text);
  for (const p of s.measures) add(...splitAdd(p));
  for (const p of s.dimensions) add(...splitAdd(p));
  if (s.time) {
    const [cube, name] = s.time.split(".");
    add(cube, `${name} { ${s.granularity} }`);
  }
  const where = {};
  for (const f of s.filters) {
    const m = member(meta, f.member);
    if (!m || !f.op) continue;
    where[m.cube] = where[m.cube] || {};
    where[m.cube][m.name] = { ...(where[m.cube][m.name] || {}), [f.op]: filterValue(m.kind, f.op, f.value) };
  }
  const args = [];
  if (Object.keys(where).length) args.push(`where: ${literal(where)}`);
  const order = s.order || (s.time ? `${s.time}:ASC` : s.measures[0] ? `${s.measures[0]}:DESC` : "");
  if (order) {
    const [path, dir] = order.split(":");
    const [cube, name] = path.split(".");
    args.push(`orderBy: [{${cube}: {${name}: ${dir}}}]`);
  }
  if (s.limit) args.push(`limit: ${Number(s.limit)}`);
  const body = Object.entries(fields)
    .map(([cube, list]) => `    ${cube} { ${list.join(" ")} }`)
    .join("\n");
  return `query CubeBuilder {\n  cube${args.length ? `(${args.join(", ")})` : ""} {\n${body}\n  }\n}\n`;
}

function splitAdd(path) {
  const [cube, name] = path.split(".");
  return [cube, name];
}

/** The rows of an answer as {x, traces}: chronological when a time dimension is chosen. */
export function series(s, rows) {
  const get = (row, path) => {
    const [cube, name] = path.split(".");
    return row[cube] ? row[cube][name] : null;
  };
  const xOf = (row) => {
    if (s.time) {
      const t = get(row, s.time);
      return t ? t[s.granularity] : null;
    }
    return s.dimensions.map((d) => String(get(row, d) ?? "(none)")).join(" · ") || "all";
  };
  const split = s.time && s.dimensions.length ? s.dimensions[0] : null;
  const traces = new Map();
  for (const row of rows) {
    for (const m of split ? s.measures.slice(0, 1) : s.measures) {
      const name = split ? String(get(row, split) ?? "(none)") : m;
      if (!traces.has(name)) traces.set(name, { name, x: [], y: [] });
      traces.get(name).x.push(xOf(row));
      traces.get(name).y.push(get(row, m));
    }
  }
  const list = [...traces.values()];
  if (s.time) {
    for (const t of list) {
      const idx = t.x.map((_, i) => i).sort((a, b) => String(t.x[a]).localeCompare(String(t.x[b])));
      t.x = idx.map((i) => t.x[i]);
      t.y = idx.map((i) => t.y[i]);
    }
  }
  return list;
}

let plotly = null;
function loadPlotly() {
  if (!plotly) {
    plotly = new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = "/graphiql/static/vendor/plotly.min.js";
      el.onload = () => resolve(window.Plotly);
      el.onerror = () => reject(new Error("plotly.js could not be loaded"));
      document.head.append(el);
    });
  }
  return plotly;
}

function MemberList({ meta, kind, chosen, toggle }) {
  return h("div", { className: "members" }, meta.flatMap((c) => {
    const items = kind === "measures" ? c.measures : c.dimensions.filter((d) => d.type !== "time");
    if (!items.length) return [];
    return [
      h("div", { key: `${c.name}-t`, className: "cube-title" }, c.title || c.name),
      ...items.map((m) => {
        const path = `${c.name}.${m.name}`;
        return h("label", { key: path, title: path },
          h("input", { type: "checkbox", checked: chosen.includes(path), "data-member": path,
            onChange: () => toggle(path) }), m.title || m.name);
      }),
    ];
  }));
}

function Filters({ meta, filters, setFilters }) {
  const all = meta.flatMap((c) => [...c.dimensions, ...c.measures.map((m) => ({ ...m, type: "measure" }))]
    .map((m) => ({ path: `${c.name}.${m.name}`, title: `${c.name}.${m.name}`, type: m.type })));
  const update = (i, patch) => setFilters(filters.map((f, j) => (j === i ? { ...f, ...patch } : f)));
  return h("div", null,
    filters.map((f, i) => {
      const m = all.find((x) => x.path === f.member);
      const ops = OPS[m ? m.type : "string"] || OPS.string;
      return h("div", { key: i, className: "row filter" },
        h("select", { value: f.member, "aria-label": "filter member",
          onChange: (e) => update(i, { member: e.target.value, op: "" }) },
          all.map((x) => h("option", { key: x.path, value: x.path }, x.title))),
        h("select", { value: f.op, "aria-label": "operator", onChange: (e) => update(i, { op: e.target.value }) },
          h("option", { value: "" }, "…"), ops.map((o) => h("option", { key: o, value: o }, o))),
        h("input", { type: "text", value: f.value, placeholder: LISTS.has(f.op) ? "a, b" : "value",
          "aria-label": "filter value", onChange: (e) => update(i, { value: e.target.value }) }),
        h("button", { type: "button", className: "secondary", onClick: () => setFilters(filters.filter((_, j) => j !== i)) }, "✕"));
    }),
    h("button", { type: "button", className: "secondary", onClick: () =>
      setFilters([...filters, { member: all[0] ? all[0].path : "", op: "", value: "" }]) }, "+ filter"));
}

function Chart({ s, rows }) {
  const ref = React.useRef(null);
  React.useEffect(() => {
    if (!rows || !rows.length || !s.measures.length) return;
    loadPlotly().then((P) => {
      if (!ref.current) return;
      const traces = series(s, rows).map((t) => ({ ...t, name: plotText(t.name),
        x: t.x.map(plotText), type: s.time ? "scatter" : "bar",
        mode: "lines+markers", hovertemplate: "%{x}: %{y:,.2f}<extra>%{fullData.name}</extra>" }));
      P.react(ref.current, traces, { margin: { l: 56, r: 8, t: 8, b: 64 }, autosize: true,
        legend: { orientation: "h", y: -0.3 }, xaxis: { automargin: true, type: "category" },
        yaxis: { automargin: true, tickformat: "~s" } },
      { responsive: true, displaylogo: false, displayModeBar: false });
    });
  }, [rows]);
  return h("div", { ref, className: "chart", id: "cube-builder-chart" });
}

function CubeBuilder({ gql }) {
  const [meta, setMeta] = React.useState(null);
  const [error, setError] = React.useState("");
  const [s, setS] = React.useState({ measures: [], dimensions: [], time: "", granularity: "month",
    filters: [], order: "", limit: 100 });
  const [rows, setRows] = React.useState(null);
  const editor = GraphiQL.React.useEditorContext();

  React.useEffect(() => {
    gql(META_QUERY).then((body) => {
      if (body.errors && body.errors.length) setError(`${body.errors[0].extensions?.code}: ${body.errors[0].message}`);
      else setMeta(body.data.cubeMeta);
    }).catch((e) => setError(String(e)));
  }, []);

  if (error) return h("div", { className: "cube-builder" }, h("p", { className: "error" }, error));
  if (!meta) return h("div", { className: "cube-builder" }, "loading cubeMeta…");

  const toggle = (key) => (path) => setS({ ...s, [key]: s[key].includes(path)
    ? s[key].filter((p) => p !== path) : [...s[key], path] });
  const times = meta.flatMap((c) => c.dimensions.filter((d) => d.type === "time")
    .map((d) => ({ path: `${c.name}.${d.name}`, granularities: d.granularities })));
  const time = times.find((t) => t.path === s.time);
  const query = s.measures.length || s.dimensions.length || s.time ? buildQuery(meta, s) : "";
  const orderable = [...s.measures, ...s.dimensions, ...(s.time ? [s.time] : [])];

  const run = async () => {
    setError("");
    setRows(null);
    const body = await gql(query);
    if (body.errors && body.errors.length) setError(`${body.errors[0].extensions?.code}: ${body.errors[0].message}`);
    else setRows(body.data.cube);
  };
  const open = () => {
    if (!editor) return;
    editor.addTab();
    setTimeout(() => editor.queryEditor && editor.queryEditor.setValue(query), 50);
  };

  return h("div", { className: "cube-builder" },
    h("fieldset", null, h("legend", null, "Measures"),
      h(MemberList, { meta, kind: "measures", chosen: s.measures, toggle: toggle("measures") })),
    h("fieldset", null, h("legend", null, "Dimensions"),
      h(MemberList, { meta, kind: "dimensions", chosen: s.dimensions, toggle: toggle("dimensions") })),
    h("fieldset", null, h("legend", null, "Time"),
      h("div", { className: "row" },
        h("select", { value: s.time, "aria-label": "time dimension", id: "cb-time",
          onChange: (e) => setS({ ...s, time: e.target.value }) },
          h("option", { value: "" }, "none"), times.map((t) => h("option", { key: t.path, value: t.path }, t.path))),
        h("select", { value: s.granularity, "aria-label": "granularity", id: "cb-granularity",
          onChange: (e) => setS({ ...s, granularity: e.target.value }) },
          (time ? time.granularities : ["day", "week", "month", "quarter", "year"])
            .map((g) => h("option", { key: g, value: g }, g))))),
    h("fieldset", null, h("legend", null, "Filters"),
      h(Filters, { meta, filters: s.filters, setFilters: (filters) => setS({ ...s, filters }) })),
    h("fieldset", null, h("legend", null, "Order and limit"),
      h("div", { className: "row" },
        h("select", { value: s.order, "aria-label": "order", onChange: (e) => setS({ ...s, order: e.target.value }) },
          h("option", { value: "" }, "default"),
          orderable.flatMap((p) => ["ASC", "DESC"].map((d) => h("option", { key: `${p}:${d}`, value: `${p}:${d}` }, `${p} ${d}`)))),
        h("input", { type: "number", min: 1, max: 10000, value: s.limit, "aria-label": "limit",
          onChange: (e) => setS({ ...s, limit: e.target.value }) }))),
    h("pre", { id: "cube-builder-query" }, query || "pick a measure or a dimension"),
    h("div", { className: "actions" },
      h("button", { type: "button", id: "cb-run", disabled: !query, onClick: run }, "Run"),
      h("button", { type: "button", className: "secondary", id: "cb-open", disabled: !query, onClick: open },
        "Open in a tab")),
    rows && h("p", { id: "cube-builder-count" }, `${rows.length} rows`),
    rows && h(Chart, { s, rows }));
}

function CubeIcon() {
  return h("svg", { viewBox: "0 0 24 24", width: 20, height: 20, fill: "none", stroke: "currentColor",
    strokeWidth: 1.5, "aria-hidden": true },
    h("path", { d: "M12 2 3 7v10l9 5 9-5V7l-9-5Z" }), h("path", { d: "M3 7l9 5 9-5M12 12v10" }));
}

/** The plugin; `gql(query, variables)` sends a query with the page's token. */
export function cubeBuilderPlugin({ gql }) {
  return { title: "Cube builder", icon: CubeIcon, content: () => h(CubeBuilder, { gql }) };
}
