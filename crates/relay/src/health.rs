//! `relay health`: probes a running instance's `/ready` and exits 0 (ready) or 1 (not ready,
//! not answering, or too slow). It exists for container health checks: the image carries no
//! curl or wget, and the binary already has an HTTP client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;

/// The URL probed when none is given: `/ready` on the configured listen port, over loopback
/// when the server listens on every address (`0.0.0.0:8080` in the container).
pub fn default_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/ready", SocketAddr::new(host, listen.port()))
}

/// Probes `url` (or this configuration's `/ready`) within `timeout`; `Err` says why it is not
/// ready, and the caller exits 1.
pub async fn probe(
    config: Option<&std::path::Path>,
    url: Option<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => default_url(Config::load(config)?.listen_addr()?),
    };
    let client = relay_providers::http_client(timeout).context("building the HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer within {timeout:?}"))?;
    let status = response.status();
    if status.is_success() {
        println!("{url}: {status}");
        Ok(())
    } else {
        // The readiness body names the failing check (database, redis, audit); it holds no secret.
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{url} answered {status}: {}", body.trim())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_probed_over_loopback() {
        let url = |s: &str| default_url(s.parse().expect("a socket address"));
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/ready");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/ready");
        assert_eq!(url("10.1.2.3:8080"), "http://10.1.2.3:8080/ready");
    }
}
