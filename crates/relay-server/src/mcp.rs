//! Relay's actions as MCP tools: `POST /mcp` speaks the Model Context Protocol's Streamable
//! HTTP transport (rmcp, the official Rust SDK), so that any MCP client (an AI agent) can act
//! in a connected user's account with the Actions API's guarantees.
//!
//! Every tool call goes through the same [`ActionService`](relay_core::actions::ActionService)
//! as `POST /actions/preview` and `/actions/execute`: the same validation, preview-then-execute
//! once, audit records, metrics and workspace isolation. The route sits behind the same
//! request middleware as the rest of the API (request id, API key, rate limit) and takes the
//! caller from the same [`Caller`] extractor, so key rules apply here unchanged.
//!
//! * `tools/list`: one tool per action (`gmail.send` is `gmail_send`), plus
//!   `relay_execute_preview` and `relay_connect_account`.
//! * A `read` action runs and returns its result. A `send` or `write` action returns a preview
//!   (exactly what would be sent, and its `preview_id`), which `relay_execute_preview` sends;
//!   actions listed in `[mcp] direct_execute` are previewed and executed in one call.
//! * Whose account: the `Relay-Actor-Id` header (per client configuration), or an `actor_id`
//!   argument on the tool call.
//! * Failures a model can act on (no connection, needs reauthorization, missing scope,
//!   disabled provider, invalid parameters) are tool results with `isError: true`, with the
//!   authorize URL to hand to the user where reconnecting fixes it; JSON-RPC errors are kept
//!   for protocol faults (an unknown tool).
//!
//! The transport runs stateless (no `Mcp-Session-Id`): each HTTP request carries its own API
//! key and actor, so any replica serves any request and no session can cross workspaces.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use relay_core::actions::{
    ActionDescriptor, ActionError, ConnectionRef, PreviewRequest, SideEffect,
};
use relay_core::audit::RequestContext as AuditContext;
use relay_core::connect::StartRequest;
use relay_core::{ActorId, ActorType, ProviderName, Scopes};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, InputRequiredResult, JsonObject, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The header naming whose account the tools act in, for every call of a client.
pub const ACTOR_HEADER: &str = "relay-actor-id";
/// The actor's type (default `user`), like `actor_type` on the HTTP API.
pub const ACTOR_TYPE_HEADER: &str = "relay-actor-type";

/// Executes a preview made by an action tool.
const EXECUTE_TOOL: &str = "relay_execute_preview";
/// Starts a connect flow and returns the URL to hand to the user.
const CONNECT_TOOL: &str = "relay_connect_account";

/// `[mcp]` behaviour from configuration.
#[derive(Debug, Clone, Default)]
pub struct McpSettings {
    /// Actions (`webhook.send`) whose tool executes at once instead of returning a preview.
    pub direct_execute: Vec<String>,
}

/// The JSON-RPC methods counted by name in `mcp_requests_total{method}`; anything else is
/// counted as `other`, so a client cannot mint series.
const METHODS: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
    "notifications/cancelled",
];

/// The label a JSON-RPC method is counted under.
fn method_label(method: Option<&str>) -> &'static str {
    method
        .and_then(|m| METHODS.iter().find(|known| **known == m).copied())
        .unwrap_or("other")
}

/// Describes `mcp_requests_total` and registers every series at zero, so dashboards see them
/// from the start.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "mcp_requests_total",
        "JSON-RPC messages POSTed to /mcp by method (initialize, notifications/initialized, ping, tools/list, tools/call, server/discover, notifications/cancelled; any other method is `other`)"
    );
    for method in METHODS.iter().copied().chain(["other"]) {
        metrics::counter!("mcp_requests_total", "method" => method).increment(0);
    }
}

/// Counts the JSON-RPC messages of a POST body (one message, or a batch); `false` when the
/// body is not JSON at all.
fn count_methods(body: &[u8]) -> bool {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let count = |m: Option<&Value>| {
        let label = method_label(m.and_then(|m| m.get("method")).and_then(Value::as_str));
        metrics::counter!("mcp_requests_total", "method" => label).increment(1);
    };
    match &parsed {
        Some(Value::Array(items)) => items.iter().for_each(|i| count(Some(i))),
        other => count(other.as_ref()),
    }
    parsed.is_some()
}

