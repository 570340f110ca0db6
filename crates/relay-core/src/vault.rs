//! The token vault's sealing format.
//!
//! Every token is sealed with AES-256-GCM under a data key derived (HKDF-SHA256) from a
//! master key, the 32-byte Fernet-format `OAUTH_ENCRYPTION_KEY` our users already hold.
//!
//! ```text
//! sealed = version (1 byte, 0x01) | key id (8 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//! ```
//!
//! * The key id names the master key (derived from it, revealing nothing about it), so a
//!   keyring holding old and new keys can open anything while rotation is under way.
//! * The associated data binds a ciphertext to its workspace, record and column, and covers
//!   the header, so a ciphertext copied to another row or column fails to open.
//! * Nonces are random 96-bit values; with one key sealing far fewer than 2^32 messages
//!   between rotations, collisions are negligible.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad as RingAad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::{Zeroize, Zeroizing};

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
const SALT: &[u8] = b"relay/vault/v1";
const AUDIT_SALT: &[u8] = b"relay/audit/v1";

/// Why a master key was refused. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the encryption key must be 32 bytes encoded as URL-safe base64 (a Fernet key)")]
    Malformed,
}

/// Why a sealed value did not open. Deliberately coarse: the caller learns that the value is
/// unusable, not which byte was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("sealed value is malformed or of an unknown version")]
    Malformed,
    #[error("sealed value was made with key {0}, which is not in the keyring")]
    UnknownKey(KeyId),
    #[error("sealed value does not belong here or was altered (authentication failed)")]
    Forged,
}

/// A master key. Zeroed on drop; `Debug` never prints it.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// Parses the Fernet key format: 32 bytes, URL-safe base64, padded or not.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        let mut decoded = URL_SAFE
            .decode(s)
            .or_else(|_| URL_SAFE_NO_PAD.decode(s))
            .map_err(|_| KeyError::Malformed)?;
        if decoded.len() != 32 {
            decoded.zeroize();
            return Err(KeyError::Malformed);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&decoded);
        decoded.zeroize();
        Ok(Self(key))
    }

    pub fn generate() -> Self {
        Self(Zeroizing::new(crate::random::bytes::<32>()))
    }

    /// The Fernet-compatible encoding (padded URL-safe base64), for writing a generated key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE.encode(self.0.as_ref()))
    }

    pub fn raw_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The audit chain's HMAC key, derived from this master key (HKDF-SHA256 with its own salt
    /// and label, so it reveals nothing about the master key or the vault's data keys).
    /// Derived once, when a database first needs it, and then stored sealed: see
    /// `relay_core::audit::open_or_create_key`.
    pub fn derive_audit_key(&self) -> Zeroizing<[u8; 32]> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, AUDIT_SALT).extract(self.raw_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        // HKDF expansion of 32 bytes cannot fail.
        #[allow(clippy::expect_used)]
        prk.expand(&[b"audit chain hmac-sha256 key"], OkmLen(32))
            .and_then(|okm| okm.fill(key.as_mut()))
            .expect("hkdf expand of 32 bytes");
        key
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Names a master key without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn parse_hex(s: &str) -> Option<Self> {
        if s.len() != KEY_ID_LEN * 2 {
            return None;
        }
        let mut out = [0u8; KEY_ID_LEN];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

/// What a sealed value is bound to. Changing any field makes opening fail.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub workspace: &'a str,
    /// The record's id (a connection id, or an OAuth state's hash).
    pub record: &'a str,
    /// The column or purpose (`access_token`, `refresh_token`, `pkce_verifier`).
    pub column: &'a str,
}

impl Binding<'_> {
    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(
            header.len() + self.workspace.len() + self.record.len() + self.column.len() + 16,
        );
        aad.extend_from_slice(b"relay/v1");
        for part in [self.workspace, self.record, self.column] {
            // Length prefixes make the encoding unambiguous ("ab"+"c" differs from "a"+"bc").
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad.extend_from_slice(header);
        aad
    }
}

struct DataKey {
    id: KeyId,
    key: LessSafeKey,
}

struct OkmLen(usize);
impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

