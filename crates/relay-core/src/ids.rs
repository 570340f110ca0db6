//! Typed identifiers and scope sets. Values are parsed once at the edge (HTTP, CLI,
//! configuration) and carried as these types, so the rest of the code never re-checks them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused; the message is safe to show to API callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidValue {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A workspace: the isolation boundary. API keys belong to exactly one.
    WorkspaceId
);
string_id!(
    /// A connection's id: a UUID (v7, so ids sort by creation time).
    ConnectionId
);
string_id!(
    /// The name of a configured provider, as it appears in URLs (`/oauth/{provider}/...`).
    ProviderName
);
string_id!(
    /// The caller's own identifier for its end user. Opaque to Relay.
    ActorId
);
string_id!(
    /// What kind of actor owns a connection (`user` unless the caller says otherwise).
    ActorType
);

impl WorkspaceId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Trusted construction from storage.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl ConnectionId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Parses a caller-supplied id. Anything but a UUID is refused, which also keeps
    /// arbitrary strings out of queries and logs.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        uuid::Uuid::parse_str(s)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| InvalidValue::new("connection_id", "must be a UUID"))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl ProviderName {
    /// Lowercase letters, digits, `-` and `_`, 1 to 64 characters: safe in URLs, keys and labels.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(
                "provider",
                "must be 1 to 64 characters of a-z, 0-9, '-' or '_'",
            ))
        }
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

