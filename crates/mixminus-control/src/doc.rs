//! The Kazoo conference document, parsed into typed values.
//!
//! Kazoo's own `conferences` schema checks the document at runtime ([`crate::schema`], with
//! crossbar's `fix_js_types`); this module then reads the typed values. Unknown keys are
//! kept as given (Kazoo stores them too, e.g. `ui_metadata`), and keys starting with `_`
//! or `pvt_` are dropped (Kazoo's private and read-only fields, like the `_read_only` a
//! client may send back). Defaults are Kazoo's: `member.join_muted` **true**,
//! `moderator.join_muted` false, `join_deaf` false, `play_name` false; tones on when unset.
//!
//! mixminus reads these keys of `profile` (FreeSWITCH conference profile parameters, as
//! Kazoo names them; the `mixminus.profile` schema checks them) and ignores, but keeps,
//! any other:
//!
//! | key | type | range | default | drives |
//! |---|---|---|---|---|
//! | `rate` | integer | 8000, 16000, 24000, 48000 | 48000 | mixing rate |
//! | `interval` | integer | 10, 20, 40, 60 | 20 | frame, ms |
//! | `energy-level` | integer | 0..=32768 | 100 | talk threshold (mean \|sample\|), 0 = gate off |
//! | `max-members` | integer | 0..=16000 | none | member limit (0 = none) |
//! | `comfort-noise` | boolean or integer 0..=10000 | | false | kept; not generated yet |
//! | `enter-sound`, `exit-sound` | string | | | kept; the generated tone plays |
//! | `max-active-speakers` (mixminus) | integer | 0..=64 | 0 (all) | mix only the N loudest |
//! | `opus-bitrate` (mixminus) | integer | 6000..=510000 | 40000 | Opus bit/s of every mix sent |
//! | `opus-complexity` (mixminus) | integer | 0..=10 | 8 | Opus encoder complexity |
//! | `opus-fec` (mixminus) | boolean | | false | Opus in-band FEC for receivers whose SDP does not say |
//! | `opus-dtx` (mixminus) | boolean | | false | Opus DTX in what is sent |
//! | `opus-loss-percent` (mixminus) | integer | 0..=100 | 5 | loss the Opus FEC is tuned for |
//! | `jitter-min-delay-ms` (mixminus) | integer | 0..=500 | 0 | playout delay kept beyond one frame |
//! | `jitter-max-delay-ms` (mixminus) | integer | 20..=1000 | 200 | the most delay a listener hears beyond the fastest path (late packets past it are concealed) |
//!
//! The Opus keys set what the conference sends; a receiver's SDP changes them for that
//! receiver (`maxaveragebitrate` caps the bitrate, `useinbandfec` turns FEC on or off). They apply to conferences started after
//! the change. Defaults and how they were chosen: `docs/QUALITY.md`. The `jitter-*` keys
//! bound every participant's playout buffer (the bridge's own bounds when unset): a lower
//! maximum trades late packets (concealed) for latency, in whole 20 ms ticks: at 20 ms,
//! latency under jitter is at Janus AudioBridge's with speech still scoring above it; 40 ms
//! is one tick more and keeps the default's score under 40 ms of jitter, not 100 (`docs/QUALITY.md`).
//!
//! Extensions and deliberate differences from Kazoo's schema: `id` (a client-chosen
//! conference id, `[A-Za-z0-9_-]{1,64}`) is accepted on create; `max_participants` must be
//! 0..=16000 (0 = no limit beyond the engine's); the profile keys above are checked.
//!
//! `play_entry_tone` / `play_exit_tone` may be a boolean or a string (Kazoo: a tone or media
//! name); any string plays mixminus's generated tone. A running conference takes a changed
//! document live where it can ([`crate::registry::ConferenceEntry::replace_doc`]).

use mixminus_core::{ConferenceConfig, FrameDuration, JoinFlags, SampleRate, MAX_PARTICIPANTS};
use serde_json::{Map, Value};

use crate::fields::wrong_type;
use crate::{schema, ApiError};

/// A parsed conference document.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConferenceDoc {
    /// A client-chosen id (mixminus extension), only honoured on create.
    pub id: Option<String>,
    /// Friendly name.
    pub name: Option<String>,
    /// Member join rules.
    pub member: JoinRules,
    /// Moderator join rules.
    pub moderator: JoinRules,
    /// Tone when someone joins.
    pub play_entry_tone: Tone,
    /// Tone when someone leaves.
    pub play_exit_tone: Tone,
    /// Announce names (kept; not implemented: no prompts).
    pub play_name: bool,
    /// Limit of participants; `None` or 0 = no limit beyond the engine's.
    pub max_participants: Option<u32>,
    /// Mixer profile.
    pub profile: Profile,
    /// The document as given (private keys dropped), for reading back.
    pub raw: Map<String, Value>,
}

