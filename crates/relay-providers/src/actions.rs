//! The action executor: renders each action's request and performs it against the provider
//! API (Gmail, Drive, Microsoft Graph) or a webhook destination, through the breaker and
//! retry policy in [`resilience`]. Implements `relay_core::actions::ActionExecutor`.

pub mod drive;
pub mod mail;
pub mod params;
pub mod resilience;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use relay_core::actions::{
    ActionDescriptor, ActionError, ActionExecutor, Api, BreakerSnapshot, ExecutionRequest,
    ProviderFacts, ProviderFamily, SideEffect,
};
use relay_core::{Clock, ProviderName};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use url::Url;

use crate::{Catalog, ProviderKind};
use params::{DriveExtractParams, Mail, MailParams, WebhookParams, schema_of};
pub use resilience::RetryPolicy as ActionRetryPolicy;
use resilience::{BreakerKey, Breakers, Call, Effect, RetryPolicy};
pub use webhook::{Cidr, WebhookSettings};

/// Where Drive lives when the provider's API base is the Google preset's Gmail host.
const GOOGLE_APIS: &str = "https://www.googleapis.com";
const GMAIL_PRESET_BASE: &str = "https://gmail.googleapis.com";

/// The default of `[actions] drive_max_output_bytes`.
pub const DRIVE_MAX_OUTPUT_BYTES: usize = 2 * 1024 * 1024;

/// Executor settings (`[actions]` and `[actions.webhook]`).
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// Files larger than this are refused by `drive.extract`.
    pub drive_max_bytes: u64,
    /// The most text `drive.extract` returns; longer text is cut and flagged `truncated`.
    pub drive_max_output_bytes: usize,
    /// Overrides Drive's API base URL.
    pub drive_base_url: Option<String>,
    /// Per-request timeout for provider API calls.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker_failures: u32,
    pub breaker_open_for: Duration,
    pub webhook: WebhookSettings,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            drive_max_bytes: 10 * 1024 * 1024,
            drive_max_output_bytes: DRIVE_MAX_OUTPUT_BYTES,
            drive_base_url: None,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(60),
            webhook: WebhookSettings::default(),
        }
    }
}

pub struct ProviderActions {
    catalog: Arc<Catalog>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    settings: ExecutorSettings,
    descriptors: Vec<ActionDescriptor>,
    breakers: Breakers,
}

fn descriptors() -> Vec<ActionDescriptor> {
    const GMAIL_SEND: &str = "https://www.googleapis.com/auth/gmail.send";
    const DRIVE_READONLY: &str = "https://www.googleapis.com/auth/drive.readonly";
    vec![
        ActionDescriptor {
            name: "gmail.send",
            // The names callers of the services Relay replaces use.
            aliases: vec!["gmail.send_email", "google.gmail.send"],
            family: ProviderFamily::Google,
            api: Api::Gmail,
            description: "Send an email from the user's Gmail account.",
            side_effect: SideEffect::Send,
            scopes: vec![GMAIL_SEND],
            accepted_scopes: vec![
                GMAIL_SEND,
                "https://www.googleapis.com/auth/gmail.compose",
                "https://www.googleapis.com/auth/gmail.modify",
                "https://mail.google.com/",
            ],
            params_schema: schema_of::<MailParams>(),
        },
        ActionDescriptor {
            name: "outlook.send",
            aliases: vec![],
            family: ProviderFamily::Microsoft,
            api: Api::Outlook,
            description: "Send an email from the user's Microsoft 365 / Outlook account (Microsoft Graph sendMail).",
            side_effect: SideEffect::Send,
            scopes: vec!["Mail.Send"],
            accepted_scopes: vec!["Mail.Send", "Mail.Send.Shared"],
            params_schema: schema_of::<MailParams>(),
        },
        ActionDescriptor {
            name: "drive.extract",
            aliases: vec![],
            family: ProviderFamily::Google,
            api: Api::Drive,
            description: "Read a Google Drive file's text (Docs, Sheets as a table, Slides, text files, PDF) and metadata.",
            side_effect: SideEffect::Read,
            scopes: vec![DRIVE_READONLY],
            accepted_scopes: vec![
                DRIVE_READONLY,
                "https://www.googleapis.com/auth/drive",
                "https://www.googleapis.com/auth/drive.file",
            ],
            params_schema: schema_of::<DriveExtractParams>(),
        },
        ActionDescriptor {
            name: "webhook.send",
            aliases: vec![],
            family: ProviderFamily::None,
            api: Api::Webhook,
            description: "POST a JSON payload to a URL, signed per Standard Webhooks with the workspace's secret.",
            side_effect: SideEffect::Send,
            scopes: vec![],
            accepted_scopes: vec![],
            params_schema: schema_of::<WebhookParams>(),
        },
    ]
}

