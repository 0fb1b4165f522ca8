//! Mix groups: listeners with equal exclusion keys share one materialised mix.

use std::collections::HashMap;

use crate::limiter::Limiter;
use crate::{Gain, GroupId, ParticipantId};

/// What makes two listeners hear the same thing: the active sources they must not hear
/// (sorted by id) and their output gain. Built from stable ids so a group survives ticks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct GroupKey {
    pub(crate) excluded: Vec<ParticipantId>,
    pub(crate) gain: Gain,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: GroupId,
    pub(crate) key: GroupKey,
    pub(crate) pcm: Vec<i16>,
    /// The mix before the limiter (output gain applied).
    pub(crate) mix: Vec<i32>,
    pub(crate) limiter: Limiter,
    pub(crate) listeners: u32,
    idle_ticks: u32,
}

/// The live groups, in a slab addressed by [`GroupId`] (slot + generation).
#[derive(Debug, Default)]
pub(crate) struct GroupTable {
    slots: Vec<Option<Group>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    by_key: HashMap<GroupKey, u32>,
    /// Slots used this tick, in first-use order.
    pub(crate) used: Vec<u32>,
}

impl GroupTable {
    /// Finds or creates the group for `key`, counts one more listener in it this tick.
    /// Allocates only when the key is new.
    pub(crate) fn join(&mut self, key: &GroupKey, frame_samples: usize) -> GroupId {
        let slot = match self.by_key.get(key) {
            Some(&slot) => slot,
            None => self.insert(key.clone(), frame_samples),
        };
        self.join_slot(slot)
    }

    /// Counts one more listener in the live group at `slot` this tick: the fast path for a
    /// caller that already knows the slot of the key it would look up.
    pub(crate) fn join_slot(&mut self, slot: u32) -> GroupId {
        // Callers pass slots from `by_key` or from a `join` of this tick: live slots.
        let group = self.slots[slot as usize].as_mut().expect("by_key names live slots");
        if group.listeners == 0 {
            self.used.push(slot);
        }
        group.listeners += 1;
        group.id
    }

    fn insert(&mut self, key: GroupKey, frame_samples: usize) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = &mut self.generations[slot as usize];
        // Generation 0 is never used, so no group id equals GroupId::SILENCE.
        *generation = generation.wrapping_add(1).max(1);
        let id = GroupId::from_parts(slot, *generation);
        self.by_key.insert(key.clone(), slot);
        self.slots[slot as usize] = Some(Group {
            id,
            key,
            pcm: vec![0; frame_samples],
            mix: vec![0; frame_samples],
            limiter: Limiter::default(),
            listeners: 0,
            idle_ticks: 0,
        });
        slot
    }

    pub(crate) fn get(&self, id: GroupId) -> Option<&Group> {
        self.slots.get(id.slot())?.as_ref().filter(|g| g.id == id)
    }

    pub(crate) fn slot_mut(&mut self, slot: u32) -> &mut Group {
        // Callers pass slots from `used`, which are live for the whole tick.
        self.slots[slot as usize].as_mut().expect("used slots are live")
    }

    pub(crate) fn slot(&self, slot: u32) -> &Group {
        // As in `slot_mut`.
        self.slots[slot as usize].as_ref().expect("used slots are live")
    }

    /// Starts a tick: forget last tick's listener counts.
    pub(crate) fn begin_tick(&mut self) {
        for &slot in &self.used {
            if let Some(g) = self.slots[slot as usize].as_mut() {
                g.listeners = 0;
            }
        }
        self.used.clear();
    }

    /// Ends a tick: ages unused groups and closes those idle too long, reporting each.
    pub(crate) fn end_tick(&mut self, idle_limit: u32, mut closed: impl FnMut(GroupId)) {
        for slot in 0..self.slots.len() {
            let Some(group) = self.slots[slot].as_mut() else { continue };
            if group.listeners > 0 {
                group.idle_ticks = 0;
                continue;
            }
            group.idle_ticks += 1;
            if group.idle_ticks > idle_limit {
                let id = group.id;
                if let Some(group) = self.slots[slot].take() {
                    self.by_key.remove(&group.key);
                }
                self.free.push(slot as u32);
                closed(id);
            }
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.by_key.len()
    }
}