/// JSON-RPC's answer to a body that is not JSON (rmcp would answer plain text).
fn parse_error() -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null,
        "error": {"code": -32700, "message": "Parse error: the body is not JSON"}});
    (axum::http::StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// The largest MCP message accepted: the router's body limit (1 MiB).
const MAX_BODY: usize = 1024 * 1024;

/// The rmcp service answering `/mcp`.
pub type McpService = StreamableHttpService<RelayTools, NeverSessionManager>;

/// Builds the Streamable HTTP service over the application's state.
pub fn service(state: AppState) -> McpService {
    let config = StreamableHttpServerConfig::default()
        // Stateless: no sessions to pin to a replica, nothing shared between API keys.
        .with_legacy_session_mode(false)
        // Plain JSON answers for request/response tools (the SSE stream only when a handler
        // sends something before its result).
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts();
    StreamableHttpService::new(
        move || Ok(RelayTools::new(state.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

/// What the HTTP layer knew about a request, handed to the tool handlers in its extensions.
#[derive(Clone)]
struct McpCall {
    caller: Caller,
    /// From `Relay-Actor-Id` / `Relay-Actor-Type`, when the client sends them.
    actor_id: Option<String>,
    actor_type: Option<String>,
    /// The request's audit context and span, re-entered by the handlers (rmcp runs them on
    /// tasks of their own).
    audit: Option<Arc<AuditContext>>,
    span: tracing::Span,
}

/// `GET`/`POST`/`DELETE /mcp`: authenticates with the [`Caller`] extractor (401 with
/// `WWW-Authenticate: Bearer`), counts the JSON-RPC methods and hands the request to rmcp.
pub(crate) async fn handle(
    service: McpService,
    caller: Result<Caller, ApiError>,
    req: Request,
) -> Response {
    let caller = match caller {
        Ok(c) => c,
        Err(e) => {
            let mut resp = e.into_response();
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"relay\""),
            );
            return resp;
        }
    };
    let (mut parts, body) = req.into_parts();
    let too_large = || {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("an MCP message is at most {MAX_BODY} bytes"),
        )
        .into_response()
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        // Past the limit without a Content-Length (chunked), or the client went away.
        Err(_) => return too_large(),
    };
    if parts.method == axum::http::Method::POST && !count_methods(&bytes) {
        return parse_error();
    }
    let call = McpCall {
        actor_id: header(&parts.headers, ACTOR_HEADER),
        actor_type: header(&parts.headers, ACTOR_TYPE_HEADER),
        caller,
        audit: AuditContext::current(),
        span: tracing::Span::current(),
    };
    parts.extensions.insert(call);
    let req = Request::from_parts(parts, Body::from(bytes));
    let resp = tower::ServiceExt::oneshot(service, req).await;
    match resp {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The MCP server: Relay's actions as tools.
pub struct RelayTools {
    state: AppState,
}

impl RelayTools {
    fn new(state: AppState) -> Self {
        Self { state }
    }

    fn direct(&self, action: &str) -> bool {
        self.state
            .settings
            .mcp
            .direct_execute
            .iter()
            .any(|a| a == action)
    }

    /// The tools, in a stable order: the actions, then the two Relay tools.
    fn tools(&self) -> Vec<Tool> {
        let mut tools: Vec<Tool> = self
            .state
            .actions
            .descriptors()
            .iter()
            .map(|d| action_tool(d, self.direct(d.name)))
            .collect();
        tools.push(execute_tool());
        tools.push(connect_tool());
        tools
    }

    async fn call(
        &self,
        call: &McpCall,
        params: CallToolRequestParams,
        can_elicit: bool,
    ) -> CallToolResponse {
        let confirmation = Confirmation {
            can_elicit,
            preview_id: params.request_state.clone(),
            accepted: params
                .input_responses
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok())
                .map(|r| {
                    r["confirm"]["action"] == "accept" && r["confirm"]["content"]["send"] == true
                }),
        };
        let args = params.arguments.unwrap_or_default();
        let name = params.name.as_ref();
        if name == EXECUTE_TOOL {
            return self.execute_preview(call, &args).await.into();
        }
        if name == CONNECT_TOOL {
            return self.connect_account(call, &args).await.into();
        }
        // Known to exist: `call_tool` checked the name.
        let Some(descriptor) = self
            .state
            .actions
            .descriptors()
            .iter()
            .find(|d| tool_name(d.name) == name)
            .cloned()
        else {
            return tool_error("validation_error", &format!("unknown tool {name}"), None).into();
        };
        let previews = descriptor.side_effect != SideEffect::Read && !self.direct(descriptor.name);
        if previews
            && let (Some(preview_id), Some(accepted)) =
                (&confirmation.preview_id, confirmation.accepted)
        {
            // The retry after the user answered the confirmation: send exactly the preview
            // they saw, or nothing.
            return self.confirmed(call, preview_id, accepted).await.into();
        }
        self.run_action(call, &descriptor, args, confirmation.can_elicit)
            .await
    }

    /// The user's answer to a preview's confirmation (elicitation): execute it, or not.
    async fn confirmed(&self, call: &McpCall, preview_id: &str, accepted: bool) -> CallToolResult {
        if !accepted {
            return success(
                json!({"preview_id": preview_id, "status": "declined"}),
                format!("The user did not confirm preview {preview_id}: nothing was sent."),
            );
        }
        let mut args = JsonObject::new();
        args.insert("preview_id".into(), json!(preview_id));
        let mut result = self.execute_preview(call, &args).await;
        if let Some(Value::Object(map)) = result.structured_content.as_mut() {
            map.insert("preview_id".into(), json!(preview_id));
        }
        result
    }

    async fn run_action(
        &self,
        call: &McpCall,
        descriptor: &ActionDescriptor,
        mut args: JsonObject,
        can_elicit: bool,
    ) -> CallToolResponse {
        let workspace = &call.caller.workspace_id;
        // The routing arguments are Relay's; the rest are the action's parameters.
        let actor_arg = take_string(&mut args, "actor_id");
        let actor_type_arg = take_string(&mut args, "actor_type");
        let provider_arg = take_string(&mut args, "provider");
        let params = Value::Object(args);
        let mut account = None;
        let connection = if descriptor.needs_connection() {
            let found = self.account(
                call,
                descriptor,
                actor_arg,
                actor_type_arg,
                provider_arg.as_deref(),
            );
            let (provider, actor_type, actor_id) = match found {
                Ok(a) => a,
                Err(e) => return e.into(),
            };
            account = Some((provider.clone(), actor_type.clone(), actor_id.clone()));
            Some(ConnectionRef::Actor {
                provider,
                actor_type,
                actor_id,
            })
        } else {
            None
        };
        let preview = self
            .state
            .actions
            .preview(
                workspace,
                PreviewRequest {
                    action: descriptor.name.to_owned(),
                    connection,
                    params,
                },
            )
            .await;
        let preview = match preview {
            Ok(p) => p,
            Err(e) => {
                self.state.actions.count_error(descriptor.name, &e);
                return self.action_error(call, descriptor, account, e).await.into();
            }
        };
        let direct = self.direct(descriptor.name);
        if descriptor.side_effect != SideEffect::Read && !direct {
            if can_elicit {
                return confirm_with_user(&preview.preview_id, descriptor.name, &preview.rendered);
            }
            let text = format!(
                "Preview {id} of {action}: nothing has been sent yet. This is exactly what will \
                 be sent. To send it, call {EXECUTE_TOOL} with preview_id \"{id}\" (valid until \
                 {expires}); ask the user first when they have not already approved it.\n\n{rendered}",
                id = preview.preview_id,
                action = preview.action,
                expires = preview.expires_at,
                rendered = pretty(&preview.rendered),
            );
            let structured = json!({
                "preview_id": preview.preview_id,
                "status": "previewed",
                "action": preview.action,
                "rendered": preview.rendered,
                "digest": preview.digest,
                "expires_at": preview.expires_at,
            });
            return success(structured, text).into();
        }
        // A read, or an action the workspace lets run at once: execute the preview now.
        let executed = match self
            .state
            .actions
            .execute(workspace, &preview.preview_id, None)
            .await
        {
            Ok(outcome) if descriptor.side_effect == SideEffect::Read => {
                let structured = match outcome.result {
                    Value::Object(_) => outcome.result,
                    other => json!({ "result": other }),
                };
                let text = pretty(&structured);
                success(structured, text)
            }
            Ok(outcome) => {
                let structured = json!({
                    "preview_id": preview.preview_id,
                    "status": "succeeded",
                    "result": outcome.result,
                    "replayed": outcome.replayed,
                });
                let text = format!(
                    "{} executed (preview {}).\n\n{}",
                    descriptor.name,
                    preview.preview_id,
                    pretty(&structured["result"])
                );
                success(structured, text)
            }
            Err(e) => self.action_error(call, descriptor, account, e).await,
        };
        executed.into()
    }

    /// The provider and actor a connection-needing action acts for.
    fn account(
        &self,
        call: &McpCall,
        descriptor: &ActionDescriptor,
        actor_arg: Option<String>,
        actor_type_arg: Option<String>,
        provider_arg: Option<&str>,
    ) -> Result<(ProviderName, ActorType, ActorId), CallToolResult> {
        let (actor_type, actor_id) = self.actor(call, actor_arg, actor_type_arg)?;
        let provider = self.provider_for(descriptor, provider_arg)?;
        Ok((provider, actor_type, actor_id))
    }

    fn actor(
        &self,
        call: &McpCall,
        actor_arg: Option<String>,
        actor_type_arg: Option<String>,
    ) -> Result<(ActorType, ActorId), CallToolResult> {
        let Some(raw) = actor_arg.or_else(|| call.actor_id.clone()) else {
            return Err(tool_error(
                "validation_error",
                "actor_id: whose account to act in is not known; pass `actor_id`, or configure \
                 the client to send the Relay-Actor-Id header",
                None,
            ));
        };
        let actor_id = ActorId::parse(&raw)
            .map_err(|e| tool_error("validation_error", &format!("actor_id: {e}"), None))?;
        let actor_type = match actor_type_arg.or_else(|| call.actor_type.clone()) {
            Some(t) => ActorType::parse(&t)
                .map_err(|e| tool_error("validation_error", &format!("actor_type: {e}"), None))?,
            None => ActorType::user(),
        };
        Ok((actor_type, actor_id))
    }

    /// The configured provider an action uses: the one named, or the only one of its kind.
    fn provider_for(
        &self,
        descriptor: &ActionDescriptor,
        named: Option<&str>,
    ) -> Result<ProviderName, CallToolResult> {
        let candidates = self.providers_of(descriptor);
        if let Some(raw) = named {
            return candidates
                .into_iter()
                .find(|p| p.as_str() == raw)
                .ok_or_else(|| {
                    tool_error(
                        "validation_error",
                        &format!(
                            "provider: {raw:?} is not a configured {} provider",
                            descriptor.family.as_str()
                        ),
                        None,
                    )
                });
        }
        match candidates.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(tool_error(
                "provider_not_configured",
                &format!(
                    "no {} provider is configured on this Relay",
                    descriptor.family.as_str()
                ),
                None,
            )),
            many => Err(tool_error(
                "validation_error",
                &format!(
                    "provider: several {} providers are configured ({}); name one",
                    descriptor.family.as_str(),
                    many.iter()
                        .map(ProviderName::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            )),
        }
    }

    fn providers_of(&self, descriptor: &ActionDescriptor) -> Vec<ProviderName> {
        let executor = self.state.actions.executor();
        self.state
            .catalog
            .listings()
            .into_iter()
            .map(|i| i.name)
            .filter(|name| {
                executor
                    .provider_facts(name)
                    .is_some_and(|f| f.family == descriptor.family)
            })
            .collect()
    }

    /// An action's failure as a tool error. Where the user reconnecting fixes it (no
    /// connection, needs reauthorization, a missing scope), a connect flow is started and its
    /// URL given, for the agent to hand to the user.
    async fn action_error(
        &self,
        call: &McpCall,
        descriptor: &ActionDescriptor,
        account: Option<(ProviderName, ActorType, ActorId)>,
        e: ActionError,
    ) -> CallToolResult {
        let reconnect = matches!(
            e,
            ActionError::TokenMissing(_)
                | ActionError::TokenExpired(_)
                | ActionError::ScopeMissing(_)
        );
        let api = ApiError::from(e);
        let mut authorize_url = None;
        if reconnect && let Some((provider, actor_type, actor_id)) = account {
            let scopes = Scopes::parse(&descriptor.scopes.join(" ")).ok();
            match self
                .start_connect(call, provider, actor_type, actor_id, scopes)
                .await
            {
                Ok((url, _)) => authorize_url = Some(url),
                Err(e) => tracing::warn!(
                    code = e.code,
                    "could not start a connect flow for an MCP error"
                ),
            }
        }
        tool_error(api.code, &api.message, authorize_url)
    }

    async fn start_connect(
        &self,
        call: &McpCall,
        provider: ProviderName,
        actor_type: ActorType,
        actor_id: ActorId,
        scopes: Option<Scopes>,
    ) -> Result<(String, String), ApiError> {
        let started = self
            .state
            .connect
            .start(StartRequest {
                workspace_id: call.caller.workspace_id.clone(),
                provider,
                actor_type,
                actor_id,
                scopes,
                return_to: None,
                login_hint: None,
                expected_subject: None,
                expected_email: None,
                app_state: None,
            })
            .await?;
        Ok((started.authorize_url, started.expires_at.to_rfc3339()))
    }

    async fn execute_preview(&self, call: &McpCall, args: &JsonObject) -> CallToolResult {
        let Some(preview_id) = args.get("preview_id").and_then(Value::as_str) else {
            return tool_error("validation_error", "preview_id: required, a string", None);
        };
        let key = args.get("idempotency_key").and_then(Value::as_str);
        if preview_id.is_empty() || preview_id.len() > 100 {
            return tool_error("not_found", "preview not found", None);
        }
        match self
            .state
            .actions
            .execute(&call.caller.workspace_id, preview_id, key)
            .await
        {
            Ok(outcome) => {
                let structured = json!({
                    "status": "succeeded",
                    "result": outcome.result,
                    "replayed": outcome.replayed,
                });
                let text = format!(
                    "Executed preview {preview_id}{}.\n\n{}",
                    if outcome.replayed {
                        " (already executed before: this is the recorded result, nothing was sent again)"
                    } else {
                        ""
                    },
                    pretty(&structured["result"])
                );
                success(structured, text)
            }
            Err(e) => {
                let api = ApiError::from(e);
                tool_error(api.code, &api.message, None)
            }
        }
    }

    async fn connect_account(&self, call: &McpCall, args: &JsonObject) -> CallToolResult {
        let mut args = args.clone();
        let actor_arg = take_string(&mut args, "actor_id");
        let actor_type_arg = take_string(&mut args, "actor_type");
        let (actor_type, actor_id) = match self.actor(call, actor_arg, actor_type_arg) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let Some(raw) = take_string(&mut args, "provider") else {
            return tool_error("validation_error", "provider: required", None);
        };
        let provider = match ProviderName::parse(&raw) {
            Ok(p) if self.state.catalog.listing(&p).is_some() => p,
            _ => {
                return tool_error(
                    "validation_error",
                    &format!("provider: {raw:?} is not a configured provider"),
                    None,
                );
            }
        };
        let scopes = match take_string(&mut args, "scopes").map(|s| Scopes::parse(&s)) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return tool_error("validation_error", &format!("scopes: {e}"), None),
        };
        match self
            .start_connect(call, provider.clone(), actor_type, actor_id, scopes)
            .await
        {
            Ok((url, expires_at)) => {
                let text = format!(
                    "Ask the user to open this URL to connect their {provider} account (valid \
                     until {expires_at}):\n{url}"
                );
                success(
                    json!({ "authorize_url": url, "expires_at": expires_at }),
                    text,
                )
            }
            Err(e) => tool_error(e.code, &e.message, None),
        }
    }
}

impl ServerHandler for RelayTools {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("relay", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Relay acts in a connected user's accounts (Gmail, Outlook, Google Drive) and \
                 sends signed webhooks. Tools that send or write return a preview of exactly \
                 what would be sent and a preview_id; nothing is sent until relay_execute_preview \
                 is called with it. Whose account: the Relay-Actor-Id header, or actor_id on the \
                 call. When an account is not connected, hand the user the authorize URL given.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let known = request.name == EXECUTE_TOOL
            || request.name == CONNECT_TOOL
            || self
                .state
                .actions
                .descriptors()
                .iter()
                .any(|d| tool_name(d.name) == request.name);
        if !known {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", truncate(&request.name)),
                None,
            ));
        }
        let call = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<McpCall>())
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("the request's caller is missing", None))?;
        let span =
            tracing::info_span!(parent: &call.span, "mcp_tool", tool = %truncate(&request.name));
        // Clients of the 2026-07-28 revision declare their capabilities on each request.
        let can_elicit = context
            .meta
            .client_capabilities()
            .is_some_and(|c| c.elicitation.is_some());
        let fut = self.call(&call, request, can_elicit).instrument(span);
        let result = match call.audit.clone() {
            Some(audit) => {
                audit
                    .scope(async {
                        AuditContext::set_current_api_key(&call.caller.api_key_id);
                        fut.await
                    })
                    .await
            }
            None => fut.await,
        };
        Ok(result)
    }
}

