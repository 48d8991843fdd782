"""The page the server shows at ``/``: try recommendations by hand, on the server's own JSON API.

One self-contained HTML document (inline CSS and JS, no external assets: the machines it runs
on are often offline). It searches the catalog (``GET /items?q=``), builds a history, asks
``POST /recommend`` for k items and shows them with their scores, the path that answered
(generative / fallback / popularity), the reason and the latency.

Query parameters fill the form on load, so a link (or a test) can reproduce a request:
``/?history=id1,id2&k=5&budget_ms=2000&q=lamp&go=1`` (``go=1`` sends it at once).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>genrec: try recommendations</title>
<style>
  :root { --ink: #1d2430; --muted: #5b6677; --line: #d8dee8; --accent: #2459c4; --bg: #f6f8fb; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
         background: var(--bg); }
  header { padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 19px; }
  header p { margin: 2px 0 0; color: var(--muted); font-size: 13px; }
  main { display: grid; grid-template-columns: minmax(280px, 1fr) minmax(340px, 1.4fr); gap: 18px;
         padding: 18px 24px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
  h2 { font-size: 15px; margin: 0 0 10px; }
  input[type=search], input[type=number] { font: inherit; padding: 6px 8px; border: 1px solid var(--line);
         border-radius: 5px; }
  input[type=search] { width: 100%; }
  input[type=number] { width: 90px; }
  button { font: inherit; padding: 5px 10px; border-radius: 5px; border: 1px solid var(--accent);
           background: #fff; color: var(--accent); cursor: pointer; }
  button.primary { background: var(--accent); color: #fff; }
  button:disabled { opacity: .5; cursor: default; }
  ul { list-style: none; margin: 8px 0 0; padding: 0; }
  #results { max-height: 330px; overflow-y: auto; }
  li { display: flex; justify-content: space-between; align-items: center; gap: 8px; padding: 5px 0;
       border-bottom: 1px solid #eef1f5; }
  .id { color: var(--muted); font: 12px ui-monospace, monospace; }
  .muted { color: var(--muted); font-size: 13px; }
  .row { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; margin-top: 10px; }
  table { border-collapse: collapse; width: 100%; margin-top: 10px; }
  th, td { text-align: left; padding: 5px 6px; border-bottom: 1px solid #eef1f5; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; }
  .generative { background: #e2f3e6; color: #1c6b33; }
  .fallback { background: #fff1d6; color: #8a5a00; }
  .popularity { background: #fde4e4; color: #9b1c1c; }
  .error { color: #9b1c1c; }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>genrec: try recommendations</h1>
  <p id="info">loading&hellip;</p>
</header>
<main>
  <div>
    <section>
      <h2>1. Find items</h2>
      <input id="q" type="search" placeholder="search the catalog by title" autocomplete="off">
      <ul id="results"></ul>
      <p id="results-note" class="muted"></p>
    </section>
    <section style="margin-top:18px">
      <h2>2. The history (oldest first)</h2>
      <ul id="history"></ul>
      <p id="history-note" class="muted">empty: add items from the search</p>
      <button id="clear" type="button">clear</button>
    </section>
  </div>
  <section>
    <h2>3. Recommend</h2>
    <div class="row">
      <label>k <input id="k" type="number" min="1" value="10"></label>
      <label>budget (ms) <input id="budget" type="number" min="1" placeholder="server default"></label>
      <button id="go" class="primary" type="button" disabled>recommend</button>
    </div>
    <div id="answer" class="muted" style="margin-top:12px">no request yet</div>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const state = { history: [] };  // [{item_id, title}]

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function search(q) {
  const r = await fetch("items?limit=20&q=" + encodeURIComponent(q));
  const data = await r.json();
  const list = $("results");
  list.replaceChildren();
  if (!r.ok) { $("results-note").textContent = data.error || ("error " + r.status); return; }
  for (const it of data.items) {
    list.append(el("li", {"data-item": it.item_id},
      el("span", {}, it.title, " ", el("span", {class: "id"}, it.item_id)),
      el("button", {type: "button", class: "add", onclick: () => addItem(it)}, "add")));
  }
  $("results-note").textContent = data.total + " match" + (data.total === 1 ? "" : "es") +
    (data.total > data.items.length ? " (first " + data.items.length + " shown)" : "");
}

function addItem(it) {
  state.history.push({item_id: it.item_id, title: it.title});
  renderHistory();
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  state.history.forEach((it, i) => list.append(el("li", {"data-item": it.item_id},
    el("span", {}, it.title, " ", el("span", {class: "id"}, it.item_id)),
    el("button", {type: "button", onclick: () => { state.history.splice(i, 1); renderHistory(); }}, "remove"))));
  $("history-note").textContent = state.history.length ? state.history.length + " item(s)" :
    "empty: add items from the search";
  $("go").disabled = state.history.length === 0;
}

async function recommend() {
  const body = {history: state.history.map((it) => it.item_id), k: Number($("k").value)};
  if ($("budget").value) body.budget_ms = Number($("budget").value);
  const answer = $("answer");
  answer.className = "muted";
  answer.textContent = "asking…";
  $("go").disabled = true;
  const t0 = performance.now();
  let r, data;
  try {
    r = await fetch("recommend", {method: "POST", headers: {"content-type": "application/json"},
                                  body: JSON.stringify(body)});
    data = await r.json();
  } catch (e) {
    answer.className = "error"; answer.textContent = "request failed: " + e; $("go").disabled = false; return;
  }
  $("go").disabled = false;
  const roundTrip = performance.now() - t0;
  if (!r.ok) {
    answer.className = "error";
    answer.textContent = "error " + r.status + (data.field ? " (" + data.field + ")" : "") + ": " + data.error;
    return;
  }
  const table = el("table", {id: "items"},
    el("thead", {}, el("tr", {}, el("th", {class: "num"}, "#"), el("th", {}, "item"), el("th", {}, "id"),
                    el("th", {class: "num"}, "score"))));
  const tbody = el("tbody", {});
  data.items.forEach((it, i) => tbody.append(el("tr", {"data-item": it.item_id},
    el("td", {class: "num"}, i + 1), el("td", {}, it.title), el("td", {class: "id"}, it.item_id),
    el("td", {class: "num score"}, Number(it.score).toPrecision(4)))));
  table.append(tbody);
  const summary = el("p", {},
    "answered by ", el("span", {id: "path", class: "badge " + data.path}, data.path),
    " in ", el("span", {id: "latency"}, data.latency_ms.toFixed(1) + " ms"),
    el("span", {class: "muted"}, " (server; " + roundTrip.toFixed(0) + " ms round trip)"));
  const parts = [summary];
  parts.push(el("p", {id: "reason", class: "muted"},
    data.reason ? "reason: " + data.reason : "reason: none (the generative path answered)"));
  if (data.unknown_ids.length) {
    parts.push(el("p", {id: "unknown", class: "error"}, "not in the catalog, ignored: " + data.unknown_ids.join(", ")));
  }
  parts.push(table);
  answer.className = "";
  answer.replaceChildren(...parts);
  answer.setAttribute("data-done", "1");
}

async function start() {
  let timer = null;
  $("q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => search($("q").value), 200); });
  $("go").addEventListener("click", recommend);
  $("clear").addEventListener("click", () => { state.history = []; renderHistory(); });
  try {
    const h = await (await fetch("health")).json();
    $("info").textContent = h.num_items + " items · generation: " + h.backend + " · fallback: " + h.fallback +
      " · " + h.status;
  } catch (e) { $("info").textContent = "server not reachable: " + e; }
  const params = new URLSearchParams(location.search);
  if (params.get("k")) $("k").value = params.get("k");
  if (params.get("budget_ms")) $("budget").value = params.get("budget_ms");
  const ids = (params.get("history") || "").split(",").filter((x) => x);
  for (const id of ids) {
    const r = await (await fetch("items?limit=1&id=" + encodeURIComponent(id))).json();
    addItem(r.items.length ? r.items[0] : {item_id: id, title: "(not in the catalog)"});
  }
  $("q").value = params.get("q") || "";
  await search($("q").value);
  document.body.setAttribute("data-ready", "1");
  if (params.get("go") === "1" && state.history.length) await recommend();
}
start();
</script>
</body>
</html>
"""
