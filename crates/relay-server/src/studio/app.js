// Relay Studio: talks to Relay's public API with the operator's API key. The key stays in this
// tab's sessionStorage; nothing here renders untrusted text as HTML (textContent only).
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "relay.studio.key";

function apiKey() { return sessionStorage.getItem(KEY) || ""; }

function say(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", Boolean(isError));
}

async function api(path, options = {}) {
  const resp = await fetch(path, {
    ...options,
    headers: { "Authorization": "Bearer " + apiKey(), "Accept": "application/json", ...(options.headers || {}) },
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = body.error || { code: "http_" + resp.status, message: resp.statusText };
    throw new Error(err.code + ": " + err.message);
  }
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text == null ? "—" : text;
  row.appendChild(td);
  return td;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString();
}

async function loadProviders() {
  const { providers } = await api("/providers");
  const select = $("provider");
  select.replaceChildren();
  for (const p of providers) {
    const opt = document.createElement("option");
    opt.value = p.name;
    opt.textContent = p.name + " (" + p.kind + ")";
    select.appendChild(opt);
  }
  return providers.length;
}

let actions = [];
let connections = [];
let previewId = null;

// A starting point for the parameters: every required property of the action's schema.
function template(schema) {
  const out = {};
  for (const name of (schema && schema.required) || []) {
    const prop = (schema.properties || {})[name] || {};
    const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
    out[name] = type === "array" ? [] : type === "object" ? {} : "";
  }
  return JSON.stringify(out, null, 2);
}

function fillActionConnections() {
  const action = actions.find((a) => a.name === $("action").value);
  const select = $("action-connection");
  select.replaceChildren();
  const none = document.createElement("option");
  none.value = "";
  none.textContent = action && action.provider === "webhook" ? "(no connection needed)" : "(choose)";
  select.appendChild(none);
  for (const c of connections) {
    const opt = document.createElement("option");
    opt.value = c.id;
    opt.textContent = c.provider + " · " + c.actor_id;
    select.appendChild(opt);
  }
  $("params").value = template(action && action.params_schema);
}

async function loadActions() {
  ({ actions } = await api("/actions"));
  const select = $("action");
  select.replaceChildren();
  for (const a of actions) {
    const opt = document.createElement("option");
    opt.value = a.name;
    opt.textContent = a.name + " (" + a.side_effect + ")";
    select.appendChild(opt);
  }
  fillActionConnections();
}

function show(value) {
  const out = $("action-output");
  out.hidden = false;
  out.textContent = JSON.stringify(value, null, 2);
}

$("action").addEventListener("change", fillActionConnections);

$("action-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  previewId = null;
  $("execute").disabled = true;
  let params;
  try { params = JSON.parse($("params").value || "{}"); } catch (e) { say("Parameters are not valid JSON: " + e.message, true); return; }
  const body = { action: $("action").value, params };
  if ($("action-connection").value) body.connection_id = $("action-connection").value;
  try {
    const p = await api("/actions/preview", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    previewId = p.preview_id;
    $("execute").disabled = false;
    show(p);
    say("Previewed; nothing was sent. Execute to send it once (until " + when(p.expires_at) + ").");
  } catch (e) { say(e.message, true); }
});

$("execute").addEventListener("click", async () => {
  if (!previewId) return;
  try {
    const r = await api("/actions/execute", { method: "POST", headers: { "Content-Type": "application/json", "Idempotency-Key": previewId }, body: JSON.stringify({ preview_id: previewId }) });
    show(r);
    say("Executed.");
  } catch (e) { say(e.message, true); }
});

async function loadConnections() {
  ({ connections } = await api("/connections?limit=1000"));
  const rows = $("rows");
  rows.replaceChildren();
  for (const c of connections) {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    cell(tr, c.provider);
    cell(tr, c.actor_type === "user" ? c.actor_id : c.actor_type + ":" + c.actor_id);
    const status = cell(tr, "");
    const badge = document.createElement("span");
    badge.className = "badge " + c.status;
    badge.textContent = c.status.replace("_", " ");
    status.appendChild(badge);
    if (c.status_reason) {
      const reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = c.status_reason;
      status.appendChild(reason);
    }
    cell(tr, c.scopes.join(" "));
    cell(tr, when(c.expires_at));
    cell(tr, when(c.last_refreshed_at));
    const actions = cell(tr, "");
    const del = document.createElement("button");
    del.className = "danger";
    del.textContent = "Disconnect";
    del.addEventListener("click", () => disconnect(c));
    actions.appendChild(del);
    rows.appendChild(tr);
  }
  $("empty").hidden = connections.length > 0;
  const needs = connections.filter((c) => c.status !== "active").length;
  return connections.length + " connection(s)" + (needs ? ", " + needs + " need attention" : ", all healthy");
}

async function disconnect(c) {
  if (!confirm("Disconnect " + c.actor_id + " from " + c.provider + "? The grant is revoked at the provider.")) return;
  try {
    const r = await api("/connections/" + encodeURIComponent(c.id), { method: "DELETE" });
    say(r.revoked ? "Disconnected and revoked at the provider." : "Disconnected (" + (r.revocation_note || "not revoked") + ").");
    await loadConnections();
  } catch (e) { say(e.message, true); }
}

async function start() {
  if (!apiKey()) return;
  try {
    const providers = await loadProviders();
    const summary = await loadConnections();
    await loadActions();
    $("connect").hidden = false;
    $("actions").hidden = false;
    $("connections").hidden = false;
    say(providers + " provider(s) configured; " + summary + ".");
  } catch (e) {
    say(e.message, true);
  }
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = $("api-key").value.trim();
  if (value) sessionStorage.setItem(KEY, value);
  $("api-key").value = "";
  start();
});

$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  $("connect").hidden = true;
  $("actions").hidden = true;
  $("connections").hidden = true;
  say("Key forgotten.");
});

$("reload").addEventListener("click", () => loadConnections().catch((e) => say(e.message, true)));

$("connect-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const params = new URLSearchParams({ actor_id: $("actor").value.trim() });
  const scopes = $("scopes").value.trim();
  if (scopes) params.set("scopes", scopes);
  try {
    const r = await api("/oauth/" + encodeURIComponent($("provider").value) + "/authorize?" + params);
    window.open(r.authorize_url, "_blank", "noopener");
    say("Consent page opened; finish there, then come back.");
  } catch (e) { say(e.message, true); }
});

window.addEventListener("focus", () => { if (apiKey() && !$("connections").hidden) loadConnections().catch(() => {}); });

start();
