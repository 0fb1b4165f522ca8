//! The `join` participants action (mixminus's media leg): who joins, with which flags, and
//! where its RTP goes.
//!
//! ```json
//! {"call_id": "abc", "caller_id_name": "Alice", "caller_id_number": "1001",
//!  "participant_flags": ["mute", "is_moderator"],
//!  "rtp": {"remote_ip": "192.0.2.7", "remote_port": 40000, "codec": "opus",
//!          "payload_type": 111, "rate": 48000, "ptime": 20, "audio_level_ext": 1}}
//! ```
//!
//! or `"sdp": "<offer>"` instead of `rtp`. `participant_flags` takes Kazoo's dial flags;
//! `mute`, `deaf`, `is_moderator` and `ghost` act, the others (`distribute_dtmf`,
//! `disable_moh`, `join_existing`, `video_mute`) are accepted and have no effect on audio.
//! `custom_channel_vars` (an object) is echoed in the participant object and its events.
//! Without `remote_ip`/`remote_port` the mix goes back to wherever the participant's RTP
//! comes from (symmetric RTP). Codec rates: Opus 48000; PCMU/PCMA 8000; L16 8000, 16000,
//! 24000 or 48000. `ptime` 10, 20, 40 or 60 ms. `audio_level_ext` (1..=14, as Janus's
//! `audiolevel_ext`) is the RFC 8285 one-byte extension id on which the participant sends
//! its RFC 6464 audio level: frames it marks as silence are not decoded (default: the
//! bridge's `audio_level_ext`, if any). `call_id` defaults to a fresh UUID.

use std::net::{IpAddr, SocketAddr};

use mixminus_core::JoinOptions;
use mixminus_rtp::sdp::AudioOffer;
use mixminus_rtp::srtp::{SrtpKey, SrtpKeys};
use mixminus_rtp::{JoinRequest, Joined, ReservedPorts};
use serde_json::Value;

use crate::fields::{int_in, wrong_type, Obj};
use crate::registry::{codec_params, ConferenceEntry, ParticipantMeta, Registry};
use crate::ApiError;

/// A join the conference admitted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Admitted {
    /// The participant and its RTP address.
    pub joined: Joined,
    /// The SDP offer it joined with, parsed (the answer is `offer.answer(joined.local_rtp, …)`).
    pub offer: Option<AudioOffer>,
    /// Its call id (the join's, else a fresh UUID).
    pub call_id: String,
}

/// Admits a join into `entry`: every front (the HTTP `join` action, a SIP call) comes in
/// here, so a participant is the same whichever way it came. Refuses a join past the
/// account's participant quota, a locked or full conference (decided by the conference
/// task, atomically with every other join) and a call already in it, applies the document's `member` / `moderator` join
/// rules (then `restore`, which gives a call back its roles after its conference moved to
/// this node), adds the leg (on `ports` when the front reserved them) and records the call.
pub async fn admit(
    registry: &Registry,
    entry: &ConferenceEntry,
    body: &JoinBody,
    ports: Option<ReservedPorts>,
    restore: impl FnOnce(&mut JoinOptions),
) -> Result<Admitted, ApiError> {
    let doc = entry.doc();
    // Held until the call's metadata is recorded: a second join of the same call waits
    // for no one and is refused.
    let _claim = match &body.call_id {
        Some(call_id) => Some(entry.claim_call(call_id).ok_or_else(|| ApiError::Conflict {
            field: "call_id".into(),
            rule: "unique",
            message: format!("call {call_id} is already in the conference"),
        })?),
        None => None,
    };
    let frame_ms = doc.profile.interval.millis();
    let (codec, remote, offer, level_ext) = match &body.media {
        Media::Rtp { remote, codec, audio_level_ext } => {
            (codec_params(codec), *remote, None, *audio_level_ext)
        }
        Media::Sdp(sdp) => {
            let offer = AudioOffer::parse(sdp, frame_ms)
                .map_err(|e| ApiError::invalid("sdp", "format", e.to_string()))?;
            (offer.codec, Some(offer.remote), Some(offer), None)
        }
    };
    let flags = JoinFlags {
        mute: body.mute,
        deaf: body.deaf,
        moderator: body.moderator,
        ghost: body.ghost,
    };
    let mut request = admission(registry, entry, flags, codec, remote)?;
    restore(&mut request.options);
    request.audio_level_ext = level_ext;
    if let Some(offer) = &offer {
        // Only what the answer echoes back is honoured, so the two never disagree.
        request.audio_level_ext = offer.audio_level_ext;
        request.rtcp_mux = offer.rtcp_mux;
        request.dtmf_payload_type = offer.telephone_event;
        if let (Some((_, remote)), Some(local)) = (&offer.srtp, &body.srtp_local) {
            request.srtp = Some(SrtpKeys::new(remote.clone(), local.clone()));
        }
    }
    let joined = match ports {
        Some(ports) => entry.handle().join_reserved(request, ports).await?,
        None => entry.handle().join(request).await?,
    };
    let call_id = body.call_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    entry.add_member(
        joined.id,
        ParticipantMeta::new(
            call_id.clone(),
            body.caller_id_name.clone(),
            body.caller_id_number.clone(),
        )
        .with_custom_channel_vars(body.custom_channel_vars.clone()),
    );
    Ok(Admitted { joined, offer, call_id })
}

