//! The relationship matrix: sparse directed records `P → O` with FreeSWITCH's two flags.

use std::collections::HashMap;

use crate::ParticipantId;

/// The value of one directed record `P → O`.
///
/// | call | effect | FreeSWITCH |
/// |---|---|---|
/// | `deaf` | P stops hearing O | `nohear` |
/// | `mute` | O stops hearing P | `nospeak` |
/// | `clear` | both back to normal (the record is removed) | `clear` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Relationship {
    /// P does not hear O.
    pub deaf: bool,
    /// O does not hear P.
    pub mute: bool,
}

impl Relationship {
    /// No effect; setting it removes the record.
    pub const CLEAR: Relationship = Relationship { deaf: false, mute: false };
    /// P stops hearing O.
    pub const DEAF: Relationship = Relationship { deaf: true, mute: false };
    /// O stops hearing P.
    pub const MUTE: Relationship = Relationship { deaf: false, mute: true };
    /// Both: P and O stop hearing each other (FreeSWITCH's `nospeak,nohear`).
    pub const BOTH: Relationship = Relationship { deaf: true, mute: true };

    /// Whether this record has no effect.
    pub const fn is_clear(self) -> bool {
        !self.deaf && !self.mute
    }
}

/// Sparse storage of every non-clear record; memory grows with records, never with N².
///
/// Besides the records it keeps, per participant, the other participants it shares a record
/// with (either direction), so leaving removes every record naming it without a scan.
#[derive(Debug, Default, Clone)]
pub(crate) struct Matrix {
    records: HashMap<(ParticipantId, ParticipantId), Relationship>,
    related: HashMap<ParticipantId, Vec<ParticipantId>>,
}

impl Matrix {
    pub(crate) fn get(&self, p: ParticipantId, o: ParticipantId) -> Relationship {
        self.records.get(&(p, o)).copied().unwrap_or_default()
    }

    pub(crate) fn contains(&self, p: ParticipantId, o: ParticipantId) -> bool {
        self.records.contains_key(&(p, o))
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether `listener` must not hear `source` because of the matrix.
    pub(crate) fn blocks(&self, listener: ParticipantId, source: ParticipantId) -> bool {
        self.get(listener, source).deaf || self.get(source, listener).mute
    }

    /// Sets `p → o`, replacing what was there; returns the previous value.
    pub(crate) fn set(
        &mut self,
        p: ParticipantId,
        o: ParticipantId,
        rel: Relationship,
    ) -> Relationship {
        let previous = if rel.is_clear() {
            self.records.remove(&(p, o)).unwrap_or_default()
        } else {
            self.records.insert((p, o), rel).unwrap_or_default()
        };
        // The pair stays "related" while a record exists in either direction.
        let linked = !self.get(p, o).is_clear() || !self.get(o, p).is_clear();
        if linked {
            link(&mut self.related, p, o);
            link(&mut self.related, o, p);
        } else {
            unlink(&mut self.related, p, o);
            unlink(&mut self.related, o, p);
        }
        previous
    }

    /// The participants sharing a record with `p`, in either direction.
    pub(crate) fn related(&self, p: ParticipantId) -> &[ParticipantId] {
        self.related.get(&p).map_or(&[], Vec::as_slice)
    }

    /// Removes every record naming `p`; returns the others it was related to.
    pub(crate) fn remove_participant(&mut self, p: ParticipantId) -> Vec<ParticipantId> {
        let others = self.related.remove(&p).unwrap_or_default();
        for &o in &others {
            self.records.remove(&(p, o));
            self.records.remove(&(o, p));
            unlink(&mut self.related, o, p);
        }
        others
    }

    /// Every record, sorted by (P, O) for stable output.
    pub(crate) fn records(&self) -> Vec<(ParticipantId, ParticipantId, Relationship)> {
        let mut all: Vec<_> = self.records.iter().map(|(&(p, o), &r)| (p, o, r)).collect();
        all.sort_unstable_by_key(|&(p, o, _)| (p, o));
        all
    }
}

fn link(
    related: &mut HashMap<ParticipantId, Vec<ParticipantId>>,
    a: ParticipantId,
    b: ParticipantId,
) {
    let list = related.entry(a).or_default();
    if let Err(at) = list.binary_search(&b) {
        list.insert(at, b);
    }
}

fn unlink(
    related: &mut HashMap<ParticipantId, Vec<ParticipantId>>,
    a: ParticipantId,
    b: ParticipantId,
) {
    if let Some(list) = related.get_mut(&a) {
        if let Ok(at) = list.binary_search(&b) {
            list.remove(at);
        }
        if list.is_empty() {
            related.remove(&a);
        }
    }
}
