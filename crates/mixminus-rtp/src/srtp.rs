//! SRTP with SDES keys (RFC 3711, RFC 4568): `AES_CM_128_HMAC_SHA1_80`, the suite every SIP
//! phone offers. The cipher is `webrtc-srtp` (webrtc-rs, pure Rust, maintained); this
//! module holds the keys as SDP writes them (`inline:` base64 of key ‖ salt) and a leg's two
//! contexts, one per direction.
//!
//! Each protected or unprotected packet is a new buffer (the crate's API), so an SRTP leg
//! allocates per packet where a plain one does not.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// The one crypto suite taken.
pub const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
const KEY_LEN: usize = 16;
const SALT_LEN: usize = 14;

/// A master key and salt (30 bytes). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKey([u8; KEY_LEN + SALT_LEN]);

impl fmt::Debug for SrtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpKey(***)")
    }
}

impl SrtpKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Reads an SDES `inline:` value (`base64[|lifetime][|MKI:len]`); `None` when it is
    /// not 30 bytes of base64.
    pub fn from_inline(inline: &str) -> Option<Self> {
        let b64 = inline.split('|').next()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The SDES `inline:` value.
    pub fn to_inline(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn context(&self) -> Option<Context> {
        let (key, salt) = self.0.split_at(KEY_LEN);
        Context::new(key, salt, ProtectionProfile::Aes128CmHmacSha1_80, None, None).ok()
    }
}

/// The keys of an SRTP leg: the peer's (to unprotect what it sends) and ours.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SrtpKeys {
    /// The key the peer protects its packets with (its `a=crypto`).
    pub remote: SrtpKey,
    /// The key we protect ours with (our answer's `a=crypto`).
    pub local: SrtpKey,
}

impl SrtpKeys {
    /// The two keys.
    pub fn new(remote: SrtpKey, local: SrtpKey) -> Self {
        Self { remote, local }
    }
}

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The key is unusable.
    #[error("unusable SRTP key")]
    Key,
    /// Authentication or parsing failed: the packet is dropped.
    #[error("SRTP: {0}")]
    Packet(String),
}

/// One leg's SRTP state, both directions.
pub struct SrtpSession {
    inbound: Context,
    outbound: Context,
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpSession")
    }
}

impl SrtpSession {
    /// Contexts for these keys.
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        Ok(Self {
            inbound: keys.remote.context().ok_or(SrtpError::Key)?,
            outbound: keys.local.context().ok_or(SrtpError::Key)?,
        })
    }

    /// Unprotects an SRTP packet.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.inbound.decrypt_rtp(packet).map_err(|e| SrtpError::Packet(e.to_string()))
    }

    /// Protects an RTP packet.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.outbound.encrypt_rtp(packet).map_err(|e| SrtpError::Packet(e.to_string()))
    }

    /// Unprotects an SRTCP packet.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.inbound.decrypt_rtcp(packet).map_err(|e| SrtpError::Packet(e.to_string()))
    }

    /// Protects an RTCP packet.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, SrtpError> {
        self.outbound.encrypt_rtcp(packet).map_err(|e| SrtpError::Packet(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{write_rtp_header, RtpHeader, RtpPacket};

    #[test]
    fn a_packet_round_trips_and_a_forgery_is_refused() {
        let (a, b) = (SrtpKey::random(), SrtpKey::random());
        let mut alice = SrtpSession::new(&SrtpKeys::new(b.clone(), a.clone())).unwrap();
        let mut bob = SrtpSession::new(&SrtpKeys::new(a, b)).unwrap();
        let mut packet = Vec::new();
        let header =
            RtpHeader { payload_type: 0, marker: false, sequence: 7, timestamp: 160, ssrc: 9 };
        write_rtp_header(&mut packet, &header);
        packet.extend_from_slice(&[0x55; 160]);
        let protected = alice.protect_rtp(&packet).unwrap();
        assert_eq!(protected.len(), packet.len() + 10, "an 80-bit tag");
        assert_ne!(&protected[12..172], &packet[12..]);
        let plain = bob.unprotect_rtp(&protected).unwrap();
        assert_eq!(RtpPacket::parse(&plain).unwrap().payload(), &[0x55; 160]);
        let mut forged = protected.to_vec();
        forged[20] ^= 1;
        assert!(bob.unprotect_rtp(&forged).is_err());
        assert!(bob.unprotect_rtp(&[0x80, 0, 1]).is_err(), "short input is an error, not a panic");
    }

    #[test]
    fn inline_keys() {
        let key = SrtpKey::random();
        assert_eq!(SrtpKey::from_inline(&key.to_inline()), Some(key.clone()));
        assert_eq!(SrtpKey::from_inline(&format!("{}|2^31|1:1", key.to_inline())), Some(key));
        assert_eq!(SrtpKey::from_inline("c2hvcnQ="), None);
        assert_eq!(SrtpKey::from_inline("!!!"), None);
        assert!(!format!("{:?}", SrtpKey::random()).contains('='));
    }
}