/// A participant's own join flags; the document's join rules add to them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JoinFlags {
    pub(crate) mute: bool,
    pub(crate) deaf: bool,
    pub(crate) moderator: bool,
    pub(crate) ghost: bool,
}

/// The join request every front builds (RTP, SDP, SIP, WHIP): refused past the account's
/// participant quota; its flags from `flags` and the conference's `member` or `moderator`
/// rules. The lock and the member limit go with the request: the conference task decides
/// them when it admits the join, atomically with every other join.
pub(crate) fn admission(
    registry: &Registry,
    entry: &ConferenceEntry,
    flags: JoinFlags,
    codec: mixminus_rtp::CodecParams,
    remote: Option<SocketAddr>,
) -> Result<JoinRequest, ApiError> {
    let quota = registry.quotas().participants_per_account;
    if !flags.ghost && registry.account_participants(entry.account_id()) >= quota {
        return Err(ApiError::Conflict {
            field: "participants".into(),
            rule: "participants_per_account",
            message: format!("this account may have at most {quota} participants at once"),
        });
    }
    let doc = entry.doc();
    let rules = if flags.moderator { &doc.moderator } else { &doc.member };
    let mut request = JoinRequest::new(codec, remote);
    request.options = JoinOptions {
        muted: Some(flags.mute || rules.join_muted),
        deaf: Some(flags.deaf || rules.join_deaf),
        moderator: flags.moderator,
        ghost: flags.ghost,
        energy_threshold: entry.conference_energy(),
        ..Default::default()
    };
    request.locked = Some(entry.lock_flag());
    request.max_members = doc.member_limit();
    Ok(request)
}

/// Kazoo's participant flags.
pub const PARTICIPANT_FLAGS: &[&str] = &[
    "mute",
    "deaf",
    "distribute_dtmf",
    "is_moderator",
    "disable_moh",
    "ghost",
    "join_existing",
    "video_mute",
];

/// A parsed join.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JoinBody {
    /// The call's id (Kazoo's `call_id`).
    pub call_id: Option<String>,
    /// Caller id name.
    pub caller_id_name: Option<String>,
    /// Caller id number.
    pub caller_id_number: Option<String>,
    /// `mute` flag.
    pub mute: bool,
    /// `deaf` flag.
    pub deaf: bool,
    /// `is_moderator` flag.
    pub moderator: bool,
    /// `ghost` flag.
    pub ghost: bool,
    /// Kazoo's `custom_channel_vars`: an object of the caller's own, echoed back in the
    /// participant object and in its events.
    pub custom_channel_vars: Option<serde_json::Map<String, Value>>,
    /// The media leg.
    pub media: Media,
    /// Not read from JSON: a signalling front's own SRTP key. With an `RTP/SAVP` offer that
    /// carries the peer's (SDES), the leg is SRTP and the answer carries this one.
    pub srtp_local: Option<SrtpKey>,
}

/// How the media leg is described.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Media {
    /// Explicit RTP parameters.
    Rtp {
        /// Where the mix goes; `None` = latch onto the source.
        remote: Option<SocketAddr>,
        /// The codec.
        codec: RtpCodec,
        /// The RFC 6464 audio level's extension id, if the participant sends it.
        audio_level_ext: Option<u8>,
    },
    /// An SDP offer (answered in the response).
    Sdp(String),
}

