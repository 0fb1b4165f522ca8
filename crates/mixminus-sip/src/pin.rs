//! PIN entry, sans-IO: digits and time in, an outcome out.
//!
//! The caller types the PIN and ends it with `#` (or stops typing for
//! [`PinConfig::digit_timeout`], or reaches the longest PIN's length); `*` starts over.
//! A PIN in the moderator list joins as moderator, one in the member list as member (when
//! the number dialled fixed the role, only that role's list counts). A wrong PIN costs one
//! of [`PinConfig::attempts`]; the last one ends the call, and so does
//! [`PinConfig::total_timeout`] without a right one.

use std::time::{Duration, Instant};

use crate::route::Role;

/// How PIN entry behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PinConfig {
    /// Wrong PINs before the call ends (3, as FreeSWITCH's `pin-retries`).
    pub attempts: u32,
    /// A PIN typed without `#` is checked after this long without a digit.
    pub digit_timeout: Duration,
    /// The call ends when no right PIN came within this long.
    pub total_timeout: Duration,
}

impl Default for PinConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            digit_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(60),
        }
    }
}

/// Longest entry kept; more digits than any PIN has are ignored.
const MAX_DIGITS: usize = 32;

/// What PIN entry says after a digit or a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinOutcome {
    /// Still collecting.
    Pending,
    /// The PIN is right: join with this role.
    Accepted(Role),
    /// The PIN is wrong; `left` tries remain (prompt again).
    Wrong {
        /// Tries left.
        left: u32,
    },
    /// Too many wrong PINs, or too slow: end the call.
    Failed,
}

/// One caller's PIN entry.
#[derive(Debug, Clone)]
pub struct PinEntry {
    config: PinConfig,
    member_pins: Vec<String>,
    moderator_pins: Vec<String>,
    /// The role the dialled number fixed, if it did.
    fixed: Option<Role>,
    digits: String,
    wrong: u32,
    started: Instant,
    last_digit: Option<Instant>,
}

impl PinEntry {
    /// Entry against these PIN lists, starting at `now`.
    pub fn new(
        config: PinConfig,
        member_pins: Vec<String>,
        moderator_pins: Vec<String>,
        fixed: Option<Role>,
        now: Instant,
    ) -> Self {
        Self {
            config,
            member_pins,
            moderator_pins,
            fixed,
            digits: String::new(),
            wrong: 0,
            started: now,
            last_digit: None,
        }
    }

    /// A digit typed at `now`.
    pub fn on_digit(&mut self, now: Instant, digit: char) -> PinOutcome {
        if let outcome @ PinOutcome::Failed = self.poll(now) {
            return outcome;
        }
        match digit {
            '#' => return self.check(),
            '*' => self.digits.clear(),
            d if self.digits.len() < MAX_DIGITS => self.digits.push(d),
            _ => {}
        }
        self.last_digit = Some(now);
        let longest = self.pins().map(str::len).max().unwrap_or(0);
        if longest > 0 && self.digits.len() >= longest {
            return self.check();
        }
        PinOutcome::Pending
    }

    /// Time passing: checks a PIN left without `#`, and the overall deadline.
    pub fn poll(&mut self, now: Instant) -> PinOutcome {
        if now.saturating_duration_since(self.started) >= self.config.total_timeout {
            return PinOutcome::Failed;
        }
        match self.last_digit {
            Some(at)
                if !self.digits.is_empty()
                    && now.saturating_duration_since(at) >= self.config.digit_timeout =>
            {
                self.check()
            }
            _ => PinOutcome::Pending,
        }
    }

    /// When [`Self::poll`] next has something to decide.
    pub fn next_deadline(&self) -> Instant {
        let total = self.started + self.config.total_timeout;
        match self.last_digit.filter(|_| !self.digits.is_empty()) {
            Some(at) => total.min(at + self.config.digit_timeout),
            None => total,
        }
    }

    fn pins(&self) -> impl Iterator<Item = &str> {
        let members = (self.fixed != Some(Role::Moderator)).then_some(&self.member_pins);
        let moderators = (self.fixed != Some(Role::Member)).then_some(&self.moderator_pins);
        members.into_iter().chain(moderators).flatten().map(String::as_str)
    }

