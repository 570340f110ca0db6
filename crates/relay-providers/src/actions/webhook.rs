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

/// Which special-purpose range (RFC 6890 and the IANA registries) an address is in, named by
/// its rule, or `None` for a public address. The name goes into error messages instead of the
/// address: a caller learns which rule refused, never an internal address a name resolved to.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(v4: Ipv4Addr) -> Option<&'static str> {
    const TABLE: [([u8; 4], u8, &str); 14] = [
        ([0, 0, 0, 0], 8, "the this-network range (RFC 791)"),
        ([10, 0, 0, 0], 8, "a private range (RFC 1918)"),
        (
            [100, 64, 0, 0],
            10,
            "the carrier-grade NAT range (RFC 6598)",
        ),
        ([127, 0, 0, 0], 8, "the loopback range (RFC 1122)"),
        (
            [169, 254, 0, 0],
            16,
            "the link-local range, cloud metadata included (RFC 3927)",
        ),
        ([172, 16, 0, 0], 12, "a private range (RFC 1918)"),
        (
            [192, 0, 0, 0],
            24,
            "the IETF protocol assignments range (RFC 6890)",
        ),
        ([192, 0, 2, 0], 24, "a documentation range (RFC 5737)"),
        (
            [192, 88, 99, 0],
            24,
            "the 6to4 relay anycast range (RFC 7526)",
        ),
        ([192, 168, 0, 0], 16, "a private range (RFC 1918)"),
        ([198, 18, 0, 0], 15, "the benchmarking range (RFC 2544)"),
        ([198, 51, 100, 0], 24, "a documentation range (RFC 5737)"),
        ([203, 0, 113, 0], 24, "a documentation range (RFC 5737)"),
        (
            [224, 0, 0, 0],
            3,
            "the multicast or reserved range (RFC 5771, RFC 1112)",
        ),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| v4_in(v4, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn blocked_v6(v6: Ipv6Addr) -> Option<&'static str> {
    // Forms that carry an IPv4 address. The mapped and compatible forms are refused outright
    // (a public destination has no reason to use them); 6to4 and the well-known NAT64 prefix
    // reach the IPv4 address they embed, so that address must pass the IPv4 rules.
    if v6.to_ipv4_mapped().is_some() {
        return Some("the IPv4-mapped range (RFC 4291)");
    }
    let seg = v6.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if in_v6(v6, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return blocked_v4(embedded(seg[6], seg[7])).map(
            |_| "the NAT64 range (RFC 6052) with an embedded IPv4 address that is not public",
        );
    }
    if in_v6(v6, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return blocked_v4(embedded(seg[1], seg[2]))
            .map(|_| "the 6to4 range (RFC 3056) with an embedded IPv4 address that is not public");
    }
    const TABLE: [(Ipv6Addr, u8, &str); 13] = [
        (
            Ipv6Addr::UNSPECIFIED,
            128,
            "the unspecified address (RFC 4291)",
        ),
        (Ipv6Addr::LOCALHOST, 128, "the loopback address (RFC 4291)"),
        (
            Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
            96,
            "the IPv4-compatible range (RFC 4291)",
        ),
        (
            Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
            48,
            "the local-use NAT64 range (RFC 8215)",
        ),
        (
            Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
            64,
            "the discard-only range (RFC 6666)",
        ),
        // Teredo's addresses embed an obfuscated IPv4 server and client; refused whole.
        (
            Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
            32,
            "the Teredo range (RFC 4380)",
        ),
        (
            Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
            23,
            "the IETF protocol assignments range (RFC 2928)",
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            "a documentation range (RFC 3849)",
        ),
        (
            Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
            20,
            "a documentation range (RFC 9637)",
        ),
        (
            Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
            16,
            "the SRv6 SID range (RFC 9602)",
        ),
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            "the unique-local range (RFC 4193)",
        ),
        (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
            "the link-local range (RFC 4291)",
        ),
        (
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
            "the multicast range (RFC 4291)",
        ),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v6(v6, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    Cidr {
        addr: IpAddr::V6(net),
        prefix,
    }
    .contains(IpAddr::V6(ip))
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
    ///
    /// A literal address is refused naming the rule it breaks. A name is refused the same way
    /// whether it does not resolve, resolves too slowly or resolves to a blocked range, and
    /// without the resolved address: otherwise previews would tell a caller which internal
    /// names exist (a DNS oracle).
    pub async fn check_destination(&self, url: &Url) -> Result<SocketAddr, ActionError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| ActionError::Validation("url: no port".into()))?;
        let host = url
            .host()
            .ok_or_else(|| ActionError::Validation("url: no host".into()))?;
        let literal = match host {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(name) => return self.check_name(name, port).await,
        };
        match blocked_reason(literal) {
            Some(rule) if !self.allowed(literal) => Err(ActionError::DestinationBlocked(format!(
                "the destination address is in {rule}; {ALLOWED}"
            ))),
            _ => Ok(SocketAddr::new(literal, port)),
        }
    }

    async fn check_name(&self, name: &str, port: u16) -> Result<SocketAddr, ActionError> {
        let refused = || {
            ActionError::DestinationBlocked(format!(
                "{name} does not resolve to a public address (a name that does not resolve and one that resolves to a private or special range are refused alike); {ALLOWED}"
            ))
        };
        let addrs: Vec<IpAddr> =
            tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host((name, port)))
                .await
                .map_err(|_| refused())?
                .map_err(|_| refused())?
                .map(|a| a.ip())
                .collect();
        let first = *addrs.first().ok_or_else(refused)?;
        // Every answer must be acceptable: a resolver that mixes a public and a private
        // address must not get to choose.
        if addrs
            .iter()
            .any(|ip| blocked_reason(*ip).is_some() && !self.allowed(*ip))
        {
            return Err(refused());
        }
        Ok(SocketAddr::new(first, port))
    }
}

