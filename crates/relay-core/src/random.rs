//! Randomness from the operating system's CSPRNG, for every secret Relay mints (OAuth state,
//! PKCE verifiers, API keys, nonces) and for retry jitter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

/// Fills `N` random bytes. The OS generator failing is unrecoverable for a security product,
/// so it aborts loudly instead of degrading.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random generator failed");
    buf
}

/// 32 random bytes (256 bits) as URL-safe base64 without padding: 43 characters.
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<32>())
}

/// A uniform fraction in [0, 1), for jitter.
pub fn unit_fraction() -> f64 {
    let b = bytes::<8>();
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// SHA-256 as lowercase hex: how API keys and OAuth states are looked up without storing them.
pub fn sha256_hex(data: &[u8]) -> String {
    // Runs on every authenticated request (the API-key lookup): no allocation per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, token());
        let f = unit_fraction();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn sha256_hex_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
