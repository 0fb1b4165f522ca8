//! Routing, sans-IO: which conference a dialled number reaches, and how the caller gets in.
//!
//! The Request-URI's user part is compared with, in this order, every conference's id, then
//! its `conference_numbers`, `member.numbers` and `moderator.numbers` (Kazoo's conference
//! document). A leading `+` is ignored on both sides, so `+4930123` matches `4930123`.
//! A member (moderator) number joins as member (moderator), with a PIN from that role's
//! list when it has one; the id or a conference number asks for a PIN when either list has
//! one, and the list the PIN is in decides the role; with no PINs at all the caller joins
//! as member at once.

use mixminus_control::doc::ConferenceDoc;

/// The role a caller joins with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A member (the document's `member` join rules).
    Member,
    /// A moderator (`moderator` join rules, `is_moderator`).
    Moderator,
}

/// How a routed caller gets in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Straight in with this role.
    Join(Role),
    /// After a PIN from these lists (`fixed`: the role the number dialled decided).
    Pin {
        /// The role the dialled number fixed; `None`: the PIN's list decides.
        fixed: Option<Role>,
        /// `member.pins`.
        member_pins: Vec<String>,
        /// `moderator.pins`.
        moderator_pins: Vec<String>,
    },
}

/// The first conference `user` reaches among `candidates` (`(id, document, value)`), with
/// how the caller gets in; `None` when no conference has that id or number.
pub fn route<'a, T>(
    user: &str,
    candidates: impl IntoIterator<Item = (&'a str, &'a ConferenceDoc, T)>,
) -> Option<(T, Admission)> {
    let user = normalise(user);
    if user.is_empty() {
        return None;
    }
    let mut by_number = None;
    for (id, doc, value) in candidates {
        if id == user {
            return Some((value, admission(doc, None)));
        }
        if by_number.is_some() {
            continue;
        }
        let is = |list: &[String]| list.iter().any(|n| normalise(n) == user);
        let found = if is(&conference_numbers(doc)) {
            Some(None)
        } else if is(&doc.member.numbers) {
            Some(Some(Role::Member))
        } else if is(&doc.moderator.numbers) {
            Some(Some(Role::Moderator))
        } else {
            None
        };
        if let Some(fixed) = found {
            by_number = Some((value, admission(doc, fixed)));
        }
    }
    by_number
}

/// How a caller who reached `doc` gets in, when the number fixed `fixed` (or nothing).
pub fn admission(doc: &ConferenceDoc, fixed: Option<Role>) -> Admission {
    let (member_pins, moderator_pins) = (&doc.member.pins, &doc.moderator.pins);
    let needs_pin = match fixed {
        Some(Role::Member) => !member_pins.is_empty(),
        Some(Role::Moderator) => !moderator_pins.is_empty(),
        None => !member_pins.is_empty() || !moderator_pins.is_empty(),
    };
    if needs_pin {
        Admission::Pin {
            fixed,
            member_pins: member_pins.clone(),
            moderator_pins: moderator_pins.clone(),
        }
    } else {
        Admission::Join(fixed.unwrap_or(Role::Member))
    }
}

/// The document's `conference_numbers` (kept in its raw map: Kazoo's schema checks them).
fn conference_numbers(doc: &ConferenceDoc) -> Vec<String> {
    doc.raw
        .get("conference_numbers")
        .and_then(|v| v.as_array())
        .map(|list| list.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn normalise(number: &str) -> &str {
    let number = number.trim();
    number.strip_prefix('+').unwrap_or(number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(value: serde_json::Value) -> ConferenceDoc {
        ConferenceDoc::parse(&value).unwrap()
    }

    #[test]
    fn ids_then_numbers_decide_the_conference_and_role() {
        let a = doc(json!({"conference_numbers": ["4930100"],
            "member": {"numbers": ["200"]}, "moderator": {"numbers": ["201"]}}));
        let b = doc(json!({"member": {"numbers": ["300"], "pins": ["1234"]},
            "moderator": {"pins": ["9999"]}}));
        let list = || [("conf-a", &a, 'a'), ("conf-b", &b, 'b')];
        assert_eq!(route("conf-a", list()), Some(('a', Admission::Join(Role::Member))));
        assert_eq!(route("+4930100", list()), Some(('a', Admission::Join(Role::Member))));
        assert_eq!(route("+200", list()), Some(('a', Admission::Join(Role::Member))));
        assert_eq!(route("201", list()), Some(('a', Admission::Join(Role::Moderator))));
        let pins = |fixed| Admission::Pin {
            fixed,
            member_pins: vec!["1234".into()],
            moderator_pins: vec!["9999".into()],
        };
        assert_eq!(route("300", list()), Some(('b', pins(Some(Role::Member)))));
        assert_eq!(route("conf-b", list()), Some(('b', pins(None))));
        assert_eq!(route("999", list()), None);
        assert_eq!(route("", list()), None);
        assert_eq!(route("+", list()), None);
    }

    #[test]
    fn an_id_wins_over_another_conferences_number() {
        let a = doc(json!({"conference_numbers": ["123"]}));
        let b = doc(json!({}));
        assert_eq!(route("123", [("conf-a", &a, 1), ("123", &b, 2)]).map(|r| r.0), Some(2));
    }

    #[test]
    fn a_moderator_number_without_moderator_pins_needs_none() {
        let d = doc(json!({"member": {"pins": ["1"]}, "moderator": {"numbers": ["5"]}}));
        assert_eq!(route("5", [("c", &d, ())]), Some(((), Admission::Join(Role::Moderator))));
    }
}