/// A codec as the join names it; unset values take the codec's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtpCodec {
    /// Which codec.
    pub name: CodecName,
    /// RTP payload type, 0..=127.
    pub payload_type: Option<u8>,
    /// Clock rate, Hz (valid for the codec).
    pub rate: Option<u32>,
    /// Packet time, ms: 10, 20, 40 or 60.
    pub ptime_ms: Option<u32>,
}

/// The codecs a leg may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecName {
    /// Opus (48 kHz RTP clock).
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// Linear 16-bit PCM.
    L16,
}

impl CodecName {
    /// The name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CodecName::Opus => "opus",
            CodecName::Pcmu => "pcmu",
            CodecName::Pcma => "pcma",
            CodecName::L16 => "l16",
        }
    }
}

/// Longest SDP offer accepted.
pub const MAX_SDP: usize = 16 * 1024;

impl JoinBody {
    /// A join with an SDP offer and nothing else set (a signalling front fills in the
    /// call's fields).
    pub fn sdp(offer: impl Into<String>) -> Self {
        JoinBody {
            call_id: None,
            caller_id_name: None,
            caller_id_number: None,
            mute: false,
            deaf: false,
            moderator: false,
            ghost: false,
            custom_channel_vars: None,
            media: Media::Sdp(offer.into()),
            srtp_local: None,
        }
    }

    /// Parses the join action's `data`.
    pub fn parse(value: &Value) -> Result<Self, ApiError> {
        let obj = Obj::new(value, "")?;
        obj.only(&[
            "call_id",
            "caller_id_name",
            "caller_id_number",
            "custom_channel_vars",
            "participant_flags",
            "rtp",
            "sdp",
        ])?;
        let call_id = obj.str_len("call_id", 1, 128)?.map(str::to_owned);
        let caller_id_name = obj.str_len("caller_id_name", 0, 128)?.map(str::to_owned);
        let caller_id_number = obj.str_len("caller_id_number", 0, 64)?.map(str::to_owned);
        let mut body = JoinBody {
            call_id,
            caller_id_name,
            caller_id_number,
            mute: false,
            deaf: false,
            moderator: false,
            ghost: false,
            custom_channel_vars: match obj.get("custom_channel_vars") {
                None => None,
                Some(Value::Object(vars)) => Some(vars.clone()),
                Some(other) => return Err(wrong_type("custom_channel_vars", "object", other)),
            },
            media: Media::Sdp(String::new()),
            srtp_local: None,
        };
        for (i, flag) in obj.array("participant_flags")?.into_iter().flatten().enumerate() {
            let field = format!("participant_flags.{i}");
            let Value::String(word) = flag else { return Err(wrong_type(&field, "string", flag)) };
            match word.as_str() {
                "mute" => body.mute = true,
                "deaf" => body.deaf = true,
                "is_moderator" => body.moderator = true,
                "ghost" => body.ghost = true,
                w if PARTICIPANT_FLAGS.contains(&w) => {}
                _ => {
                    return Err(ApiError::invalid_value(
                        field,
                        "enum",
                        format!(
                            "Value not found in enumerated list of values: {}",
                            PARTICIPANT_FLAGS.join(", ")
                        ),
                        flag,
                    ))
                }
            }
        }
        body.media = match (obj.get("rtp"), obj.get("sdp")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("sdp", "not", "give either rtp or sdp, not both"))
            }
            (None, None) => {
                return Err(ApiError::invalid("rtp", "required", "rtp (or sdp) is required"))
            }
            (Some(rtp), None) => parse_rtp(rtp)?,
            (None, Some(_)) => Media::Sdp(obj.str_len("sdp", 1, MAX_SDP)?.unwrap_or("").to_owned()),
        };
        Ok(body)
    }
}

