//! CORS, for a Studio or an application served from another origin than the API (the services
//! Relay replaces hosted their Studio apart). Off by default: without
//! `[server] cors_allow_origins`, browsers only let pages of Relay's own origin call it.
//!
//! Relay authenticates with `Authorization: Bearer <api key>`, never with cookies, so it never
//! sends `Access-Control-Allow-Credentials`: a page on an allowed origin must hold an API key,
//! and a wildcard (`*`) can never expose anything a browser's ambient credentials unlock.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use url::Url;

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Same-origin only: no CORS headers are sent and preflights are not answered.
    #[default]
    SameOriginOnly,
    /// `*`: any origin (without credentials, as always).
    Any,
    /// Exactly these serialized origins (`https://studio.example.com`).
    List(Vec<HeaderValue>),
}

/// A `cors_allow_origins` entry that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorsConfigError {
    #[error(
        "cors_allow_origins: {0:?} is not an origin; write scheme://host[:port] with no path, e.g. \"https://studio.example.com\""
    )]
    NotAnOrigin(String),
    #[error("cors_allow_origins: \"*\" allows every origin and cannot be combined with a list")]
    WildcardInList,
}

impl CorsOrigins {
    /// Parses the configured entries. Each is `*` alone or an exact origin: a browser sends
    /// `Origin: https://studio.example.com` (no path, no trailing slash, default port
    /// omitted), and an entry that could never equal that is refused at start rather than
    /// silently never matching.
    pub fn parse(entries: &[String]) -> Result<Self, CorsConfigError> {
        let entries: Vec<&str> = entries.iter().map(|e| e.trim()).collect();
        if entries.is_empty() {
            return Ok(Self::SameOriginOnly);
        }
        if entries.contains(&"*") {
            return if entries.len() == 1 {
                Ok(Self::Any)
            } else {
                Err(CorsConfigError::WildcardInList)
            };
        }
        let mut origins = Vec::with_capacity(entries.len());
        for entry in entries {
            let bad = || CorsConfigError::NotAnOrigin(entry.to_owned());
            let url = Url::parse(entry).map_err(|_| bad())?;
            let origin = url.origin();
            if !origin.is_tuple()
                || !matches!(url.scheme(), "http" | "https")
                || origin.ascii_serialization() != entry.trim_end_matches('/')
                || entry.ends_with('/')
            {
                return Err(bad());
            }
            origins.push(HeaderValue::from_str(entry).map_err(|_| bad())?);
        }
        Ok(Self::List(origins))
    }

    /// The layer answering preflights and adding the CORS headers, or `None` when only the
    /// same origin may call.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow_origin = match self {
            Self::SameOriginOnly => return None,
            Self::Any => AllowOrigin::any(),
            Self::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow_origin)
                .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    HeaderName::from_static("x-request-id"),
                ])
                // Scripts may read the request id (to quote it), whether an execute was a
                // replay, and how long to wait after a 429 or 503.
                .expose_headers([
                    HeaderName::from_static("x-request-id"),
                    HeaderName::from_static("idempotent-replayed"),
                    header::RETRY_AFTER,
                ])
                // Browsers cache the preflight answer (Chromium caps it at 2 hours).
                .max_age(Duration::from_secs(600)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entries: &[&str]) -> Result<CorsOrigins, CorsConfigError> {
        CorsOrigins::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn entries_must_be_exact_origins_or_a_lone_wildcard() {
        assert_eq!(parse(&[]), Ok(CorsOrigins::SameOriginOnly));
        assert_eq!(parse(&["*"]), Ok(CorsOrigins::Any));
        assert_eq!(
            parse(&["https://studio.example.com", "http://localhost:5173"]),
            Ok(CorsOrigins::List(vec![
                HeaderValue::from_static("https://studio.example.com"),
                HeaderValue::from_static("http://localhost:5173"),
            ]))
        );
        assert_eq!(
            parse(&["*", "https://studio.example.com"]),
            Err(CorsConfigError::WildcardInList)
        );
        for bad in [
            "studio.example.com",
            "https://studio.example.com/",
            "https://studio.example.com/app",
            "https://studio.example.com:443",
            "https://user@studio.example.com",
            "ftp://studio.example.com",
            "https://STUDIO.example.com",
            "null",
        ] {
            assert_eq!(
                parse(&[bad]),
                Err(CorsConfigError::NotAnOrigin(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_layer_exists_only_when_origins_are_configured() {
        assert!(CorsOrigins::SameOriginOnly.layer().is_none());
        assert!(CorsOrigins::Any.layer().is_some());
        assert!(
            parse(&["https://a.example"])
                .expect("an origin")
                .layer()
                .is_some()
        );
    }
}
