//! Digest authentication of callers (RFC 3261 §22, RFC 2617 / RFC 7616 hashing, RFC 8760
//! SHA-256), sans-IO: an INVITE's `Authorization` and the time in, a verdict out.
//!
//! When `[sip] auth_users` names anyone, an INVITE without a valid `Authorization` is
//! answered `401 Unauthorized` with an MD5 challenge, `qop="auth"`; with `auth_sha256` a
//! SHA-256 challenge comes first (RFC 8760 §2.4: the client takes the first it supports).
//! SHA-256 is not the default because deployed clients fail on it: Debian's baresip 1.0
//! ends the call ("Function not implemented") instead of skipping to MD5. Either answer
//! is accepted. Nonces are stateless:
//! the time they were made and a keyed hash of it (a random per-process key), so the front
//! checks them without a table (a nonce from another process, or from before a restart, is
//! challenged again), and one older than
//! `auth_nonce_secs` gets a new challenge with `stale=true` (the client retries without
//! asking its user). A nonce may be reused until then: replay of a captured INVITE within
//! that window is possible, as with every stateless-nonce server; a digest never crosses
//! the wire as a password does. The response is compared in constant time.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ezk_sip_types::header::typed::{
    Algorithm, AlgorithmValue, AuthResponse, DigestResponse, QopOption, Username,
};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::config::Password;

/// A digest hash function (the `algorithm` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// `MD5` (RFC 2617): what every SIP client speaks.
    Md5,
    /// `SHA-256` (RFC 8760).
    Sha256,
}

