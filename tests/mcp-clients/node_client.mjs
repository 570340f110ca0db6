// Drives Relay's MCP server with the official MCP TypeScript SDK (@modelcontextprotocol/sdk).
//
// Run by crates/relay/tests/mcp.rs, which starts Relay and the fake providers, prepares the
// accounts and passes what this script needs as JSON in $MCP_TEST. Every check is an assert;
// the last line printed is a JSON report the Rust test checks further. The SDK itself checks
// each tool result's structuredContent against the tool's outputSchema (Ajv).

import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const T = JSON.parse(process.env.MCP_TEST);
const report = {};

async function connect(key, actor) {
  const headers = { Authorization: `Bearer ${key}` };
  if (actor) headers["Relay-Actor-Id"] = actor;
  const client = new Client({ name: "relay-mcp-test", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(T.url), { requestInit: { headers } }));
  return client;
}

const text = (r) => r.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");

function errorOf(r) {
  assert.equal(r.isError, true, `expected a tool error, got ${text(r)}`);
  return text(r);
}

async function toolsAreListed() {
  const c = await connect(T.key, "ann");
  assert.equal(c.getServerVersion().name, "relay");
  report.protocol_version = c.transport.protocolVersion;
  const { tools } = await c.listTools();
  assert.deepEqual(
    tools.map((t) => t.name),
    ["gmail_send", "outlook_send", "drive_extract", "webhook_send", "relay_execute_preview", "relay_connect_account"],
  );
  for (const t of tools) {
    assert.equal(t.inputSchema.type, "object", t.name);
    assert.ok(t.annotations?.title, t.name);
  }
  const drive = tools.find((t) => t.name === "drive_extract");
  assert.equal(drive.annotations.readOnlyHint, true);
  await c.close();
}

async function driveExtract() {
  const c = await connect(T.key, "ann");
  await c.listTools(); // lets the SDK validate results against the output schemas
  const r = await c.callTool({ name: "drive_extract", arguments: { url: T.drive_file_id } });
  assert.ok(!r.isError, text(r));
  assert.match(r.structuredContent.text, /Meeting notes/);
  await c.close();
}

async function webhookPreviewThenExecute() {
  const c = await connect(T.key);
  await c.listTools();
  const payload = { event: "order.shipped", id: 7 };
  const r = await c.callTool({ name: "webhook_send", arguments: { url: T.webhook_url, payload } });
  assert.ok(!r.isError, text(r));
  const preview = r.structuredContent;
  assert.deepEqual(JSON.parse(preview.rendered.body), payload);
  report.webhook_preview_id = preview.preview_id;
  report.webhook_rendered_body = preview.rendered.body;
  const done = await c.callTool({ name: "relay_execute_preview", arguments: { preview_id: preview.preview_id } });
  assert.ok(!done.isError, text(done));
  assert.equal(done.structuredContent.status, "succeeded");
  assert.equal(done.structuredContent.result.status, 200);
  await c.close();
}

async function gmailPreview() {
  const c = await connect(T.key, "ann");
  await c.listTools();
  const r = await c.callTool({
    name: "gmail_send",
    arguments: { to: "Bea <bea@example.com>", subject: "Quarterly report", text: "Attached." },
  });
  assert.ok(!r.isError, text(r));
  assert.match(JSON.stringify(r.structuredContent.rendered), /Quarterly report/);
  assert.match(text(r), /relay_execute_preview/);
  await c.close();
}

async function errors() {
  const c = await connect(T.key);
  let e = errorOf(await c.callTool({ name: "drive_extract", arguments: { url: T.drive_file_id, actor_id: "bob" } }));
  assert.match(e, /^oauth_token_missing/);
  assert.ok(e.includes(T.google_authorize_url), e);
  e = errorOf(
    await c.callTool({ name: "gmail_send", arguments: { to: "a@example.com", subject: "s", text: "t", actor_id: "dan" } }),
  );
  assert.match(e, /^oauth_token_expired/);
  e = errorOf(
    await c.callTool({ name: "gmail_send", arguments: { to: "a@example.com", subject: "s", text: "t", actor_id: "cid" } }),
  );
  assert.match(e, /^scope_missing/);
  const outlook = await c.callTool({
    name: "outlook_send",
    arguments: { to: "a@example.com", subject: "s", text: "t", actor_id: "ann" },
  });
  e = errorOf(await c.callTool({ name: "relay_execute_preview", arguments: { preview_id: outlook.structuredContent.preview_id } }));
  assert.match(e, /^provider_disabled/);
  e = errorOf(await c.callTool({ name: "gmail_send", arguments: { to: "a@example.com", text: "t", actor_id: "ann" } }));
  assert.match(e, /^validation_error.*subject/);
  e = errorOf(await c.callTool({ name: "relay_execute_preview", arguments: { preview_id: T.foreign_preview_id } }));
  assert.match(e, /^not_found/);
  await c.close();
}

async function wrongKey() {
  await assert.rejects(connect("rly_wrong", "ann"), (err) => {
    report.wrong_key_error = String(err).slice(0, 300);
    return /401|nauthorized/.test(String(err));
  });
}

async function rateLimit() {
  const c = await connect(T.limited_key, "ann");
  let refused = null;
  for (let i = 0; i < 20 && !refused; i++) {
    try {
      await c.listTools();
    } catch (err) {
      refused = String(err);
    }
  }
  assert.ok(refused, "the rate limit never refused");
  assert.match(refused, /rate_limited/);
  await c.close().catch(() => {});
}

async function stdio() {
  const client = new Client({ name: "relay-mcp-test", version: "1.0.0" });
  await client.connect(
    new StdioClientTransport({
      command: T.relay_bin,
      args: ["mcp", "--url", T.base_url],
      env: { RELAY_API_KEY: T.key, RELAY_ACTOR_ID: "ann", PATH: process.env.PATH },
      stderr: "ignore",
    }),
  );
  const { tools } = await client.listTools();
  assert.ok(tools.some((t) => t.name === "webhook_send"));
  const r = await client.callTool({ name: "drive_extract", arguments: { url: T.drive_file_id } });
  assert.ok(!r.isError, text(r));
  assert.match(r.structuredContent.text, /Meeting notes/);
  await client.close();
}

const steps = { toolsAreListed, driveExtract, webhookPreviewThenExecute, gmailPreview, errors, wrongKey, stdio, rateLimit };
for (const [name, step] of Object.entries(steps)) {
  await step();
  console.error(`ok: ${name}`);
}
console.log(JSON.stringify(report));