fn printable(field: &'static str, s: &str, max: usize) -> Result<String, InvalidValue> {
    if s.is_empty() || s.chars().count() > max {
        return Err(InvalidValue::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

impl ActorId {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        printable("actor_id", s, 256).map(Self)
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl ActorType {
    pub fn user() -> Self {
        Self("user".to_owned())
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new(
                "actor_type",
                "must be 1 to 32 characters of a-z, 0-9, '-' or '_'",
            ))
        }
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

impl Default for ActorType {
    fn default() -> Self {
        Self::user()
    }
}

/// An ordered set of OAuth scopes (RFC 6749 §3.3 scope-tokens), without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// The most distinct scopes a set may hold.
    pub const MAX: usize = 100;

    /// Parses scopes separated by spaces or commas (callers use both).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        Self::from_iter_checked(s.split([' ', ',']).filter(|t| !t.is_empty()))
    }

    /// Checks each scope-token and drops duplicates, keeping first-seen order. Refuses a list of
    /// more than [`Scopes::MAX`] distinct scopes as soon as it sees the first one past the cap,
    /// so a hostile list (a 1 MB request body, a provider's `scope` answer) costs linear time
    /// and never more than the cap in memory.
    pub fn from_iter_checked<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, InvalidValue> {
        let mut out = Dedup::default();
        for token in items {
            let valid = !token.is_empty()
                && token.len() <= 512
                && token
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !valid {
                return Err(InvalidValue::new(
                    "scopes",
                    "each scope must be printable ASCII without spaces, quotes or backslashes",
                ));
            }
            if out.push(token) && out.len() > Self::MAX {
                return Err(InvalidValue::new("scopes", "at most 100 scopes"));
            }
        }
        Ok(Self(out.into_vec()))
    }

    /// Trusted construction from storage: a space-separated list written by `to_space_separated`.
    pub fn from_stored(s: &str) -> Self {
        let mut out = Dedup::default();
        for t in s.split(' ').filter(|t| !t.is_empty()) {
            out.push(t);
        }
        Self(out.into_vec())
    }

    pub fn to_space_separated(&self) -> String {
        self.0.join(" ")
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    pub fn contains_all(&self, other: &Scopes) -> bool {
        other.iter().all(|s| self.contains(s))
    }

    /// The union, keeping this set's order first.
    pub fn union(&self, other: &Scopes) -> Scopes {
        let mut out = Dedup::default();
        for s in self.iter().chain(other.iter()) {
            out.push(s);
        }
        Scopes(out.into_vec())
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// An insertion-ordered set of strings: the `Vec` keeps the order, the `HashSet` answers "seen?"
/// in constant time (a linear scan per scope made a 1 MB list of distinct scopes quadratic).
#[derive(Default)]
struct Dedup<'a> {
    order: Vec<String>,
    seen: std::collections::HashSet<&'a str>,
}

impl<'a> Dedup<'a> {
    /// Adds `s` unless already present; true when it was new.
    fn push(&mut self, s: &'a str) -> bool {
        if !self.seen.insert(s) {
            return false;
        }
        self.order.push(s.to_owned());
        true
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn into_vec(self) -> Vec<String> {
        self.order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn provider_names() {
        for ok in ["google", "ms-graph", "test_1"] {
            assert!(ProviderName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Google", "a/b", "x y", &"a".repeat(65)] {
            assert!(ProviderName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn actor_ids_refuse_control_characters_and_overlong_values() {
        assert!(ActorId::parse("user@example.com").is_ok());
        assert!(ActorId::parse("ünïcode ok").is_ok());
        assert!(ActorId::parse("").is_err());
        assert!(ActorId::parse("a\nb").is_err());
        assert!(ActorId::parse(&"x".repeat(257)).is_err());
    }

    #[test]
    fn connection_ids_must_be_uuids() {
        assert!(ConnectionId::parse("not-a-uuid").is_err());
        let id = ConnectionId::generate();
        assert_eq!(ConnectionId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn scopes_parse_commas_and_spaces_and_dedupe() {
        let s = Scopes::parse("openid, email  openid,https://www.googleapis.com/auth/gmail.send")
            .expect("valid");
        assert_eq!(
            s.as_slice(),
            [
                "openid",
                "email",
                "https://www.googleapis.com/auth/gmail.send"
            ]
        );
        assert!(Scopes::parse("a\"b").is_err());
        assert!(Scopes::parse("a\\b").is_err());
    }

    /// The worst list a 1 MB body allows: ~110,000 distinct scopes. The parser must stop at the
    /// first scope past the cap instead of de-duplicating the whole list (which was quadratic:
    /// ~25 s of both cores), so the iterator is never drawn past scope 101.
    #[test]
    fn scopes_stop_at_the_first_scope_past_the_cap() {
        let hostile: Vec<String> = (0..110_000).map(|i| format!("s{i}")).collect();
        let mut drawn = 0usize;
        let parsed = Scopes::from_iter_checked(hostile.iter().map(|s| {
            drawn += 1;
            s.as_str()
        }));
        assert!(parsed.is_err(), "more than 100 distinct scopes are refused");
        assert_eq!(
            drawn,
            Scopes::MAX + 1,
            "parsing stops at the first scope past the cap"
        );

        let body = hostile.join(" ");
        assert!(body.len() < 1024 * 1024);
        assert!(Scopes::parse(&body).is_err());
    }

    /// Duplicates do not count towards the cap, and many of them stay linear.
    #[test]
    fn scopes_dedupe_many_duplicates_under_the_cap() {
        let many: Vec<String> = (0..200_000).map(|i| format!("s{}", i % 100)).collect();
        let parsed =
            Scopes::from_iter_checked(many.iter().map(String::as_str)).expect("100 distinct");
        assert_eq!(parsed.as_slice().len(), 100);
        assert_eq!(parsed.as_slice()[0], "s0");
        let stored = Scopes::from_stored(&many.join(" "));
        assert_eq!(stored, parsed);
        assert_eq!(
            stored
                .union(&Scopes::from_stored("s5 extra"))
                .as_slice()
                .len(),
            101
        );
    }

    proptest! {
        #[test]
        fn scopes_round_trip_through_storage(raw in proptest::collection::vec("[!#-\\[\\]-~]{1,20}", 0..10)) {
            let s = Scopes::from_iter_checked(raw.iter().map(String::as_str)).expect("valid tokens");
            prop_assert_eq!(Scopes::from_stored(&s.to_space_separated()), s);
        }
    }
}