/// Asks the user, through the client (MCP elicitation, as a multi round-trip request), to
/// confirm exactly what the preview will send. The client retries the call with the answer
/// and the preview id as `requestState`; [`RelayTools::confirmed`] then sends it or not. The
/// state needs no sealing: a preview id only reaches previews of the caller's workspace, which
/// `relay_execute_preview` executes anyway.
fn confirm_with_user(preview_id: &str, action: &str, rendered: &Value) -> CallToolResponse {
    let message = format!(
        "Relay is about to perform {action} exactly as shown below. Send it?\n\n{}",
        pretty(rendered)
    );
    let input = json!({
        "resultType": "input_required",
        "inputRequests": {
            "confirm": {
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": message,
                    "requestedSchema": {
                        "type": "object",
                        "properties": {
                            "send": {"type": "boolean", "title": "Send it", "description": "Send exactly this"}
                        },
                        "required": ["send"]
                    }
                }
            }
        },
        "requestState": preview_id,
    });
    match serde_json::from_value::<InputRequiredResult>(input) {
        Ok(r) => r.into(),
        // Cannot happen with the literal above; the preview still stands.
        Err(_) => tool_error("internal_error", "could not ask for confirmation", None).into(),
    }
}

/// Whether the client can be asked to confirm, and its answer on the retry.
struct Confirmation {
    can_elicit: bool,
    /// `requestState` echoed back: the preview that was shown.
    preview_id: Option<String>,
    /// The user's answer, when this is the retry.
    accepted: Option<bool>,
}

