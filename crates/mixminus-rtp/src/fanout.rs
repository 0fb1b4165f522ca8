//! Encode once per mix group and codec, then share the bytes with every listener.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use mixminus_core::{Conference, GroupId};

use crate::codec::{new_encoder, AudioEncoder, CodecError, CodecKind, CodecParams, CodecSettings};

/// What makes two listeners of one group able to share an encoded payload: the codec and
/// its clock rate (the payload type is only in the per-listener header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EncoderKey {
    kind: CodecKind,
    clock_rate: u32,
}

impl EncoderKey {
    pub(crate) fn of(params: &CodecParams) -> Self {
        Self { kind: params.kind, clock_rate: params.clock_rate }
    }
}

/// Persistent encoders keyed by (group, codec) and the payloads encoded this tick.
pub(crate) struct Fanout {
    settings: CodecSettings,
    conference_rate: u32,
    frame_samples: usize,
    encoders: HashMap<(GroupId, EncoderKey), Box<dyn AudioEncoder + Send>>,
    encoded: HashMap<(GroupId, EncoderKey), Bytes>,
    /// Payloads are carved out of this arena, so a tick's encodes share a few allocations.
    arena: BytesMut,
    scratch: Vec<u8>,
    encodes_this_tick: u32,
}

/// Largest payload an encoder may write (an RTP datagram's worth).
const MAX_PAYLOAD: usize = 1500;

impl Fanout {
    pub(crate) fn new(settings: CodecSettings, conference_rate: u32, frame_samples: usize) -> Self {
        Self {
            settings,
            conference_rate,
            frame_samples,
            encoders: HashMap::new(),
            encoded: HashMap::new(),
            arena: BytesMut::with_capacity(64 * 1024),
            scratch: vec![0; MAX_PAYLOAD],
            encodes_this_tick: 0,
        }
    }

    /// Forgets last tick's payloads, and the encoders none of them came from.
    pub(crate) fn begin_tick(&mut self) {
        // An encoder no listener used last tick has nobody left (its listeners of that
        // codec left the group or the conference): drop it, so live encoders are the
        // (group, codec) pairs in use, not every pair a long-lived group ever served.
        let used = &self.encoded;
        self.encoders.retain(|key, _| used.contains_key(key));
        self.encoded.clear();
        self.encodes_this_tick = 0;
        if self.arena.capacity() < 16 * 1024 {
            // Reclaims the arena once last tick's payloads are dropped; allocates otherwise.
            self.arena.reserve(64 * 1024);
        }
    }

    /// The payload `group` encodes to with `params`' codec, encoding it on first use.
    pub(crate) fn payload(
        &mut self,
        conference: &Conference,
        group: GroupId,
        params: &CodecParams,
    ) -> Result<Bytes, CodecError> {
        let key = (group, EncoderKey::of(params));
        if let Some(bytes) = self.encoded.get(&key) {
            return Ok(bytes.clone());
        }
        let pcm =
            conference.group_pcm(group).ok_or(CodecError::InvalidInput("unknown mix group"))?;
        let encoder = match self.encoders.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(new_encoder(
                params,
                &self.settings,
                self.conference_rate,
                self.frame_samples,
            )?),
        };
        let len = encoder.encode(pcm, &mut self.scratch)?;
        self.arena.extend_from_slice(&self.scratch[..len]);
        let bytes = self.arena.split().freeze();
        self.encodes_this_tick += 1;
        self.encoded.insert(key, bytes.clone());
        Ok(bytes)
    }

    /// Drops the encoders of a group that closed.
    pub(crate) fn close_group(&mut self, group: GroupId) {
        self.encoders.retain(|(g, _), _| *g != group);
    }

    pub(crate) fn encodes_this_tick(&self) -> u32 {
        self.encodes_this_tick
    }

    pub(crate) fn encoder_count(&self) -> usize {
        self.encoders.len()
    }
}
