//! The `relationships` property's text form, parsed once at the edge into typed records.
//!
//! One record per `;`: `<P> <relationship> <O>`, where `P` and `O` name a pad of a pair
//! (`sink_N` or `src_N`, both mean participant N) and the relationship is `deaf`, `mute`,
//! `deaf,mute` or `clear`. Example: `sink_0 deaf sink_1; sink_2 deaf,mute sink_3`. Reading the
//! property gives the same form, sorted, with `sink_N` names.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mixminus_core::Relationship;

/// Directed records keyed by `(P, O)` pad-pair index, as the element stores them.
pub(crate) type Records = BTreeMap<(u32, u32), Relationship>;

/// Why a relationship text or word was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ParseError {
    /// A pad name is not `sink_N` or `src_N`.
    #[error("`{0}` is not a pad name of this element (sink_N or src_N)")]
    PadName(String),
    /// A relationship word is not `deaf`, `mute`, `deaf,mute` or `clear`.
    #[error("`{0}` is not a relationship (deaf, mute, deaf,mute or clear)")]
    Relationship(String),
    /// A record does not have the shape `<P> <relationship> <O>`.
    #[error("`{0}` is not a record `<pad> <relationship> <pad>`")]
    Record(String),
    /// A record relates a pad pair to itself.
    #[error("pad pair {0} cannot be related to itself")]
    SelfRelationship(u32),
}

/// The pair index of `sink_N` or `src_N`.
pub(crate) fn pad_index(name: &str) -> Result<u32, ParseError> {
    name.strip_prefix("sink_")
        .or_else(|| name.strip_prefix("src_"))
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| ParseError::PadName(name.to_owned()))
}

/// `deaf`, `mute`, `clear`, or a comma-separated combination (`deaf,mute`).
pub(crate) fn parse_relationship(word: &str) -> Result<Relationship, ParseError> {
    let mut r = Relationship::CLEAR;
    for part in word.split(',').map(str::trim) {
        match part {
            "deaf" => r.deaf = true,
            "mute" => r.mute = true,
            "clear" => {}
            _ => return Err(ParseError::Relationship(word.to_owned())),
        }
    }
    Ok(r)
}

/// Parses the whole property value; clear records are dropped (they mean "no record").
pub(crate) fn parse(text: &str) -> Result<Records, ParseError> {
    let mut records = Records::new();
    for record in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
        let words: Vec<&str> = record.split_whitespace().collect();
        let [p, rel, o] = words[..] else {
            return Err(ParseError::Record(record.to_owned()));
        };
        let (p, o) = (pad_index(p)?, pad_index(o)?);
        if p == o {
            return Err(ParseError::SelfRelationship(p));
        }
        let rel = parse_relationship(rel)?;
        if rel.is_clear() {
            records.remove(&(p, o));
        } else {
            records.insert((p, o), rel);
        }
    }
    Ok(records)
}

/// The property's text for `records`.
pub(crate) fn format(records: &Records) -> String {
    let mut out = String::new();
    for (&(p, o), rel) in records {
        if !out.is_empty() {
            out.push_str("; ");
        }
        let word = match (rel.deaf, rel.mute) {
            (true, true) => "deaf,mute",
            (true, false) => "deaf",
            (false, true) => "mute",
            (false, false) => continue,
        };
        // Writing to a String cannot fail.
        let _ = write!(out, "sink_{p} {word} sink_{o}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let r = parse(" src_0 deaf sink_1;sink_2 deaf,mute sink_3; sink_4 mute sink_0 ;").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[&(0, 1)], Relationship::DEAF);
        assert_eq!(r[&(2, 3)], Relationship::BOTH);
        assert_eq!(format(&r), "sink_0 deaf sink_1; sink_2 deaf,mute sink_3; sink_4 mute sink_0");
        assert_eq!(parse(&format(&r)).unwrap(), r);
        assert!(parse("sink_0 deaf sink_1; sink_0 clear sink_1").unwrap().is_empty());
        assert_eq!(parse(""), Ok(Records::new()));
        assert!(matches!(parse("sink_0 deaf"), Err(ParseError::Record(_))));
        assert!(matches!(parse("sink_x deaf sink_1"), Err(ParseError::PadName(_))));
        assert!(matches!(parse("sink_ deaf sink_1"), Err(ParseError::PadName(_))));
        assert!(matches!(parse("sink_0 loud sink_1"), Err(ParseError::Relationship(_))));
        assert_eq!(parse("sink_1 deaf src_1"), Err(ParseError::SelfRelationship(1)));
        assert_eq!(parse_relationship("mute, deaf"), Ok(Relationship::BOTH));
    }
}
