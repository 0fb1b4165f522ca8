//! Errors of the core. A rejected call never changes the conference.

use crate::ParticipantId;

/// Why a call on a [`Conference`](crate::Conference) was refused. The conference is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No participant with this id is in the conference (it never joined, or it left).
    #[error("participant {0} is not in the conference")]
    UnknownParticipant(ParticipantId),
    /// A relationship from a participant to itself was asked for.
    #[error("participant {0} cannot be related to itself")]
    SelfRelationship(ParticipantId),
    /// A relate call named no participant on one side.
    #[error("relate needs at least one participant on each side")]
    EmptyRelate,
    /// The conference already holds its maximum number of participants.
    #[error("the conference is full ({0} participants)")]
    ConferenceFull(usize),
    /// The call would exceed the conference's relationship limit.
    #[error("the conference would exceed its limit of {0} relationship records")]
    TooManyRelationships(usize),
    /// A frame handed in does not have the conference's frame length.
    #[error("frame has {got} samples, the conference takes {expected}")]
    FrameLength {
        /// Samples per frame the conference is configured for.
        expected: usize,
        /// Samples in the frame given.
        got: usize,
    },
    /// A gain outside mute..=+12 dB, or a volume level outside −4..=+4.
    #[error("gain out of range (volume levels are -4..=4, gains at most +12 dB)")]
    GainOutOfRange,
    /// The configuration is not usable; the message names the field.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}