impl ProviderActions {
    pub fn new(
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
        settings: ExecutorSettings,
    ) -> Result<Self, reqwest::Error> {
        let http = crate::http_client(settings.request_timeout)?;
        let breakers = Breakers::new(
            clock.clone(),
            settings.breaker_failures,
            settings.breaker_open_for,
        );
        // Every configured provider's APIs, so that `/ready` and `circuit_breaker_state`
        // list them from the start, not after the first call.
        for info in catalog.infos() {
            let apis: &[Api] = match info.kind {
                ProviderKind::Google => &[Api::Gmail, Api::Drive],
                ProviderKind::Microsoft => &[Api::Outlook],
                _ => &[],
            };
            for api in apis {
                breakers.register(BreakerKey {
                    provider: info.name.as_str(),
                    api: *api,
                });
            }
        }
        Ok(Self {
            catalog,
            http,
            clock,
            settings,
            descriptors: descriptors(),
            breakers,
        })
    }

    fn api_base(&self, provider: &ProviderName, api: Api) -> Result<String, ActionError> {
        let info = self.catalog.info(provider).ok_or_else(|| {
            ActionError::Validation(format!("provider {provider} is not configured"))
        })?;
        let base = info.api_base_url.unwrap_or_default();
        let base = match api {
            Api::Drive => match &self.settings.drive_base_url {
                Some(b) => b.clone(),
                None if base.is_empty() || base.trim_end_matches('/') == GMAIL_PRESET_BASE => {
                    GOOGLE_APIS.to_owned()
                }
                None => base,
            },
            _ => base,
        };
        if base.is_empty() {
            return Err(ActionError::Validation(format!(
                "provider {provider} has no api_base_url"
            )));
        }
        Ok(base.trim_end_matches('/').to_owned())
    }

    fn call<'a>(
        &'a self,
        api: Api,
        provider: &'a ProviderName,
        effect: Effect,
        cap: usize,
    ) -> Call<'a> {
        Call {
            api,
            breaker: Some(&self.breakers),
            provider: provider.as_str(),
            effect,
            retry: &self.settings.retry,
            body_cap: cap,
        }
    }

    async fn gmail_send(
        &self,
        req: &ExecutionRequest<'_>,
        provider: &ProviderName,
        token: &str,
    ) -> Result<Value, ActionError> {
        let url = format!(
            "{}{}",
            self.api_base(provider, Api::Gmail)?,
            mail::GMAIL_SEND_PATH
        );
        let body = json!({ "raw": mail::gmail_raw(req.rendered)? });
        let answer = self
            .call(Api::Gmail, provider, Effect::Send, 64 * 1024)
            .run(|| self.http.post(&url).bearer_auth(token).json(&body))
            .await?;
        mail::gmail_result(&answer)
    }

    async fn outlook_send(
        &self,
        req: &ExecutionRequest<'_>,
        provider: &ProviderName,
        token: &str,
    ) -> Result<Value, ActionError> {
        let url = format!(
            "{}{}",
            self.api_base(provider, Api::Outlook)?,
            mail::GRAPH_SEND_PATH
        );
        let body = &req.rendered["body"];
        let answer = self
            .call(Api::Outlook, provider, Effect::Send, 64 * 1024)
            .run(|| self.http.post(&url).bearer_auth(token).json(body))
            .await?;
        mail::outlook_result(&answer)
    }

    async fn drive_extract(
        &self,
        req: &ExecutionRequest<'_>,
        provider: &ProviderName,
        token: &str,
    ) -> Result<Value, ActionError> {
        let id = req.rendered["file_id"]
            .as_str()
            .ok_or_else(|| ActionError::Validation("the stored preview has no file id".into()))?;
        let base = self.api_base(provider, Api::Drive)?;
        let files = format!("{base}/drive/v3/files/{id}");
        let answer = self
            .call(Api::Drive, provider, Effect::Read, 256 * 1024)
            .run(|| {
                self.http.get(&files).bearer_auth(token).query(&[
                    ("fields", drive::METADATA_FIELDS),
                    ("supportsAllDrives", "true"),
                ])
            })
            .await?;
        drive::check(&answer)?;
        let meta: Value =
            serde_json::from_slice(&answer.body).map_err(|_| ActionError::Upstream5xx {
                api: Api::Drive,
                status: answer.status,
                message: "the metadata answer was not JSON".into(),
            })?;
        let metadata = drive::metadata(&meta);
        let mime = meta["mimeType"].as_str().unwrap_or_default();
        let kind = drive::content_kind(mime).ok_or_else(|| {
            ActionError::UnsupportedFileType(format!(
                "files of type {mime} cannot be extracted as text (supported: Google Docs, Sheets, Slides, text files, PDF)"
            ))
        })?;
        let max = self.settings.drive_max_bytes;
        if let Some(size) = metadata["size"].as_u64()
            && size > max
        {
            return Err(ActionError::FileTooLarge(format!(
                "the file is {size} bytes; the limit is {max} bytes ([actions] drive_max_bytes)"
            )));
        }
        let cap = usize::try_from(max).unwrap_or(usize::MAX).saturating_add(1);
        let content = self.call(Api::Drive, provider, Effect::Read, cap);
        let answer = match kind {
            drive::Content::Export(target) => {
                let u = format!("{files}/export");
                content
                    .run(|| {
                        self.http
                            .get(&u)
                            .bearer_auth(token)
                            .query(&[("mimeType", target)])
                    })
                    .await?
            }
            drive::Content::ExportCsv => {
                let u = format!("{files}/export");
                content
                    .run(|| {
                        self.http
                            .get(&u)
                            .bearer_auth(token)
                            .query(&[("mimeType", "text/csv")])
                    })
                    .await?
            }
            drive::Content::Media | drive::Content::Pdf => {
                content
                    .run(|| {
                        self.http
                            .get(&files)
                            .bearer_auth(token)
                            .query(&[("alt", "media"), ("supportsAllDrives", "true")])
                    })
                    .await?
            }
        };
        drive::check(&answer)?;
        if answer.truncated || answer.body.len() as u64 > max {
            return Err(ActionError::FileTooLarge(format!(
                "the file's content exceeds the limit of {max} bytes ([actions] drive_max_bytes)"
            )));
        }
        // CPU-bound (PDF parsing, table layout): off the async workers.
        let max_output = self.settings.drive_max_output_bytes;
        let body = answer.body;
        let extracted =
            tokio::task::spawn_blocking(move || drive::to_text(kind, &body, max_output))
                .await
                .map_err(|_| {
                    ActionError::UnsupportedFileType(
                        "the file's text could not be extracted".into(),
                    )
                })??;
        Ok(json!({
            "text": extracted.text,
            "truncated": extracted.truncated,
            "metadata": metadata,
        }))
    }

    async fn webhook_send(&self, req: &ExecutionRequest<'_>) -> Result<Value, ActionError> {
        let s = &self.settings.webhook;
        let r = req.rendered;
        let url = Url::parse(r["url"].as_str().unwrap_or_default())
            .map_err(|_| ActionError::Validation("the stored preview has no URL".into()))?;
        let body = r["body"].as_str().unwrap_or_default().to_owned();
        // Checked again now: DNS may answer differently than at preview time.
        let addr = s.check_destination(&url).await?;
        let client = webhook::pinned_client(s, &url, addr)?;
        let id = req.preview_id.to_owned();
        let timestamp = self.clock.now().as_millis() / 1000;
        let signature = webhook::signature(req.webhook_secrets, &id, timestamp, &body)?;
        let extra: Vec<(String, String)> = r["headers"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let call = Call {
            api: Api::Webhook,
            breaker: None,
            provider: "webhook",
            effect: Effect::Send,
            retry: &self.settings.retry,
            body_cap: s.max_response_bytes,
        };
        let answer = call
            .run(|| {
                let mut b = client
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", &signature)
                    .body(body.clone());
                for (k, v) in &extra {
                    b = b.header(k.as_str(), v.as_str());
                }
                b
            })
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(webhook::failure(answer.status, &answer.body));
        }
        Ok(json!({
            "status": answer.status,
            "webhook_id": id,
            "response_excerpt": mail::excerpt(&answer.body),
        }))
    }
}

