//! Kazoo's response envelope.
//!
//! Every response body (success or error; not `/metrics`, not the event stream) is
//!
//! ```json
//! {"data": …, "status": "success", "request_id": "…", "revision": "…",
//!  "timestamp": "2026-01-02T03:04:05Z", "version": "0.1.0", "node": "…", "auth_token": ""}
//! ```
//!
//! - `request_id`: the caller's `X-Request-ID` when it sent a sane one (at most 64 visible
//!   ASCII characters), else a fresh UUID; also sent back as the `X-Request-ID` header.
//! - `revision`: the conference document's revision (`"<n>-<conference id>"`, bumped by every
//!   change) on conference routes, `"undefined"` elsewhere, as Kazoo does for lists.
//! - `auth_token`: **always the empty string.** Kazoo echoes the caller's token here; we do
//!   not, so a token never appears in a response body, a log of responses, or a proxy cache.
//!   Clients keep using the token they sent.
//! - `version`: this crate's version; `node`: the configured node name.

use serde_json::{Map, Value};

/// What is the same in every response of one server.
#[derive(Debug, Clone)]
pub struct EnvelopeInfo {
    /// `node` in every response.
    pub node: String,
    /// `version` in every response.
    pub version: String,
}

impl Default for EnvelopeInfo {
    fn default() -> Self {
        Self { node: "mixminus".into(), version: env!("CARGO_PKG_VERSION").into() }
    }
}

impl EnvelopeInfo {
    /// The success envelope around `data`.
    pub fn success(&self, data: Value, request_id: &str, revision: Option<&str>) -> Value {
        let mut map = self.common(request_id, revision);
        map.insert("data".into(), data);
        map.insert("status".into(), "success".into());
        Value::Object(map)
    }

    /// The error envelope for `error`.
    pub fn error(&self, error: &crate::ApiError, request_id: &str) -> Value {
        let mut map = self.common(request_id, None);
        map.insert("data".into(), error.data());
        map.insert("status".into(), "error".into());
        map.insert("error".into(), error.status().as_u16().to_string().into());
        map.insert("message".into(), error.message().into());
        Value::Object(map)
    }

    fn common(&self, request_id: &str, revision: Option<&str>) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("auth_token".into(), "".into());
        map.insert("node".into(), self.node.clone().into());
        map.insert("request_id".into(), request_id.into());
        map.insert("revision".into(), revision.unwrap_or("undefined").into());
        map.insert("timestamp".into(), iso8601_now().into());
        map.insert("version".into(), self.version.clone().into());
        map
    }
}

/// Seconds between 0000-01-01 and 1970-01-01: Kazoo's timestamps are Gregorian seconds.
pub const GREGORIAN_UNIX_OFFSET: u64 = 62_167_219_200;

/// Gregorian seconds (Kazoo's `join_time`) of a wall-clock time.
pub fn gregorian_seconds(time: std::time::SystemTime) -> u64 {
    let unix = time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    unix + GREGORIAN_UNIX_OFFSET
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (UTC), Kazoo's envelope timestamp.
pub fn iso8601_now() -> String {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    iso8601(unix)
}

/// `unix` seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn gregorian_matches_kazoo() {
        // Kazoo's example join_time 63676253358 is 2017-10-18T…; check the offset only.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_509_034_158);
        assert_eq!(gregorian_seconds(t), 63_676_253_358);
    }

    #[test]
    fn never_echoes_a_token() {
        let v = EnvelopeInfo::default().success(Value::Null, "r", None);
        assert_eq!(v["auth_token"], "");
        assert_eq!(v["status"], "success");
        assert_eq!(v["revision"], "undefined");
    }
}
