//! Google OAuth clients as Google hands them out: the `credentials.json` downloaded from the
//! Cloud console (APIs & Services → Credentials → OAuth client → Download JSON), so operators
//! point `[providers.google] credentials_file` at it instead of copying the id and secret.
//!
//! The file is `{"installed": {...}}` (desktop app) or `{"web": {...}}` (web application), with
//! `client_id`, `client_secret`, `auth_uri`, `token_uri`, `redirect_uris`, ... inside. Errors
//! name the file and the problem, never a value from it: the file holds the client secret,
//! so nothing (not even serde's "invalid type: string ..." messages) is echoed back.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde_json::Value;

/// The parts of an OAuth client file Relay uses.
#[derive(Debug, Clone)]
pub struct GoogleClientCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    /// `auth_uri`, when the file has one.
    pub auth_uri: Option<String>,
    /// `token_uri`, when the file has one.
    pub token_uri: Option<String>,
}

/// Why a credentials file cannot be used. Messages never include the file's content.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    #[error("cannot read Google credentials file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("Google credentials file {path} is not valid JSON ({position})")]
    NotJson { path: PathBuf, position: String },
    #[error(
        "Google credentials file {path} is a service-account key, not an OAuth client; download the OAuth client JSON (APIs & Services → Credentials → OAuth 2.0 Client IDs)"
    )]
    ServiceAccount { path: PathBuf },
    #[error(
        "Google credentials file {path} has neither an \"installed\" nor a \"web\" OAuth client; download the OAuth client JSON from the Cloud console"
    )]
    NotAClient { path: PathBuf },
    #[error(
        "Google credentials file {path}: \"{client_type}.{field}\" is missing or not a non-empty string"
    )]
    MissingField {
        path: PathBuf,
        client_type: &'static str,
        field: &'static str,
    },
}

impl GoogleClientCredentials {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, CredentialsFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| CredentialsFileError::Unreadable {
            path: path.to_path_buf(),
            reason: e.kind().to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses the file's text; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, CredentialsFileError> {
        let path = path.to_path_buf();
        // A syntax error's message is only a position (serde_json never quotes input there).
        let json: Value =
            serde_json::from_str(text).map_err(|e| CredentialsFileError::NotJson {
                path: path.clone(),
                position: format!("line {} column {}", e.line(), e.column()),
            })?;
        if json.get("type").and_then(Value::as_str) == Some("service_account") {
            return Err(CredentialsFileError::ServiceAccount { path });
        }
        let (client_type, client) = match (json.get("installed"), json.get("web")) {
            (Some(c), _) if c.is_object() => ("installed", c),
            (_, Some(c)) if c.is_object() => ("web", c),
            _ => return Err(CredentialsFileError::NotAClient { path }),
        };
        let text_field = |field: &'static str| {
            client
                .get(field)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let required = |field: &'static str| {
            text_field(field).ok_or_else(|| CredentialsFileError::MissingField {
                path: path.clone(),
                client_type,
                field,
            })
        };
        Ok(Self {
            client_id: required("client_id")?,
            client_secret: SecretString::from(required("client_secret")?),
            auth_uri: text_field("auth_uri"),
            token_uri: text_field("token_uri"),
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const SECRET: &str = "GOCSPX-very-secret-value";

    fn parse(text: &str) -> Result<GoogleClientCredentials, CredentialsFileError> {
        GoogleClientCredentials::parse(Path::new("credentials.json"), text)
    }

    #[test]
    fn installed_and_web_clients_are_read_as_google_writes_them() {
        let installed = format!(
            r#"{{"installed":{{"client_id":"123-abc.apps.googleusercontent.com","project_id":"p","auth_uri":"https://accounts.google.com/o/oauth2/auth","token_uri":"https://oauth2.googleapis.com/token","auth_provider_x509_cert_url":"https://www.googleapis.com/oauth2/v1/certs","client_secret":"{SECRET}","redirect_uris":["http://localhost"]}}}}"#
        );
        let c = parse(&installed).expect("installed");
        assert_eq!(c.client_id, "123-abc.apps.googleusercontent.com");
        assert_eq!(c.client_secret.expose_secret(), SECRET);
        assert_eq!(
            c.auth_uri.as_deref(),
            Some("https://accounts.google.com/o/oauth2/auth")
        );
        assert_eq!(
            c.token_uri.as_deref(),
            Some("https://oauth2.googleapis.com/token")
        );
        let web = format!(
            r#"{{"web":{{"client_id":"456.apps.googleusercontent.com","client_secret":"{SECRET}","redirect_uris":["https://relay.example.com/oauth/google/callback"],"javascript_origins":["https://relay.example.com"]}}}}"#
        );
        let c = parse(&web).expect("web");
        assert_eq!(c.client_id, "456.apps.googleusercontent.com");
        assert_eq!((c.auth_uri, c.token_uri), (None, None));
    }

    #[test]
    fn unusable_files_are_explained_without_their_content() {
        let cases = [
            ("{\"installed\": ", "not valid JSON"),
            (
                r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----"}"#,
                "service-account key",
            ),
            (r#"{"other":{"client_id":"x"}}"#, "neither"),
            (r#"{"installed":"GOCSPX-very-secret-value"}"#, "neither"),
            (
                r#"{"web":{"client_id":"x","client_secret":""}}"#,
                "\"web.client_secret\" is missing",
            ),
            (
                r#"{"installed":{"client_id":42,"client_secret":"GOCSPX-very-secret-value"}}"#,
                "\"installed.client_id\" is missing",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("credentials.json"), "{err}");
            assert!(!err.contains(SECRET) && !err.contains("PRIVATE"), "{err}");
        }
        let missing = GoogleClientCredentials::load(Path::new("/nonexistent/credentials.json"))
            .expect_err("missing")
            .to_string();
        assert!(
            missing.contains("/nonexistent/credentials.json") && missing.contains("not found"),
            "{missing}"
        );
    }
}
