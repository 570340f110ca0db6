//! `webhook.send`: POST a JSON payload to a URL the caller names, signed per the Standard
//! Webhooks specification, without letting that URL reach inside the network Relay runs in.
//!
//! The destination guard resolves the host once, refuses if any resolved address is
//! loopback, private, link-local (cloud metadata), CGNAT, unique-local, IPv4-mapped or
//! otherwise special unless `[actions.webhook] allow_hosts` lists it, and pins the connection
//! to the checked address (so a second DNS answer cannot swap it). Redirects are not followed,
//! the proxy environment is ignored, and the response is read up to a cap.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use relay_core::actions::{ActionError, Api};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::params::{WebhookParams, header_safe, parse};

/// A network in `allow_hosts`: an address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    Cidr {
        addr: IpAddr::V4(Ipv4Addr::from(net)),
        prefix,
    }
    .contains(IpAddr::V4(ip))
}

/// Why an address is not a public destination, or `None` when it is.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let table: [([u8; 4], u8, &str); 13] = [
                ([0, 0, 0, 0], 8, "this-network"),
                ([10, 0, 0, 0], 8, "private"),
                ([100, 64, 0, 0], 10, "carrier-grade NAT"),
                ([127, 0, 0, 0], 8, "loopback"),
                ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
                ([172, 16, 0, 0], 12, "private"),
                ([192, 0, 0, 0], 24, "IETF protocol assignments"),
                ([192, 0, 2, 0], 24, "documentation"),
                ([192, 168, 0, 0], 16, "private"),
                ([198, 18, 0, 0], 15, "benchmarking"),
                ([198, 51, 100, 0], 24, "documentation"),
                ([203, 0, 113, 0], 24, "documentation"),
                ([224, 0, 0, 0], 3, "multicast or reserved"),
            ];
            table
                .iter()
                .find(|(net, prefix, _)| v4_in(v4, *net, *prefix))
                .map(|(_, _, why)| *why)
        }
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() {
                return Some("IPv4-mapped");
            }
            let table: [(Ipv6Addr, u8, &str); 9] = [
                (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
                (Ipv6Addr::LOCALHOST, 128, "loopback"),
                (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "IPv4-compatible"),
                (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, "NAT64"),
                (
                    Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
                    64,
                    "discard-only",
                ),
                (
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
                    32,
                    "documentation",
                ),
                (
                    Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
                    7,
                    "unique-local",
                ),
                (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
                (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
            ];
            table
                .iter()
                .find(|(net, prefix, _)| {
                    Cidr {
                        addr: IpAddr::V6(*net),
                        prefix: *prefix,
                    }
                    .contains(IpAddr::V6(v6))
                })
                .map(|(_, _, why)| *why)
        }
    }
}

/// Webhook delivery settings (`[actions.webhook]`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub allow: Vec<Cidr>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            max_response_bytes: 64 * 1024,
        }
    }
}

impl WebhookSettings {
    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    /// Resolves `url`'s host once and returns the address to connect to, or why not.
    pub async fn check_destination(&self, url: &Url) -> Result<SocketAddr, ActionError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ActionError::Validation("url: no port".into()))?;
        let host = url
            .host()
            .ok_or_else(|| ActionError::Validation("url: no host".into()))?;
        let addrs: Vec<IpAddr> = match host {
            url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            url::Host::Domain(name) => {
                tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host((name, port)))
                    .await
                    .map_err(|_| {
                        ActionError::ConnectionFailed(format!("resolving {name} timed out"))
                    })?
                    .map_err(|_| {
                        ActionError::ConnectionFailed(format!("{name} could not be resolved"))
                    })?
                    .map(|a| a.ip())
                    .collect()
            }
        };
        let first = *addrs
            .first()
            .ok_or_else(|| ActionError::ConnectionFailed("the host has no address".into()))?;
        // Every answer must be acceptable: a resolver that mixes a public and a private
        // address must not get to choose.
        for ip in &addrs {
            if let Some(why) = blocked_reason(*ip)
                && !self.allowed(*ip)
            {
                return Err(ActionError::DestinationBlocked(format!(
                    "the destination resolves to {ip}, a {why} address; only public addresses (or those in [actions.webhook] allow_hosts) are allowed"
                )));
            }
        }
        Ok(SocketAddr::new(first, port))
    }
}