const ALLOWED: &str =
    "only public addresses (or those in [actions.webhook] allow_hosts) are allowed";

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

    /// Each row: an address and the rule that must refuse it (a part of the rule's name), or
    /// `None` when it is public.
    #[test]
    fn every_special_range_is_blocked_by_its_rule_and_public_addresses_pass() {
        let table: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("10.1.2.3", Some("private range (RFC 1918)")),
            ("172.16.0.1", Some("RFC 1918")),
            ("172.31.255.255", Some("RFC 1918")),
            ("192.168.1.1", Some("RFC 1918")),
            ("169.254.169.254", Some("cloud metadata")),
            ("100.64.0.1", Some("carrier-grade NAT")),
            ("100.127.255.254", Some("carrier-grade NAT")),
            ("0.0.0.0", Some("this-network")),
            ("192.88.99.1", Some("6to4 relay")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("reserved")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fc00::1", Some("unique-local")),
            ("fd12:3456::1", Some("unique-local")),
            ("fe80::1", Some("link-local")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("IPv4-mapped")),
            ("::ffff:8.8.8.8", Some("IPv4-mapped")),
            ("::7f00:1", Some("IPv4-compatible")),
            ("::808:808", Some("IPv4-compatible")),
            // The well-known NAT64 prefix reaches the IPv4 address it embeds.
            ("64:ff9b::a00:1", Some("NAT64")),
            ("64:ff9b::7f00:1", Some("NAT64")),
            ("64:ff9b::a9fe:a9fe", Some("NAT64")),
            ("64:ff9b::808:808", None),
            // Local-use NAT64 leads anywhere the operator's translator does.
            ("64:ff9b:1::a00:1", Some("local-use NAT64 range (RFC 8215)")),
            ("64:ff9b:1:ffff::808:808", Some("local-use NAT64")),
            // 6to4 embeds the IPv4 address in bits 16..48.
            ("2002:7f00:1::1", Some("6to4")),
            ("2002:a00:1::", Some("6to4")),
            ("2002:a9fe:a9fe::1", Some("6to4")),
            ("2002:c0a8:101::1", Some("6to4")),
            ("2002:808:808::1", None),
            // Teredo hides an IPv4 server and client; refused whole.
            ("2001::1", Some("Teredo range (RFC 4380)")),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some("Teredo")),
            ("2001:2::1", Some("IETF protocol assignments")),
            ("2001:db8::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("100::1", Some("discard-only")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("2606:4700::1111", None),
            ("2a00:1450:4001::200e", None),
        ];
        for (ip, want) in table {
            let parsed: IpAddr = ip.parse().expect(ip);
            let got = blocked_reason(parsed);
            match want {
                Some(rule) => assert!(
                    got.is_some_and(|g| g.contains(rule)),
                    "{ip}: want a rule naming {rule:?}, got {got:?}"
                ),
                None => assert_eq!(got, None, "{ip} is public"),
            }
        }
    }

    fn refusal(r: Result<SocketAddr, ActionError>) -> String {
        match r {
            Err(ActionError::DestinationBlocked(m)) => m,
            other => panic!("expected destination_blocked, got {other:?}"),
        }
    }

    /// A literal address is refused naming the rule; a name is refused in the same words
    /// whether it resolves to a loopback address or not at all, and never with the address.
    #[tokio::test]
    async fn refusals_name_the_rule_and_do_not_tell_which_names_resolve() {
        let settings = WebhookSettings {
            connect_timeout: Duration::from_secs(3),
            ..WebhookSettings::default()
        };
        let check = |u: &str| {
            let url = Url::parse(u).expect(u);
            let settings = settings.clone();
            async move { settings.check_destination(&url).await }
        };
        let literal = refusal(check("http://10.1.2.3/hook").await);
        assert!(literal.contains("a private range (RFC 1918)"), "{literal}");
        assert!(!literal.contains("10.1.2.3"), "{literal}");
        let teredo = refusal(check("http://[2001::1]/hook").await);
        assert!(teredo.contains("Teredo"), "{teredo}");

        let resolves = refusal(check("http://localhost/hook").await);
        let unresolvable = refusal(check("http://no-such-host.invalid/hook").await);
        assert_eq!(
            resolves.replace("localhost", "NAME"),
            unresolvable.replace("no-such-host.invalid", "NAME"),
            "the same answer for a blocked and an unresolvable name"
        );
        for leaked in ["127.0.0.1", "::1", "loopback"] {
            assert!(!resolves.contains(leaked), "{resolves}");
        }

        let allowed = WebhookSettings {
            allow: vec![Cidr::parse("127.0.0.0/8").expect("cidr")],
            ..settings.clone()
        };
        let url = Url::parse("http://127.0.0.1:9/hook").expect("url");
        assert!(allowed.check_destination(&url).await.is_ok());
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
