//! A headless stand-in for the end user's browser during an authorization code flow.
//!
//! Relay's tests need "the user clicks the link Relay returned and approves": that is a GET of
//! the authorization URL followed by the provider's own redirects (login and consent pages
//! that the test providers auto-approve), carrying the provider's cookies, until the provider
//! sends the browser back to the client's `redirect_uri`. That final URL is returned,
//! unvisited, as a [`CallbackRedirect`], so the test decides whether and how to deliver it to
//! Relay's callback endpoint.
//!
//! reqwest's cookie store is not enabled in this workspace, so a minimal RFC 6265 jar (name,
//! value, path; deletion by empty value, `Max-Age<=0` or a 1970 expiry) is kept here.

use std::collections::HashMap;

use reqwest::StatusCode;
use url::Url;

/// Where the authorization server redirected the browser once it was done: the client's
/// `redirect_uri` with the authorization response parameters (RFC 6749 §4.1.2, RFC 9207).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRedirect {
    /// The complete redirect target, ready to be requested from the client (Relay).
    pub location: String,
    /// `code`, on success.
    pub code: Option<String>,
    /// `state`, echoed back unchanged.
    pub state: Option<String>,
    /// `iss` (RFC 9207), when the server sent one.
    pub iss: Option<String>,
    /// `error`, on failure (e.g. `access_denied`, `invalid_request`).
    pub error: Option<String>,
    /// `error_description`, if any.
    pub error_description: Option<String>,
    /// Every query parameter of `location` (last value wins for repeated names).
    pub params: HashMap<String, String>,
}

impl CallbackRedirect {
    /// Parses an absolute redirect URL. Panics if it is not an absolute URL.
    pub fn parse(location: &str) -> Self {
        let url = Url::parse(location)
            .unwrap_or_else(|e| panic!("callback location {location:?} is not a URL: {e}"));
        let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let get = |name: &str| params.get(name).cloned();
        Self {
            location: location.to_owned(),
            code: get("code"),
            state: get("state"),
            iss: get("iss"),
            error: get("error"),
            error_description: get("error_description"),
            params,
        }
    }

    /// The redirect target without its query: the `redirect_uri` the server used.
    pub fn redirect_uri(&self) -> String {
        let mut url = Url::parse(&self.location).expect("location was parsed before");
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }
}

/// Performs the browser's part of an authorization request: GETs `authorize_url`, follows every
/// redirect that stays on the authorization server's origin (carrying its cookies), and returns
/// the first redirect that leaves it, i.e. the one to the client's `redirect_uri`.
///
/// Panics with the status and body if the server answers anything but a redirect before
/// reaching the client (an error page, such as the one for an unknown `client_id`), or after
/// 20 hops.
pub async fn browser_authorize(authorize_url: &str) -> CallbackRedirect {
    let client = crate::http_client();
    let mut current = Url::parse(authorize_url)
        .unwrap_or_else(|e| panic!("authorization URL {authorize_url:?} is not a URL: {e}"));
    let server_origin = current.origin();
    let mut jar = CookieJar::default();

    for _hop in 0..20 {
        let mut request = client.get(current.clone());
        if let Some(cookie) = jar.header_for(current.path()) {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {current} failed: {e}"));
        let status = response.status();
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Ok(value) = value.to_str() {
                jar.store(value, current.path());
            }
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let location = match location {
            Some(location) if is_redirect(status) => location,
            _ => {
                let body = response.text().await.unwrap_or_default();
                panic!(
                    "authorization server answered {status} instead of a redirect at {current}: {}",
                    truncate(&body, 2000)
                );
            }
        };
        let next = current
            .join(&location)
            .unwrap_or_else(|e| panic!("bad Location {location:?} from {current}: {e}"));
        if next.origin() != server_origin {
            return CallbackRedirect::parse(next.as_str());
        }
        current = next;
    }
    panic!("more than 20 redirects within the authorization server starting at {authorize_url}");
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Cookies of one origin, identified by (name, path).
#[derive(Debug, Default)]
struct CookieJar {
    cookies: Vec<Cookie>,
}

#[derive(Debug)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

impl CookieJar {
    /// Records one `Set-Cookie` header received in answer to a request for `request_path`.
    fn store(&mut self, set_cookie: &str, request_path: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        if name.is_empty() {
            return;
        }
        let mut path = None;
        let mut expired = value.is_empty();
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            let (key, val) = (key.trim().to_ascii_lowercase(), val.trim());
            match key.as_str() {
                "path" if val.starts_with('/') => path = Some(val.to_owned()),
                "max-age" => expired |= val.parse::<i64>().is_ok_and(|age| age <= 0),
                "expires" => expired |= val.contains("1970"),
                _ => {}
            }
        }
        let path = path.unwrap_or_else(|| default_path(request_path));
        self.cookies.retain(|c| !(c.name == name && c.path == path));
        if !expired {
            self.cookies.push(Cookie { name, value, path });
        }
    }

    /// The `Cookie` header for a request to `request_path`, if any cookie applies.
    fn header_for(&self, request_path: &str) -> Option<String> {
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| path_matches(request_path, &c.path))
            .collect();
        // RFC 6265 §5.4: longer paths first.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let header = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ");
        (!header.is_empty()).then_some(header)
    }
}

/// RFC 6265 §5.1.4 default-path.
fn default_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => request_path[..i].to_owned(),
    }
}

/// RFC 6265 §5.1.4 path-match.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_callback_parameters() {
        let cb = CallbackRedirect::parse(
            "http://127.0.0.1:9/cb?code=abc&state=s%20t&iss=http%3A%2F%2F127.0.0.1%3A1",
        );
        assert_eq!(cb.code.as_deref(), Some("abc"));
        assert_eq!(cb.state.as_deref(), Some("s t"));
        assert_eq!(cb.iss.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(cb.error, None);
        assert_eq!(cb.redirect_uri(), "http://127.0.0.1:9/cb");
    }

    #[test]
    fn cookie_jar_honours_paths_and_deletion() {
        let mut jar = CookieJar::default();
        jar.store("_session=s1; path=/; httponly", "/auth");
        jar.store("_interaction=i1; path=/interaction/abc; httponly", "/auth");
        jar.store("_interaction_resume=r1; path=/auth/abc", "/auth");
        assert_eq!(jar.header_for("/auth").as_deref(), Some("_session=s1"));
        assert_eq!(
            jar.header_for("/interaction/abc").as_deref(),
            Some("_interaction=i1; _session=s1")
        );
        assert_eq!(
            jar.header_for("/interaction/abcd").as_deref(),
            Some("_session=s1")
        );
        jar.store(
            "_interaction_resume=; path=/auth/abc; expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "/auth/abc",
        );
        assert_eq!(jar.header_for("/auth/abc").as_deref(), Some("_session=s1"));
        jar.store("_session=s2; Path=/", "/x");
        assert_eq!(jar.header_for("/").as_deref(), Some("_session=s2"));
        jar.store("_session=s2; Max-Age=0; Path=/", "/x");
        assert_eq!(jar.header_for("/"), None);
        jar.store("nopath=1", "/a/b");
        assert_eq!(jar.header_for("/a/c").as_deref(), Some("nopath=1"));
        assert_eq!(jar.header_for("/b"), None);
    }
}
