//! Identifiers: participants and mix groups.

use std::fmt;

/// A participant's id within one conference.
///
/// Ids are handed out by [`Conference::join`](crate::Conference::join) in increasing order,
/// starting at 1, and are never reused within a conference: a participant that leaves and
/// rejoins gets a new id and starts with no relationships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(u32);

impl ParticipantId {
    /// Wraps a raw id, as received from a control API.
    ///
    /// Whether such a participant exists is checked by the conference, not here.
    pub const fn new(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw id, as shown to control APIs (Kazoo's `participant_id`).
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for ParticipantId {
    fn from(raw: u32) -> Self {
        Self(raw)
    }
}

/// A mix group: the listeners that hear exactly the same audio this tick.
///
/// A group lives across ticks for as long as some listener keeps its key (the set of active
/// sources excluded, plus the output gain), so an encoder keyed by `GroupId` keeps its state.
/// When a group closes, [`Event::GroupClosed`](crate::Event::GroupClosed) says so and the id
/// is never used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(u64);

impl GroupId {
    /// The group of listeners that hear nothing this tick (deaf, or everyone they could hear
    /// is silent or excluded). Its PCM is all zeros.
    pub const SILENCE: GroupId = GroupId(0);

    pub(crate) const fn from_parts(slot: u32, generation: u32) -> Self {
        Self(((generation as u64) << 32) | slot as u64)
    }

    pub(crate) const fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// Whether this is [`GroupId::SILENCE`].
    pub const fn is_silence(self) -> bool {
        self.0 == 0
    }

    /// The raw value, unique within a conference; for logs and metrics labels.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_silence() {
            f.write_str("silence")
        } else {
            write!(f, "g{}.{}", self.0 & 0xffff_ffff, self.0 >> 32)
        }
    }
}
