//! `drive.extract`: a file's text and metadata through the Drive API v3.
//!
//! The file id comes from any of the URL forms people paste (`/file/d/ID/view`,
//! `open?id=ID`, `uc?id=ID`, `/document/d/ID/edit`, `/spreadsheets/d/ID/edit`,
//! `/presentation/d/ID/edit`) or a bare id. Google formats are exported (Docs and Slides as
//! plain text, Sheets as CSV, rendered here as a text table); other files are downloaded with
//! `alt=media`: text as it is, PDF through text extraction. Everything else is refused as
//! unsupported, and files over the configured size as too large, before their content is read.

use relay_core::actions::{ActionError, Api};
use serde_json::{Value, json};
use url::Url;

use super::mail::excerpt;
use super::resilience::Answer;

pub const METADATA_FIELDS: &str = "id,name,mimeType,size,createdTime,modifiedTime,webViewLink";

/// Extracts a Drive file id from a URL or a bare id.
pub fn file_id(input: &str) -> Result<String, ActionError> {
    let input = input.trim();
    let bad = || {
        ActionError::Validation(format!(
            "url: {:?} is not a Google Drive or Docs link, nor a file id",
            input.chars().take(100).collect::<String>()
        ))
    };
    let valid_id = |id: &str| {
        id.len() >= 10
            && id.len() <= 200
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if valid_id(input) {
        return Ok(input.to_owned());
    }
    let url = Url::parse(input).map_err(|_| bad())?;
    if !matches!(url.scheme(), "https" | "http")
        || !matches!(url.host_str(), Some("drive.google.com" | "docs.google.com"))
    {
        return Err(bad());
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    // `/file/d/ID/...`, `/document/d/ID/...`, also with a `/u/0/` account prefix.
    if let Some(pos) = segments.iter().position(|s| *s == "d")
        && matches!(
            segments.first().copied().unwrap_or_default(),
            "file" | "document" | "spreadsheets" | "presentation" | "drawings" | "forms"
        )
        && let Some(id) = segments.get(pos + 1)
        && valid_id(id)
    {
        return Ok((*id).to_owned());
    }
    // `open?id=ID`, `uc?id=ID&export=download`.
    if let Some((_, id)) = url.query_pairs().find(|(k, _)| k == "id")
        && valid_id(&id)
    {
        return Ok(id.into_owned());
    }
    Err(bad())
}

pub fn render(id: &str, max_bytes: u64) -> Value {
    json!({
        "file_id": id,
        "requests": [
            format!("GET /drive/v3/files/{id}?fields={METADATA_FIELDS}&supportsAllDrives=true"),
            format!("GET /drive/v3/files/{id}/export?mimeType=… (Google Docs, Sheets, Slides) or GET /drive/v3/files/{id}?alt=media (other files)"),
        ],
        "max_bytes": max_bytes,
    })
}

/// How a file's content is fetched and turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Export(&'static str),
    ExportCsv,
    Media,
    Pdf,
}

pub fn content_kind(mime: &str) -> Option<Content> {
    match mime {
        "application/vnd.google-apps.document" | "application/vnd.google-apps.presentation" => {
            Some(Content::Export("text/plain"))
        }
        "application/vnd.google-apps.spreadsheet" => Some(Content::ExportCsv),
        "application/pdf" => Some(Content::Pdf),
        m if m.starts_with("text/") => Some(Content::Media),
        "application/json"
        | "application/xml"
        | "application/javascript"
        | "application/x-yaml"
        | "application/yaml" => Some(Content::Media),
        _ => None,
    }
}

/// Classifies Drive's error answers: missing scope (reconnect) vs. no access to the file.
pub fn check(answer: &Answer) -> Result<(), ActionError> {
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let err = &v["error"];
    let reasons: Vec<&str> = err["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    let details: Vec<&str> = err["details"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["reason"].as_str()).collect())
        .unwrap_or_default();
    let message: String = err["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| excerpt(&answer.body))
        .chars()
        .take(200)
        .collect();
    match answer.status {
        401 => Err(ActionError::Unauthorized),
        403 if reasons
            .iter()
            .any(|r| matches!(*r, "insufficientPermissions" | "insufficientScopes"))
            || details.contains(&"ACCESS_TOKEN_SCOPE_INSUFFICIENT") =>
        {
            Err(ActionError::ScopeMissing(
                "the connection lacks the Drive scope: the user must reconnect granting read access to Drive".into(),
            ))
        }
        403 if reasons.contains(&"exportSizeLimitExceeded") => Err(ActionError::FileTooLarge(
            "the file is too large for Drive to export".into(),
        )),
        403 | 404 => Err(ActionError::Upstream4xx {
            api: Api::Drive,
            status: answer.status,
            message: format!(
                "the user has no access to this file, or it does not exist (Drive: {message})"
            ),
        }),
        s if s < 500 => Err(ActionError::Upstream4xx {
            api: Api::Drive,
            status: s,
            message,
        }),
        s => Err(ActionError::Upstream5xx {
            api: Api::Drive,
            status: s,
            message,
        }),
    }
}

/// The metadata Relay returns, from Drive's `files.get` answer.
pub fn metadata(v: &Value) -> Value {
    json!({
        "id": v["id"],
        "name": v["name"],
        "mime_type": v["mimeType"],
        "size": v["size"].as_str().and_then(|s| s.parse::<u64>().ok()),
        "created_time": v["createdTime"],
        "modified_time": v["modifiedTime"],
        "web_view_link": v["webViewLink"],
    })
}

/// Turns downloaded bytes into text.
pub fn to_text(kind: Content, bytes: &[u8]) -> Result<String, ActionError> {
    match kind {
        Content::Export(_) | Content::Media => Ok(String::from_utf8_lossy(bytes)
            .trim_start_matches('\u{feff}')
            .to_owned()),
        Content::ExportCsv => Ok(csv_table(&String::from_utf8_lossy(bytes))),
        Content::Pdf => pdf_text(bytes),
    }
}

fn pdf_text(bytes: &[u8]) -> Result<String, ActionError> {
    let doc = lopdf::Document::load_mem(bytes)
        .map_err(|e| ActionError::UnsupportedFileType(format!("the PDF could not be read: {e}")))?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    doc.extract_text(&pages).map_err(|e| {
        ActionError::UnsupportedFileType(format!("no text could be extracted from the PDF: {e}"))
    })
}

/// Parses CSV (RFC 4180: quoted fields, doubled quotes, CRLF or LF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Renders CSV as an aligned text table, the first row as the header.
pub fn csv_table(text: &str) -> String {
    let rows = parse_csv(text);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let cell = |r: &Vec<String>, i: usize| {
        r.get(i)
            .map(|s| s.replace(['\n', '\r'], " "))
            .unwrap_or_default()
    };
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| cell(r, i).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let line: Vec<String> = (0..cols)
            .map(|i| {
                let c = cell(r, i);
                let pad = widths[i].saturating_sub(c.chars().count());
                format!("{c}{}", " ".repeat(pad))
            })
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if n == 0 && rows.len() > 1 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat((*w).max(1))).collect();
            out.push_str(&rule.join("-+-"));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_url_form_gives_the_id() {
        let id = "1AbC_dEf-GhIjKlMnOpQrStUv";
        let forms = [
            format!("https://drive.google.com/file/d/{id}/view?usp=sharing"),
            format!("https://drive.google.com/file/d/{id}"),
            format!("https://drive.google.com/open?id={id}"),
            format!("https://drive.google.com/uc?id={id}&export=download"),
            format!("https://docs.google.com/document/d/{id}/edit"),
            format!("https://docs.google.com/spreadsheets/d/{id}/edit#gid=0"),
            format!("https://docs.google.com/presentation/d/{id}/edit"),
            format!("https://docs.google.com/document/u/0/d/{id}/edit"),
            id.to_owned(),
        ];
        for f in forms {
            assert_eq!(file_id(&f).expect(&f), id, "{f}");
        }
        for bad in [
            "https://evil.example/file/d/1AbC_dEf-GhIjKlMnOpQrStUv/view",
            "https://drive.google.com/drive/folders",
            "short",
            "ftp://drive.google.com/file/d/1AbC_dEf-GhIjKlMnOpQrStUv",
            "has spaces in it here",
        ] {
            assert_eq!(file_id(bad).expect_err(bad).reason(), "validation_error");
        }
    }

    #[test]
    fn csv_becomes_an_aligned_table() {
        let t = csv_table("name,qty\r\n\"Widget, large\",3\r\n\"Say \"\"hi\"\"\",10\r\n");
        assert_eq!(
            t,
            "name          | qty\n--------------+----\nWidget, large | 3\nSay \"hi\"      | 10\n"
        );
    }

    #[test]
    fn types_map_to_export_media_or_unsupported() {
        assert_eq!(
            content_kind("application/vnd.google-apps.document"),
            Some(Content::Export("text/plain"))
        );
        assert_eq!(
            content_kind("application/vnd.google-apps.spreadsheet"),
            Some(Content::ExportCsv)
        );
        assert_eq!(content_kind("text/markdown"), Some(Content::Media));
        assert_eq!(content_kind("application/pdf"), Some(Content::Pdf));
        assert_eq!(content_kind("image/png"), None);
        assert_eq!(content_kind("application/vnd.google-apps.folder"), None);
    }
}