/// The reserved header names a caller may not set.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Validates the parameters and renders the request (the signature is added when sent: it
/// covers the send time).
pub async fn render(settings: &WebhookSettings, params: &Value) -> Result<Value, ActionError> {
    let p: WebhookParams = parse(params)?;
    let url = Url::parse(&p.url).map_err(|e| ActionError::Validation(format!("url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ActionError::Validation("url: must be http or https".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ActionError::Validation(
            "url: credentials in the URL are not allowed; use headers".into(),
        ));
    }
    if p.headers.len() > 32 {
        return Err(ActionError::Validation("headers: at most 32".into()));
    }
    let mut headers = BTreeMap::new();
    for (name, value) in &p.headers {
        let lower = name.to_ascii_lowercase();
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ActionError::Validation(format!(
                "headers: {name:?} is not a valid header name"
            )));
        }
        if RESERVED.contains(&lower.as_str()) {
            return Err(ActionError::Validation(format!(
                "headers: {name} is set by Relay"
            )));
        }
        header_safe("headers", value)?;
        headers.insert(lower, value.clone());
    }
    settings.check_destination(&url).await?;
    let body = serde_json::to_string(&p.payload)
        .map_err(|e| ActionError::Validation(format!("payload: {e}")))?;
    Ok(json!({
        "request": "POST",
        "url": url.as_str(),
        "headers": headers,
        "content_type": "application/json",
        "body": body,
        "signature": {
            "scheme": "Standard Webhooks v1 (HMAC-SHA256)",
            "headers": ["webhook-id", "webhook-timestamp", "webhook-signature"],
            "signed_at": "execute",
        },
    }))
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for each secret, space-separated.
pub fn signature(
    secrets: &[SecretString],
    id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, ActionError> {
    let content = format!("{id}.{timestamp}.{body}");
    // A stored secret that does not parse is Relay's fault, not the caller's.
    let malformed = || {
        ActionError::Service(relay_core::ServiceError::Store(
            relay_core::StoreError::Other("a stored webhook secret is malformed".into()),
        ))
    };
    let mut out = Vec::new();
    for s in secrets {
        let encoded = s
            .expose_secret()
            .strip_prefix("whsec_")
            .ok_or_else(malformed)?;
        let key_bytes = STANDARD.decode(encoded).map_err(|_| malformed())?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
        let tag = ring::hmac::sign(&key, content.as_bytes());
        out.push(format!("v1,{}", STANDARD.encode(tag.as_ref())));
    }
    Ok(out.join(" "))
}

/// A client for one delivery, connecting only to the checked address.
pub fn pinned_client(
    settings: &WebhookSettings,
    url: &Url,
    addr: SocketAddr,
) -> Result<reqwest::Client, ActionError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.timeout)
        .user_agent(concat!("relay-webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(url::Host::Domain(name)) = url.host() {
        b = b.resolve(name, addr);
    }
    b.build()
        .map_err(|e| ActionError::ConnectionFailed(format!("building the HTTP client: {e}")))
}

pub fn failure(status: u16, body: &[u8]) -> ActionError {
    let message = format!(
        "the destination answered {status}: {}",
        super::mail::excerpt(body)
    );
    if status >= 500 {
        ActionError::Upstream5xx {
            api: Api::Webhook,
            status,
            message,
        }
    } else {
        ActionError::Upstream4xx {
            api: Api::Webhook,
            status,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_range_is_blocked_and_public_addresses_pass() {
        let blocked = [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "ff02::1",
            "64:ff9b::a00:1",
        ];
        for ip in blocked {
            let ip: IpAddr = ip.parse().expect(ip);
            assert!(blocked_reason(ip).is_some(), "{ip} must be blocked");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            let ip: IpAddr = ip.parse().expect(ip);
            assert_eq!(blocked_reason(ip), None, "{ip} is public");
        }
    }

    #[test]
    fn allow_list_entries_are_addresses_or_cidrs() {
        let net = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(net.contains("10.200.3.4".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        let one = Cidr::parse("127.0.0.1").expect("ip");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        assert!(
            Cidr::parse("::1/128")
                .expect("v6")
                .contains("::1".parse().expect("ip"))
        );
        for bad in ["localhost", "10.0.0.0/33", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = signature(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .expect("signs");
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