#[async_trait]
impl ActionExecutor for ProviderActions {
    fn descriptors(&self) -> &[ActionDescriptor] {
        &self.descriptors
    }

    fn provider_facts(&self, provider: &ProviderName) -> Option<ProviderFacts> {
        let info = self.catalog.info(provider)?;
        let family = match info.kind {
            ProviderKind::Google => ProviderFamily::Google,
            ProviderKind::Microsoft => ProviderFamily::Microsoft,
            // Other providers have no actions; `None` never matches an action that needs one.
            ProviderKind::Oidc | ProviderKind::Oauth2 => ProviderFamily::None,
        };
        Some(ProviderFacts {
            family,
            enabled: info.enabled,
        })
    }

    async fn render(&self, action: &str, params: &Value) -> Result<Value, ActionError> {
        match action {
            "gmail.send" => {
                mail::render_gmail(&Mail::parse(params)?, self.clock.now().as_millis() / 1000)
            }
            "outlook.send" => Ok(mail::render_outlook(&Mail::parse(params)?)),
            "drive.extract" => {
                let p: DriveExtractParams = params::parse(params)?;
                let id = drive::file_id(&p.url)?;
                Ok(drive::render(&id, self.settings.drive_max_bytes))
            }
            "webhook.send" => webhook::render(&self.settings.webhook, params).await,
            other => Err(ActionError::unknown_action(other, &self.descriptors)),
        }
    }

    async fn execute(&self, req: ExecutionRequest<'_>) -> Result<Value, ActionError> {
        if req.action == "webhook.send" {
            return self.webhook_send(&req).await;
        }
        let provider = req
            .provider
            .ok_or_else(|| ActionError::TokenMissing("this action needs a connection".into()))?;
        let token = req
            .access_token
            .ok_or_else(|| ActionError::TokenMissing("no access token".into()))?
            .expose_secret();
        match req.action {
            "gmail.send" => self.gmail_send(&req, provider, token).await,
            "outlook.send" => self.outlook_send(&req, provider, token).await,
            "drive.extract" => self.drive_extract(&req, provider, token).await,
            other => Err(ActionError::unknown_action(other, &self.descriptors)),
        }
    }

    fn breakers(&self) -> Vec<BreakerSnapshot> {
        self.breakers.snapshot()
    }
}
