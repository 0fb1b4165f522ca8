//! The server's configuration: TOML, read with serde; the binary's flags override it.
//!
//! ```toml
//! listen = "0.0.0.0:8000"         # HTTP API (default 127.0.0.1:8000)
//! rtp_bind = "192.0.2.10"         # RTP sockets (default 127.0.0.1)
//! rtp_ports = "20000-29999"       # even port RTP, odd port above RTCP
//! node = "mixminus@edge1"         # `node` in every response
//! max_body_bytes = 65536          # larger request bodies get 413
//! max_conferences = 1000          # more creations get 409
//! inactivity_timeout_secs = 60    # silent legs are removed; 0 = never
//! rtcp_interval_ms = 5000         # mean RTCP report interval per leg (randomised 0.5..1.5x)
//! strict_source = true            # latch only onto the host a join named (false behind NAT)
//! quiet_decode_interval = 1       # n > 1: decode quiet participants every n-th frame only
//! cors_origins = ["*"]            # browsers may call the API from: "*" (crossbar's), a list, or []
//! media_threads = 2               # threads conferences tick on, apart from HTTP (default: CPUs)
//! http_header_timeout_secs = 10   # a request head must arrive within; also the idle keep-alive
//! http_body_timeout_secs = 10     # a request body must arrive within
//! http_max_connections = 4096     # more get 503 at once
//! http_max_connections_per_ip = 256
//! remote_allow = ["198.51.100.0/24"]  # joins may name only these remotes (default: any)
//! remote_deny = ["10.0.0.0/8"]    # joins may not name these (0.0.0.0, multicast, broadcast: never)
//!
//! [quotas]                        # per account; a request past one gets a 4xx naming it
//! conferences_per_account = 100
//! participants_per_account = 10000
//! relationships_per_conference = 100000
//! empty_conference_ttl_secs = 600 # conferences empty this long end; 0 = never
//!
//! [[tokens]]
//! token = "a-long-random-secret"
//! accounts = "all"                # or a list of account ids
//!
//! [[tokens]]
//! token = "another-secret"
//! accounts = ["4fd2c8a1b4d5e6f708192a3b4c5d6e7f"]
//!
//! [media]                        # `play`: media_id = a file name in this directory
//! dir = "/var/lib/mixminus/media"
//! max_file_bytes = 16777216
//! max_seconds = 600
//!
//! [recordings]                   # `record`: {dir}/{account_id}/{recording_id}.ogg|wav
//! dir = "/var/lib/mixminus/recordings"
//! format = "ogg"                 # or "wav"
//! opus_bitrate = 32000
//! max_seconds = 14400            # a recording stops by itself after this long
//! max_total_bytes = 1073741824   # ... or when the directory holds this much
//!
//! [logging]
//! filter = "info,mixminus_rtp=warn"   # tracing-subscriber EnvFilter syntax; RUST_LOG wins
//!
//! [sip]                               # dial in by SIP (off without `listen`; docs/SIP.md)
//! listen = "127.0.0.1:5060"
//! [fleet]                         # several servers as one (docs/FLEET.md); absent: one server
//! nats = "nats://127.0.0.1:4222"  # or `serve --nats`; `node` names this server in the fleet
//! cluster = "mixminus"            # prefixes the fleet's NATS buckets and subjects
//! liveness_secs = 5               # a node unheard for this long is dead
//! user = "mixminus"               # NATS credentials: user and password, or token
//! password = "a-nats-secret"
//! ```
//!
//! `Debug` never prints a token.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// Everything `mixminus serve` is configured by.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// HTTP API address.
    pub listen: SocketAddr,
    /// Address the RTP sockets bind to.
    pub rtp_bind: IpAddr,
    /// RTP port range, inclusive.
    pub rtp_ports: PortRange,
    /// `node` in every response.
    pub node: String,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Most conferences at once.
    pub max_conferences: usize,
    /// Seconds after which a leg that sends nothing is removed; 0 = never.
    pub inactivity_timeout_secs: u64,
    /// Mean interval between a leg's RTCP reports, ms (RFC 3550's 5 s by default); each
    /// interval is randomised to 0.5..1.5 times this.
    pub rtcp_interval_ms: u64,
    /// When a join names the peer's address, latch only onto RTP from that host; turn off
    /// for peers behind NAT whose signalled address is not where their packets come from.
    pub strict_source: bool,
    /// Decode a quiet (not talking) participant only every n-th frame; 1 = every frame.
    /// Cuts decode cost about n-fold in mostly quiet conferences; talk onset is seen up to
    /// n − 1 frames later.
    pub quiet_decode_interval: u32,
    /// The origins a browser may call the API from (CORS): `["*"]` for any (crossbar's
    /// behaviour, the default), a list of origins, or `[]` for no CORS headers.
    pub cors_origins: Vec<String>,
    /// Threads of the media runtime every conference ticks on, apart from the threads that
    /// serve HTTP (at least 1).
    pub media_threads: usize,
    /// Seconds for a request head to arrive (and for an idle keep-alive connection to
    /// send its next request).
    pub http_header_timeout_secs: u64,
    /// Seconds for a request body to arrive.
    pub http_body_timeout_secs: u64,
    /// HTTP connections open at once; more are answered 503 and closed.
    pub http_max_connections: usize,
    /// HTTP connections open at once from one IP address.
    pub http_max_connections_per_ip: usize,
    /// When not empty, the only address ranges a join may name as its remote.
    pub remote_allow: Vec<mixminus_rtp::IpNet>,
    /// Address ranges a join may not name as its remote (unspecified, multicast and
    /// broadcast addresses are always refused).
    pub remote_deny: Vec<mixminus_rtp::IpNet>,
    /// What one account may hold.
    pub quotas: crate::registry::Quotas,
    /// API tokens and the accounts each grants.
    pub tokens: Vec<TokenConfig>,
    /// Log settings.
    pub logging: LoggingConfig,
    /// Where `play` finds media files (see [`crate::media`]).
    pub media: crate::media::MediaConfig,
    /// Where `record` writes, and its bounds (see [`crate::media`]).
    pub recordings: crate::media::RecordingsConfig,
    /// The `[sip]` section, as TOML: the SIP front (`mixminus-sip`'s `SipConfig`) reads it,
    /// so the control plane does not depend on it.
    pub sip: Option<toml::Table>,
    /// The fleet this server is a node of, if any.
    pub fleet: FleetConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000),
            rtp_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rtp_ports: PortRange { low: 20_000, high: 29_999 },
            node: "mixminus".into(),
            max_body_bytes: 64 * 1024,
            max_conferences: 1_000,
            inactivity_timeout_secs: 60,
            rtcp_interval_ms: 5_000,
            strict_source: true,
            quiet_decode_interval: 1,
            cors_origins: vec!["*".into()],
            media_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            http_header_timeout_secs: 10,
            http_body_timeout_secs: 10,
            http_max_connections: 4_096,
            http_max_connections_per_ip: 256,
            remote_allow: Vec::new(),
            remote_deny: Vec::new(),
            quotas: crate::registry::Quotas::default(),
            tokens: Vec::new(),
            logging: LoggingConfig::default(),
            media: Default::default(),
            recordings: Default::default(),
            sip: None,
            fleet: FleetConfig::default(),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has a wrong or unknown key.
    #[error("config: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range; the message names the key.
    #[error("config: {0}")]
    Invalid(&'static str),
}