/// `member` / `moderator` join rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JoinRules {
    /// Join unable to speak.
    pub join_muted: bool,
    /// Join unable to hear.
    pub join_deaf: bool,
    /// Call-in numbers.
    pub numbers: Vec<String>,
    /// PINs.
    pub pins: Vec<String>,
}

/// An entry or exit tone setting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tone {
    /// No tone.
    Off,
    /// The default tone.
    On,
    /// A named tone or media (Kazoo); mixminus plays its generated tone.
    Named(String),
}

impl Tone {
    /// Whether a tone plays.
    pub fn plays(&self) -> bool {
        !matches!(self, Tone::Off)
    }
}

/// The profile keys mixminus uses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// `rate`.
    pub rate: SampleRate,
    /// `interval`.
    pub interval: FrameDuration,
    /// `energy-level`; `None` = the engine's default.
    pub energy_level: Option<u32>,
    /// `max-members`.
    pub max_members: Option<u32>,
    /// `comfort-noise`: off, on, or a level.
    pub comfort_noise: Option<u32>,
    /// `max-active-speakers` (0 = all talkers).
    pub max_active_speakers: u32,
    /// `opus-bitrate`, bit/s; `None` = the engine's default.
    pub opus_bitrate: Option<u32>,
    /// `opus-complexity`.
    pub opus_complexity: Option<u8>,
    /// `opus-fec`.
    pub opus_fec: Option<bool>,
    /// `opus-dtx`.
    pub opus_dtx: Option<bool>,
    /// `opus-loss-percent`.
    pub opus_loss_percent: Option<u8>,
    /// `jitter-min-delay-ms`.
    pub jitter_min_delay_ms: Option<u32>,
    /// `jitter-max-delay-ms`.
    pub jitter_max_delay_ms: Option<u32>,
}

/// Largest `max-active-speakers`.
pub const MAX_ACTIVE_SPEAKERS: u32 = 64;

/// The largest conference document, serialized (a PATCH merged in included).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

impl ConferenceDoc {
    /// Parses a document (the request's `data`): Kazoo's `conferences` schema checks it
    /// (see [`crate::schema`]; JavaScript-style strings such as `"true"` or `"5"` are
    /// converted as Kazoo's `fix_js_types` converts them), then the typed values are read.
    pub fn parse(value: &Value) -> Result<Self, ApiError> {
        // A bound on what a document may grow to: unknown keys are kept, and PATCH merges
        // into what is there, so without it repeated PATCHes grew one without limit.
        let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
        if size > MAX_DOCUMENT_BYTES {
            return Err(ApiError::invalid_value(
                "data",
                "maxSize",
                format!("the document would be {size} bytes; at most {MAX_DOCUMENT_BYTES}"),
                &Value::Null,
            ));
        }
        let mut value = value.clone();
        schema::validate(schema::Body::Conference, &mut value)?;
        // The schema guarantees an object and the types of every key read below.
        let Value::Object(map) = value else { return Err(wrong_type("data", "object", &value)) };
        // Names end up in logs, events and other systems' records: no control characters.
        if let Some(Value::String(name)) = map.get("name") {
            if name.chars().any(char::is_control) {
                return Err(ApiError::invalid_value(
                    "name",
                    "pattern",
                    "String must not contain control characters",
                    &Value::String(name.clone()),
                ));
            }
        }
        let rules = |key: &str, muted_default: bool| JoinRules::read(map.get(key), muted_default);
        let profile = map.get("profile").map(Profile::read).unwrap_or_default();
        let raw = map
            .iter()
            .filter(|(k, _)| !k.starts_with('_') && !k.starts_with("pvt_") && *k != "id")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self {
            id: map.get("id").and_then(Value::as_str).map(str::to_owned),
            name: map.get("name").and_then(Value::as_str).map(str::to_owned),
            member: rules("member", true),
            moderator: rules("moderator", false),
            play_entry_tone: tone(map.get("play_entry_tone")),
            play_exit_tone: tone(map.get("play_exit_tone")),
            play_name: map.get("play_name").and_then(Value::as_bool).unwrap_or(false),
            max_participants: map.get("max_participants").and_then(as_u32),
            profile,
            raw,
        })
    }

    /// Parses `patch` merged into this document (Kazoo's `PATCH`: objects merge
    /// recursively, other values replace).
    pub fn merged(&self, patch: &Value) -> Result<Self, ApiError> {
        let Value::Object(patch) = patch else { return Err(wrong_type("data", "object", patch)) };
        let mut merged = Value::Object(self.raw.clone());
        merge(&mut merged, &Value::Object(patch.clone()));
        Self::parse(&merged)
    }

    /// The mixer configuration this document asks for (tones: [`Tone::plays`]).
    pub fn core_config(&self) -> ConferenceConfig {
        let mut core = ConferenceConfig {
            sample_rate: self.profile.rate,
            frame: self.profile.interval,
            max_active_speakers: self.profile.max_active_speakers as usize,
            member_join: JoinFlags { muted: self.member.join_muted, deaf: self.member.join_deaf },
            moderator_join: JoinFlags {
                muted: self.moderator.join_muted,
                deaf: self.moderator.join_deaf,
            },
            ..Default::default()
        };
        if let Some(level) = self.profile.energy_level {
            core.talk.energy_threshold = level;
        }
        // The engine's ceiling: the control plane enforces the document's limits itself
        // (ghosts and the runtime's hidden tone source are not counted there).
        core.max_participants = MAX_PARTICIPANTS;
        core
    }

    /// The participant limit the control plane enforces (`max_participants` and
    /// `max-members`, the smaller; ghosts not counted).
    pub fn member_limit(&self) -> Option<usize> {
        [self.max_participants, self.profile.max_members]
            .into_iter()
            .flatten()
            .filter(|&n| n > 0)
            .min()
            .map(|n| n as usize)
    }

    /// The document as Kazoo shows it: as given, with Kazoo's defaults filled in, and `id`.
    pub fn to_json(&self, id: &str) -> Value {
        let mut map = self.raw.clone();
        map.insert("id".into(), id.into());
        for (key, rules) in [("member", &self.member), ("moderator", &self.moderator)] {
            let entry = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert("join_muted".into(), rules.join_muted.into());
                m.insert("join_deaf".into(), rules.join_deaf.into());
                m.entry("numbers").or_insert_with(|| Value::Array(Vec::new()));
                m.entry("pins").or_insert_with(|| Value::Array(Vec::new()));
            }
        }
        map.entry("conference_numbers").or_insert_with(|| Value::Array(Vec::new()));
        map.entry("play_name").or_insert(Value::Bool(self.play_name));
        map.entry("play_entry_tone").or_insert(Value::Bool(self.play_entry_tone.plays()));
        map.entry("play_exit_tone").or_insert(Value::Bool(self.play_exit_tone.plays()));
        Value::Object(map)
    }
}