/// `gmail.send` → `gmail_send`: names MCP clients accept everywhere (`^[a-zA-Z0-9_-]{1,64}$`).
pub fn tool_name(action: &str) -> String {
    action.replace('.', "_")
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn take_string(args: &mut JsonObject, key: &str) -> Option<String> {
    match args.remove(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn success(structured: Value, text: String) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

/// A failure the model reads: the stable code first, the message, and the URL to give the
/// user when reconnecting their account fixes it.
fn tool_error(code: &str, message: &str, authorize_url: Option<String>) -> CallToolResult {
    let mut text = format!("{code}: {message}");
    if let Some(url) = authorize_url {
        text.push_str(&format!(
            "\nAsk the user to open this URL to connect the account, then call the tool again:\n{url}"
        ));
    }
    CallToolResult::error(vec![ContentBlock::text(text)])
}

fn object(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

const ACTOR_ID_DOC: &str = "Whose account to act in: your identifier for the end user. Optional when the client sends the Relay-Actor-Id header.";

/// An action as a tool: its parameters' JSON Schema, plus `actor_id` (and `provider`) for
/// actions that act in a connected account.
fn action_tool(d: &ActionDescriptor, direct: bool) -> Tool {
    let mut schema = match d.params_schema.clone() {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    // The dialect is MCP's default (2020-12); the `$schema` of a standalone document is left out.
    schema.remove("$schema");
    schema.insert("type".into(), json!("object"));
    if d.needs_connection() {
        let props = schema
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(props) = props {
            props.insert(
                "actor_id".into(),
                json!({"type": "string", "description": ACTOR_ID_DOC}),
            );
            props.insert(
                "actor_type".into(),
                json!({"type": "string", "description": "The actor's type; defaults to `user`."}),
            );
            props.insert(
                "provider".into(),
                json!({"type": "string", "description": format!(
                    "The configured {} provider to use; needed only when several are configured.",
                    d.family.as_str()
                )}),
            );
        }
    }
    let (annotations, description, output) = match d.side_effect {
        SideEffect::Read => (
            ToolAnnotations::with_title(d.name)
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(true),
            d.description.to_owned(),
            None,
        ),
        SideEffect::Send | SideEffect::Write => {
            let annotations = ToolAnnotations::with_title(d.name)
                .read_only(false)
                .destructive(false)
                .idempotent(false)
                .open_world(true);
            if direct {
                (
                    annotations,
                    format!(
                        "{} Executes at once (this workspace allows it without a preview).",
                        d.description
                    ),
                    Some(direct_output_schema()),
                )
            } else {
                (
                    annotations,
                    format!(
                        "{} Returns a preview of exactly what would be sent and sends nothing; \
                         send it with {EXECUTE_TOOL}.",
                        d.description
                    ),
                    Some(preview_output_schema()),
                )
            }
        }
    };
    let mut tool = Tool::new(Cow::Owned(tool_name(d.name)), description, Arc::new(schema))
        .with_title(d.name)
        .with_annotations(annotations);
    if let Some(output) = output {
        tool = tool.with_raw_output_schema(object(output));
    }
    tool
}

/// A previewing tool's result: the preview (`status: previewed`), or, when the user confirmed
/// it through elicitation, its execution (`succeeded`) or refusal (`declined`).
fn preview_output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "preview_id": {"type": "string", "description": "Pass to relay_execute_preview to send."},
            "status": {"type": "string", "enum": ["previewed", "succeeded", "declined"]},
            "action": {"type": "string"},
            "rendered": {"type": "object", "description": "Exactly what will be sent."},
            "digest": {"type": "string", "description": "sha256: of the rendered request."},
            "expires_at": {"type": "string", "description": "RFC 3339."},
            "result": {"description": "What the provider answered (status succeeded)."},
            "replayed": {"type": "boolean"}
        },
        "required": ["preview_id", "status"]
    })
}

fn direct_output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "preview_id": {"type": "string"},
            "status": {"type": "string", "enum": ["succeeded"]},
            "result": {"description": "What the provider answered."},
            "replayed": {"type": "boolean"}
        },
        "required": ["preview_id", "status", "result", "replayed"]
    })
}

