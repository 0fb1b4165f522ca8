//! What the fleet stores about a conference, so another node can take it over: the
//! document, the lock, who was in it with which roles, and the relationship matrix. The
//! matrix is kept by `call_id`, not by participant id: media cannot move with a
//! conference, so participants re-join the new owner, get new ids, and their call ids are
//! what ties them to their roles and relationships.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A conference's record in the fleet's store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredConference {
    /// The node that owns it.
    pub owner: String,
    /// Its account.
    pub account: String,
    /// Its id.
    pub id: String,
    /// Its Kazoo document (without `_read_only`).
    pub doc: Value,
    /// Whether it is locked.
    pub locked: bool,
    /// Every participant, present or awaiting a re-join after a move.
    pub roster: Vec<RosterEntry>,
    /// Every relationship record, by call id.
    pub matrix: Vec<StoredRelation>,
    /// Its moves from node to node, oldest first (at most [`MOVES_KEPT`]).
    #[serde(default)]
    pub moves: Vec<Moved>,
}

/// How many moves a record remembers.
pub const MOVES_KEPT: usize = 8;

impl StoredConference {
    /// A record.
    pub fn new(owner: &str, account: &str, id: &str, doc: Value) -> Self {
        Self {
            owner: owner.into(),
            account: account.into(),
            id: id.into(),
            doc,
            locked: false,
            roster: Vec::new(),
            matrix: Vec::new(),
            moves: Vec::new(),
        }
    }

    /// The key of a conference: `account.id` (both `[A-Za-z0-9_-]`).
    pub fn key(account: &str, id: &str) -> String {
        format!("{account}.{id}")
    }
}

/// A participant as stored: its call and roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RosterEntry {
    /// Kazoo's `call_id`.
    pub call_id: String,
    /// Its participant id on the node that stored it.
    pub participant_id: u32,
    /// Caller id name.
    pub caller_id_name: Option<String>,
    /// Caller id number.
    pub caller_id_number: Option<String>,
    /// Moderator.
    pub moderator: bool,
    /// Ghost (not counted, not announced).
    pub ghost: bool,
    /// Not muted.
    pub can_speak: bool,
    /// Not deafened.
    pub can_hear: bool,
    /// Input gain, Q12.
    pub input_gain: u16,
    /// Output gain, Q12.
    pub output_gain: u16,
    /// Its own talk threshold (the `energy` action), if it has one.
    pub energy_threshold: Option<u32>,
    /// Whether it is waiting to re-join after a move (no media yet).
    pub awaiting: bool,
}

/// One relationship record, by call id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredRelation {
    /// P's call.
    pub participant: String,
    /// O's call.
    pub other: String,
    /// P does not hear O.
    pub deaf: bool,
    /// O does not hear P.
    pub mute: bool,
}

/// One move of a conference to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Moved {
    /// The node it left (dead, or cut off from the fleet).
    pub from: String,
    /// The node that claimed it.
    pub to: String,
    /// When, Unix seconds.
    pub at: u64,
}
