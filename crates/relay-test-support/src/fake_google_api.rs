//! A fake of Google's Gmail and Drive v3 APIs on loopback, following their documented request
//! and response shapes and error bodies (`{"error": {"code", "message", "errors": [{"reason"}],
//! "status"}}`).
//!
//! * `POST /gmail/v1/users/me/messages/send` takes `{"raw": base64url}` and answers
//!   `{"id", "threadId", "labelIds": ["SENT"]}`; [`FakeGoogleApi::sent_messages`] returns the
//!   decoded RFC 5322 messages, for a MIME parser.
//! * `GET /drive/v3/files/{id}` answers the file's metadata (only the `fields` asked for), or
//!   its bytes with `alt=media` (Google formats answer 403 `fileNotDownloadable`, as Drive
//!   does); `GET /drive/v3/files/{id}/export?mimeType=` exports Google formats (others answer
//!   403 `fileNotExportable`). Unknown ids answer 404 `notFound`, which is also what Drive
//!   answers for a file the user cannot see.
//! * Every request needs a bearer token accepted by the [`TokenCheck`]; otherwise 401
//!   `UNAUTHENTICATED`. Faults ([`ApiFault`]) are taken FIFO by the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::api_server::{ApiFault, Background, RecordedRequest, Script, TokenCheck, bearer};

/// A file in the fake Drive.
#[derive(Debug, Clone)]
pub struct DriveFile {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    /// The bytes `alt=media` answers (non-Google formats).
    pub content: Vec<u8>,
    /// Exports by target MIME type (Google formats), e.g. `text/plain`, `text/csv`.
    pub exports: HashMap<String, Vec<u8>>,
    /// `size` in the metadata; `None` for Google formats (Drive reports none).
    pub size: Option<u64>,
}

impl DriveFile {
    /// A binary or text file downloaded with `alt=media`.
    pub fn blob(id: &str, name: &str, mime_type: &str, content: Vec<u8>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            mime_type: mime_type.into(),
            size: Some(content.len() as u64),
            content,
            exports: HashMap::new(),
        }
    }

    /// A Google Docs/Sheets/Slides file with one export.
    pub fn google(id: &str, name: &str, mime_type: &str, export_as: &str, export: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            mime_type: mime_type.into(),
            size: None,
            content: Vec::new(),
            exports: HashMap::from([(export_as.to_owned(), export.as_bytes().to_vec())]),
        }
    }
}

struct Inner {
    script: Script,
    tokens: TokenCheck,
    sent: Mutex<Vec<Vec<u8>>>,
    files: Mutex<HashMap<String, DriveFile>>,
}

pub struct FakeGoogleApi {
    inner: Arc<Inner>,
    server: Background,
}

impl FakeGoogleApi {
    pub fn start(tokens: TokenCheck) -> Self {
        let inner = Arc::new(Inner {
            script: Script::default(),
            tokens,
            sent: Mutex::new(Vec::new()),
            files: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/gmail/v1/users/me/messages/send", post(gmail_send))
            .route("/drive/v3/files/{id}", get(drive_get))
            .route("/drive/v3/files/{id}/export", get(drive_export))
            .with_state(inner.clone());
        Self {
            inner,
            server: Background::start("fake-google-api", app),
        }
    }

    /// `http://127.0.0.1:PORT`: the provider's `api_base_url`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn push_fault(&self, fault: ApiFault) {
        self.inner.script.push_fault(fault);
    }

    pub fn pending_faults(&self) -> usize {
        self.inner.script.pending_faults()
    }

    pub fn add_file(&self, file: DriveFile) {
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(file.id.clone(), file);
    }

    /// Every request received, faulted ones included.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.script.requests()
    }

    /// The messages Gmail accepted, decoded from `raw`.
    pub fn sent_messages(&self) -> Vec<Vec<u8>> {
        self.inner.sent.lock().unwrap().clone()
    }
}

fn google_error(status: u16, reason: &str, message: &str, rpc_status: &str) -> Response {
    let mut error = json!({
        "code": status,
        "message": message,
        "errors": [{ "message": message, "domain": "global", "reason": reason }],
        "status": rpc_status,
    });
    if reason == "insufficientPermissions" {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
        }]);
    }
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(json!({ "error": error })),
    )
        .into_response();
    if status == 401 {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""
                .parse()
                .unwrap(),
        );
    }
    resp
}

/// Applies a scripted fault or the token check; `None` lets the request through.
async fn gate(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    match inner.script.next_fault() {
        Some(ApiFault::Delay(d)) => tokio::time::sleep(d).await,
        Some(ApiFault::Unauthorized) => return Some(unauthenticated()),
        Some(ApiFault::InsufficientScope) => {
            return Some(google_error(
                403,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
                "PERMISSION_DENIED",
            ));
        }
        Some(ApiFault::RateLimited { retry_after_secs }) => {
            let mut r = google_error(
                429,
                "rateLimitExceeded",
                "Rate Limit Exceeded",
                "RESOURCE_EXHAUSTED",
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                retry_after_secs.to_string().parse().unwrap(),
            );
            return Some(r);
        }
        Some(ApiFault::Status(s)) => {
            let (reason, status) = match s {
                400 => ("invalidArgument", "INVALID_ARGUMENT"),
                403 => ("forbidden", "PERMISSION_DENIED"),
                404 => ("notFound", "NOT_FOUND"),
                500 => ("backendError", "INTERNAL"),
                502 | 503 => ("backendError", "UNAVAILABLE"),
                _ => ("unknown", "UNKNOWN"),
            };
            return Some(google_error(
                s,
                reason,
                &format!("Injected error {s}"),
                status,
            ));
        }
        None => {}
    }
    let ok = bearer(headers).is_some_and(|t| (inner.tokens)(&t));
    if ok { None } else { Some(unauthenticated()) }
}

