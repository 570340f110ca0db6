//! Relay's HTTP API.
//!
//! [`router`] builds the axum router (and, from the same handler annotations, the OpenAPI
//! document); [`serve`] runs it on a listener until a shutdown future resolves. The binary
//! and the integration tests call the same function.

pub mod auth;
pub mod cors;
pub mod error;
mod extract;
pub mod mcp;
mod middleware;
pub mod rate_limit;
pub mod readiness;
pub mod routes;
mod serve;
pub mod state;
pub mod telemetry;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use routes::health::ops_router;
pub use serve::{ConnectionLimits, serve_router};
pub use state::{AppParts, AppState, ServerSettings};

use routes::{
    actions, api_keys, audit, connections, health, oauth, providers, stats, studio, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Relay",
        description = "Connect your users' accounts, keep their tokens encrypted and fresh, and act on their behalf.",
        license(name = "Apache-2.0")
    ),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "oauth", description = "The connect flow"),
        (name = "connections", description = "Connections and their tokens"),
        (name = "actions", description = "Preview and execute actions; webhook signing secrets"),
        (name = "api_keys", description = "API keys of the caller's workspace"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `relay api-key create`"))
                    .build(),
            ),
        );
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::get_health))
        .routes(routes!(health::get_ready))
        .routes(routes!(health::get_metrics))
        .routes(routes!(oauth::get_authorize))
        .routes(routes!(oauth::get_callback))
        .routes(routes!(oauth::get_status))
        .routes(routes!(providers::list_providers))
        .routes(routes!(
            connections::list_connections,
            connections::create_connection
        ))
        .routes(routes!(
            connections::get_connection,
            connections::delete_connection
        ))
        .routes(routes!(connections::get_connection_token))
        .routes(routes!(actions::list_actions))
        .routes(routes!(actions::preview_action))
        .routes(routes!(actions::execute_action))
        .routes(routes!(webhooks::get_webhook_secret))
        .routes(routes!(webhooks::rotate_webhook_secret))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(stats::get_stats))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::update_api_key, api_keys::delete_api_key))
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    complete(api().split_for_parts().1)
}

/// OpenAPI requires a description on every response; annotations that give none get the HTTP
/// reason phrase, so generated clients (which validate the document) accept it.
fn complete(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::RefOr;
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            // Answered by layers rather than handlers, so no handler annotation names them: a
            // body over the limit, and a path segment that does not decode.
            if op.request_body.is_some() {
                add_error_response(op, "413", "payload_too_large: the body is over 1 MiB");
            }
            let has_path_param = op.parameters.iter().flatten().any(|p| {
                matches!(p, RefOr::T(p) if matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path))
            });
            if has_path_param {
                add_error_response(op, "400", "invalid_path: a path segment does not decode");
            }
            for (status, response) in op.responses.responses.iter_mut() {
                if let RefOr::T(r) = response
                    && r.description.is_empty()
                {
                    r.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("Response")
                        .to_owned();
                }
            }
        }
    }
    doc
}

/// Documents an error envelope answer on `op`; when its annotation already names `status`, the
/// description is extended instead (the body is the same envelope).
fn add_error_response(op: &mut utoipa::openapi::path::Operation, status: &str, description: &str) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    match op.responses.responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            if existing.description.is_empty() {
                existing.description = description.to_owned();
            } else if !existing.description.contains(description) {
                existing.description = format!("{}; {description}", existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .build(),
                )
                .build();
            op.responses
                .responses
                .insert(status.to_owned(), response.into());
        }
    }
}

pub fn router(state: AppState) -> Router {
    let cors = state.settings.cors_allow_origins.layer();
    let (router, doc) = api().split_for_parts();
    let mcp_service = mcp::service(state.clone());
    let doc = complete(doc);
    let doc_json = doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc_json,
                )
            }),
        )
        // MCP's Streamable HTTP transport (POST; GET and DELETE answer 405 as the transport
        // allows for a stateless server). Outside the OpenAPI document: it speaks JSON-RPC.
        .route(
            "/mcp",
            axum::routing::any(move |caller: Result<auth::Caller, error::ApiError>, req| {
                mcp::handle(mcp_service.clone(), caller, req)
            }),
        )
        .route("/studio", axum::routing::get(studio::get_studio))
        .route("/studio/app.js", axum::routing::get(studio::get_studio_js))
        .route(
            "/studio/style.css",
            axum::routing::get(studio::get_studio_css),
        )
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        // Innermost first: a panic becomes a 500 envelope, bodies are bounded, a request that
        // takes a minute is cut off with 504, and every answer (those three included) goes
        // through the request middleware's id, span, limits and metrics.
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(60),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::handle,
        ))
        // Outermost: a preflight carries no API key and is answered here, before
        // authentication; every other answer (errors included) gets the CORS headers, so a
        // page can read the error envelope and the request id.
        .layer(tower::util::option_layer(cors))
        .with_state(state)
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                // Batch sizes are counts, not seconds.
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full("audit_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just stays unused.
            let _ = metrics::set_global_recorder(recorder);
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often the recorder folds recorded histogram samples into its buckets.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample until it is folded into the buckets, which a
/// scrape of `/metrics` or an upkeep does: without a scraper (or with a slow one) a busy
/// replica's memory grew by ~10 MB per 10 s of token reads, without bound. A thread of its
/// own, so that it runs whatever runtime the process has (or none).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at each scrape only");
    }
}

/// Serves until `shutdown` resolves, then lets requests in flight finish. Connections are
/// bounded by the state's [`ConnectionLimits`] (see [`serve_router`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.settings.connection_limits;
    serve_router(listener, router(state), limits, shutdown).await
}