    fn check(&mut self) -> PinOutcome {
        let typed = std::mem::take(&mut self.digits);
        self.last_digit = None;
        let is = |list: &[String]| list.contains(&typed);
        let outcome = match self.fixed {
            Some(Role::Member) if is(&self.member_pins) => Some(Role::Member),
            Some(Role::Moderator) if is(&self.moderator_pins) => Some(Role::Moderator),
            Some(_) => None,
            None if is(&self.moderator_pins) => Some(Role::Moderator),
            None if is(&self.member_pins) => Some(Role::Member),
            // Only moderators have PINs: a member joins with an empty one (`#`).
            None if typed.is_empty() && self.member_pins.is_empty() => Some(Role::Member),
            None => None,
        };
        if let Some(role) = outcome {
            return PinOutcome::Accepted(role);
        }
        self.wrong += 1;
        if self.wrong >= self.config.attempts {
            PinOutcome::Failed
        } else {
            PinOutcome::Wrong { left: self.config.attempts - self.wrong }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(member: &[&str], moderator: &[&str], fixed: Option<Role>, now: Instant) -> PinEntry {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        PinEntry::new(PinConfig::default(), list(member), list(moderator), fixed, now)
    }

    fn typed(entry: &mut PinEntry, now: Instant, keys: &str) -> PinOutcome {
        let mut last = PinOutcome::Pending;
        for key in keys.chars() {
            last = entry.on_digit(now, key);
        }
        last
    }

    #[test]
    fn the_list_decides_the_role() {
        let now = Instant::now();
        let mut e = entry(&["1111"], &["9999"], None, now);
        assert_eq!(typed(&mut e, now, "9999"), PinOutcome::Accepted(Role::Moderator));
        let mut e = entry(&["1111"], &["9999"], None, now);
        assert_eq!(typed(&mut e, now, "1111"), PinOutcome::Accepted(Role::Member));
        let mut e = entry(&["12"], &["9999"], None, now);
        assert_eq!(typed(&mut e, now, "12#"), PinOutcome::Accepted(Role::Member), "# ends it");
        // Dialled the member number: the moderator PIN is just wrong.
        let mut e = entry(&["1111"], &["9999"], Some(Role::Member), now);
        assert_eq!(typed(&mut e, now, "9999"), PinOutcome::Wrong { left: 2 });
    }

    #[test]
    fn three_wrong_pins_fail() {
        let now = Instant::now();
        let mut e = entry(&["1234"], &[], None, now);
        assert_eq!(typed(&mut e, now, "1#"), PinOutcome::Wrong { left: 2 });
        assert_eq!(typed(&mut e, now, "4321"), PinOutcome::Wrong { left: 1 });
        assert_eq!(typed(&mut e, now, "12*1234"), PinOutcome::Accepted(Role::Member), "* restarts");
        let mut e = entry(&["1234"], &[], None, now);
        for _ in 0..2 {
            assert!(matches!(typed(&mut e, now, "0000"), PinOutcome::Wrong { .. }));
        }
        assert_eq!(typed(&mut e, now, "0000"), PinOutcome::Failed);
    }

    #[test]
    fn time_checks_an_unfinished_pin_and_ends_a_silent_caller() {
        let t0 = Instant::now();
        let mut e = entry(&["123456"], &[], None, t0);
        assert_eq!(typed(&mut e, t0, "123"), PinOutcome::Pending);
        assert_eq!(e.poll(t0 + Duration::from_secs(4)), PinOutcome::Pending);
        assert_eq!(e.next_deadline(), t0 + Duration::from_secs(5));
        assert_eq!(e.poll(t0 + Duration::from_secs(5)), PinOutcome::Wrong { left: 2 });
        assert_eq!(e.next_deadline(), t0 + Duration::from_secs(60));
        assert_eq!(e.poll(t0 + Duration::from_secs(60)), PinOutcome::Failed);
    }

    #[test]
    fn moderator_only_pins_let_members_in_with_an_empty_pin() {
        let now = Instant::now();
        let mut e = entry(&[], &["77"], None, now);
        assert_eq!(typed(&mut e, now, "#"), PinOutcome::Accepted(Role::Member));
        let mut e = entry(&[], &["77"], None, now);
        assert_eq!(typed(&mut e, now, "77"), PinOutcome::Accepted(Role::Moderator));
    }

    #[test]
    fn a_flood_of_digits_is_bounded() {
        let now = Instant::now();
        let mut e = entry(&["1"; 0], &["1"; 0], None, now);
        for _ in 0..10_000 {
            e.on_digit(now, '5');
        }
        assert!(e.digits.len() <= MAX_DIGITS);
    }
}
