// Skein dashboard: a hash-routed single page drawing /api/* JSON. No build
// step and no libraries, so it can be embedded in the skein binary as is.
"use strict";

const REFRESH_MS = 5000;
const view = document.getElementById("view");
let timer = null;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store"});
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function fmtRPS(v) { return v >= 10 ? v.toFixed(1) : v.toFixed(2); }
function fmtPct(v) { return v.toFixed(1) + "%"; }
function fmtMs(v) { return v == null ? "–" : (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " ms"; }
function badge(h) { return `<span class="badge health-${esc(h)}">${esc(h)}</span>`; }

function edgeStats(e) {
  return `${fmtRPS(e.rps)} rps · ${fmtPct(e.errorPct)} err · p99 ${fmtMs(e.p99Ms)}`;
}

function edgeTable(edges, id) {
  if (!edges.length) return `<p class="muted" id="${id}-empty">No traffic in the window.</p>`;
  return `<table id="${id}"><tr><th>source</th><th>destination</th><th>service</th><th>rps</th><th>error %</th><th>p99</th><th>codes</th><th>health</th><th>reported by</th></tr>` +
    edges.map(e => `<tr class="edge-row health-${esc(e.health)}" data-source="${esc(e.source)}" data-destination="${esc(e.destination)}">
      <td>${esc(e.source)}</td><td>${esc(e.destination)}</td>
      <td><a href="#/service/${esc(e.serviceNamespace)}/${esc(e.service)}">${esc(e.service)}</a></td>
      <td class="num">${fmtRPS(e.rps)}</td><td class="num error-pct">${fmtPct(e.errorPct)}</td><td class="num">${fmtMs(e.p99Ms)}</td>
      <td>${Object.entries(e.codes).sort().map(([c, v]) => `${esc(c)}: ${fmtRPS(v)}`).join(", ")}</td>
      <td>${badge(e.health)}</td><td>${esc(e.reporter)}${e.mtls ? " (mTLS)" : ""}</td></tr>`).join("") + `</table>`;
}

// Graph page: nodes in layers by call depth, edges as curves labelled with
// rps, error % and p99.
async function renderGraph() {
  const g = await getJSON("/api/graph");
  const R = 22;
  const pos = {};
  g.nodes.forEach(n => pos[n.id] = n);
  let svg = `<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="${g.width + 160}" height="${g.height}" viewBox="0 0 ${g.width + 160} ${g.height}">
    <defs>${["green", "orange", "red", "idle"].map(h => `<marker id="arrow-${h}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="var(--${h})"/></marker>`).join("")}</defs>`;
  for (const e of g.edges) {
    const a = pos[e.source], b = pos[e.destination];
    if (!a || !b) continue;
    let d, lx, ly;
    if (a === b) {
      d = `M${a.x - 10},${a.y - R} C${a.x - 40},${a.y - 80} ${a.x + 40},${a.y - 80} ${a.x + 10},${a.y - R}`;
      lx = a.x; ly = a.y - 70;
    } else {
      const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
      const x1 = a.x + dx / len * R, y1 = a.y + dy / len * R, x2 = b.x - dx / len * (R + 3), y2 = b.y - dy / len * (R + 3);
      // Bend backward edges so they do not overlap forward ones.
      const bend = b.layer <= a.layer ? 40 : 0;
      const mx = (x1 + x2) / 2 - dy / len * bend, my = (y1 + y2) / 2 + dx / len * bend;
      d = `M${x1},${y1} Q${mx},${my} ${x2},${y2}`;
      lx = (x1 + 2 * mx + x2) / 4; ly = (y1 + 2 * my + y2) / 4 - 6;
    }
    svg += `<g class="edge health-${esc(e.health)}" data-source="${esc(e.source)}" data-destination="${esc(e.destination)}" data-error-pct="${e.errorPct}" data-rps="${e.rps}">
      <title>${esc(e.source)} → ${esc(e.destination)} (${esc(e.service)}): ${esc(edgeStats(e))}</title>
      <path d="${d}" marker-end="url(#arrow-${esc(e.health)})"/>
      <text class="edge-label" x="${lx}" y="${ly}" text-anchor="middle">${esc(edgeStats(e))}</text></g>`;
  }
  for (const n of g.nodes) {
    const svc = (n.services && n.services[0]) || "";
    const href = svc ? `#/service/${svc}` : "";
    svg += `<g class="node node-${esc(n.kind)} health-${esc(n.health)}" data-id="${esc(n.id)}" data-service="${esc(svc)}" onclick="${href ? `location.hash='${esc(href)}'` : ""}">
      <title>${esc(n.id)}${svc ? " (service " + esc(svc) + ")" : ""}, ${n.pods} pod(s)</title>
      <circle cx="${n.x}" cy="${n.y}" r="${R}"/>
      <text x="${n.x}" y="${n.y + R + 15}">${esc(n.app || n.workload)}</text>
      <text class="version" x="${n.x}" y="${n.y + 5}">${esc(n.kind === "service" ? "svc" : n.version || "")}</text></g>`;
  }
  svg += `</svg>`;
  view.innerHTML = `<h1>Service graph</h1>
    <p class="muted">Workloads by call depth; edges show requests per second, failed share and p99 latency over the last ${Math.round(g.windowSeconds)} s.</p>
    ${g.error ? `<p class="error-msg" id="graph-error">${esc(g.error)}</p>` : ""}
    <div class="panel">${svg}</div>
    <h2>Edges</h2>${edgeTable(g.edges, "edge-table")}`;
}

async function renderServices() {
  const list = await getJSON("/api/services");
  view.innerHTML = `<h1>Services</h1><table id="services"><tr><th>namespace</th><th>service</th><th>workloads</th><th>inbound rps</th><th>error %</th><th>config problems</th><th>health</th></tr>` +
    list.map(s => `<tr class="service-row health-${esc(s.health)}" data-service="${esc(s.namespace)}/${esc(s.name)}">
      <td>${esc(s.namespace)}</td><td><a href="#/service/${esc(s.namespace)}/${esc(s.name)}">${esc(s.name)}</a></td>
      <td class="num">${s.workloads}</td><td class="num">${fmtRPS(s.rps)}</td><td class="num">${fmtPct(s.errorPct)}</td>
      <td class="num">${s.problems || ""}</td><td>${badge(s.health)}</td></tr>`).join("") + `</table>`;
}

function configTable(items, id) {
  if (!items.length) return `<p class="muted" id="${id}-empty">None.</p>`;
  return `<table id="${id}"><tr><th>kind</th><th>namespace</th><th>name</th><th>hosts / selector</th><th>validation</th></tr>` +
    items.map(it => `<tr class="config-row" data-kind="${esc(it.kind)}" data-name="${esc(it.namespace)}/${esc(it.name)}">
      <td>${esc(it.kind)}</td><td>${esc(it.namespace)}</td><td>${esc(it.name)}</td>
      <td>${esc((it.hosts || []).join(", "))}${it.selector ? " " + esc(Object.entries(it.selector).map(([k, v]) => k + "=" + v).join(",")) : ""}</td>
      <td>${it.errors.map(e => `<div class="error-msg validation-error">${esc(e)}</div>`).join("")}${it.warnings.map(w => `<div class="warn-msg validation-warning">${esc(w)}</div>`).join("")}${!it.errors.length && !it.warnings.length ? `<span class="validation-ok">valid</span>` : ""}</td></tr>`).join("") + `</table>`;
}

async function renderService(ns, name) {
  const s = await getJSON(`/api/service?namespace=${encodeURIComponent(ns)}&name=${encodeURIComponent(name)}`);
  view.innerHTML = `<h1 id="service-title">${esc(s.namespace)}/${esc(s.name)} ${badge(s.health)}</h1>
    <p class="muted">ports ${esc(s.ports.join(", "))}</p>
    <h2>Workloads</h2><table id="workloads"><tr><th>workload</th><th>app</th><th>version</th><th>pods</th><th>health</th></tr>` +
    s.workloads.map(w => `<tr><td>${esc(w.workload)}</td><td>${esc(w.app)}</td><td>${esc(w.version)}</td><td class="num">${w.pods}</td><td>${badge(w.health)}</td></tr>`).join("") + `</table>
    <h2>Istio config that applies</h2>${configTable(s.config, "service-config")}
    <h2>Inbound traffic</h2>${edgeTable(s.inbound, "inbound")}
    <h2>Outbound traffic</h2>${edgeTable(s.outbound, "outbound")}`;
}

async function renderConfig() {
  const items = await getJSON("/api/config");
  view.innerHTML = `<h1>Istio config</h1>${configTable(items, "config")}`;
}

async function renderTraces() {
  const service = new URLSearchParams(location.hash.split("?")[1] || "").get("service") || "";
  const t = await getJSON(`/api/traces?limit=50&service=${encodeURIComponent(service)}`);
  view.innerHTML = `<h1>Traces</h1>
    <p>Service: <select id="trace-service" onchange="location.hash='#/traces?service='+encodeURIComponent(this.value)">
      <option value="">all</option>${t.services.map(s => `<option ${s === service ? "selected" : ""}>${esc(s)}</option>`).join("")}</select></p>
    ${t.unavailable ? `<p class="muted" id="traces-unavailable">No traces: ${esc(t.unavailable)}</p>` : ""}
    ${t.traces.length ? `<table id="traces"><tr><th>start</th><th>root span</th><th>service</th><th>duration</th><th>spans</th><th>services</th><th>error</th></tr>` +
      t.traces.map(x => `<tr class="trace-row${x.error ? " trace-error" : ""}" data-trace-id="${esc(x.traceId)}">
        <td>${new Date(x.start / 1000).toLocaleTimeString()}</td>
        <td><a href="#/trace/${esc(x.traceId)}">${esc(x.rootName)}</a></td><td>${esc(x.rootService)}</td>
        <td class="num">${fmtMs(x.durationMs)}</td><td class="num">${x.spans}</td><td class="num">${x.services}</td>
        <td>${x.error ? `<span class="badge health-red">error</span>` : ""}</td></tr>`).join("") + `</table>`
      : `<p class="muted" id="traces-empty">No traces yet.</p>`}`;
}

async function renderTrace(id) {
  const w = await getJSON(`/api/trace?id=${encodeURIComponent(id)}`);
  const total = w.durationMs || 1;
  view.innerHTML = `<h1>Trace <code>${esc(w.traceId)}</code></h1><p class="muted">${fmtMs(w.durationMs)}, ${w.spans.length} spans</p>
    <div class="panel waterfall" id="waterfall">` + w.spans.map(s => `
      <div class="row span${s.error ? " error" : ""}" data-span-id="${esc(s.id)}" title="${esc(Object.entries(s.tags || {}).map(([k, v]) => k + "=" + v).join("\n"))}">
        <div class="label" style="padding-left:${s.depth * 14}px"><b>${esc(s.service)}</b> ${esc(s.name)}</div>
        <div class="track"><div class="bar${s.error ? " error" : ""}" style="left:${100 * s.offsetMs / total}%;width:${100 * s.durationMs / total}%"></div></div>
        <div class="dur">${fmtMs(s.durationMs)}</div></div>`).join("") + `</div>`;
}

async function renderProxies() {
  const rows = await getJSON("/api/proxies");
  const types = ["CDS", "LDS", "EDS", "RDS"];
  view.innerHTML = `<h1>Proxies</h1><table id="proxies"><tr><th>name</th><th>type</th><th>version</th>${types.map(t => `<th>${t}</th>`).join("")}<th>problems</th></tr>` +
    rows.map(p => `<tr class="proxy-row" data-proxy="${esc(p.name)}"><td>${esc(p.name)}</td><td>${esc(p.type)}</td><td>${esc(p.proxy_version)}</td>
      ${types.map(t => `<td class="sync-${esc((p.states[t] || "").split(" ")[0].toLowerCase())}">${esc(p.states[t])}</td>`).join("")}
      <td>${types.filter(t => p.types && p.types[t] && p.types[t].nack_error).map(t => `<div class="error-msg">${t}: ${esc(p.types[t].nack_error)}</div>`).join("")}${(p.warnings || []).map(w => `<div class="warn-msg">${esc(w)}</div>`).join("")}</td></tr>`).join("") + `</table>`;
}

function route() {
  const h = location.hash.replace(/^#\/?/, "").split("?")[0];
  const parts = h.split("/").map(decodeURIComponent);
  document.querySelectorAll("header nav a").forEach(a => a.classList.toggle("active", a.id === "nav-" + (parts[0] || "graph") ||
    (parts[0] === "service" && a.id === "nav-services") || (parts[0] === "trace" && a.id === "nav-traces")));
  switch (parts[0]) {
    case "services": return renderServices();
    case "service": return renderService(parts[1], parts[2]);
    case "traces": return renderTraces();
    case "trace": return renderTrace(parts.slice(1).join("/"));
    case "proxies": return renderProxies();
    case "config": return renderConfig();
    default: return renderGraph();
  }
}

async function refresh() {
  clearTimeout(timer);
  try {
    await route();
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    view.innerHTML = `<p class="error-msg" id="load-error">${esc(err.message)}</p>`;
  }
  // A trace does not change; everything else is live.
  if (!location.hash.startsWith("#/trace/")) timer = setTimeout(refresh, REFRESH_MS);
}

window.addEventListener("hashchange", refresh);
refresh();
