//! The relate body, as Kazoo's `metaflows.relate` schema has it, plus mixminus's extensions.
//!
//! ```json
//! {"participant_id": 3, "other_participant": "4", "relationship": "deaf"}
//! ```
//!
//! - `participant_id`, `other_participant`: an integer or a string (Kazoo's schema). A
//!   string of digits is that id; any other string, or an integer that no participant can
//!   have (0, negative, past `u32`), passes validation, as in Kazoo, and then fails as
//!   `bad_identifier` (404) naming it. *Extension:* either side may be an array of such ids
//!   (1..=16000 of them, the cross product at most 1,000,000 pairs); the call applies to
//!   every pair, all or nothing.
//! - `relationship`: `deaf` | `mute` | `clear`, default `clear`. *Extension:* an array of
//!   words, `["deaf", "mute"]` sets both flags (FreeSWITCH's `nospeak,nohear`); `[]` or
//!   `["clear"]` clears; `clear` beside another word is refused.
//! - `conference_id`: a string; required on the channels metaflow (as in Kazoo's schema).
//!   On `…/conferences/{C}/participants` Kazoo sets it from the path before validating, and
//!   so do we (a value in the body is ignored there).

use mixminus_core::{ParticipantId, Relationship};
use serde_json::Value;

use crate::{schema, ApiError};

/// Most pairs one relate call may set.
pub const MAX_RELATE_PAIRS: usize = 1_000_000;

/// A participant as a relate body names it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ParticipantRef {
    /// A well-formed id (the conference decides whether it exists).
    Id(ParticipantId),
    /// A value no participant can have: answered with `bad_identifier`.
    Invalid(Value),
}

/// `list` without repeated ids (first occurrence kept, order kept); invalid values stay, to be
/// answered as such.
fn dedup(list: Vec<ParticipantRef>) -> Vec<ParticipantRef> {
    let mut seen = std::collections::HashSet::new();
    list.into_iter()
        .filter(|r| match r {
            ParticipantRef::Id(id) => seen.insert(*id),
            ParticipantRef::Invalid(_) => true,
        })
        .collect()
}

/// Where the conference id of a relate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConferenceIdRule {
    /// From the path (the conferences API): the body's is ignored.
    FromPath,
    /// Required in the body (the channels metaflow).
    Required,
}

/// A parsed relate request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RelateRequest {
    /// `conference_id`, when read from the body.
    pub conference_id: Option<String>,
    /// The P side.
    pub participants: Vec<ParticipantRef>,
    /// The O side.
    pub others: Vec<ParticipantRef>,
    /// The value every `P → O` record is set to.
    pub relationship: Relationship,
}

impl RelateRequest {
    /// Parses a relate body: Kazoo's `metaflows.relate` schema (with the array extensions,
    /// see [`crate::schema`]) checks it, then the ids and words are read.
    pub fn parse(value: &Value, rule: ConferenceIdRule) -> Result<Self, ApiError> {
        let mut value = value.clone();
        if let (ConferenceIdRule::FromPath, Value::Object(map)) = (rule, &mut value) {
            // Kazoo sets it from the path before validating.
            map.insert("conference_id".into(), Value::String(String::new()));
        }
        schema::validate(schema::Body::Relate, &mut value)?;
        let conference_id = match rule {
            ConferenceIdRule::FromPath => None,
            ConferenceIdRule::Required => {
                value.get("conference_id").and_then(Value::as_str).map(str::to_owned)
            }
        };
        // Repeated ids are one id: removed before any counting or work, so `[a]×1000 by
        // [b]×1000` is one pair, not a million.
        let participants = dedup(ids(value.get("participant_id")));
        let others = dedup(ids(value.get("other_participant")));
        if participants.len().saturating_mul(others.len()) > MAX_RELATE_PAIRS {
            return Err(ApiError::invalid(
                "other_participant",
                "maxItems",
                format!("at most {MAX_RELATE_PAIRS} pairs per call"),
            ));
        }
        let words: Vec<&Value> = match value.get("relationship") {
            None => Vec::new(),
            Some(Value::Array(words)) => words.iter().collect(),
            Some(word) => vec![word],
        };
        let mut relationship = Relationship::CLEAR;
        let mut clear = false;
        for word in words.iter().filter_map(|w| w.as_str()) {
            match word {
                "deaf" => relationship.deaf = true,
                "mute" => relationship.mute = true,
                _ => clear = true,
            }
        }
        if clear && !relationship.is_clear() {
            return Err(ApiError::invalid_value(
                "relationship",
                "enum",
                "clear cannot be combined with deaf or mute",
                value.get("relationship").unwrap_or(&Value::Null),
            ));
        }
        Ok(Self { conference_id, participants, others, relationship })
    }

