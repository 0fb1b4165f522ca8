//! Counters of a leg and of a conference, published in snapshots and as metrics.

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a valid RTP packet (bad version, truncated, bad padding, CSRCs or extension past
    /// the end, empty).
    Malformed,
    /// Larger than any audio frame needs.
    Oversized,
    /// From an address other than the latched source.
    WrongSource,
    /// A payload type this leg did not negotiate.
    PayloadType,
    /// Already received.
    Duplicate,
    /// Arrived after its playout time.
    Late,
    /// The jitter buffer was full.
    Overflow,
    /// The decoder refused the payload (the frame was concealed instead).
    Undecodable,
    /// RTCP that could not be parsed.
    BadRtcp,
    /// The socket reported an error.
    SocketError,
    /// Over its source's budget (a flood), or the conference's inbound queue was full: the
    /// reader dropped it before the leg saw it.
    OverBudget,
}

impl DropReason {
    /// Every reason, for metrics registration.
    pub const ALL: [DropReason; 11] = [
        DropReason::Malformed,
        DropReason::Oversized,
        DropReason::WrongSource,
        DropReason::PayloadType,
        DropReason::Duplicate,
        DropReason::Late,
        DropReason::Overflow,
        DropReason::Undecodable,
        DropReason::BadRtcp,
        DropReason::SocketError,
        DropReason::OverBudget,
    ];

    /// A short label (Prometheus `reason`).
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Oversized => "oversized",
            DropReason::WrongSource => "wrong_source",
            DropReason::PayloadType => "payload_type",
            DropReason::Duplicate => "duplicate",
            DropReason::Late => "late",
            DropReason::Overflow => "overflow",
            DropReason::Undecodable => "undecodable",
            DropReason::BadRtcp => "bad_rtcp",
            DropReason::SocketError => "socket_error",
            DropReason::OverBudget => "over_budget",
        }
    }
}

/// Counters of one participant's leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegStats {
    /// RTP packets accepted.
    pub packets_in: u64,
    /// Bytes of accepted RTP packets.
    pub bytes_in: u64,
    /// RTP packets sent.
    pub packets_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Frames decoded (including concealment and FEC).
    pub decodes: u64,
    /// Lost frames concealed by the decoder.
    pub concealed: u64,
    /// Lost frames recovered from Opus in-band FEC.
    pub fec_recovered: u64,
    /// Frames not decoded because RFC 6464 marked them silent.
    pub silent_skipped: u64,
    /// Frames of a quiet participant not decoded (see `BridgeConfig::quiet_decode_interval`).
    pub quiet_skipped: u64,
    /// SSRC changes seen.
    pub ssrc_changes: u64,
    /// RTCP packets received.
    pub rtcp_in: u64,
    /// RFC 4733 `telephone-event` packets received on the negotiated payload type (DTMF,
    /// counted here rather than dropped as a wrong payload type).
    pub dtmf_packets: u64,
    /// DTMF key presses among them (one per event timestamp).
    pub dtmf_digits: u64,
    /// Dropped datagrams, by reason (indexed like [`DropReason::ALL`]).
    pub dropped: [u64; 11],
}

impl LegStats {
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    /// Dropped datagrams for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Dropped datagrams, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Counters of a conference's task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConferenceCounters {
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that started more than one frame late.
    pub late_ticks: u64,
    /// Ticks skipped to catch up after a long stall.
    pub skipped_ticks: u64,
    /// Duration of the last tick, µs.
    pub last_tick_us: u64,
    /// Longest tick so far, µs.
    pub max_tick_us: u64,
    /// Encodes in the last tick.
    pub encodes_last_tick: u32,
    /// Most encodes in any tick.
    pub max_encodes_per_tick: u32,
    /// Decodes in the last tick.
    pub decodes_last_tick: u32,
    /// Encodes so far.
    pub encodes_total: u64,
    /// Decodes so far.
    pub decodes_total: u64,
    /// Live encoders (one per group and codec, plus one per set of listeners in
    /// transition).
    pub encoders: u32,
    /// Encoders forked so far: a copy of a listener's encoder state for the group it moved
    /// to, so its decoder hears no discontinuity.
    pub encoder_forks: u64,
    /// Encoders merged so far (two encoders of one group, during silence).
    pub encoder_merges: u64,
    /// Listeners moved between encoders during silence so far (inaudible switches).
    pub silent_switches: u64,
    /// Listeners whose decoder was switched to an encoder it did not track while sound
    /// played (only a codec change does this): audible discontinuities.
    pub discontinuities: u64,
    /// Listeners, in the last tick, on their own encoder beside their group's main one
    /// (they left a group and wait for silence to merge).
    pub listeners_in_transition: u32,
    /// Mix groups in the last tick.
    pub groups: u32,
    /// Sources mixed in the last tick.
    pub active: u32,
    /// Packets sent so far.
    pub packets_out: u64,
    /// Datagrams dropped so far, all legs (including legs that left), by reason.
    pub dropped: [u64; 11],
    /// Live legs (each holds a socket pair, a decoder and a jitter buffer), as of the
    /// publication: what a leak check counts.
    pub legs: u32,
    /// Participants the mixer holds, the internal tone source included.
    pub mixer_participants: u32,
    /// Mix groups the mixer holds.
    pub mixer_groups: u32,
    /// Relationship records the mixer holds.
    pub relationships: u32,
}