fn parse_rtp(value: &Value) -> Result<Media, ApiError> {
    let obj = Obj::new(value, "rtp")?;
    obj.only(&[
        "remote_ip",
        "remote_port",
        "codec",
        "payload_type",
        "rate",
        "ptime",
        "audio_level_ext",
    ])?;
    let audio_level_ext = obj.int("audio_level_ext", 1, 14)?.map(|id| id as u8);
    let ip = match obj.str("remote_ip")? {
        None => None,
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
            ApiError::invalid_value("rtp.remote_ip", "format", "not an IP address", &Value::from(s))
        })?),
    };
    let port = obj.int("remote_port", 1, 65_535)?.map(|p| p as u16);
    let remote = match (ip, port) {
        (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "rtp.remote_port",
                "required",
                "remote_ip needs remote_port",
            ))
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "rtp.remote_ip",
                "required",
                "remote_port needs remote_ip",
            ))
        }
    };
    let codec_value = obj.required("codec")?;
    let kind = match codec_value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("opus") => CodecName::Opus,
        Some("pcmu") => CodecName::Pcmu,
        Some("pcma") => CodecName::Pcma,
        Some("l16") => CodecName::L16,
        Some(_) => {
            return Err(ApiError::invalid_value(
                "rtp.codec",
                "enum",
                "Value not found in enumerated list of values: opus, pcmu, pcma, l16",
                codec_value,
            ))
        }
        None => return Err(wrong_type("rtp.codec", "string", codec_value)),
    };
    let mut codec = RtpCodec { name: kind, payload_type: None, rate: None, ptime_ms: None };
    if let Some(pt) = obj.int("payload_type", 0, 127)? {
        codec.payload_type = Some(pt as u8);
    }
    if let Some(v) = obj.get("rate") {
        let rate = int_in(v, "rtp.rate", 8_000, 48_000)? as u32;
        let ok = match kind {
            CodecName::Opus => rate == 48_000,
            CodecName::Pcmu | CodecName::Pcma => rate == 8_000,
            CodecName::L16 => matches!(rate, 8_000 | 16_000 | 24_000 | 48_000),
        };
        if !ok {
            return Err(ApiError::invalid_value(
                "rtp.rate",
                "enum",
                "rate not valid for this codec (opus 48000; pcmu/pcma 8000; l16 8000, 16000, 24000, 48000)",
                v,
            ));
        }
        codec.rate = Some(rate);
    }
    if let Some(v) = obj.get("ptime") {
        let ms = int_in(v, "rtp.ptime", 10, 60)? as u32;
        if !matches!(ms, 10 | 20 | 40 | 60) {
            return Err(ApiError::invalid_value(
                "rtp.ptime",
                "enum",
                "Value not found in enumerated list of values: 10, 20, 40, 60",
                v,
            ));
        }
        codec.ptime_ms = Some(ms);
    }
    Ok(Media::Rtp { remote, codec, audio_level_ext })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rtp_join() {
        let j = JoinBody::parse(&json!({"participant_flags": ["mute", "video_mute"],
            "rtp": {"remote_ip": "127.0.0.1", "remote_port": 4000, "codec": "PCMU"}}))
        .unwrap();
        assert!(j.mute && !j.deaf);
        match j.media {
            Media::Rtp { remote, codec, .. } => {
                assert_eq!(remote, Some("127.0.0.1:4000".parse().unwrap()));
                assert_eq!(codec.name, CodecName::Pcmu);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rtp_join_names_its_audio_level_extension() {
        let rtp = |ext: Value| {
            JoinBody::parse(&json!({"rtp": {"codec": "opus", "audio_level_ext": ext}}))
        };
        match rtp(json!(3)).unwrap().media {
            Media::Rtp { audio_level_ext, .. } => assert_eq!(audio_level_ext, Some(3)),
            other => panic!("{other:?}"),
        }
        for bad in [json!(0), json!(15), json!("x")] {
            assert!(rtp(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let field = |v: Value| match JoinBody::parse(&v).unwrap_err() {
            ApiError::InvalidData { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(json!({})), "rtp");
        assert_eq!(field(json!({"rtp": {"codec": "g729"}})), "rtp.codec");
        assert_eq!(field(json!({"rtp": {"codec": "opus", "rate": 8000}})), "rtp.rate");
        assert_eq!(
            field(json!({"rtp": {"codec": "opus", "remote_port": 70000, "remote_ip": "1.2.3.4"}})),
            "rtp.remote_port"
        );
        assert_eq!(
            field(json!({"rtp": {"codec": "opus", "remote_ip": "nope", "remote_port": 5}})),
            "rtp.remote_ip"
        );
        assert_eq!(
            field(json!({"rtp": {"codec": "opus"}, "participant_flags": ["loud"]})),
            "participant_flags.0"
        );
        assert_eq!(field(json!({"rtp": {"codec": "opus"}, "colour": 1})), "colour");
    }
}
