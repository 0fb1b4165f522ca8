//! RFC 4733 `telephone-event` payloads: DTMF digits sent as RTP.
//!
//! One key press is several packets with the same RTP timestamp (a start, updates, and three
//! copies of the end); [`DtmfReceiver`] reports each press once, when its first packet
//! arrives, so a lost end packet does not lose the digit and a repeated end does not repeat it.

/// One DTMF digit: `0`-`9`, `*`, `#`, `A`-`D`.
pub type Digit = char;

/// The digit an RFC 4733 event code stands for (events 0-15; others are not DTMF).
pub fn event_digit(event: u8) -> Option<Digit> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// A parsed `telephone-event` payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code.
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// The duration so far, in RTP clock units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses a payload; `None` when shorter than the 4 bytes an event needs.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let [event, flags, d0, d1, ..] = *payload else { return None };
        Some(Self { event, end: flags & 0x80 != 0, duration: u16::from_be_bytes([d0, d1]) })
    }
}

/// Turns a stream of `telephone-event` packets into digits, each press once.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// The RTP timestamp of the last press reported (one press, one timestamp).
    last: Option<u32>,
}

impl DtmfReceiver {
    /// Feeds one packet's RTP timestamp and payload; returns the digit when it starts a
    /// new press.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<Digit> {
        let event = TelephoneEvent::parse(payload)?;
        let digit = event_digit(event.event)?;
        if self.last == Some(timestamp) {
            return None;
        }
        self.last = Some(timestamp);
        Some(digit)
    }
}

/// The digit a SIP INFO body carries: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (`5`), as SIP phones send them.
pub fn info_digit(content_type: &str, body: &str) -> Option<Digit> {
    let content_type = content_type.trim().to_ascii_lowercase();
    let value = if content_type.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim().eq_ignore_ascii_case("signal").then(|| value.trim())
        })?
    } else if content_type.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let mut chars = value.chars();
    let digit = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        // `Signal=10` / `11`: the event number instead of the character.
        return value.parse::<u8>().ok().and_then(event_digit);
    }
    matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D').then_some(digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_press_is_one_digit() {
        let mut rx = DtmfReceiver::default();
        let start = [5, 0x0a, 0, 160];
        let end = [5, 0x8a, 3, 32];
        assert_eq!(rx.on_packet(1000, &start), Some('5'));
        assert_eq!(rx.on_packet(1000, &start), None);
        for _ in 0..3 {
            assert_eq!(rx.on_packet(1000, &end), None, "the end is repeated three times");
        }
        assert_eq!(rx.on_packet(2600, &[11, 0x8a, 3, 32]), Some('#'), "a lost start");
        assert_eq!(rx.on_packet(4000, &[5, 0x8a, 3, 32]), Some('5'), "the same key again");
    }

    #[test]
    fn junk_is_not_a_digit() {
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.on_packet(1, &[5, 0]), None, "short");
        assert_eq!(rx.on_packet(2, &[16, 0, 0, 0]), None, "flash hook is not DTMF");
        assert_eq!(rx.on_packet(3, &[]), None);
        assert_eq!(rx.on_packet(4, &[10, 0, 0, 0]), Some('*'));
    }

    #[test]
    fn info_bodies() {
        assert_eq!(info_digit("application/dtmf-relay", "Signal=7\r\nDuration=160\r\n"), Some('7'));
        assert_eq!(info_digit("application/dtmf-relay", "Signal= #\r\n"), Some('#'));
        assert_eq!(info_digit("application/dtmf-relay", "Signal=11\r\n"), Some('#'));
        assert_eq!(info_digit("application/dtmf", "4"), Some('4'));
        assert_eq!(info_digit("application/dtmf-relay", "Duration=160"), None);
        assert_eq!(info_digit("text/plain", "Signal=1"), None);
        assert_eq!(info_digit("application/dtmf", "x"), None);
    }
}