    /// Both sides as participant ids, or `bad_identifier` naming the first impossible one.
    pub fn ids(&self) -> Result<(Vec<ParticipantId>, Vec<ParticipantId>), ApiError> {
        Ok((
            resolve(&self.participants, "participant_id")?,
            resolve(&self.others, "other_participant")?,
        ))
    }
}

/// The word Kazoo and FreeSWITCH use for a record.
pub fn relationship_word(rel: Relationship) -> &'static str {
    match (rel.deaf, rel.mute) {
        (false, false) => "clear",
        (true, false) => "deaf",
        (false, true) => "mute",
        (true, true) => "deaf,mute",
    }
}

/// The ids on one side of a validated body: one id or an array of them.
fn ids(value: Option<&Value>) -> Vec<ParticipantRef> {
    match value {
        Some(Value::Array(items)) => items.iter().map(one_id).collect(),
        Some(v) => vec![one_id(v)],
        None => Vec::new(),
    }
}

fn one_id(value: &Value) -> ParticipantRef {
    let raw = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s)
            if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse::<u64>().ok()
        }
        _ => None,
    };
    match raw.and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0) {
        Some(n) => ParticipantRef::Id(ParticipantId::new(n)),
        None => ParticipantRef::Invalid(value.clone()),
    }
}

fn resolve(refs: &[ParticipantRef], field: &str) -> Result<Vec<ParticipantId>, ApiError> {
    refs.iter()
        .map(|r| match r {
            ParticipantRef::Id(id) => Ok(*id),
            ParticipantRef::Invalid(v) => {
                Err(ApiError::BadIdentifier { field: field.to_owned(), id: v.clone() })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<RelateRequest, ApiError> {
        RelateRequest::parse(&v, ConferenceIdRule::FromPath)
    }

    #[test]
    fn kazoo_shapes() {
        let r =
            parse(json!({"participant_id": 3, "other_participant": "4", "relationship": "deaf"}))
                .unwrap();
        assert_eq!(r.ids().unwrap(), (vec![ParticipantId::new(3)], vec![ParticipantId::new(4)]));
        assert_eq!(r.relationship, Relationship::DEAF);
        let r = parse(json!({"participant_id": 3, "other_participant": 4})).unwrap();
        assert_eq!(r.relationship, Relationship::CLEAR);
    }

    #[test]
    fn extensions() {
        let r = parse(json!({"participant_id": [1, "2"], "other_participant": 3,
            "relationship": ["deaf", "mute"]}))
        .unwrap();
        assert_eq!(r.participants.len(), 2);
        assert_eq!(r.relationship, Relationship::BOTH);
        assert!(parse(json!({"participant_id": [], "other_participant": 3})).is_err());
        assert!(parse(json!({"participant_id": 1, "other_participant": 3,
            "relationship": ["clear", "mute"]}))
        .is_err());
    }

    #[test]
    fn impossible_ids_are_bad_identifiers() {
        let r = parse(json!({"participant_id": "abc", "other_participant": 3})).unwrap();
        match r.ids().unwrap_err() {
            ApiError::BadIdentifier { field, id } => {
                assert_eq!(field, "participant_id");
                assert_eq!(id, json!("abc"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(json!({"participant_id": -1, "other_participant": 3}))
            .unwrap()
            .ids()
            .is_err());
    }

    #[test]
    fn refusals_name_the_field() {
        let err = parse(json!({"participant_id": 1})).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidData { ref field, rule: "required", .. } if field == "other_participant")
        );
        let err =
            parse(json!({"participant_id": 1, "other_participant": 2, "relationship": "nohear"}))
                .unwrap_err();
        assert!(matches!(err, ApiError::InvalidData { rule: "enum", .. }));
        let err = parse(json!({"participant_id": true, "other_participant": 2})).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidData { ref field, rule: "type", .. } if field == "participant_id")
        );
        let err = RelateRequest::parse(
            &json!({"participant_id": 1, "other_participant": 2}),
            ConferenceIdRule::Required,
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::InvalidData { ref field, .. } if field == "conference_id"));
    }
}