impl DataKey {
    fn derive(master: &MasterKey) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(master.raw_bytes());
        let mut key_bytes = Zeroizing::new([0u8; 32]);
        let mut id = [0u8; KEY_ID_LEN];
        // HKDF expansion of at most 255 blocks cannot fail for these lengths.
        #[allow(clippy::expect_used)]
        {
            prk.expand(&[b"aes-256-gcm data key"], OkmLen(32))
                .and_then(|okm| okm.fill(key_bytes.as_mut()))
                .expect("hkdf expand of 32 bytes");
            prk.expand(&[b"key id"], OkmLen(KEY_ID_LEN))
                .and_then(|okm| okm.fill(&mut id))
                .expect("hkdf expand of 8 bytes");
        }
        #[allow(clippy::expect_used)]
        let unbound = UnboundKey::new(&AES_256_GCM, key_bytes.as_ref()).expect("32-byte AES key");
        Self {
            id: KeyId(id),
            key: LessSafeKey::new(unbound),
        }
    }
}

/// The keys in use: one primary that seals, and older keys that still open.
pub struct Keyring {
    primary: DataKey,
    previous: Vec<DataKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    pub fn new(primary: &MasterKey, previous: &[MasterKey]) -> Self {
        let primary = DataKey::derive(primary);
        let previous = previous
            .iter()
            .map(DataKey::derive)
            .filter(|k| k.id != primary.id)
            .collect();
        Self { primary, previous }
    }

    pub fn primary_id(&self) -> KeyId {
        self.primary.id
    }

    pub fn key_ids(&self) -> Vec<KeyId> {
        std::iter::once(self.primary.id)
            .chain(self.previous.iter().map(|k| k.id))
            .collect()
    }