fn execute_tool() -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "preview_id": {"type": "string", "description": "The preview_id an action tool returned."},
            "idempotency_key": {"type": "string", "description": "Optional; a retry with the same key returns the first result."}
        },
        "required": ["preview_id"],
        "additionalProperties": false
    });
    let output = json!({
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["succeeded"]},
            "result": {"description": "What the provider answered."},
            "replayed": {"type": "boolean", "description": "True when this preview was executed before: nothing was sent again."}
        },
        "required": ["status", "result", "replayed"]
    });
    Tool::new(
        EXECUTE_TOOL,
        "Send a previewed action exactly as previewed, once. Executing the same preview again returns the first result without sending again.",
        object(input),
    )
    .with_title("Execute a preview")
    .with_raw_output_schema(object(output))
    .with_annotations(
        ToolAnnotations::with_title("Execute a preview")
            .read_only(false)
            .destructive(false)
            .idempotent(true)
            .open_world(true),
    )
}

fn connect_tool() -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "provider": {"type": "string", "description": "A configured provider name (e.g. google, microsoft)."},
            "actor_id": {"type": "string", "description": ACTOR_ID_DOC},
            "actor_type": {"type": "string", "description": "The actor's type; defaults to `user`."},
            "scopes": {"type": "string", "description": "Extra scopes, space separated, beyond the provider's configured ones."}
        },
        "required": ["provider"],
        "additionalProperties": false
    });
    let output = json!({
        "type": "object",
        "properties": {
            "authorize_url": {"type": "string", "description": "Hand this to the user: they log in at the provider and grant access."},
            "expires_at": {"type": "string"}
        },
        "required": ["authorize_url", "expires_at"]
    });
    Tool::new(
        CONNECT_TOOL,
        "Start connecting a user's account: returns the URL the user opens to log in at the provider and grant access.",
        object(input),
    )
    .with_title("Connect an account")
    .with_raw_output_schema(object(output))
    .with_annotations(
        ToolAnnotations::with_title("Connect an account")
            .read_only(false)
            .destructive(false)
            .idempotent(false)
            .open_world(false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_fixed_list_are_counted_as_other() {
        assert_eq!(method_label(Some("tools/call")), "tools/call");
        assert_eq!(method_label(Some("initialize")), "initialize");
        assert_eq!(method_label(Some("tools/call\n")), "other");
        assert_eq!(method_label(Some("x".repeat(1000).as_str())), "other");
        assert_eq!(method_label(None), "other");
    }

    #[test]
    fn tool_names_are_valid_for_mcp_clients() {
        for action in [
            "gmail.send",
            "outlook.send",
            "drive.extract",
            "webhook.send",
        ] {
            let name = tool_name(action);
            assert!(
                name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "{name}"
            );
        }
    }
}
