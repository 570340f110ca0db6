//! Reading a provider's answer into memory with a size cap.
//!
//! `Response::bytes()` and `json()` buffer whatever the other side sends: a token, discovery,
//! JWKS or userinfo endpoint (misconfigured, compromised, or a URL an attacker got into the
//! configuration) answering gigabytes would take the process's memory with it. Bodies are
//! read chunk by chunk and refused as soon as they pass the cap (or at once when
//! `Content-Length` announces more).

/// Token endpoint answers: tokens plus an ID token are a few KB; Microsoft's reach ~10 KB.
pub const TOKEN_RESPONSE_MAX: usize = 256 * 1024;
/// Discovery documents, JWKS and userinfo answers are tens of KB at most.
pub const METADATA_MAX: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {cap} bytes")]
    TooLarge { cap: usize },
    #[error("reading the answer failed: {0}")]
    Transport(reqwest::Error),
}

/// The whole body, or [`BodyError::TooLarge`] once it passes `cap` bytes.
pub async fn read_limited(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge { cap });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if chunk.len() > cap - body.len() {
            return Err(BodyError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP server answering every request with `200`, the given headers and then
    /// `body_bytes` of `filler` (streamed, never held in memory). Returns its base URL.
    pub(crate) async fn huge_answer(headers: &'static str, filler: u8, body_bytes: u64) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = format!("HTTP/1.1 200 OK\r\nconnection: close\r\n{headers}\r\n");
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![filler; 64 * 1024];
                    let mut sent = 0u64;
                    while sent < body_bytes {
                        let n = (body_bytes - sent).min(chunk.len() as u64) as usize;
                        if sock.write_all(&chunk[..n]).await.is_err() {
                            return; // the client stopped reading: the point of the test
                        }
                        sent += n as u64;
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_body_past_the_cap_is_refused_whether_announced_or_not() {
        let http = crate::http_client(std::time::Duration::from_secs(30)).expect("client");
        // No Content-Length: read until the cap is passed, then refused.
        let url = huge_answer("content-type: application/json\r\n", b' ', 1 << 30).await;
        let resp = http.get(&url).send().await.expect("answer");
        let err = read_limited(resp, 1024 * 1024)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, BodyError::TooLarge { cap: 1_048_576 }),
            "{err}"
        );
        // Content-Length announcing 1 GiB: refused before reading.
        let url = huge_answer("content-length: 1073741824\r\n", b' ', 1 << 30).await;
        let resp = http.get(&url).send().await.expect("answer");
        let err = read_limited(resp, 1024).await.expect_err("too large");
        assert!(matches!(err, BodyError::TooLarge { cap: 1024 }), "{err}");
        // Within the cap: read whole.
        let url = huge_answer("content-length: 100\r\n", b'x', 100).await;
        let resp = http.get(&url).send().await.expect("answer");
        let body = read_limited(resp, 1024).await.expect("fits");
        assert_eq!(body.len(), 100);
    }
}