fn unauthenticated() -> Response {
    google_error(
        401,
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        "UNAUTHENTICATED",
    )
}

async fn gmail_send(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner.script.record(
        "POST",
        "/gmail/v1/users/me/messages/send",
        None,
        &headers,
        &body,
    );
    if let Some(r) = gate(&inner, &headers).await {
        return r;
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return google_error(400, "parseError", "Parse Error", "INVALID_ARGUMENT"),
    };
    let Some(raw) = parsed["raw"].as_str() else {
        return google_error(
            400,
            "invalidArgument",
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
            "INVALID_ARGUMENT",
        );
    };
    // Gmail accepts base64url with or without padding.
    let decoded =
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')) {
            Ok(b) => b,
            Err(_) => {
                return google_error(
                    400,
                    "invalidArgument",
                    "Invalid value for ByteString",
                    "INVALID_ARGUMENT",
                );
            }
        };
    let text = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    if !text.contains("\nto:") && !text.starts_with("to:") {
        return google_error(
            400,
            "invalidArgument",
            "Recipient address required",
            "INVALID_ARGUMENT",
        );
    }
    let n = {
        let mut sent = inner.sent.lock().unwrap();
        sent.push(decoded);
        sent.len()
    };
    axum::Json(json!({
        "id": format!("18c{n:013x}"),
        "threadId": format!("18c{n:013x}"),
        "labelIds": ["SENT"],
    }))
    .into_response()
}

fn query_pairs(q: &Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn not_found(id: &str) -> Response {
    google_error(
        404,
        "notFound",
        &format!("File not found: {id}."),
        "NOT_FOUND",
    )
}

async fn drive_get(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    inner.script.record(
        "GET",
        &format!("/drive/v3/files/{id}"),
        query.clone(),
        &headers,
        &[],
    );
    if let Some(r) = gate(&inner, &headers).await {
        return r;
    }
    let q = query_pairs(&query);
    let Some(file) = inner.files.lock().unwrap().get(&id).cloned() else {
        return not_found(&id);
    };
    if q.get("alt").map(String::as_str) == Some("media") {
        if file.mime_type.starts_with("application/vnd.google-apps.") {
            return google_error(
                403,
                "fileNotDownloadable",
                "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
                "PERMISSION_DENIED",
            );
        }
        return (
            [(header::CONTENT_TYPE, file.mime_type.clone())],
            file.content,
        )
            .into_response();
    }
    let all = json!({
        "kind": "drive#file",
        "id": file.id,
        "name": file.name,
        "mimeType": file.mime_type,
        "size": file.size.map(|s| s.to_string()),
        "createdTime": "2026-01-02T03:04:05.000Z",
        "modifiedTime": "2026-02-03T04:05:06.000Z",
        "webViewLink": format!("https://drive.google.com/file/d/{}/view?usp=drivesdk", file.id),
    });
    // Drive answers only the fields asked for (default: kind, id, name, mimeType).
    let fields = q
        .get("fields")
        .cloned()
        .unwrap_or_else(|| "kind,id,name,mimeType".into());
    let mut out = serde_json::Map::new();
    for f in fields.split(',').map(str::trim) {
        if let Some(v) = all.get(f).filter(|v| !v.is_null()) {
            out.insert(f.to_owned(), v.clone());
        }
    }
    axum::Json(Value::Object(out)).into_response()
}

async fn drive_export(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    inner.script.record(
        "GET",
        &format!("/drive/v3/files/{id}/export"),
        query.clone(),
        &headers,
        &[],
    );
    if let Some(r) = gate(&inner, &headers).await {
        return r;
    }
    let q = query_pairs(&query);
    let Some(file) = inner.files.lock().unwrap().get(&id).cloned() else {
        return not_found(&id);
    };
    let Some(target) = q.get("mimeType") else {
        return google_error(
            400,
            "required",
            "Required parameter: mimeType",
            "INVALID_ARGUMENT",
        );
    };
    if !file.mime_type.starts_with("application/vnd.google-apps.") {
        return google_error(
            403,
            "fileNotExportable",
            "Export only supports Docs Editors files.",
            "PERMISSION_DENIED",
        );
    }
    match file.exports.get(target) {
        Some(bytes) => ([(header::CONTENT_TYPE, target.clone())], bytes.clone()).into_response(),
        None => google_error(
            400,
            "badRequest",
            "The requested conversion is not supported.",
            "INVALID_ARGUMENT",
        ),
    }
}
