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

async function loadConnections() {
  const { connections } = await api("/connections?limit=1000");
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
    $("connect").hidden = false;
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
