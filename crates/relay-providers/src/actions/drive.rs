//! `drive.extract`: a file's text and metadata through the Drive API v3.
//!
//! The file id comes from any of the URL forms people paste (`/file/d/ID/view`,
//! `open?id=ID`, `uc?id=ID`, `/document/d/ID/edit`, `/spreadsheets/d/ID/edit`,
//! `/presentation/d/ID/edit`) or a bare id. Google formats are exported (Docs and Slides as
//! plain text, Sheets as CSV, rendered here as a text table); other files are downloaded with
//! `alt=media`: text as it is, PDF through text extraction. Everything else is refused as
//! unsupported, and files over the configured size as too large, before their content is read.
//!
//! The text is bounded too (`[actions] drive_max_output_bytes`): a small file can render to far
//! more text than it has bytes (a 26 KB sheet with one long cell padded the whole column into
//! 40 MB of table; a 122 KB PDF held a stream inflating to 36 MB). Text is written into a
//! [`Budget`] that stops at the limit and flags the result as truncated, table cells are padded
//! as they are written, and PDF streams are decompressed with a limit ([`PDF_STREAM_MAX`]).

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

/// The most a single PDF stream (an object stream at load, or one page's content) may
/// decompress to. Real pages are tens of KB; parsing the content costs several times its size
/// in memory, so this bounds the work per page.
pub const PDF_STREAM_MAX: usize = 4 * 1024 * 1024;

/// The text of a file, at most the budget's bytes long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub text: String,
    /// The text was cut at the budget.
    pub truncated: bool,
}

/// A string that refuses to grow past `max` bytes: what does not fit is cut (at a character
/// boundary) and the budget is marked exhausted.
struct Budget {
    out: String,
    max: usize,
    exhausted: bool,
}

impl Budget {
    fn new(max: usize) -> Self {
        Self {
            out: String::new(),
            max,
            exhausted: false,
        }
    }

    /// Appends as much of `s` as fits; false once the budget is exhausted.
    fn push(&mut self, s: &str) -> bool {
        if self.exhausted {
            return false;
        }
        let room = self.max - self.out.len();
        if s.len() <= room {
            self.out.push_str(s);
            return true;
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.push_str(&s[..cut]);
        self.exhausted = true;
        false
    }

    /// Appends `n` copies of `c` (padding) without building them first.
    fn repeat(&mut self, c: char, n: usize) -> bool {
        let fits = n.min((self.max - self.out.len()) / c.len_utf8());
        self.out.extend(std::iter::repeat_n(c, fits));
        if fits < n {
            self.exhausted = true;
        }
        !self.exhausted
    }

    fn finish(self) -> Extracted {
        Extracted {
            text: self.out,
            truncated: self.exhausted,
        }
    }
}

/// Turns downloaded bytes into text of at most `max_output` bytes.
pub fn to_text(kind: Content, bytes: &[u8], max_output: usize) -> Result<Extracted, ActionError> {
    let mut budget = Budget::new(max_output);
    match kind {
        Content::Export(_) | Content::Media => {
            budget.push(String::from_utf8_lossy(bytes).trim_start_matches('\u{feff}'));
        }
        Content::ExportCsv => csv_table(&String::from_utf8_lossy(bytes), &mut budget),
        Content::Pdf => pdf_text(bytes, &mut budget)?,
    }
    Ok(budget.finish())
}

fn pdf_text(bytes: &[u8], budget: &mut Budget) -> Result<(), ActionError> {
    let too_large = || {
        ActionError::FileTooLarge(format!(
            "a stream of the PDF decompresses to more than {PDF_STREAM_MAX} bytes"
        ))
    };
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(PDF_STREAM_MAX),
        ..lopdf::LoadOptions::default()
    };
    let doc = lopdf::Document::load_mem_with_options(bytes, options).map_err(|e| match e {
        lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. }) => too_large(),
        e => ActionError::UnsupportedFileType(format!("the PDF could not be read: {e}")),
    })?;
    // Page by page, so that extraction stops once the text budget is spent.
    for page in doc.get_pages().keys() {
        let text = doc
            .extract_text_with_limit(&[*page], PDF_STREAM_MAX)
            .map_err(|e| match e {
                lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded {
                    ..
                }) => too_large(),
                e => ActionError::UnsupportedFileType(format!(
                    "no text could be extracted from the PDF: {e}"
                )),
            })?;
        if !budget.push(&text) {
            break;
        }
    }
    Ok(())
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