impl DigestAlgorithm {
    /// The lowercase hex digest of `data`.
    pub fn hex(self, data: &str) -> String {
        match self {
            DigestAlgorithm::Md5 => format!("{:x}", md5::compute(data.as_bytes())),
            DigestAlgorithm::Sha256 => hex(&sha2::Sha256::digest(data.as_bytes())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }
}

/// What [`DigestAuth::check`] says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthVerdict {
    /// The credentials are right: this user.
    Authorized(String),
    /// Challenge again (`401`); `stale`: the credentials were right but the nonce is old.
    Challenge {
        /// Whether to say `stale=true`.
        stale: bool,
        /// Whether credentials were sent and were wrong (counted as a failure).
        failed: bool,
    },
}

/// The digest checker of the SIP front: a realm, its users, the nonce key.
pub struct DigestAuth {
    realm: String,
    users: BTreeMap<String, Password>,
    key: [u8; 32],
    nonce_lifetime: Duration,
    sha256: bool,
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl DigestAuth {
    /// A checker for `users` in `realm`; nonces live `nonce_lifetime`; `sha256`: challenge
    /// with SHA-256 before MD5.
    pub fn new(
        realm: &str,
        users: BTreeMap<String, Password>,
        nonce_lifetime: Duration,
        sha256: bool,
    ) -> Self {
        Self { realm: realm.to_owned(), users, key: rand::random(), nonce_lifetime, sha256 }
    }

    /// The `WWW-Authenticate` values of a `401` at `now`: SHA-256 (when on), then MD5.
    pub fn challenges(&self, now: SystemTime, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now);
        let stale = if stale { ", stale=true" } else { "" };
        let algorithms: &[DigestAlgorithm] = if self.sha256 {
            &[DigestAlgorithm::Sha256, DigestAlgorithm::Md5]
        } else {
            &[DigestAlgorithm::Md5]
        };
        algorithms
            .iter()
            .map(|algorithm| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    self.realm,
                    algorithm.name()
                )
            })
            .collect()
    }

    /// Checks the `Authorization` values of a request with `method` at `now`.
    pub fn check(
        &self,
        method: &str,
        authorizations: &[AuthResponse],
        now: SystemTime,
    ) -> AuthVerdict {
        let mut verdict = AuthVerdict::Challenge { stale: false, failed: false };
        for authorization in authorizations {
            let AuthResponse::Digest(response) = authorization else { continue };
            if response.realm != self.realm.as_str() {
                continue;
            }
            match self.check_one(method, response, now) {
                Ok(user) => return AuthVerdict::Authorized(user),
                Err(stale) => {
                    verdict = AuthVerdict::Challenge { stale, failed: !stale };
                }
            }
        }
        verdict
    }

    /// One digest response: the user, or whether the failure was only a stale nonce.
    fn check_one(
        &self,
        method: &str,
        response: &DigestResponse,
        now: SystemTime,
    ) -> Result<String, bool> {
        let algorithm = match &response.algorithm {
            Algorithm::AlgorithmValue(AlgorithmValue::MD5) => DigestAlgorithm::Md5,
            Algorithm::AlgorithmValue(AlgorithmValue::SHA256) => DigestAlgorithm::Sha256,
            _ => return Err(false),
        };
        let user = match &response.username {
            Username::Username(user) | Username::UsernameNonASCII(user) => user.to_string(),
        };
        let password = self.users.get(&user).ok_or(false)?;
        let issued = self.nonce_time(&response.nonce).ok_or(false)?;
        let ha1 = algorithm.hex(&format!("{user}:{}:{}", self.realm, password.expose()));
        let ha2 = algorithm.hex(&format!("{method}:{}", response.uri));
        // The nonce count is hex as the client wrote it; ezk parsed it, so try both cases.
        let expected: Vec<String> = match &response.qop_response {
            None => vec![algorithm.hex(&format!("{ha1}:{}:{ha2}", response.nonce))],
            Some(qop) if qop.qop == QopOption::Auth => {
                let (lower, upper) = (format!("{:08x}", qop.nc), format!("{:08X}", qop.nc));
                let digest = |nc: &str| {
                    algorithm
                        .hex(&format!("{ha1}:{}:{nc}:{}:auth:{ha2}", response.nonce, qop.cnonce))
                };
                vec![digest(&lower), digest(&upper)]
            }
            Some(_) => return Err(false),
        };
        let given = response.response.to_ascii_lowercase();
        let right = expected
            .iter()
            .fold(false, |right, e| right | bool::from(e.as_bytes().ct_eq(given.as_bytes())));
        if !right {
            return Err(false);
        }
        let age = now.duration_since(issued).unwrap_or(Duration::ZERO);
        if age > self.nonce_lifetime {
            return Err(true);
        }
        Ok(user)
    }

    /// A nonce: the time in seconds (hex) and a keyed hash of it.
    fn nonce(&self, now: SystemTime) -> String {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("{secs:x}.{}", self.mac(secs))
    }

    /// When a nonce of ours was made; `None` when it is not ours.
    fn nonce_time(&self, nonce: &str) -> Option<SystemTime> {
        let (secs, mac) = nonce.split_once('.')?;
        let secs = u64::from_str_radix(secs, 16).ok()?;
        bool::from(self.mac(secs).as_bytes().ct_eq(mac.as_bytes()))
            .then(|| UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn mac(&self, secs: u64) -> String {
        let mut hash = sha2::Sha256::new();
        hash.update(self.key);
        hash.update(secs.to_be_bytes());
        hex(&hash.finalize()[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ezk_sip_types::header::HeaderParse;

    use super::*;

    fn auth() -> DigestAuth {
        let users = BTreeMap::from([("alice".to_owned(), Password::new("wonderland"))]);
        DigestAuth::new("mixminus", users, Duration::from_secs(300), true)
    }

    fn parse(value: &str) -> AuthResponse {
        let bytes = Bytes::copy_from_slice(value.as_bytes());
        // A test literal: it parses.
        let text = std::str::from_utf8(&bytes).unwrap();
        AuthResponse::parse(&bytes, text).unwrap().1
    }

    /// What a client sends: the RFC's formula, computed independently of `check_one`.
    fn respond(algorithm: &str, user: &str, password: &str, nonce: &str, nc: &str) -> String {
        let h = |s: String| match algorithm {
            "MD5" => format!("{:x}", md5::compute(s)),
            _ => hex(&sha2::Sha256::digest(s.as_bytes())),
        };
        let ha1 = h(format!("{user}:mixminus:{password}"));
        let ha2 = h("INVITE:sip:7000@127.0.0.1".to_owned());
        let response = h(format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"mixminus\", nonce=\"{nonce}\", \
             uri=\"sip:7000@127.0.0.1\", response=\"{response}\", algorithm={algorithm}, \
             qop=auth, nc={nc}, cnonce=\"c0ffee\""
        )
    }

    fn nonce_of(challenge: &str) -> String {
        challenge.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
    }

    #[test]
    fn the_rfc_2617_example_hashes_as_published() {
        // RFC 2617 §3.5 (HTTP, but the same arithmetic).
        let md5 = DigestAlgorithm::Md5;
        let ha1 = md5.hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5.hex("GET:/dir/index.html");
        let response = md5
            .hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"));
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn right_credentials_pass_wrong_ones_and_foreign_nonces_do_not() {
        let auth = auth();
        let now = SystemTime::now();
        let [sha, md5] = <[String; 2]>::try_from(auth.challenges(now, false)).unwrap();
        let plain = DigestAuth::new("mixminus", BTreeMap::new(), Duration::from_secs(300), false);
        assert!(matches!(plain.challenges(now, false).as_slice(), [md5] if md5.contains("MD5")));
        assert!(sha.contains("algorithm=SHA-256") && md5.contains("algorithm=MD5"), "{sha} {md5}");
        let nonce = nonce_of(&md5);
        for algorithm in ["MD5", "SHA-256"] {
            let right = parse(&respond(algorithm, "alice", "wonderland", &nonce, "00000001"));
            assert_eq!(
                auth.check("INVITE", &[right], now),
                AuthVerdict::Authorized("alice".into())
            );
        }
        let wrong = parse(&respond("MD5", "alice", "looking-glass", &nonce, "00000001"));
        assert_eq!(
            auth.check("INVITE", &[wrong], now),
            AuthVerdict::Challenge { stale: false, failed: true }
        );
        let nobody = parse(&respond("MD5", "mallory", "wonderland", &nonce, "00000001"));
        assert_eq!(
            auth.check("INVITE", &[nobody], now),
            AuthVerdict::Challenge { stale: false, failed: true }
        );
        let forged = parse(&respond("MD5", "alice", "wonderland", "5f5e100.00ff", "00000001"));
        assert_eq!(
            auth.check("INVITE", &[forged], now),
            AuthVerdict::Challenge { stale: false, failed: true }
        );
        // Another method than the one signed: wrong.
        let right = parse(&respond("MD5", "alice", "wonderland", &nonce, "0000000a"));
        assert!(matches!(
            auth.check("BYE", std::slice::from_ref(&right), now),
            AuthVerdict::Challenge { failed: true, .. }
        ));
        assert_eq!(auth.check("INVITE", &[right], now), AuthVerdict::Authorized("alice".into()));
        assert_eq!(
            auth.check("INVITE", &[], now),
            AuthVerdict::Challenge { stale: false, failed: false }
        );
    }

    #[test]
    fn an_old_nonce_is_stale_and_another_process_nonce_is_not_ours() {
        let auth = auth();
        let then = SystemTime::now() - Duration::from_secs(301);
        let nonce = nonce_of(&auth.challenges(then, false)[1]);
        let old = parse(&respond("MD5", "alice", "wonderland", &nonce, "00000001"));
        let now = SystemTime::now();
        assert_eq!(
            auth.check("INVITE", &[old], now),
            AuthVerdict::Challenge { stale: true, failed: false }
        );
        assert!(auth.challenges(now, true)[0].ends_with("stale=true"));
        let other = DigestAuth::new("mixminus", BTreeMap::new(), Duration::from_secs(300), true);
        assert!(auth.nonce_time(&nonce_of(&other.challenges(now, false)[0])).is_none());
        assert!(auth.nonce_time("zz.zz").is_none() && auth.nonce_time("").is_none());
    }
}