    /// Seals `plaintext` under the primary key, bound to `binding`.
    pub fn seal(&self, plaintext: &[u8], binding: Binding<'_>) -> Vec<u8> {
        let nonce_bytes = crate::random::bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.primary.id.0);
        out.extend_from_slice(&nonce_bytes);
        let aad = binding.aad(&out[..1 + KEY_ID_LEN]);
        let mut body = plaintext.to_vec();
        // Sealing in place only fails when the input exceeds GCM's ~64 GiB limit.
        #[allow(clippy::expect_used)]
        self.primary
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                RingAad::from(aad),
                &mut body,
            )
            .expect("AES-GCM seal");
        out.extend_from_slice(&body);
        body.zeroize();
        out
    }

    /// Opens a sealed value with whichever key of the ring it names.
    pub fn open(
        &self,
        sealed: &[u8],
        binding: Binding<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key_id = Self::key_id_of(sealed)?;
        let key = std::iter::once(&self.primary)
            .chain(self.previous.iter())
            .find(|k| k.id == key_id)
            .ok_or(VaultError::UnknownKey(key_id))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let aad = binding.aad(&sealed[..1 + KEY_ID_LEN]);
        let mut body = Zeroizing::new(sealed[HEADER_LEN..].to_vec());
        let len = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                RingAad::from(aad),
                &mut body,
            )
            .map_err(|_| VaultError::Forged)?
            .len();
        body.truncate(len);
        Ok(body)
    }

    /// Opens a sealed value expected to hold UTF-8 text (every token is).
    pub fn open_string(
        &self,
        sealed: &[u8],
        binding: Binding<'_>,
    ) -> Result<Zeroizing<String>, VaultError> {
        let bytes = self.open(sealed, binding)?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|e| {
                let mut v = e.into_bytes();
                v.zeroize();
                VaultError::Malformed
            })
    }

    /// The key a sealed value names, read from its header without opening it.
    pub fn key_id_of(sealed: &[u8]) -> Result<KeyId, VaultError> {
        if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(VaultError::Malformed);
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&sealed[1..1 + KEY_ID_LEN]);
        Ok(KeyId(id))
    }

    /// Whether a sealed value should be re-sealed under the primary key.
    pub fn needs_reseal(&self, sealed: &[u8]) -> bool {
        Self::key_id_of(sealed)
            .map(|id| id != self.primary.id)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY_A: &str = "q2M1p6x0Hq0eYwZl2i7Z3Xq0a9J7m0k4n8b1v5c2x6Y=";

    fn bind<'a>(ws: &'a str, rec: &'a str, col: &'a str) -> Binding<'a> {
        Binding {
            workspace: ws,
            record: rec,
            column: col,
        }
    }

    fn ring_a() -> Keyring {
        Keyring::new(&MasterKey::from_base64(KEY_A).expect("key"), &[])
    }

    #[test]
    fn fernet_keys_parse_padded_or_not_and_bad_keys_are_refused() {
        assert!(MasterKey::from_base64(KEY_A).is_ok());
        assert!(MasterKey::from_base64(KEY_A.trim_end_matches('=')).is_ok());
        assert_eq!(
            MasterKey::from_base64("short").err(),
            Some(KeyError::Malformed)
        );
        assert_eq!(
            MasterKey::from_base64(&URL_SAFE.encode([0u8; 31])).err(),
            Some(KeyError::Malformed)
        );
        assert!(!format!("{:?}", MasterKey::from_base64(KEY_A)).contains(KEY_A));
    }

    /// A fixed vector: the key id and the format must stay stable across releases, or
    /// stored data becomes unreadable.
    #[test]
    fn key_id_is_stable() {
        let ring = ring_a();
        assert_eq!(ring.primary_id().to_hex(), KNOWN_KEY_ID);
        let key = MasterKey::from_base64(KEY_A).expect("key");
        assert_eq!(key.to_base64().as_str(), KEY_A);
    }

    const KNOWN_KEY_ID: &str = "a0ada0a3a1e1cd55";

    #[test]
    fn opens_a_value_sealed_by_an_earlier_release() {
        let ring = ring_a();
        let sealed = decode_hex(KNOWN_SEALED);
        let opened = ring
            .open(&sealed, bind("ws1", "conn1", "access_token"))
            .expect("opens");
        assert_eq!(opened.as_slice(), b"ya29.canary-token");
    }

    const KNOWN_SEALED: &str = "01a0ada0a3a1e1cd55449b625340eb6245a9d2bed1dd2b4cc215c65fab56fa4f0aad4fc280f579d194aa64c19e3e577b8a352def797d";

    fn decode_hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_open() {
        let ring = ring_a();
        let sealed = ring.seal(b"secret", bind("ws1", "conn1", "access_token"));
        assert_eq!(
            ring.open(&sealed, bind("ws1", "conn2", "access_token"))
                .err(),
            Some(VaultError::Forged)
        );
        assert_eq!(
            ring.open(&sealed, bind("ws1", "conn1", "refresh_token"))
                .err(),
            Some(VaultError::Forged)
        );
        assert_eq!(
            ring.open(&sealed, bind("ws2", "conn1", "access_token"))
                .err(),
            Some(VaultError::Forged)
        );
        // Ambiguous concatenations must not collide.
        let s2 = ring.seal(b"x", bind("ab", "c", "d"));
        assert!(ring.open(&s2, bind("a", "bc", "d")).is_err());
    }

    #[test]
    fn tampering_and_truncation_are_errors_not_panics() {
        let ring = ring_a();
        let sealed = ring.seal(b"secret", bind("w", "r", "c"));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(ring.open(&t, bind("w", "r", "c")).is_err(), "flip at {i}");
        }
        for len in 0..sealed.len() {
            assert!(ring.open(&sealed[..len], bind("w", "r", "c")).is_err());
        }
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_seals_with_the_new_key() {
        let old = MasterKey::from_base64(KEY_A).expect("key");
        let new = MasterKey::generate();
        let before = Keyring::new(&old, &[]);
        let sealed_old = before.seal(b"t", bind("w", "r", "c"));

        let after = Keyring::new(&new, &[MasterKey::from_base64(KEY_A).expect("key")]);
        assert!(after.needs_reseal(&sealed_old));
        assert_eq!(
            after
                .open(&sealed_old, bind("w", "r", "c"))
                .expect("opens")
                .as_slice(),
            b"t"
        );
        let sealed_new = after.seal(b"t", bind("w", "r", "c"));
        assert!(!after.needs_reseal(&sealed_new));
        assert!(matches!(
            before.open(&sealed_new, bind("w", "r", "c")),
            Err(VaultError::UnknownKey(_))
        ));
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..2048),
                                ws in "[a-z0-9-]{1,40}", rec in "[a-z0-9-]{1,40}") {
            let ring = ring_a();
            let sealed = ring.seal(&plain, bind(&ws, &rec, "access_token"));
            prop_assert_eq!(sealed.len(), HEADER_LEN + plain.len() + TAG_LEN);
            let opened = ring.open(&sealed, bind(&ws, &rec, "access_token")).expect("opens");
            prop_assert_eq!(opened.as_slice(), plain.as_slice());
        }

        #[test]
        fn arbitrary_bytes_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ring_a().open(&junk, bind("w", "r", "c"));
        }
    }
}