impl JoinRules {
    /// The rules in a validated `member` / `moderator` object (or Kazoo's defaults).
    fn read(value: Option<&Value>, muted_default: bool) -> Self {
        let get = |key: &str| value.and_then(|v| v.get(key));
        let strings = |key: &str| -> Vec<String> {
            get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Self {
            join_muted: get("join_muted").and_then(Value::as_bool).unwrap_or(muted_default),
            join_deaf: get("join_deaf").and_then(Value::as_bool).unwrap_or(false),
            numbers: strings("numbers"),
            pins: strings("pins"),
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            rate: SampleRate::Hz48000,
            interval: FrameDuration::Ms20,
            energy_level: None,
            max_members: None,
            comfort_noise: None,
            max_active_speakers: 0,
            opus_bitrate: None,
            opus_complexity: None,
            opus_fec: None,
            opus_dtx: None,
            opus_loss_percent: None,
            jitter_min_delay_ms: None,
            jitter_max_delay_ms: None,
        }
    }
}

impl Profile {
    /// The keys mixminus reads from a validated `profile` object (the `mixminus.profile`
    /// schema has checked their types and ranges).
    fn read(value: &Value) -> Self {
        let int = |key: &str| value.get(key).and_then(as_u32);
        let defaults = Profile::default();
        Profile {
            rate: int("rate").and_then(|hz| SampleRate::from_hz(hz).ok()).unwrap_or(defaults.rate),
            interval: int("interval")
                .and_then(|ms| FrameDuration::from_millis(ms).ok())
                .unwrap_or(defaults.interval),
            energy_level: int("energy-level"),
            max_members: int("max-members"),
            comfort_noise: match value.get("comfort-noise") {
                Some(Value::Bool(true)) => Some(1_400),
                Some(v) => as_u32(v),
                None => None,
            },
            max_active_speakers: int("max-active-speakers").unwrap_or(0),
            opus_bitrate: int("opus-bitrate"),
            opus_complexity: int("opus-complexity").map(|n| n as u8),
            opus_fec: value.get("opus-fec").and_then(Value::as_bool),
            opus_dtx: value.get("opus-dtx").and_then(Value::as_bool),
            opus_loss_percent: int("opus-loss-percent").map(|n| n as u8),
            jitter_min_delay_ms: int("jitter-min-delay-ms"),
            jitter_max_delay_ms: int("jitter-max-delay-ms"),
        }
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Whether `s` is a usable conference id: 1..=64 of `[A-Za-z0-9_-]`.
pub fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tone(value: Option<&Value>) -> Tone {
    match value {
        Some(Value::Bool(false)) => Tone::Off,
        Some(Value::String(s)) => Tone::Named(s.clone()),
        _ => Tone::On,
    }
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(into), Value::Object(patch)) => {
            for (k, v) in patch {
                match into.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        into.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kazoo_defaults() {
        let doc = ConferenceDoc::parse(&json!({"name": "x"})).unwrap();
        assert!(doc.member.join_muted);
        assert!(!doc.moderator.join_muted);
        assert!(doc.play_entry_tone.plays());
        let shown = doc.to_json("abc");
        assert_eq!(shown["member"]["join_muted"], true);
        assert_eq!(shown["id"], "abc");
    }

    #[test]
    fn profile_drives_the_mixer() {
        let doc = ConferenceDoc::parse(&json!({"profile": {"rate": 16000, "interval": 10,
            "energy-level": 0, "max-active-speakers": 3, "max-members": 5, "caller-controls": "x"}}))
        .unwrap();
        let c = doc.core_config();
        assert_eq!(c.sample_rate, SampleRate::Hz16000);
        assert_eq!(c.frame, FrameDuration::Ms10);
        assert_eq!(c.talk.energy_threshold, 0);
        assert_eq!(c.max_active_speakers, 3);
        assert_eq!(doc.member_limit(), Some(5));
    }

    #[test]
    fn profile_bounds_the_playout_delay() {
        let doc = ConferenceDoc::parse(
            &json!({"profile": {"jitter-min-delay-ms": 10, "jitter-max-delay-ms": 60}}),
        )
        .unwrap();
        let settings = crate::registry::settings(&doc);
        assert_eq!(
            (settings.jitter_min_delay_ms, settings.jitter_max_delay_ms),
            (Some(10), Some(60))
        );
        let defaults = crate::registry::settings(&ConferenceDoc::parse(&json!({})).unwrap());
        assert_eq!((defaults.jitter_min_delay_ms, defaults.jitter_max_delay_ms), (None, None));
        for bad in [
            json!({"jitter-max-delay-ms": 19}),
            json!({"jitter-max-delay-ms": 1001}),
            json!({"jitter-min-delay-ms": 501}),
            json!({"jitter-min-delay-ms": -1}),
        ] {
            assert!(ConferenceDoc::parse(&json!({ "profile": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_sets_the_opus_encoder() {
        let doc = ConferenceDoc::parse(&json!({"profile": {"opus-bitrate": 48000,
            "opus-complexity": 10, "opus-fec": false, "opus-dtx": false, "opus-loss-percent": 0}}))
        .unwrap();
        let encoder = crate::registry::settings(&doc).encoder;
        assert_eq!((encoder.bitrate, encoder.complexity, encoder.fec), (48_000, 10, false));
        assert_eq!((encoder.dtx, encoder.expected_loss_percent), (false, 0));
        let defaults = crate::registry::settings(&ConferenceDoc::parse(&json!({})).unwrap());
        assert_eq!(defaults.encoder, mixminus_rtp::CodecSettings::default());
        for bad in
            [json!({"opus-bitrate": 5000}), json!({"opus-complexity": 11}), json!({"opus-fec": 1})]
        {
            assert!(ConferenceDoc::parse(&json!({ "profile": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let field = |v: Value| match ConferenceDoc::parse(&v).unwrap_err() {
            ApiError::InvalidData { field, rule, .. } => format!("{field}/{rule}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(json!({"member": {"join_muted": "yes"}})), "member.join_muted/type");
        assert_eq!(field(json!({"name": ""})), "name/minLength");
        assert_eq!(field(json!({"profile": {"rate": 44100}})), "profile.rate/enum");
        assert_eq!(field(json!({"moderator": {"pins": ["12a"]}})), "moderator.pins.0/pattern");
        assert_eq!(
            field(json!({"conference_numbers": ["1", "1"]})),
            "conference_numbers/uniqueItems"
        );
        assert_eq!(field(json!({"play_exit_tone": 3})), "play_exit_tone/type");
        assert_eq!(field(json!({"max_participants": -1})), "max_participants/minimum");
    }

    #[test]
    fn patch_merges() {
        let doc =
            ConferenceDoc::parse(&json!({"name": "a", "member": {"join_muted": false}})).unwrap();
        let patched = doc.merged(&json!({"member": {"join_deaf": true}})).unwrap();
        assert!(!patched.member.join_muted);
        assert!(patched.member.join_deaf);
        assert_eq!(patched.name.as_deref(), Some("a"));
    }
}
