//! The typed parameters of each action. The JSON Schema `GET /actions` publishes is generated
//! from these same structs, and requests are parsed with them, so the documented schema and
//! the validation cannot drift apart. Unknown fields are refused.

use relay_core::actions::ActionError;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// One address, or a list of them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(a) => vec![a],
            Self::Many(v) => v,
        }
    }
}

/// An email (`gmail.send`, `outlook.send`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MailParams {
    /// Recipients: `a@example.com` or `Name <a@example.com>`, one or a list.
    pub to: Addresses,
    pub subject: String,
    /// The plain-text body. `body` is accepted for it (the name callers of the services Relay
    /// replaces use); giving both is refused as a duplicate.
    #[serde(alias = "body")]
    pub text: String,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    /// An HTML alternative to `text` (the message becomes multipart/alternative).
    pub html: Option<String>,
    pub reply_to: Option<String>,
}

/// `webhook.send`: POST `payload` as JSON to `url`, signed per Standard Webhooks.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookParams {
    /// An absolute http(s) URL. Private, loopback and link-local destinations are refused
    /// unless the configuration allows them.
    pub url: String,
    /// Any JSON value; sent as the request body.
    pub payload: serde_json::Value,
    /// Extra request headers (the `webhook-*` signature headers are Relay's own).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `drive.extract`: a Drive or Docs URL in any of its forms, or a bare file id.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriveExtractParams {
    pub url: String,
}

/// The JSON Schema of `T`, as a plain JSON value.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Null)
}

/// Parses parameters, with the serde message (field and reason) as the validation error.
pub fn parse<T: DeserializeOwned>(params: &serde_json::Value) -> Result<T, ActionError> {
    T::deserialize(params).map_err(|e| ActionError::Validation(format!("params: {e}")))
}

/// Refuses CR and LF (header injection) and other control characters in a header value.
pub fn header_safe(field: &str, value: &str) -> Result<(), ActionError> {
    if value.chars().any(|c| c == '\r' || c == '\n') {
        return Err(ActionError::Validation(format!(
            "{field}: line breaks are not allowed in a header"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ActionError::Validation(format!(
            "{field}: control characters are not allowed"
        )));
    }
    Ok(())
}

/// A mailbox: `local@domain`, optionally with a display name (`Name <local@domain>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// Parses and checks one mailbox. Deliberately stricter than RFC 5322 (no comments, no
/// quoted local parts, no IP-literal domains): what people type, nothing that could smuggle
/// syntax into a header.
pub fn mailbox(field: &str, raw: &str) -> Result<Mailbox, ActionError> {
    header_safe(field, raw)?;
    let bad = |why: &str| ActionError::Validation(format!("{field}: {raw:?} {why}"));
    let raw = raw.trim();
    let (name, address) = match raw.rfind('<') {
        Some(open) => {
            let rest = &raw[open + 1..];
            let address = rest
                .strip_suffix('>')
                .ok_or_else(|| bad("has an unclosed '<'"))?;
            let name = raw[..open].trim().trim_matches('"').trim();
            if name.contains(['<', '>', '"', '\\']) {
                return Err(bad("has a display name with reserved characters"));
            }
            ((!name.is_empty()).then(|| name.to_owned()), address.trim())
        }
        None => (None, raw),
    };
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| bad("is not an email address"))?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !local_ok || !domain_ok {
        return Err(bad("is not a valid email address"));
    }
    Ok(Mailbox {
        name,
        address: address.to_owned(),
    })
}

/// A checked email: what both mail actions send.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

const MAX_RECIPIENTS: usize = 100;
const MAX_SUBJECT_CHARS: usize = 900;

impl Mail {
    pub fn parse(params: &serde_json::Value) -> Result<Self, ActionError> {
        let p: MailParams = parse(params)?;
        let list = |field: &str, v: Vec<String>| -> Result<Vec<Mailbox>, ActionError> {
            v.iter().map(|a| mailbox(field, a)).collect()
        };
        let to = list("to", p.to.into_vec())?;
        let cc = list("cc", p.cc)?;
        let bcc = list("bcc", p.bcc)?;
        if to.is_empty() {
            return Err(ActionError::Validation("to: at least one recipient".into()));
        }
        if to.len() + cc.len() + bcc.len() > MAX_RECIPIENTS {
            return Err(ActionError::Validation(format!(
                "at most {MAX_RECIPIENTS} recipients in to, cc and bcc together"
            )));
        }
        header_safe("subject", &p.subject)?;
        if p.subject.trim().is_empty() || p.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(ActionError::Validation(format!(
                "subject: 1 to {MAX_SUBJECT_CHARS} characters"
            )));
        }
        let reply_to = p
            .reply_to
            .as_deref()
            .map(|r| mailbox("reply_to", r))
            .transpose()?;
        Ok(Self {
            to,
            cc,
            bcc,
            reply_to,
            subject: p.subject,
            text: p.text,
            html: p.html,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_parse_and_refuse_injection() {
        let ok = [
            ("a@example.com", None, "a@example.com"),
            ("Ann <ann@example.com>", Some("Ann"), "ann@example.com"),
            (
                "\"Zoë Ä\" <z.e+tag@sub.example.org>",
                Some("Zoë Ä"),
                "z.e+tag@sub.example.org",
            ),
        ];
        for (raw, name, addr) in ok {
            let m = mailbox("to", raw).expect(raw);
            assert_eq!(m.name.as_deref(), name);
            assert_eq!(m.address, addr);
        }
        let bad = [
            "a@example.com\r\nBcc: victim@example.com",
            "a@example.com\nX: y",
            "no-at-sign",
            "a@localhost",
            "a@@example.com",
            "a b@example.com",
            "<a@example.com",
            "x <a@exa mple.com>",
            ".a@example.com",
            "a@-example.com",
        ];
        for raw in bad {
            assert!(mailbox("to", raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn schemas_come_from_the_structs_and_refuse_unknown_fields() {
        let schema = schema_of::<MailParams>();
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
        let required = schema["required"].as_array().expect("required");
        for f in ["to", "subject", "text"] {
            assert!(required.contains(&serde_json::json!(f)), "{f}");
        }
        let err = Mail::parse(&serde_json::json!({
            "to": "a@example.com", "subject": "s", "text": "t", "bcc_all": true
        }))
        .expect_err("unknown field");
        assert!(err.to_string().contains("bcc_all"), "{err}");
        let err = Mail::parse(&serde_json::json!({"to": "a@example.com", "text": "t"}))
            .expect_err("missing subject");
        assert!(err.to_string().contains("subject"), "{err}");
        let err = Mail::parse(&serde_json::json!({
            "to": "a@example.com", "subject": "hi\r\nBcc: x@example.com", "text": "t"
        }))
        .expect_err("injection");
        assert_eq!(err.reason(), "validation_error");
    }
}
