//! Studio: a small web UI, embedded in the binary, to connect accounts and watch their health.
//! It is a static page that calls the public API with an API key the operator pastes in (kept in
//! the tab's sessionStorage only), so it has no privileges of its own.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../studio/index.html");
const APP_JS: &str = include_str!("../studio/app.js");
const STYLE_CSS: &str = include_str!("../studio/style.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = resp.headers_mut();
    // Scripts and styles from this origin only: nothing inline, nothing from a CDN.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

pub async fn get_studio() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

pub async fn get_studio_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn get_studio_css() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}
