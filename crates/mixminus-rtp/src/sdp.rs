//! Just enough SDP (RFC 4566 / 3264) for an audio leg: read an offer, pick our codec, write
//! the answer. Parse, don't validate: an offer becomes an [`AudioOffer`] or an error naming
//! what is wrong; nothing else about the text is trusted.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::codec::{CodecKind, CodecParams, OpusFmtp};
use crate::packet::is_one_byte_extension_id;
use crate::srtp::{SrtpKey, SUITE};

/// The RFC 6464 header extension URI.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Offers longer than this are refused.
pub const MAX_SDP_LEN: usize = 16 * 1024;

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Longer than [`MAX_SDP_LEN`].
    #[error("the SDP is too long")]
    TooLong,
    /// No `m=audio` line.
    #[error("no m=audio section")]
    NoAudio,
    /// No usable connection address (`c=`).
    #[error("no usable c= connection address")]
    NoConnection,
    /// A line that does not parse; the text names it.
    #[error("malformed {0} line")]
    Malformed(&'static str),
    /// `RTP/SAVP` without an `a=crypto` line we can use (`AES_CM_128_HMAC_SHA1_80`).
    #[error("RTP/SAVP with no usable a=crypto (we take AES_CM_128_HMAC_SHA1_80)")]
    NoCommonCrypto,
    /// None of the offered codecs is one we mix.
    #[error("no common codec (we take opus/48000, PCMU/8000, PCMA/8000, L16)")]
    NoCommonCodec,
}

/// What we take from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AudioOffer {
    /// Where the offerer receives RTP.
    pub remote: SocketAddr,
    /// The codec we chose among those offered (our preference: Opus, PCMU, PCMA, L16).
    pub codec: CodecParams,
    /// The offered `a=extmap` id of the RFC 6464 audio level, if any.
    pub audio_level_ext: Option<u8>,
    /// Whether RTCP is multiplexed on the RTP port (`a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// The payload type of RFC 4733 `telephone-event` at the chosen codec's clock rate, if
    /// offered (DTMF); the answer accepts it.
    pub telephone_event: Option<u8>,
    /// The offered direction (`a=sendrecv` when none is given); the answer mirrors it.
    pub direction: Direction,
    /// The offer is `RTP/SAVP` (SDES SRTP): its crypto tag and the key it sends with.
    pub srtp: Option<(u32, SrtpKey)>,
}

/// An SDP media direction attribute (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Direction {
    /// Both ways (the default).
    #[default]
    SendRecv,
    /// The offerer only sends (it holds the call: it does not want our media).
    SendOnly,
    /// The offerer only receives.
    RecvOnly,
    /// Neither way (held).
    Inactive,
}

