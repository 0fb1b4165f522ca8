//! The `[sip]` section of `mixminus serve`'s TOML (`--sip ADDR` turns it on too).
//!
//! ```toml
//! [sip]
//! listen = "127.0.0.1:5060"     # UDP, and TCP on the same address; no `listen`: SIP off
//! tcp = true                    # also accept SIP over TCP (default true)
//! accounts = ["acc1"]           # the accounts whose conferences callers reach (default: all)
//! pin_attempts = 3              # wrong PINs before the call ends
//! pin_digit_timeout_secs = 5    # a PIN typed without `#` is checked after this long
//! pin_timeout_secs = 60         # no right PIN by then: the call ends
//! invites_per_second = 10       # per source address (a token bucket) ...
//! invite_burst = 20             # ... that holds this many; INVITEs past it are dropped
//! auth_realm = "mixminus"       # the digest realm callers authenticate in
//! auth_nonce_secs = 300         # a nonce older than this is answered stale=true
//! auth_sha256 = false           # also challenge with SHA-256, first (some clients fail on it)
//! auth_users = { "1001" = "secret" }  # digest credentials; none: no authentication
//! max_message_bytes = 16384     # a larger UDP datagram is malformed (513 or dropped, counted)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::pin::PinConfig;

/// The SIP front's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SipConfig {
    /// The address SIP listens on (UDP, and TCP when [`Self::tcp`]); `None`: SIP is off.
    pub listen: Option<SocketAddr>,
    /// Accept SIP over TCP as well as UDP.
    pub tcp: bool,
    /// The accounts whose conferences a call may reach; empty: every account.
    pub accounts: Vec<String>,
    /// Wrong PINs before the call ends.
    pub pin_attempts: u32,
    /// Seconds after the last digit before a PIN typed without `#` is checked.
    pub pin_digit_timeout_secs: u64,
    /// Seconds a caller has to enter a right PIN.
    pub pin_timeout_secs: u64,
    /// INVITEs per second a source address may send (token bucket rate).
    pub invites_per_second: u32,
    /// INVITEs a source may send at once (token bucket size).
    pub invite_burst: u32,
    /// Digest credentials (user name → password) callers must give; empty: no
    /// authentication.
    pub auth_users: BTreeMap<String, Password>,
    /// The digest realm.
    pub auth_realm: String,
    /// Seconds a digest nonce is good for; older ones are answered `stale=true`.
    pub auth_nonce_secs: u64,
    /// Challenge with SHA-256 (RFC 8760) before MD5; off by default, as some clients end
    /// the call on a challenge they cannot answer instead of taking the next.
    pub auth_sha256: bool,
    /// The largest SIP datagram taken over UDP, in bytes (1500..=65535); a larger one is
    /// malformed: answered `513 Message Too Large` when it can be addressed, else dropped,
    /// and counted. TCP's limit is ezk's, 65535.
    pub max_message_bytes: usize,
}

/// A password from the configuration: never printed (its `Debug` says `***`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// A password.
    pub fn new(password: &str) -> Self {
        Self(password.to_owned())
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: None,
            tcp: true,
            accounts: Vec::new(),
            pin_attempts: 3,
            pin_digit_timeout_secs: 5,
            pin_timeout_secs: 60,
            invites_per_second: 10,
            invite_burst: 20,
            auth_users: BTreeMap::new(),
            auth_realm: "mixminus".to_owned(),
            auth_nonce_secs: 300,
            auth_sha256: false,
            max_message_bytes: 16 * 1024,
        }
    }
}

/// A `[sip]` value out of range; the message names the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipConfigError {
    /// A value is out of range.
    #[error("sip: {0}")]
    Invalid(&'static str),
}

impl SipConfig {
    /// Checks what types cannot.
    pub fn validate(&self) -> Result<(), SipConfigError> {
        if !(1..=10).contains(&self.pin_attempts) {
            return Err(SipConfigError::Invalid("pin_attempts must be 1..=10"));
        }
        if !(1..=60).contains(&self.pin_digit_timeout_secs) {
            return Err(SipConfigError::Invalid("pin_digit_timeout_secs must be 1..=60"));
        }
        if !(5..=600).contains(&self.pin_timeout_secs) {
            return Err(SipConfigError::Invalid("pin_timeout_secs must be 5..=600"));
        }
        if self.invites_per_second == 0 || self.invite_burst == 0 {
            return Err(SipConfigError::Invalid("invites_per_second and invite_burst must be > 0"));
        }
        if !(10..=86_400).contains(&self.auth_nonce_secs) {
            return Err(SipConfigError::Invalid("auth_nonce_secs must be 10..=86400"));
        }
        if !(1500..=65_535).contains(&self.max_message_bytes) {
            return Err(SipConfigError::Invalid("max_message_bytes must be 1500..=65535"));
        }
        let quoted_safe = |s: &str| !s.is_empty() && !s.contains(['"', '\\', '\r', '\n']);
        if !quoted_safe(&self.auth_realm) {
            return Err(SipConfigError::Invalid("auth_realm must be non-empty, without quotes"));
        }
        Ok(())
    }

    /// PIN entry as configured.
    pub fn pin(&self) -> PinConfig {
        PinConfig {
            attempts: self.pin_attempts,
            digit_timeout: Duration::from_secs(self.pin_digit_timeout_secs),
            total_timeout: Duration::from_secs(self.pin_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = include_str!("config.rs");
        let start = text.find("//! [sip]").unwrap();
        let toml_text: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with("//! ") && !l.starts_with("//! ```"))
            .skip(1)
            .map(|l| format!("{}\n", &l[4..]))
            .collect();
        let config: SipConfig = toml::from_str(&toml_text).unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:5060".parse().unwrap()));
        assert_eq!(config.accounts, vec!["acc1".to_string()]);
        assert_eq!(config.auth_users.get("1001"), Some(&Password::new("secret")));
        assert_eq!(format!("{config:?}").matches("secret").count(), 0, "passwords not printed");
        config.validate().unwrap();
        assert!(toml::from_str::<SipConfig>("colour = 1").is_err());
        let bad = SipConfig { pin_attempts: 0, ..SipConfig::default() };
        assert!(bad.validate().is_err());
    }
}