/// Renders CSV as an aligned text table, the first row as the header, into `budget`: cells
/// are padded as they are written, so a long cell widening its column costs at most the
/// budget, never rows × width.
fn csv_table(text: &str, budget: &mut Budget) {
    let rows = parse_csv(text);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let cell = |r: &Vec<String>, i: usize| {
        r.get(i)
            .map(|s| s.replace(['\n', '\r'], " "))
            .unwrap_or_default()
    };
    let mut widths = vec![0usize; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            // Line breaks become one space each: the count is the same.
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for (n, r) in rows.iter().enumerate() {
        let line_start = budget.out.len();
        for (i, width) in widths.iter().enumerate() {
            if i > 0 && !budget.push(" | ") {
                return;
            }
            let c = cell(r, i);
            let pad = width.saturating_sub(c.chars().count());
            if !budget.push(&c) || !budget.repeat(' ', pad) {
                return;
            }
        }
        // Trailing padding is not kept (as `trim_end` on the line).
        let kept = budget.out[line_start..].trim_end().len();
        budget.out.truncate(line_start + kept);
        if !budget.push("\n") {
            return;
        }
        if n == 0 && rows.len() > 1 {
            for (i, w) in widths.iter().enumerate() {
                if (i > 0 && !budget.push("-+-")) || !budget.repeat('-', (*w).max(1)) {
                    return;
                }
            }
            if !budget.push("\n") {
                return;
            }
        }
    }
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

    fn table(csv: &str, max: usize) -> Extracted {
        to_text(Content::ExportCsv, csv.as_bytes(), max).expect("csv")
    }

    #[test]
    fn csv_becomes_an_aligned_table() {
        let t = table(
            "name,qty\r\n\"Widget, large\",3\r\n\"Say \"\"hi\"\"\",10\r\n",
            1 << 20,
        );
        assert_eq!(
            t.text,
            "name          | qty\n--------------+----\nWidget, large | 3\nSay \"hi\"      | 10\n"
        );
        assert!(!t.truncated);
        let t = table("a,b,c\nx\n", 1 << 20);
        assert_eq!(t.text, "a | b | c\n--+---+--\nx |   |\n");
    }

    /// The hostile sheet: one 20,000-character cell and 20,000 short rows (~100 KB of CSV)
    /// would pad to 400 MB of table; the output stops at the budget and says so.
    #[test]
    fn a_long_cell_over_many_rows_is_padded_within_the_budget() {
        let mut csv = format!("{},x\n", "w".repeat(20_000));
        for i in 0..20_000 {
            csv.push_str(&format!("{},y\n", i % 10));
        }
        let max = 2 * 1024 * 1024;
        let t = table(&csv, max);
        assert!(t.truncated);
        assert!(t.text.len() <= max, "{} bytes", t.text.len());
        assert!(t.text.starts_with("wwww"));
        // A budget large enough for the whole table is not flagged.
        let small = "h\n1\n22\n";
        let t = table(small, 1024);
        assert_eq!((t.text.as_str(), t.truncated), ("h\n--\n1\n22\n", false));
        // Text files are cut at a character boundary.
        let t = to_text(Content::Media, "é".repeat(10).as_bytes(), 5).expect("text");
        assert_eq!((t.text.as_str(), t.truncated), ("éé", true));
    }

    /// A one-page PDF whose content stream is `repeat` copies of `op`, Flate-compressed.
    fn pdf_with_content(op: &str, repeat: usize, pages: usize) -> Vec<u8> {
        use lopdf::{Document, Object, Stream, dictionary};
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier",
        });
        let resources_id = doc.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
        });
        let mut kids: Vec<Object> = Vec::new();
        for _ in 0..pages {
            let content = format!("BT /F1 12 Tf {} ET", op.repeat(repeat));
            let mut stream = Stream::new(dictionary! {}, content.into_bytes());
            stream.compress().expect("compress");
            let content_id = doc.add_object(stream);
            let page_id = doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            });
            kids.push(page_id.into());
        }
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids.clone(), "Count" => kids.len() as i64,
                "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog_id);
        let mut out = Vec::new();
        doc.save_to(&mut out).expect("save");
        out
    }

    /// The hostile PDF: a small file whose one content stream inflates past the stream limit
    /// is refused with a clear error instead of being decompressed and parsed whole.
    #[test]
    fn a_pdf_stream_that_inflates_past_the_limit_is_refused() {
        let pdf = pdf_with_content("(xxxxxxxxxxxxxxxx) Tj ", PDF_STREAM_MAX / 10, 1);
        assert!(pdf.len() < 200 * 1024, "{} bytes", pdf.len());
        let err = to_text(Content::Pdf, &pdf, 1 << 20).expect_err("refused");
        assert_eq!(err.reason(), "file_too_large", "{err}");
        assert!(
            err.to_string().contains("decompresses to more than"),
            "{err}"
        );
    }

    /// Many pages of text, each within the stream limit, stop at the output budget.
    #[test]
    fn pdf_text_stops_at_the_output_budget() {
        let pdf = pdf_with_content("(hello world) Tj ", 2_000, 20);
        let max = 64 * 1024;
        let t = to_text(Content::Pdf, &pdf, max).expect("text");
        assert!(t.truncated);
        assert!(t.text.len() <= max);
        assert!(t.text.contains("hello world"));
        let whole = to_text(Content::Pdf, &pdf_with_content("(hi) Tj ", 3, 1), max).expect("text");
        assert!(!whole.truncated);
        assert!(whole.text.contains("hi"), "{:?}", whole.text);
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
