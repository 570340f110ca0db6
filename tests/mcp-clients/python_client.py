"""Drives Relay's MCP server with the official MCP Python SDK (`mcp` from PyPI).

Run by crates/relay/tests/mcp.rs, which starts Relay and the fake providers, prepares the
accounts and passes what this script needs as JSON in $MCP_TEST. Every check is an assert;
the last line printed is a JSON report the Rust test checks further (deliveries, metrics).
"""

import asyncio
import json
import os
import sys

import httpx2
import jsonschema
from mcp import Client, StdioServerParameters, types
from mcp.client.streamable_http import streamable_http_client

T = json.loads(os.environ["MCP_TEST"])
REPORT = {}


def client(key, actor=None, mode="legacy", statuses=None, elicitation_callback=None):
    headers = {"Authorization": f"Bearer {key}"}
    if actor:
        headers["Relay-Actor-Id"] = actor

    async def record(response):
        if statuses is not None:
            statuses.append((response.status_code, response.headers.get("www-authenticate")))

    http = httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [record]})
    return Client(
        streamable_http_client(T["url"], http_client=http),
        mode=mode,
        elicitation_callback=elicitation_callback,
    )


def text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def error_of(result):
    assert result.is_error, f"expected a tool error, got {text(result)}"
    return text(result)


async def tools_are_listed_with_valid_schemas(mode):
    async with client(T["key"], "ann", mode) as c:
        assert c.server_info.name == "relay", c.server_info
        REPORT.setdefault("protocol_versions", []).append(c.protocol_version)
        listed = (await c.list_tools()).tools
        names = [t.name for t in listed]
        assert names == [
            "gmail_send",
            "outlook_send",
            "drive_extract",
            "webhook_send",
            "relay_execute_preview",
            "relay_connect_account",
        ], names
        by_name = {t.name: t for t in listed}
        for t in listed:
            jsonschema.Draft202012Validator.check_schema(t.input_schema)
            assert t.input_schema["type"] == "object", t.name
            if t.output_schema is not None:
                jsonschema.Draft202012Validator.check_schema(t.output_schema)
        drive = by_name["drive_extract"].annotations
        assert drive.read_only_hint is True, drive
        gmail = by_name["gmail_send"].annotations
        assert (gmail.read_only_hint, gmail.destructive_hint, gmail.open_world_hint) == (
            False,
            False,
            True,
        ), gmail
        assert "actor_id" in by_name["gmail_send"].input_schema["properties"]
        assert "url" in by_name["webhook_send"].input_schema["properties"]
        assert by_name["gmail_send"].output_schema["required"][0] == "preview_id"


async def drive_extract_reads_the_file():
    async with client(T["key"], "ann") as c:
        r = await c.call_tool("drive_extract", {"url": T["drive_file_id"]})
        assert not r.is_error, text(r)
        assert "Meeting notes" in r.structured_content["text"], r.structured_content
        assert "Meeting notes" in text(r)


async def webhook_is_previewed_then_executed_once():
    async with client(T["key"]) as c:
        payload = {"event": "invoice.paid", "amount": 1250}
        r = await c.call_tool("webhook_send", {"url": T["webhook_url"], "payload": payload})
        assert not r.is_error, text(r)
        preview = r.structured_content
        assert preview["preview_id"].startswith("prv_"), preview
        assert json.loads(preview["rendered"]["body"]) == payload, preview
        assert "nothing has been sent" in text(r)
        REPORT["webhook_preview_id"] = preview["preview_id"]
        REPORT["webhook_rendered_body"] = preview["rendered"]["body"]
        done = await c.call_tool("relay_execute_preview", {"preview_id": preview["preview_id"]})
        assert not done.is_error, text(done)
        assert done.structured_content["status"] == "succeeded", done.structured_content
        assert done.structured_content["result"]["status"] == 200, done.structured_content
        assert done.structured_content["replayed"] is False
        again = await c.call_tool("relay_execute_preview", {"preview_id": preview["preview_id"]})
        assert again.structured_content["replayed"] is True, again.structured_content


async def elicitation_asks_the_user_before_sending():
    """A 2026-07-28 client that can elicit: Relay asks the user to confirm the preview."""
    asked = []

    def answering(send):
        async def callback(context, params):
            asked.append(params.message)
            assert params.requested_schema["properties"]["send"]["type"] == "boolean"
            return types.ElicitResult(action="accept", content={"send": send})

        return callback

    for send in [True, False]:
        async with client(T["key"], mode="auto", elicitation_callback=answering(send)) as c:
            assert c.protocol_version == "2026-07-28", c.protocol_version
            payload = {"event": "confirmed" if send else "declined"}
            r = await c.call_tool("webhook_send", {"url": T["webhook_url"], "payload": payload})
            assert not r.is_error, text(r)
            # The user is shown exactly what will be sent.
            assert "webhook.send" in asked[-1] and payload["event"] in asked[-1], asked[-1]
            done = r.structured_content
            if send:
                assert done["status"] == "succeeded", done
                assert done["result"]["status"] == 200, done
                REPORT["confirmed_preview_id"] = done["preview_id"]
            else:
                assert done["status"] == "declined", done
                REPORT["declined_preview_id"] = done["preview_id"]
    assert len(asked) == 2, asked


async def gmail_preview_renders_the_message():
    async with client(T["key"], "ann") as c:
        r = await c.call_tool(
            "gmail_send",
            {"to": "Bea <bea@example.com>", "subject": "Quarterly report", "text": "Attached."},
        )
        assert not r.is_error, text(r)
        rendered = r.structured_content["rendered"]
        assert "Quarterly report" in json.dumps(rendered), rendered
        assert "bea@example.com" in json.dumps(rendered), rendered
        assert r.structured_content["action"] == "gmail.send"
        REPORT["gmail_preview_id"] = r.structured_content["preview_id"]