impl Direction {
    /// The attribute's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer gives to an offer with this one.
    pub fn answered(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the offerer wants to receive our media.
    pub fn offerer_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn parse(attribute: &str) -> Option<Self> {
        Some(match attribute {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// An offer of what we take (Opus, PCMU, PCMA and `telephone-event`) on `local`, for an
/// INVITE that came without one (the answer comes in the ACK and parses with
/// [`AudioOffer::parse`]).
pub fn offer(local: SocketAddr, session_id: u64, ptime_ms: u32) -> String {
    let ip_kind = if local.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=mixminus {session_id} 1 IN {ip_kind} {ip}\r\ns=mixminus\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 111 0 8 101\r\na=rtpmap:111 opus/48000/2\r\n\
         a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:{ptime_ms}\r\na=sendrecv\r\n",
        ip = local.ip(),
        port = local.port(),
    )
}

impl AudioOffer {
    /// Parses an offer. `ptime_ms` is used when the offer has no `a=ptime`.
    pub fn parse(sdp: &str, ptime_ms: u32) -> Result<Self, SdpError> {
        if sdp.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLong);
        }
        let mut session_ip: Option<IpAddr> = None;
        let mut media_ip: Option<IpAddr> = None;
        let mut port: Option<u16> = None;
        let mut payload_types: Vec<u8> = Vec::new();
        let mut rtpmaps: Vec<(u8, String, u32)> = Vec::new();
        let mut fmtps: Vec<(u8, &str)> = Vec::new();
        let mut ptime = None;
        let mut audio_level_ext = None;
        let mut rtcp_mux = false;
        let mut direction = None;
        let mut secure = false;
        let mut crypto: Option<(u32, SrtpKey)> = None;
        let mut in_audio = false;
        let mut seen_audio = false;
        for line in sdp.lines().map(str::trim_end) {
            let Some((kind, value)) = line.split_once('=') else { continue };
            match kind {
                "m" => {
                    in_audio = value.starts_with("audio ") && !seen_audio;
                    if in_audio {
                        seen_audio = true;
                        let mut fields = value.split_ascii_whitespace().skip(1);
                        port = Some(
                            fields
                                .next()
                                .and_then(|p| p.parse().ok())
                                .ok_or(SdpError::Malformed("m="))?,
                        );
                        let proto = fields.next().ok_or(SdpError::Malformed("m="))?;
                        secure = proto.starts_with("RTP/SAVP");
                        for pt in fields.take(64) {
                            payload_types.push(pt.parse().map_err(|_| SdpError::Malformed("m="))?);
                        }
                    }
                }
                "c" => {
                    let ip = parse_connection(value)?;
                    if seen_audio && in_audio {
                        media_ip = Some(ip);
                    } else if !seen_audio {
                        session_ip = Some(ip);
                    }
                }
                "a" if in_audio => {
                    if let Some(map) = value.strip_prefix("rtpmap:") {
                        if let Some(entry) = parse_rtpmap(map) {
                            rtpmaps.push(entry);
                        } else {
                            return Err(SdpError::Malformed("a=rtpmap"));
                        }
                    } else if let Some(fmtp) = value.strip_prefix("fmtp:") {
                        // Only the chosen codec's is read, below; a malformed one is ignored.
                        if let Some((pt, params)) = fmtp.split_once(' ') {
                            if let Ok(pt) = pt.parse::<u8>() {
                                fmtps.push((pt, params));
                            }
                        }
                    } else if let Some(p) = value.strip_prefix("ptime:") {
                        ptime = Some(
                            p.trim().parse::<u32>().map_err(|_| SdpError::Malformed("a=ptime"))?,
                        );
                    } else if let Some(ext) = value.strip_prefix("extmap:") {
                        let mut parts = ext.split_ascii_whitespace();
                        let id =
                            parts.next().and_then(|id| id.split('/').next()?.parse::<u8>().ok());
                        if parts.next() == Some(AUDIO_LEVEL_URI) {
                            audio_level_ext = id.filter(|&id| is_one_byte_extension_id(id));
                        }
                    } else if value == "rtcp-mux" {
                        rtcp_mux = true;
                    } else if let Some(line) = value.strip_prefix("crypto:") {
                        // `tag suite inline:key[|…]`: the first one we can use.
                        let mut parts = line.split_ascii_whitespace();
                        let (tag, suite, key) = (parts.next(), parts.next(), parts.next());
                        if crypto.is_none() && suite == Some(SUITE) {
                            let tag = tag.and_then(|t| t.parse().ok());
                            let key = key
                                .and_then(|k| k.strip_prefix("inline:"))
                                .and_then(SrtpKey::from_inline);
                            crypto = tag.zip(key);
                        }
                    } else if let Some(d) = Direction::parse(value) {
                        direction = Some(d);
                    }
                }
                "a" if !seen_audio => {
                    // A session-level direction holds unless the media section has its own.
                    if let Some(d) = Direction::parse(value) {
                        direction = direction.or(Some(d));
                    }
                }
                _ => {}
            }
        }
        if !seen_audio {
            return Err(SdpError::NoAudio);
        }
        let ip = media_ip.or(session_ip).ok_or(SdpError::NoConnection)?;
        let port = port.filter(|&p| p != 0).ok_or(SdpError::Malformed("m="))?;
        let ptime_ms = ptime.unwrap_or(ptime_ms);
        let mut codec =
            choose_codec(&payload_types, &rtpmaps, ptime_ms).ok_or(SdpError::NoCommonCodec)?;
        if codec.kind == CodecKind::Opus {
            if let Some(&(_, params)) = fmtps.iter().find(|(pt, _)| *pt == codec.payload_type) {
                codec.opus_fmtp = OpusFmtp::parse(params);
            }
        }
        let srtp = match (secure, crypto) {
            (true, None) => return Err(SdpError::NoCommonCrypto),
            (true, crypto) => crypto,
            (false, _) => None,
        };
        let telephone_event = rtpmaps
            .iter()
            .find(|(pt, name, rate)| {
                name == "telephone-event" && *rate == codec.clock_rate && payload_types.contains(pt)
            })
            .map(|(pt, _, _)| *pt);
        Ok(Self {
            remote: SocketAddr::new(ip, port),
            codec,
            audio_level_ext,
            rtcp_mux,
            telephone_event,
            direction: direction.unwrap_or_default(),
            srtp,
        })
    }

    /// Our answer: the chosen codec on `local`, plain RTP.
    pub fn answer(&self, local: SocketAddr, session_id: u64) -> String {
        self.answer_with_key(local, session_id, None)
    }

    /// Our answer; with `key` (and an `RTP/SAVP` offer) it is `RTP/SAVP` with our
    /// `a=crypto` under the offer's tag.
    pub fn answer_with_key(
        &self,
        local: SocketAddr,
        session_id: u64,
        key: Option<&SrtpKey>,
    ) -> String {
        let crypto = self.srtp.as_ref().zip(key).map(|((tag, _), key)| (*tag, key));
        let ip_kind = if local.is_ipv4() { "IP4" } else { "IP6" };
        let pt = self.codec.payload_type;
        let mut sdp = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = write!(
            sdp,
            "v=0\r\no=mixminus {session_id} 1 IN {ip_kind} {ip}\r\ns=mixminus\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\nm=audio {port} {proto} {pt}{dtmf}\r\na=rtpmap:{pt} {name}/{rate}{channels}\r\na=ptime:{ptime}\r\n",
            proto = if crypto.is_some() { "RTP/SAVP" } else { "RTP/AVP" },
            dtmf = self.telephone_event.map(|pt| format!(" {pt}")).unwrap_or_default(),
            ip = local.ip(),
            port = local.port(),
            name = codec_name(self.codec.kind),
            rate = self.codec.clock_rate,
            channels = if self.codec.kind == CodecKind::Opus { "/2" } else { "" },
            ptime = self.codec.ptime_ms,
        );
        if self.codec.kind == CodecKind::Opus {
            // What we take: FEC (we decode it for lost packets), the offerer's minptime, and
            // DTX if it offered it (we conceal and skip DTX gaps).
            let offered = self.codec.opus_fmtp;
            let _ = write!(
                sdp,
                "a=fmtp:{pt} minptime={};useinbandfec=1{}\r\n",
                offered.min_ptime.unwrap_or(10),
                if offered.use_dtx == Some(true) { ";usedtx=1" } else { "" },
            );
        }
        if let Some(id) = self.audio_level_ext {
            let _ = write!(sdp, "a=extmap:{id} {AUDIO_LEVEL_URI}\r\n");
        }
        if let Some(pt) = self.telephone_event {
            let _ = write!(
                sdp,
                "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} 0-16\r\n",
                rate = self.codec.clock_rate
            );
        }
        if self.rtcp_mux {
            sdp.push_str("a=rtcp-mux\r\n");
        }
        if let Some((tag, key)) = crypto {
            let _ = write!(sdp, "a=crypto:{tag} {SUITE} inline:{}\r\n", key.to_inline());
        }
        let _ = write!(sdp, "a={}\r\n", self.direction.answered().as_str());
        sdp
    }
}

fn parse_connection(value: &str) -> Result<IpAddr, SdpError> {
    let mut fields = value.split_ascii_whitespace();
    let (Some("IN"), Some(_kind), Some(addr)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(SdpError::Malformed("c="));
    };
    // Multicast addresses may carry /ttl: we take the address only.
    addr.split('/').next().and_then(|a| a.parse().ok()).ok_or(SdpError::Malformed("c="))
}

fn parse_rtpmap(map: &str) -> Option<(u8, String, u32)> {
    let (pt, encoding) = map.split_once(' ')?;
    let mut parts = encoding.trim().split('/');
    let name = parts.next()?.to_ascii_lowercase();
    let rate = parts.next()?.parse().ok()?;
    if name.len() > 32 {
        return None;
    }
    Some((pt.parse().ok()?, name, rate))
}

fn codec_name(kind: CodecKind) -> &'static str {
    match kind {
        CodecKind::Opus => "opus",
        CodecKind::Pcmu => "PCMU",
        CodecKind::Pcma => "PCMA",
        _ => "L16",
    }
}

fn choose_codec(pts: &[u8], rtpmaps: &[(u8, String, u32)], ptime_ms: u32) -> Option<CodecParams> {
    let lookup = |pt: u8| -> Option<(CodecKind, u32)> {
        if let Some((_, name, rate)) = rtpmaps.iter().find(|(p, _, _)| *p == pt) {
            return match name.as_str() {
                "opus" if *rate == 48_000 => Some((CodecKind::Opus, 48_000)),
                "pcmu" if *rate == 8_000 => Some((CodecKind::Pcmu, 8_000)),
                "pcma" if *rate == 8_000 => Some((CodecKind::Pcma, 8_000)),
                "l16" if matches!(rate, 8_000 | 16_000 | 24_000 | 48_000) => {
                    Some((CodecKind::L16, *rate))
                }
                _ => None,
            };
        }
        // Static payload types need no rtpmap.
        match pt {
            0 => Some((CodecKind::Pcmu, 8_000)),
            8 => Some((CodecKind::Pcma, 8_000)),
            _ => None,
        }
    };
    let preference = [CodecKind::Opus, CodecKind::Pcmu, CodecKind::Pcma, CodecKind::L16];
    for want in preference {
        for &pt in pts {
            if let Some((kind, rate)) = lookup(pt).filter(|(k, _)| *k == want) {
                let mut params = CodecParams::new(kind);
                params.payload_type = pt;
                params.clock_rate = rate;
                params.ptime_ms = ptime_ms;
                return Some(params);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBRTC_LIKE: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
        m=audio 40000 RTP/AVP 111 0 8 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
        a=ptime:20\r\na=rtcp-mux\r\n";

    #[test]
    fn picks_opus_and_reads_the_extras() {
        let offer = AudioOffer::parse(WEBRTC_LIKE, 20).unwrap();
        assert_eq!(offer.remote, "10.0.0.5:40000".parse().unwrap());
        assert_eq!(offer.codec.kind, CodecKind::Opus);
        assert_eq!(offer.codec.payload_type, 111);
        assert_eq!(offer.audio_level_ext, Some(1));
        assert!(offer.rtcp_mux);
        let answer = offer.answer("127.0.0.1:20000".parse().unwrap(), 7);
        assert!(answer.contains("m=audio 20000 RTP/AVP 111\r\n"));
        assert!(answer.contains("a=rtpmap:111 opus/48000/2\r\n"));
        assert!(answer.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(answer.contains("a=sendrecv\r\n"));
        // telephone-event is offered at 8000 Hz, not at Opus's clock: not taken.
        assert_eq!(offer.telephone_event, None);
    }

    #[test]
    fn telephone_event_and_direction_are_answered() {
        let sdp = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5004 RTP/AVP 0 101\r\n\
            a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendonly\r\n";
        let offer = AudioOffer::parse(sdp, 20).unwrap();
        assert_eq!(offer.telephone_event, Some(101));
        assert_eq!(offer.direction, Direction::SendOnly);
        let answer = offer.answer("127.0.0.1:20000".parse().unwrap(), 1);
        assert!(answer.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{answer}");
        assert!(answer.contains("a=recvonly\r\n"), "{answer}");
        // Our own offer parses as an offer (and as the answer an ACK would carry).
        let ours = offer_sdp();
        let parsed = AudioOffer::parse(&ours, 20).unwrap();
        assert_eq!((parsed.codec.kind, parsed.telephone_event), (CodecKind::Opus, None));
    }

    #[test]
    fn sdes_offers_are_answered_with_our_key() {
        let key = SrtpKey::random();
        let sdp = format!("v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5004 RTP/SAVP 0\r\n\
            a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{k}\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^31\r\n",
            k = key.to_inline());
        let offer = AudioOffer::parse(&sdp, 20).unwrap();
        assert_eq!(offer.srtp, Some((2, key)));
        let ours = SrtpKey::random();
        let answer = offer.answer_with_key("127.0.0.1:6000".parse().unwrap(), 1, Some(&ours));
        assert!(answer.contains("m=audio 6000 RTP/SAVP 0\r\n"), "{answer}");
        assert!(answer.contains(&format!(
            "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
            ours.to_inline()
        )));
        let only_32 = sdp.replace("a=crypto:2", "x=");
        assert_eq!(AudioOffer::parse(&only_32, 20), Err(SdpError::NoCommonCrypto));
        // Plain RTP ignores crypto lines.
        assert_eq!(AudioOffer::parse(&sdp.replace("RTP/SAVP", "RTP/AVP"), 20).unwrap().srtp, None);
    }

    fn offer_sdp() -> String {
        super::offer("127.0.0.1:20000".parse().unwrap(), 3, 20)
    }

    #[test]
    fn opus_fmtp_is_read_and_answered() {
        let offer = AudioOffer::parse(
            &WEBRTC_LIKE.replace(
                "a=fmtp:111 useinbandfec=1",
                "a=fmtp:111 minptime=10; useinbandfec=1;usedtx=1;maxaveragebitrate=24000;x=y",
            ),
            20,
        )
        .unwrap();
        let fmtp = offer.codec.opus_fmtp;
        assert_eq!(fmtp.max_average_bitrate, Some(24_000));
        assert_eq!(
            (fmtp.use_inband_fec, fmtp.use_dtx, fmtp.min_ptime),
            (Some(true), Some(true), Some(10))
        );
        let settings = fmtp.applied_to(&crate::CodecSettings::default());
        assert_eq!(settings.bitrate, 24_000.min(crate::CodecSettings::default().bitrate));
        let answer = offer.answer("127.0.0.1:5000".parse().unwrap(), 1);
        assert!(answer.contains("a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\n"), "{answer}");
        // FEC as the receiver asks; one that says nothing gets the conference's choice.
        let with_fec = crate::CodecSettings { fec: true, ..Default::default() };
        assert!(!OpusFmtp::parse("useinbandfec=0").applied_to(&with_fec).fec);
        assert!(OpusFmtp::default().applied_to(&with_fec).fec);
        assert!(OpusFmtp::parse("useinbandfec=1").applied_to(&Default::default()).fec);
        assert!(!OpusFmtp::default().applied_to(&Default::default()).fec);
    }

    #[test]
    fn static_payload_types_need_no_rtpmap() {
        let sdp = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5004 RTP/AVP 8 0\r\n";
        let offer = AudioOffer::parse(sdp, 20).unwrap();
        assert_eq!(offer.codec.kind, CodecKind::Pcmu);
        assert_eq!(offer.codec.payload_type, 0);
    }

    #[test]
    fn refusals_name_the_problem() {
        assert_eq!(AudioOffer::parse("v=0\r\n", 20), Err(SdpError::NoAudio));
        assert_eq!(
            AudioOffer::parse("m=audio 5004 RTP/AVP 0\r\n", 20),
            Err(SdpError::NoConnection)
        );
        assert_eq!(
            AudioOffer::parse("c=IN IP4 1.2.3.4\r\nm=audio 5004 RTP/AVP 9\r\n", 20),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(
            AudioOffer::parse("c=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", 20),
            Err(SdpError::Malformed("m="))
        );
        assert_eq!(AudioOffer::parse(&"a".repeat(MAX_SDP_LEN + 1), 20), Err(SdpError::TooLong));
    }
}
