//! `gmail.send` and `outlook.send`: one checked [`Mail`], rendered two ways.
//!
//! Gmail takes an RFC 5322 message, base64url-encoded without padding, as `{"raw": ...}`.
//! The message is built with `mail-builder` (CRLF line ends, RFC 2047 encoded words for
//! non-ASCII headers, multipart/alternative when there is HTML). Header injection cannot
//! happen: every header value was refused earlier if it held a CR or LF.
//!
//! Microsoft Graph takes the documented `sendMail` JSON and answers 202 with no body.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use relay_core::actions::{ActionError, Api};
use serde_json::{Value, json};

use super::params::{Mail, Mailbox};
use super::resilience::Answer;

pub const GMAIL_SEND_PATH: &str = "/gmail/v1/users/me/messages/send";
pub const GRAPH_SEND_PATH: &str = "/v1.0/me/sendMail";

fn address(m: &Mailbox) -> Address<'static> {
    Address::new_address(m.name.clone(), m.address.clone())
}

fn address_list(list: &[Mailbox]) -> Address<'static> {
    if list.len() == 1 {
        address(&list[0])
    } else {
        Address::new_list(list.iter().map(address).collect())
    }
}

/// Renders the Gmail request: the message's headers (as they are in the message) and `raw`.
pub fn render_gmail(mail: &Mail, now_unix_secs: i64) -> Result<Value, ActionError> {
    let message_id = format!("{}@relay.invalid", uuid::Uuid::new_v4().simple());
    let mut b = MessageBuilder::new()
        .to(address_list(&mail.to))
        .subject(mail.subject.clone())
        .date(now_unix_secs)
        .message_id(message_id)
        .text_body(mail.text.clone());
    if !mail.cc.is_empty() {
        b = b.cc(address_list(&mail.cc));
    }
    if !mail.bcc.is_empty() {
        b = b.bcc(address_list(&mail.bcc));
    }
    if let Some(r) = &mail.reply_to {
        b = b.reply_to(address(r));
    }
    if let Some(html) = &mail.html {
        b = b.html_body(html.clone());
    }
    let bytes = b
        .write_to_vec()
        .map_err(|e| ActionError::Validation(format!("the message could not be built: {e}")))?;
    Ok(json!({
        "request": format!("POST {GMAIL_SEND_PATH}"),
        "headers": header_pairs(&bytes),
        "raw": URL_SAFE_NO_PAD.encode(&bytes),
    }))
}

/// The header section of a message, unfolded, as `[name, value]` pairs in order.
fn header_pairs(message: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = pairs.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            pairs.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    pairs
}

/// The `raw` value of a rendered Gmail request.
pub fn gmail_raw(rendered: &Value) -> Result<&str, ActionError> {
    rendered["raw"]
        .as_str()
        .ok_or_else(|| ActionError::Validation("the stored preview has no raw message".into()))
}

pub fn gmail_result(answer: &Answer) -> Result<Value, ActionError> {
    check(Api::Gmail, answer)?;
    let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let id = v["id"].as_str().ok_or_else(|| ActionError::Upstream5xx {
        api: Api::Gmail,
        status: answer.status,
        message: "the answer carried no message id".into(),
    })?;
    Ok(json!({
        "message_id": id,
        "thread_id": v["threadId"],
    }))
}

fn graph_recipients(list: &[Mailbox]) -> Value {
    Value::Array(
        list.iter()
            .map(|m| {
                let mut email = json!({ "address": m.address });
                if let Some(n) = &m.name {
                    email["name"] = json!(n);
                }
                json!({ "emailAddress": email })
            })
            .collect(),
    )
}

/// Renders the Graph `sendMail` request. Graph has one body per message: the HTML one when
/// given, the text one otherwise.
pub fn render_outlook(mail: &Mail) -> Value {
    let body = match &mail.html {
        Some(html) => json!({ "contentType": "HTML", "content": html }),
        None => json!({ "contentType": "Text", "content": mail.text }),
    };
    let mut message = json!({
        "subject": mail.subject,
        "body": body,
        "toRecipients": graph_recipients(&mail.to),
    });
    if !mail.cc.is_empty() {
        message["ccRecipients"] = graph_recipients(&mail.cc);
    }
    if !mail.bcc.is_empty() {
        message["bccRecipients"] = graph_recipients(&mail.bcc);
    }
    if let Some(r) = &mail.reply_to {
        message["replyTo"] = graph_recipients(std::slice::from_ref(r));
    }
    json!({
        "request": format!("POST {GRAPH_SEND_PATH}"),
        "body": { "message": message, "saveToSentItems": true },
    })
}

pub fn outlook_result(answer: &Answer) -> Result<Value, ActionError> {
    check(Api::Outlook, answer)?;
    let request_id = answer
        .headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(json!({ "accepted": true, "request_id": request_id }))
}

