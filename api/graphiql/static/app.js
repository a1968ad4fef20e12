// GraphiQL for cdms: vendored React + GraphiQL + explorer (no CDN), the token field, the
// example tabs (examples.json) and the cube builder plugin.
/* global React, ReactDOM, GraphiQL, GraphiQLPluginExplorer */
import { cubeBuilderPlugin } from "./cube-builder.js";

const TOKEN_KEY = "cdms.token"; // shared with the dashboard
const $ = (sel) => document.querySelector(sel);

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

function say(text, error = false) {
  const el = $("#token-status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

/** Headers every request of this page carries: the token as a bearer. */
export function authHeaders() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** fetch with the token; says so in the bar when the server wants one. */
export async function authedFetch(url, init = {}) {
  // a header typed in GraphiQL's Headers editor wins over the token field
  const headers = { ...authHeaders(), ...(init.headers || {}) };
  const res = await fetch(url, { ...init, headers });
  if (res.status === 401) {
    say(token() ? "the server refused this token (401)" : "the server asks for a token (401)", true);
  } else if (res.status === 403) {
    say("this token may not do that (403): see the response", true);
  } else if (res.ok) {
    say(token() ? "token in use" : "no token (demo-open server)");
  }
  return res;
}

/** POST /graphql with the token; the parsed body. */
export async function gql(query, variables = {}) {
  const res = await authedFetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return res.json();
}

function makeFetcher() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return GraphiQL.createFetcher({
    url: "/graphql",
    subscriptionUrl: `${scheme}://${location.host}/graphql`,
    // a browser WebSocket carries no headers: the token goes in connection_init
    wsConnectionParams: authHeaders(),
    fetch: authedFetch,
  });
}

async function examples() {
  const res = await fetch("/graphiql/static/examples.json");
  const list = await res.json();
  return list.map((e) => ({
    query: e.query,
    variables: JSON.stringify(e.variables || {}, null, 2),
  }));
}

let root = null;
let tabs = [];
const plugins = [
  cubeBuilderPlugin({ gql }),
  GraphiQLPluginExplorer.explorerPlugin({ showAttribution: false }),
];

function render() {
  root.render(
    React.createElement(GraphiQL, {
      fetcher: makeFetcher(), // a new fetcher refetches the schema with the current token
      defaultTabs: tabs,
      plugins,
      defaultEditorToolsVisibility: "variables",
      shouldPersistHeaders: false,
      isHeadersEditorEnabled: true,
    }),
  );
}

async function start() {
  $("#token").value = token();
  $("#token-bar").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("#token").value.trim());
    say(token() ? "token saved in this browser" : "no token");
    render();
  });
  $("#token-clear").addEventListener("click", () => {
    setToken("");
    $("#token").value = "";
    say("token forgotten");
    render();
  });
  tabs = await examples();
  const host = $("#graphiql");
  host.textContent = "";
  root = ReactDOM.createRoot(host);
  render();
}

window.cdmsGraphiQL = { token, authHeaders };
start();