async def errors_are_tool_results_a_model_can_act_on():
    async with client(T["key"]) as c:
        # No connection for this actor: the authorize URL to hand to the user.
        e = error_of(await c.call_tool("drive_extract", {"url": T["drive_file_id"], "actor_id": "bob"}))
        assert e.startswith("oauth_token_missing"), e
        assert T["google_authorize_url"] in e, e
        # The connection needs reauthorization.
        e = error_of(
            await c.call_tool(
                "gmail_send", {"to": "a@example.com", "subject": "s", "text": "t", "actor_id": "dan"}
            )
        )
        assert e.startswith("oauth_token_expired"), e
        assert T["google_authorize_url"] in e, e
        # A scope is missing (cid granted Drive only).
        e = error_of(
            await c.call_tool(
                "gmail_send", {"to": "a@example.com", "subject": "s", "text": "t", "actor_id": "cid"}
            )
        )
        assert e.startswith("scope_missing") and "gmail.send" in e, e
        assert T["google_authorize_url"] in e, e
        # The provider is disabled (Microsoft is not enabled on this Relay).
        r = await c.call_tool(
            "outlook_send", {"to": "a@example.com", "subject": "s", "text": "t", "actor_id": "ann"}
        )
        assert not r.is_error, text(r)
        e = error_of(await c.call_tool("relay_execute_preview", {"preview_id": r.structured_content["preview_id"]}))
        assert e.startswith("provider_disabled"), e
        # Validation errors name the field.
        e = error_of(await c.call_tool("gmail_send", {"to": "a@example.com", "text": "t", "actor_id": "ann"}))
        assert e.startswith("validation_error") and "subject" in e, e
        e = error_of(await c.call_tool("webhook_send", {"url": T["webhook_url"], "payload": {}, "colour": 1}))
        assert e.startswith("validation_error") and "colour" in e, e
        # No actor at all.
        e = error_of(await c.call_tool("drive_extract", {"url": T["drive_file_id"]}))
        assert e.startswith("validation_error") and "actor_id" in e, e
        # Another workspace's preview is not found here.
        e = error_of(await c.call_tool("relay_execute_preview", {"preview_id": T["foreign_preview_id"]}))
        assert e.startswith("not_found"), e
        # The connect tool hands out the authorize URL.
        r = await c.call_tool("relay_connect_account", {"provider": "google", "actor_id": "bob"})
        assert not r.is_error, text(r)
        assert r.structured_content["authorize_url"].startswith(T["google_authorize_url"])
        # An unknown tool is a protocol error.
        try:
            r = await c.call_tool("no_such_tool", {})
            assert r.is_error, r
        except Exception as ex:  # the SDK raises on a JSON-RPC error
            assert "no_such_tool" in str(ex), ex


async def a_wrong_api_key_is_refused():
    statuses = []
    try:
        async with client("rly_wrong", "ann", statuses=statuses) as c:
            await c.list_tools()
    except BaseException:  # noqa: BLE001 - the SDK reports the refusal as an error
        assert statuses == [(401, 'Bearer realm="relay"')], statuses
        return
    raise AssertionError("a wrong API key was accepted")


async def the_rate_limit_is_enforced():
    statuses = []
    calls = 0
    try:
        async with client(T["limited_key"], "ann", statuses=statuses) as c:
            for _ in range(20):
                calls += 1
                await c.list_tools()
    except BaseException:  # noqa: BLE001 - the SDK reports the refusal as an error
        pass
    assert calls < 20, "the rate limit never refused"
    assert statuses[-1][0] == 429, statuses
    assert all(s in (200, 202) for s, _ in statuses[:-1]), statuses  # 202: notifications


async def stdio_mode_runs_the_same_tools():
    params = StdioServerParameters(
        command=T["relay_bin"],
        args=["mcp", "--url", T["base_url"]],
        env={"RELAY_API_KEY": T["key"], "RELAY_ACTOR_ID": "ann", "PATH": os.environ.get("PATH", "")},
    )
    async with Client(params, mode="legacy") as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert "drive_extract" in names, names
        r = await c.call_tool("drive_extract", {"url": T["drive_file_id"]})
        assert not r.is_error, text(r)
        assert "Meeting notes" in r.structured_content["text"]
        e = error_of(await c.call_tool("relay_execute_preview", {"preview_id": T["foreign_preview_id"]}))
        assert e.startswith("not_found"), e
    # A wrong key over stdio: the request gets a JSON-RPC error instead of hanging.
    params.env["RELAY_API_KEY"] = "rly_wrong"
    try:
        async with Client(params, mode="legacy") as c:
            await c.list_tools()
        raise AssertionError("a wrong API key was accepted over stdio")
    except AssertionError:
        raise
    except BaseException as ex:  # noqa: BLE001
        assert "401" in repr(ex) or "unauthorized" in repr(ex), repr(ex)


async def main():
    for mode in ["legacy", "auto"]:  # initialize handshake, and 2026-07-28 discovery
        await tools_are_listed_with_valid_schemas(mode)
        print(f"ok: tools listed with valid schemas ({mode})", file=sys.stderr)
    steps = [
        drive_extract_reads_the_file,
        webhook_is_previewed_then_executed_once,
        gmail_preview_renders_the_message,
        elicitation_asks_the_user_before_sending,
        errors_are_tool_results_a_model_can_act_on,
        a_wrong_api_key_is_refused,
        stdio_mode_runs_the_same_tools,
        the_rate_limit_is_enforced,
    ]
    for step in steps:
        await asyncio.wait_for(step(), timeout=60)
        print(f"ok: {step.__name__}", file=sys.stderr)
    print(json.dumps(REPORT))


asyncio.run(main())
