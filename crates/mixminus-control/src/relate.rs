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

use mixminus_core::{ParticipantId, Relationship, MAX_PARTICIPANTS};
use serde_json::Value;

use crate::fields::{wrong_type, Obj};
use crate::ApiError;

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
    /// Parses a relate body.
    pub fn parse(value: &Value, rule: ConferenceIdRule) -> Result<Self, ApiError> {
        let obj = Obj::new(value, "")?;
        let conference_id = match rule {
            ConferenceIdRule::FromPath => None,
            ConferenceIdRule::Required => {
                let v = obj.required("conference_id")?;
                let Value::String(s) = v else {
                    return Err(wrong_type("conference_id", "string", v));
                };
                Some(s.clone())
            }
        };
        let participants = ids(&obj, "participant_id")?;
        let others = ids(&obj, "other_participant")?;
        if participants.len().saturating_mul(others.len()) > MAX_RELATE_PAIRS {
            return Err(ApiError::invalid(
                "other_participant",
                "maxItems",
                format!("at most {MAX_RELATE_PAIRS} pairs per call"),
            ));
        }
        let relationship = match obj.get("relationship") {
            None => Relationship::CLEAR,
            Some(v @ Value::String(word)) => {
                word_to_relationship(word).ok_or_else(|| not_in_enum(v))?
            }
            Some(Value::Array(words)) => {
                let mut rel = Relationship::CLEAR;
                let mut clear = false;
                for (i, w) in words.iter().enumerate() {
                    let Value::String(word) = w else {
                        return Err(wrong_type(&format!("relationship.{i}"), "string", w));
                    };
                    match word_to_relationship(word) {
                        Some(Relationship { deaf: false, mute: false }) => clear = true,
                        Some(r) => {
                            rel.deaf |= r.deaf;
                            rel.mute |= r.mute;
                        }
                        None => return Err(not_in_enum(w)),
                    }
                }
                if clear && !rel.is_clear() {
                    return Err(ApiError::invalid_value(
                        "relationship",
                        "enum",
                        "clear cannot be combined with deaf or mute",
                        &Value::Array(words.clone()),
                    ));
                }
                rel
            }
            Some(other) => return Err(wrong_type("relationship", "string", other)),
        };
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

fn word_to_relationship(word: &str) -> Option<Relationship> {
    match word {
        "deaf" => Some(Relationship::DEAF),
        "mute" => Some(Relationship::MUTE),
        "clear" => Some(Relationship::CLEAR),
        _ => None,
    }
}

fn not_in_enum(v: &Value) -> ApiError {
    ApiError::invalid_value(
        "relationship",
        "enum",
        "Value not found in enumerated list of values: deaf, clear, mute",
        v,
    )
}

fn ids(obj: &Obj<'_>, key: &str) -> Result<Vec<ParticipantRef>, ApiError> {
    let value = obj.required(key)?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::invalid(key, "minItems", "at least one participant"));
            }
            if items.len() > MAX_PARTICIPANTS {
                return Err(ApiError::invalid(
                    key,
                    "maxItems",
                    format!("at most {MAX_PARTICIPANTS} participants"),
                ));
            }
            items.iter().enumerate().map(|(i, v)| one_id(v, &format!("{key}.{i}"))).collect()
        }
        v => Ok(vec![one_id(v, key)?]),
    }
}

fn one_id(value: &Value, field: &str) -> Result<ParticipantRef, ApiError> {
    let raw = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_u64(),
        Value::String(s)
            if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse::<u64>().ok()
        }
        Value::String(_) => None,
        other => return Err(wrong_type(field, "string, integer", other)),
    };
    Ok(match raw.and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0) {
        Some(n) => ParticipantRef::Id(ParticipantId::new(n)),
        None => ParticipantRef::Invalid(value.clone()),
    })
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
