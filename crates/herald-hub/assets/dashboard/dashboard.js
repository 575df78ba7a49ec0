// The Herald dashboard: signs in for a session cookie, then shows what `/admin/feed` sends once
// a second. No library, no build step. Every action sends the session's CSRF token in the
// X-CSRF-Token header; the token lives in this page's memory only.
"use strict";

const $ = (id) => document.getElementById(id);
/** Seconds of figures kept for the charts. */
const CHART_SECONDS = 300;
/** The shortest span a chart's width stands for, so a new page's lines are not all squeezed. */
const CHART_SECONDS_MIN = 60;
/** Most events the channel panel keeps. */
const CHANNEL_EVENTS_MAX = 50;

let csrf = null;
let feed = null;
let channelWatch = null;
let samples = [];
let thisNode = null;

async function start() {
  const answer = await fetch("session", { cache: "no-store" });
  if (answer.ok) {
    csrf = (await answer.json()).csrf;
    showDashboard();
  } else {
    showSignIn("");
  }
}

function showSignIn(message) {
  if (feed) feed.close();
  feed = null;
  stopWatching();
  csrf = null;
  $("dash").hidden = true;
  $("sign-out").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("feed-state").textContent = "signed out";
  $("feed-state").className = "badge";
  $("credential").focus();
}

function showDashboard() {
  $("signin").hidden = true;
  $("dash").hidden = false;
  $("sign-out").hidden = false;
  samples = [];
  feed = new EventSource("feed");
  feed.addEventListener("open", () => {
    $("feed-state").textContent = "live";
    $("feed-state").className = "badge live";
  });
  feed.addEventListener("error", () => {
    $("feed-state").textContent = "reconnecting…";
    $("feed-state").className = "badge";
  });
  feed.addEventListener("figures", (e) => render(JSON.parse(e.data)));
  feed.addEventListener("signed-out", (e) => {
    const error = JSON.parse(e.data).error;
    showSignIn(error ? error.message : "signed out");
  });
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = new URLSearchParams({ credential: $("credential").value });
  $("credential").value = "";
  const answer = await fetch("session", { method: "POST", body });
  if (answer.ok) {
    csrf = (await answer.json()).csrf;
    showDashboard();
  } else {
    $("signin-error").textContent = await errorText(answer);
  }
});

$("sign-out").addEventListener("click", async () => {
  await fetch("session", { method: "DELETE", headers: { "X-CSRF-Token": csrf } });
  showSignIn("");
});

async function errorText(answer) {
  try {
    const body = await answer.json();
    return body.error.message + " (" + body.error.code + ")";
  } catch (_) {
    return "HTTP " + answer.status;
  }
}

function fmt(n) {
  return n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US");
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1024 / 1024).toFixed(1) + " MiB";
}

function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 60) return seconds + "s";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m " + (seconds % 60) + "s";
  if (seconds < 86400) return Math.floor(seconds / 3600) + "h " + Math.floor((seconds % 3600) / 60) + "m";
  return Math.floor(seconds / 86400) + "d " + Math.floor((seconds % 86400) / 3600) + "h";
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function fillTable(id, items, fillRow) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement("tr");
    fillRow(row, item);
    body.appendChild(row);
  }
}

function render(f) {
  const node = f.node;
  thisNode = node.node;
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  $("node-name").textContent = "node " + node.node;
  $("stat-connections").textContent = fmt(node.connections);
  $("stat-published").textContent = fmt(node.eventsPublished);
  $("stat-delivered").textContent = fmt(node.eventsDelivered);
  $("stat-closed").textContent = fmt(node.connectionsClosed);
  $("stat-history").textContent = fmt(node.history.events) + " · " + bytes(node.history.bytes);
  $("stat-uptime").textContent = duration(node.uptimeSeconds);
  const keep = f.retention;
  $("stat-retention").textContent = keep
    ? "keeps ≤ " + fmt(keep.max_events) + " events · " + bytes(keep.max_bytes) + " · " + keep.max_age
    : "";

  const nodes = f.cluster ? f.cluster.nodes : [node];
  $("cluster").hidden = !f.cluster && !f.clusterError;
  $("cluster-error").textContent = f.clusterError || "";
  if (f.cluster) {
    $("cluster-summary").textContent = nodes.length + " nodes · " + fmt(f.cluster.connections) +
      " connections · " + fmt(f.cluster.eventsPublished) + " published · " +
      fmt(f.cluster.eventsDelivered) + " delivered";
  }
  fillTable("nodes", nodes, (row, n) => {
    row.dataset.node = n.node;
    cell(row, n.node + (n.node === node.node ? " (this node)" : ""));
    cell(row, fmt(n.connections));
    cell(row, fmt(n.eventsPublished));
    cell(row, fmt(n.eventsDelivered));
    cell(row, fmt(n.connectionsClosed));
    cell(row, fmt(n.history.events) + " · " + bytes(n.history.bytes));
    cell(row, duration(n.uptimeSeconds));
  });

  const scope = f.cluster || node;
  samples.push({
    t: Date.now() / 1000,
    published: scope.eventsPublished,
    delivered: scope.eventsDelivered,
    connections: scope.connections,
    closed: nodes.reduce((sum, n) => sum + (n.connectionsClosed || 0), 0),
  });
  samples = samples.filter((s) => s.t >= samples[samples.length - 1].t - CHART_SECONDS);
  drawCharts();

  $("channels-total").textContent = "(" + f.channelsTotal + ")";
  fillTable("channels", f.channels, (row, c) => {
    row.dataset.channel = c.name;
    cell(row, c.name);
    cell(row, fmt(c.subscribers));
    cell(row, "").appendChild(button("watch", "small", () => watch(c.name)));
  });

  $("clients-total").textContent = "(" + f.clientsTotal + ")";
  const now = Date.now();
  fillTable("clients", f.clients, (row, c) => {
    row.dataset.client = c.id;
    cell(row, c.id);
    cell(row, c.user || "–");
    cell(row, c.channels.join(", "));
    cell(row, c.remoteAddr || "–");
    cell(row, c.node || node.node);
    cell(row, duration((now - Date.parse(c.connectedAt)) / 1000));
    const actions = cell(row, "");
    if ((c.node || node.node) === node.node) {
      actions.appendChild(button("disconnect", "small danger", () => disconnect(c.id)));
    }
  });
}