impl Config {
    /// The HTTP server's limits from this configuration.
    pub fn http_limits(&self) -> crate::server::HttpLimits {
        crate::server::HttpLimits {
            header_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs),
            body_timeout: std::time::Duration::from_secs(self.http_body_timeout_secs),
            max_connections: self.http_max_connections,
            max_connections_per_ip: self.http_max_connections_per_ip,
            ..Default::default()
        }
    }

    /// Parses and checks a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and checks a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Self::from_toml(&text)
    }

    /// Checks what types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rtp_ports.low == 0 || self.rtp_ports.high < self.rtp_ports.low.saturating_add(1) {
            return Err(ConfigError::Invalid("rtp_ports must be LO-HI with 0 < LO < HI"));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::Invalid("max_body_bytes must be 1024..=16777216"));
        }
        if self.max_conferences == 0 {
            return Err(ConfigError::Invalid("max_conferences must be at least 1"));
        }
        if !(100..=60_000).contains(&self.rtcp_interval_ms) {
            return Err(ConfigError::Invalid("rtcp_interval_ms must be 100..=60000"));
        }
        if self.node.is_empty() || self.node.len() > 128 {
            return Err(ConfigError::Invalid("node must be 1..=128 characters"));
        }
        if self.cors_origins.iter().any(|o| {
            o != "*" && !(o.starts_with("http://") || o.starts_with("https://"))
                || axum::http::HeaderValue::from_str(o).is_err()
        }) {
            return Err(ConfigError::Invalid(
                "cors_origins must be \"*\" or origins like \"https://ui.example.com\"",
            ));
        }
        if !(1..=3600).contains(&self.http_header_timeout_secs)
            || !(1..=3600).contains(&self.http_body_timeout_secs)
        {
            return Err(ConfigError::Invalid("http_*_timeout_secs must be 1..=3600"));
        }
        if self.http_max_connections == 0 || self.http_max_connections_per_ip == 0 {
            return Err(ConfigError::Invalid("http_max_connections* must be at least 1"));
        }
        if !(1..=256).contains(&self.media_threads) {
            return Err(ConfigError::Invalid("media_threads must be 1..=256"));
        }
        self.recordings.validate().map_err(ConfigError::Invalid)?;
        if self.media.max_file_bytes == 0 || self.media.max_seconds == 0 {
            return Err(ConfigError::Invalid("media.max_file_bytes and max_seconds must be > 0"));
        }
        self.fleet.validate()?;
        if self.fleet.nats.is_some() && !crate::fleet::valid_node_name(&self.node) {
            return Err(ConfigError::Invalid(
                "node must be 1-64 of A-Z a-z 0-9 _ - in a fleet (it names a NATS key)",
            ));
        }
        if self.tokens.iter().any(|t| t.token.expose().is_empty()) {
            return Err(ConfigError::Invalid("tokens.token must not be empty"));
        }
        Ok(())
    }
}

