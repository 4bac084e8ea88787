// The query console (docs/console.md). The API key lives in this page's memory only, or in the
// tab's sessionStorage when "keep in this tab" is ticked; never in a URL. The page talks to the
// service that served it and to nothing else (its Content-Security-Policy says so too).
"use strict";

const $ = (id) => document.getElementById(id);
const STORED_KEY = "reporting-console-key";
const state = { meta: null, chart: null, answer: null, granularity: "day" };

function route(org, suffix = "") {
  return `/api/reporting/v1/orgs/${encodeURIComponent(org)}/visitor_sessions${suffix}`;
}

async function call(method, path, body) {
  const headers = { Authorization: `Token ${$("key").value.trim()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const started = performance.now();
  const response = await fetch(path, { method, headers, body, cache: "no-store" });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { response, json, text, ms: performance.now() - started };
}

// ---- time: a wall-clock time in an IANA zone, written with its offset as the API wants ----

function zoneOffsetMinutes(utcMs, zone) {
  const format = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const p = Object.fromEntries(format.formatToParts(new Date(utcMs)).map((x) => [x.type, x.value]));
  return Math.round((Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - utcMs) / 60000);
}

function withOffset(local, zone) {
  const [day, time] = local.split("T");
  const [y, mo, d] = day.split("-").map(Number);
  const [h, mi] = time.split(":").map(Number);
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  const offset = zoneOffsetMinutes(wall - zoneOffsetMinutes(wall, zone) * 60000, zone);
  if (offset === 0) return `${day}T${time.slice(0, 5)}:00Z`;
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  const hh = String(Math.floor(abs / 60)).padStart(2, "0");
  return `${day}T${time.slice(0, 5)}:00${sign}${hh}:${String(abs % 60).padStart(2, "0")}`;
}

// ---- the form, built from /meta ----

function choice(container, name, value, text, checked) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  Object.assign(box, { type: "checkbox", name, value, checked });
  box.addEventListener("change", writeRequest);
  label.append(box, text);
  container.append(label);
}

function fillBuilder(meta) {
  const granularity = $("granularity");
  granularity.replaceChildren(...meta.granularities.map((g) => new Option(g, g, false, g === "day")));
  $("group-by").replaceChildren();
  meta.dimensions.forEach((d) => choice($("group-by"), "group_by", d.name, d.name, false));
  $("aggregations").replaceChildren();
  meta.aggregations.forEach((a) => a.outputs.forEach((o) => {
    const value = JSON.stringify(o.field ? { type: a.type, fields: [o.field] } : { type: a.type });
    choice($("aggregations"), "aggregation", value, o.output, a.type === "count");
  }));
  $("filters").replaceChildren();
  writeRequest();
}

function addFilter() {
  if (!state.meta) return;
  const row = document.createElement("div");
  row.className = "filter";
  const dimension = document.createElement("select");
  dimension.append(...state.meta.dimensions.map((d) => new Option(d.name, d.name)));
  const value = Object.assign(document.createElement("input"), { type: "text", placeholder: "equals…" });
  const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "×" });
  remove.className = "small";
  remove.addEventListener("click", () => { row.remove(); writeRequest(); });
  [dimension, value].forEach((el) => el.addEventListener("input", writeRequest));
  row.append(dimension, value, remove);
  $("filters").append(row);
  writeRequest();
}

function checked(name) {
  return [...document.querySelectorAll(`input[name=${name}]:checked`)].map((box) => box.value);
}

function builtQuery() {
  const zone = $("tz").value.trim() || "UTC";
  const query = {
    interval: { start: withOffset($("start").value, zone), end: withOffset($("end").value, zone), time_zone: zone },
    granularity: $("granularity").value,
    aggregations: checked("aggregation").map((a) => JSON.parse(a)),
  };
  const groupBy = checked("group_by");
  if (groupBy.length) query.group_by = groupBy;
  const filters = [...$("filters").children]
    .map((row) => ({ type: "selector", dimension: row.children[0].value, value: row.children[1].value }))
    .filter((f) => f.value !== "");
  if (filters.length) query.filters = filters;
  return query;
}

function writeRequest() {
  try {
    $("request").value = JSON.stringify(builtQuery(), null, 2);
  } catch (error) {
    $("status").textContent = `The form is incomplete: ${error.message}`;
  }
}

// ---- answers: chart, table, errors ----

function showError(status, json, text) {
  const box = $("error");
  box.hidden = false;
  box.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = json ? `${status} ${json.code}: ${json.detail}` : `${status}: ${text || "no answer"}`;
  box.append(title);
  const lines = json && json.errors ? flatten(json.errors, "") : [];
  if (lines.length) {
    const list = document.createElement("ul");
    list.append(...lines.map((line) => Object.assign(document.createElement("li"), { textContent: line })));
    box.append(list);
  }
}

function flatten(errors, path) {
  if (Array.isArray(errors) && errors.every((e) => typeof e === "string")) return [`${path}: ${errors.join(" ")}`];
  if (errors === null || typeof errors !== "object") return [`${path}: ${errors}`];
  return Object.entries(errors).flatMap(([key, value]) => flatten(value, path ? `${path}.${key}` : key));
}

function showTable(answer) {
  const head = document.createElement("tr");
  head.append(...answer.fields.map((f) => Object.assign(document.createElement("th"), { textContent: f.name })));
  $("table").tHead.replaceChildren(head);
  $("table").tBodies[0].replaceChildren(...answer.data.map((row) => {
    const tr = document.createElement("tr");
    tr.append(...row.map((value) => {
      const td = document.createElement("td");
      td.textContent = value === null ? "null" : String(value);
      if (typeof value === "number") td.className = "number";
      return td;
    }));
    return tr;
  }));
}

function showChart(answer, granularity) {
  const metrics = answer.fields.filter((f) => f.type === "metric").map((f) => f.name);
  const select = $("metric");
  const kept = metrics.includes(select.value) ? select.value : metrics[0];
  select.replaceChildren(...metrics.map((m) => new Option(m, m, false, m === kept)));
  drawChart(answer, granularity, kept);
}

function drawChart(answer, granularity, metric) {
  const names = answer.fields.map((f) => f.name);
  const groups = answer.fields.filter((f) => f.type === "dimension" && f.name !== "timestamp").map((f) => names.indexOf(f.name));
  const at = names.indexOf(metric);
  const label = (row) => groups.map((i) => String(row[i])).join(" · ") || metric;
  if (state.chart) state.chart.destroy();
  const canvas = $("chart");
  state.chart = granularity === "all" ? barChart(canvas, answer.data, label, at) : lineChart(canvas, answer.data, label, at);
  canvas.dataset.series = String(state.chart.data.datasets.length);
}

function lineChart(canvas, rows, label, at) {
  const times = [...new Set(rows.map((row) => row[0]))];
  const series = new Map();
  rows.forEach((row) => {
    if (!series.has(label(row))) series.set(label(row), new Array(times.length).fill(null));
    series.get(label(row))[times.indexOf(row[0])] = row[at];
  });
  const datasets = [...series].map(([name, data]) => ({ label: name, data, spanGaps: true, tension: 0.2 }));
  return new Chart(canvas, { type: "line", data: { labels: times.map(shortTime), datasets }, options: chartOptions() });
}

function barChart(canvas, rows, label, at) {
  const datasets = [{ label: "value", data: rows.map((row) => row[at]) }];
  return new Chart(canvas, { type: "bar", data: { labels: rows.map(label), datasets }, options: chartOptions() });
}

function chartOptions() {
  return { animation: false, maintainAspectRatio: false, interaction: { mode: "nearest", intersect: false } };
}

function shortTime(stamp) {
  return stamp.replace(/T00:00:00\.000.*$/, "").replace(/:00\.000.*$/, "").replace("T", " ");
}

// ---- actions ----

async function connect(event) {
  event.preventDefault();
  if ($("remember").checked) sessionStorage.setItem(STORED_KEY, $("key").value.trim());
  else sessionStorage.removeItem(STORED_KEY);
  const { response, json, text } = await call("GET", route($("org").value.trim(), "/meta"));
  if (!response.ok) {
    $("connection").textContent = "Not connected.";
    showError(response.status, json, text);
    return;
  }
  $("error").hidden = true;
  state.meta = json;
  fillBuilder(json);
  $("connection").textContent = "Connected: the form below lists what this deployment accepts.";
}

async function run(explain) {
  const body = $("request").value;
  $("status").textContent = "Running…";
  let outcome;
  try {
    outcome = await call("POST", route($("org").value.trim(), explain ? "?explain=true" : ""), body);
  } catch (error) {
    $("status").textContent = "";
    showError("network", null, error.message);
    return;
  }
  const { response, json, text, ms } = outcome;
  const id = response.headers.get("X-Request-Id");
  const cache = response.headers.get("X-Cache");
  $("status").textContent = `${response.status} in ${ms.toFixed(0)} ms · request ${id}${cache ? ` · cache ${cache}` : ""}`;
  if (!response.ok) return showError(response.status, json, text);
  $("error").hidden = true;
  if (explain) {
    $("explained").hidden = false;
    $("explain-out").textContent = JSON.stringify(json, null, 2);
    return;
  }
  state.answer = json;
  state.granularity = JSON.parse(body).granularity;
  $("result").hidden = false;
  showTable(json);
  showChart(json, state.granularity);
}

function fromFragment() {
  const wanted = new URLSearchParams(location.hash.slice(1));
  $("org").value = wanted.get("org") || "";
  $("tz").value = wanted.get("tz") || Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("start").value = `${wanted.get("start") || "2019-01-01"}T00:00`;
  $("end").value = `${wanted.get("end") || "2019-01-08"}T00:00`;
  $("key").value = sessionStorage.getItem(STORED_KEY) || "";
  $("remember").checked = Boolean($("key").value);
}

function start() {
  fromFragment();
  $("connect").addEventListener("submit", connect);
  $("add-filter").addEventListener("click", addFilter);
  ["start", "end", "tz", "granularity"].forEach((id) => $(id).addEventListener("change", writeRequest));
  $("run").addEventListener("click", () => run(false));
  $("explain").addEventListener("click", () => run(true));
  $("metric").addEventListener("change", () => drawChart(state.answer, state.granularity, $("metric").value));
}

start();