/** Per-second differences of a counter between consecutive samples. */
function rates(key) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i].t - samples[i - 1].t;
    out.push(dt > 0 ? Math.max(0, samples[i][key] - samples[i - 1][key]) / dt : 0);
  }
  return out;
}

function drawCharts() {
  const series = {
    published: rates("published"),
    delivered: rates("delivered"),
    closed: rates("closed"),
    connections: samples.map((s) => s.connections),
  };
  for (const [name, values] of Object.entries(series)) {
    drawChart($("chart-" + name), values);
    const last = values.length ? values[values.length - 1] : 0;
    $("rate-" + name).textContent = name === "connections" ? fmt(last) : last.toFixed(1);
  }
}

/** A line over the last CHART_SECONDS (at least CHART_SECONDS_MIN wide), scaled to its maximum. */
function drawChart(svg, values) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 300;
  const height = 80;
  const max = Math.max(1, ...values);
  svg.replaceChildren();
  const base = document.createElementNS(ns, "line");
  base.setAttribute("x1", "0");
  base.setAttribute("x2", String(width));
  base.setAttribute("y1", String(height - 1));
  base.setAttribute("y2", String(height - 1));
  base.setAttribute("stroke", "#e3e6ec");
  svg.appendChild(base);
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "2");
  label.setAttribute("y", "10");
  label.setAttribute("font-size", "9");
  label.setAttribute("fill", "#6b7385");
  label.textContent = "max " + (Number.isInteger(max) ? max : max.toFixed(1));
  svg.appendChild(label);
  if (values.length < 2) return;
  const span = Math.min(CHART_SECONDS, Math.max(CHART_SECONDS_MIN, values.length));
  const step = width / (span - 1);
  const start = width - (values.length - 1) * step;
  const points = values.map((v, i) =>
    (start + i * step).toFixed(1) + "," + (height - 2 - (v / max) * (height - 14)).toFixed(1));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2f6fde");
  line.setAttribute("stroke-width", "1.5");
  svg.appendChild(line);
}

async function disconnect(id) {
  const answer = await fetch("clients/" + encodeURIComponent(id), {
    method: "DELETE",
    headers: { "X-CSRF-Token": csrf },
  });
  $("action-error").textContent = answer.ok ? "" : await errorText(answer);
}

$("watch-form").addEventListener("submit", (e) => {
  e.preventDefault();
  watch($("channel-name").value.trim());
});

$("publish-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const channel = $("channel-name").value.trim();
  if (!channel) {
    $("publish-result").textContent = "name a channel first";
    return;
  }
  const body = new URLSearchParams({ event: $("publish-event").value, data: $("publish-data").value });
  const answer = await fetch("channels/" + encodeURIComponent(channel) + "/events", {
    method: "POST",
    headers: { "X-CSRF-Token": csrf },
    body,
  });
  if (answer.ok) {
    const published = await answer.json();
    $("publish-result").textContent = "published " + published.id + " to " + published.recipients + " connection(s)";
    $("publish-data").value = "";
  } else {
    $("publish-result").textContent = await errorText(answer);
  }
});

function stopWatching() {
  if (channelWatch) channelWatch.abort();
  channelWatch = null;
}

/**
 * Shows `channel`'s events as they arrive. Read with fetch rather than EventSource, so events of
 * every name are seen (an EventSource only hands over the names it was told to listen for).
 */
async function watch(channel) {
  stopWatching();
  if (!channel) return;
  $("channel-name").value = channel;
  $("channel-events").replaceChildren();
  const controller = new AbortController();
  channelWatch = controller;
  try {
    const answer = await fetch("channels/" + encodeURIComponent(channel) + "/feed", {
      signal: controller.signal,
      headers: { Accept: "text/event-stream" },
    });
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        showEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (_) {
    // Aborted, or the connection was lost: nothing to show.
  }
}

/** One SSE block as a line of the channel panel. */
function showEvent(block) {
  const event = { name: "message", id: "", data: [] };
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.name = value;
    else if (field === "id") event.id = value;
    else if (field === "data") event.data.push(value);
  }
  if (event.data.length === 0) return;
  if (event.name === "signed-out") {
    showSignIn("signed out");
    return;
  }
  const item = document.createElement("li");
  item.textContent = (event.id ? event.id + " " : "") + event.name + ": " + event.data.join("\n");
  const list = $("channel-events");
  list.appendChild(item);
  while (list.children.length > CHANNEL_EVENTS_MAX) list.removeChild(list.firstChild);
  list.scrollTop = list.scrollHeight;
}

start();