/// An inclusive port range, written `"LO-HI"` (or `[LO, HI]` in TOML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// Lowest port.
    pub low: u16,
    /// Highest port.
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WANT: &str = "a port range is LO-HI, e.g. 20000-29999";
        let (low, high) = s.split_once('-').ok_or(WANT)?;
        let low: u16 = low.trim().parse().map_err(|_| WANT)?;
        let high: u16 = high.trim().parse().map_err(|_| WANT)?;
        if low == 0 || high <= low {
            return Err(WANT);
        }
        Ok(Self { low, high })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Pair([u16; 2]),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Pair([low, high]) => Ok(PortRange { low, high }),
        }
    }
}

/// One API token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret, as sent in `X-Auth-Token`.
    pub token: Secret,
    /// The accounts it grants: `"all"` (or `"*"`) or a list of account ids.
    pub accounts: AccountScope,
}

/// The accounts a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountScope {
    /// Every account.
    All,
    /// These accounts only.
    Only(Vec<String>),
}

impl AccountScope {
    /// Whether `account` is granted.
    pub fn grants(&self, account: &str) -> bool {
        match self {
            AccountScope::All => true,
            AccountScope::Only(ids) => ids.iter().any(|id| id == account),
        }
    }
}

impl<'de> Deserialize<'de> for AccountScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "all" || w == "*" => Ok(AccountScope::All),
            Raw::Word(_) => {
                Err(serde::de::Error::custom("accounts must be \"all\" or a list of account ids"))
            }
            Raw::List(ids) => Ok(AccountScope::Only(ids)),
        }
    }
}

