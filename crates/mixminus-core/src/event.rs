//! What the conference tells its caller, drained with
//! [`Conference::poll_event`](crate::Conference::poll_event).

use crate::{GroupId, ParticipantId, Relationship};

/// Something that happened in the conference. Events are queued in order; the queue is
/// bounded (the oldest are dropped and counted when the caller never drains it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A participant joined.
    Joined(ParticipantId),
    /// A participant left; every relationship naming it is gone.
    Left(ParticipantId),
    /// Talk detection says this participant started talking.
    TalkingStarted(ParticipantId),
    /// Talk detection says this participant stopped talking (after the hangover).
    TalkingStopped(ParticipantId),
    /// The loudest active talker changed.
    FloorChanged {
        /// The previous holder.
        from: Option<ParticipantId>,
        /// The new holder; `None` when nobody is talking.
        to: Option<ParticipantId>,
    },
    /// A participant's ability to speak changed (mute / unmute).
    SpeakChanged {
        /// Who.
        participant: ParticipantId,
        /// Whether it can now speak.
        can_speak: bool,
    },
    /// A participant's ability to hear changed (deaf / undeaf).
    HearChanged {
        /// Who.
        participant: ParticipantId,
        /// Whether it can now hear.
        can_hear: bool,
    },
    /// The directed record `participant → other` was set (or cleared).
    RelationshipChanged {
        /// P in `relate(P, O, …)`.
        participant: ParticipantId,
        /// O in `relate(P, O, …)`.
        other: ParticipantId,
        /// The record's new value.
        relationship: Relationship,
    },
    /// A mix group closed: drop whatever was keyed by it (an encoder, say).
    GroupClosed(GroupId),
}