/// Classifies a non-success answer from Google or Graph.
pub fn check(api: Api, answer: &Answer) -> Result<(), ActionError> {
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let err = &v["error"];
    let message = err["message"]
        .as_str()
        .or_else(|| err.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| excerpt(&answer.body));
    let message: String = message.chars().take(200).collect();
    let google_reasons: Vec<&str> = err["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    let google_detail_reasons: Vec<&str> = err["details"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    let graph_code = err["code"].as_str().unwrap_or_default();
    match answer.status {
        401 => Err(ActionError::Unauthorized),
        403 if google_reasons
            .iter()
            .any(|r| matches!(*r, "insufficientPermissions" | "insufficientScopes"))
            || google_detail_reasons.contains(&"ACCESS_TOKEN_SCOPE_INSUFFICIENT")
            || graph_code == "ErrorAccessDenied" =>
        {
            Err(ActionError::ScopeMissing(format!(
                "{} refused: the grant lacks the needed scope; the user must reconnect granting it ({message})",
                api.as_str()
            )))
        }
        s if s < 500 => Err(ActionError::Upstream4xx {
            api,
            status: s,
            message,
        }),
        s => Err(ActionError::Upstream5xx {
            api,
            status: s,
            message,
        }),
    }
}

/// The first 200 characters of a body, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(v: Value) -> Mail {
        Mail::parse(&v).expect("valid mail")
    }

    #[test]
    fn gmail_raw_parses_back_with_a_mime_parser() {
        let m = mail(json!({
            "to": ["Zoë <zoe@example.com>", "b@example.com"],
            "cc": ["c@example.com"],
            "bcc": ["d@example.com"],
            "reply_to": "r@example.com",
            "subject": "Grüße aus Köln",
            "text": "Hallo,\nwie geht's?",
            "html": "<p>Hallo</p>"
        }));
        let rendered = render_gmail(&m, 1_750_000_000).expect("renders");
        let raw = URL_SAFE_NO_PAD
            .decode(gmail_raw(&rendered).expect("raw"))
            .expect("base64url");
        let text = String::from_utf8(raw.clone()).expect("ascii");
        assert!(
            !text.contains("Grüße"),
            "non-ASCII headers are encoded words"
        );
        assert!(
            text.split("\r\n").all(|l| !l.contains('\n')),
            "CRLF line ends"
        );
        assert!(!text.replace("\r\n", "").contains('\n'), "no bare LF");
        use mail_parser::MimeHeaders as _;
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("parses");
        assert_eq!(parsed.subject(), Some("Grüße aus Köln"));
        let to: Vec<_> = parsed
            .to()
            .expect("to")
            .iter()
            .map(|a| a.address().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(to, vec!["zoe@example.com", "b@example.com"]);
        assert_eq!(
            parsed.to().expect("to").first().and_then(|a| a.name()),
            Some("Zoë")
        );
        assert_eq!(
            parsed
                .bcc()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("d@example.com")
        );
        // Line ends in the body are CRLF on the wire too.
        assert_eq!(
            parsed.body_text(0).as_deref(),
            Some("Hallo,\r\nwie geht's?")
        );
        assert_eq!(parsed.body_html(0).as_deref(), Some("<p>Hallo</p>"));
        let ct = parsed.root_part().content_type().expect("content type");
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("alternative"));
        let headers = rendered["headers"].as_array().expect("headers");
        assert!(headers.iter().any(|h| h[0] == "Subject"));
    }

    #[test]
    fn outlook_gets_the_documented_graph_json() {
        let m = mail(json!({
            "to": "Ann <ann@example.com>", "subject": "s", "text": "plain",
            "cc": ["c@example.com"], "reply_to": "r@example.com"
        }));
        let r = render_outlook(&m);
        let msg = &r["body"]["message"];
        assert_eq!(
            msg["body"],
            json!({"contentType": "Text", "content": "plain"})
        );
        assert_eq!(
            msg["toRecipients"],
            json!([{"emailAddress": {"address": "ann@example.com", "name": "Ann"}}])
        );
        assert_eq!(
            msg["ccRecipients"][0]["emailAddress"]["address"],
            "c@example.com"
        );
        assert_eq!(
            msg["replyTo"][0]["emailAddress"]["address"],
            "r@example.com"
        );
        assert!(msg.get("bccRecipients").is_none());
        assert_eq!(r["body"]["saveToSentItems"], true);
    }

    #[test]
    fn provider_errors_are_classified() {
        let answer = |status: u16, body: Value| Answer {
            status,
            headers: Default::default(),
            body: serde_json::to_vec(&body).expect("json"),
            truncated: false,
        };
        let scope = answer(
            403,
            json!({"error": {"code": 403, "message": "Request had insufficient authentication scopes.",
            "errors": [{"reason": "insufficientPermissions"}], "status": "PERMISSION_DENIED"}}),
        );
        assert_eq!(
            check(Api::Gmail, &scope).expect_err("403").reason(),
            "scope_missing"
        );
        let bad = answer(
            400,
            json!({"error": {"code": 400, "message": "Invalid To header", "errors": [{"reason": "invalidArgument"}]}}),
        );
        let e = check(Api::Gmail, &bad).expect_err("400");
        assert_eq!(e.reason(), "gmail_4xx");
        assert!(e.to_string().contains("Invalid To header"));
        let e = check(
            Api::Outlook,
            &answer(
                500,
                json!({"error": {"code": "InternalServerError", "message": "boom"}}),
            ),
        )
        .expect_err("500");
        assert_eq!(e.reason(), "outlook_5xx");
        let e = check(
            Api::Outlook,
            &answer(
                403,
                json!({"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}),
            ),
        )
        .expect_err("403");
        assert_eq!(e.reason(), "scope_missing");
        assert!(matches!(
            check(Api::Gmail, &answer(401, json!({}))),
            Err(ActionError::Unauthorized)
        ));
    }
}