/// A secret string whose `Debug` and `Display` show `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; only for comparing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The fleet (TOML `[fleet]`): several servers answering as one through NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FleetConfig {
    /// The NATS server (`nats://host:port`); `None`: this server is on its own.
    pub nats: Option<String>,
    /// The fleet's name: prefixes its buckets and subjects.
    pub cluster: String,
    /// Seconds after which a node not heard from is dead (its conferences are claimed).
    pub liveness_secs: u64,
    /// NATS user (with `password`).
    pub user: Option<String>,
    /// NATS password.
    pub password: Option<Secret>,
    /// NATS token (instead of user and password).
    pub token: Option<Secret>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            nats: None,
            cluster: "mixminus".into(),
            liveness_secs: 5,
            user: None,
            password: None,
            token: None,
        }
    }
}

impl FleetConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=300).contains(&self.liveness_secs) {
            return Err(ConfigError::Invalid("fleet.liveness_secs must be 2..=300"));
        }
        if !crate::fleet::valid_node_name(&self.cluster) {
            return Err(ConfigError::Invalid("fleet.cluster must be 1-64 of A-Z a-z 0-9 _ -"));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError::Invalid("fleet.user and fleet.password go together"));
        }
        if self.user.is_some() && self.token.is_some() {
            return Err(ConfigError::Invalid("fleet: user and password, or token, not both"));
        }
        Ok(())
    }
}

/// Log settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub filter: String,
    /// Colours in the output.
    pub ansi: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self { filter: "info".into(), ansi: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
            listen = "0.0.0.0:8000"
            rtp_bind = "127.0.0.1"
            rtp_ports = "30000-30099"
            remote_deny = ["10.0.0.0/8", "fd00::/8"]
            media_threads = 1
            [[tokens]]
            token = "s3cret-token"
            accounts = "all"
            [[tokens]]
            token = "other"
            accounts = ["acc1"]
            [logging]
            filter = "debug"
        "#;
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.rtp_ports, PortRange { low: 30_000, high: 30_099 });
        assert!(c.remote_deny[0].contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
        assert_eq!(c.media_threads, 1);
        assert_eq!(c.tokens[0].accounts, AccountScope::All);
        assert!(c.tokens[1].accounts.grants("acc1"));
        assert!(!c.tokens[1].accounts.grants("acc2"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn refuses_bad_values() {
        assert!(Config::from_toml("rtp_ports = \"5-4\"").is_err());
        assert!(Config::from_toml("nonsense = 1").is_err());
        assert!(Config::from_toml("remote_deny = [\"10.0.0.0/33\"]").is_err());
        assert!(Config::from_toml("media_threads = 0").is_err());
        assert!(Config::from_toml("rtcp_interval_ms = 50").is_err());
        assert!(Config::from_toml("rtcp_interval_ms = 1000").is_ok());
        assert!(Config::from_toml("[[tokens]]\ntoken = \"\"\naccounts = \"all\"").is_err());
        assert!(Config::from_toml("[[tokens]]\ntoken = \"x\"\naccounts = \"some\"").is_err());
        assert!(Config::from_toml("cors_origins = [\"ui.example.com\"]").is_err());
        assert!(Config::from_toml("cors_origins = [\"https://ui.example.com\"]").is_ok());
        assert!("20000-29999".parse::<PortRange>().is_ok());
        assert!("20000".parse::<PortRange>().is_err());
        assert!(Config::from_toml("[fleet]\nliveness_secs = 1").is_err());
        assert!(Config::from_toml("[fleet]\nuser = \"u\"").is_err());
        assert!(Config::from_toml("node = \"a@b\"\n[fleet]\nnats = \"nats://x\"").is_err());
        let c = Config::from_toml("node = \"edge1\"\n[fleet]\nnats = \"nats://x:4222\"\nuser = \"u\"\npassword = \"pw-secret\"").unwrap();
        assert_eq!(c.fleet.liveness_secs, 5);
        assert!(!format!("{c:?}").contains("pw-secret"));
    }
}
