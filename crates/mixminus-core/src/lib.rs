//! # mixminus-core: the sans-IO conference mixer
//!
//! Every participant hears the mix of everyone else (*mix-minus*), and a per-pair
//! relationship matrix removes more: `relate(P, O, deaf)` — P stops hearing O;
//! `relate(P, O, mute)` — O stops hearing P; `relate(P, O, clear)` — the record is gone.
//! These are FreeSWITCH's `relate` semantics as Kazoo exposes them.
//!
//! This crate has no async runtime, no sockets, no clock and no locks. The caller hands in
//! decoded frames and calls [`Conference::tick`] once per frame period; it takes out each
//! listener's audio and drains [`Conference::poll_event`]. That makes it embeddable in any
//! media server and testable in simulated time. `mixminus-rtp` is the I/O shell around it.
//!
//! ## The contract
//!
//! Per tick: hand in frames ([`Conference::input_mut`] / [`Conference::push_input`]), call
//! [`Conference::tick`], read outputs, then drain events until `poll_event` returns `None`.
//! Control calls ([`Conference::join`], [`Conference::leave`], [`Conference::relate`],
//! [`Conference::set_can_speak`], …) may come between ticks. A rejected call changes nothing.
//!
//! ## Why it is fast
//!
//! Listener `o` hears source `s` when `s ≠ o`, `o` can hear, `s` can speak, `s` is active
//! (talk detection), `(o→s)` is not deaf and `(s→o)` is not mute. A tick:
//!
//! 1. measures each frame's energy and picks the active sources `A` (threshold, attack,
//!    hangover, optionally the N loudest);
//! 2. sums them once into an exact `i32` total;
//! 3. gives each listener an *exclusion key* — the active sources it must not hear, plus its
//!    output gain. Listeners with equal keys form a [mix group](GroupView); nearly everyone
//!    shares the empty key, each talker has its own;
//! 4. materialises each group once (`total − Σ excluded`), brought to `i16` once by the
//!    group's limiter (gain riding, then a soft knee: [`soft_limit`]).
//!
//! Sample work is O(|A|·F + groups·F), not O(N·F); per listener it is O(1) plus its
//! relationships. Downstream, one encoder per group serves all its listeners. The
//! [`reference`] module holds the naive per-listener mixer that the property tests compare
//! against, sample for sample.
//!
//! ## Example
//!
//! ```
//! use mixminus_core::{Conference, ConferenceConfig, JoinOptions, Relationship, TalkConfig};
//!
//! // Gate off: everyone who sends a frame is mixed.
//! let config = ConferenceConfig {
//!     talk: TalkConfig { energy_threshold: 0, ..Default::default() },
//!     ..Default::default()
//! };
//! let mut conf = Conference::new(config).unwrap();
//! let alice = conf.join(JoinOptions::default()).unwrap();
//! let bob = conf.join(JoinOptions::default()).unwrap();
//! let carol = conf.join(JoinOptions::default()).unwrap();
//!
//! // Alice stops hearing Bob.
//! conf.relate(&[alice], &[bob], Relationship::DEAF).unwrap();
//!
//! let n = conf.frame_samples();
//! conf.push_input(alice, &vec![100; n]).unwrap();
//! conf.push_input(bob, &vec![20; n]).unwrap();
//! conf.push_input(carol, &vec![3; n]).unwrap();
//! conf.tick();
//!
//! assert_eq!(conf.output(alice).unwrap().pcm[0], 3); // carol only: bob is deafened
//! assert_eq!(conf.output(bob).unwrap().pcm[0], 103); // alice + carol
//! assert_eq!(conf.output(carol).unwrap().pcm[0], 120); // alice + bob
//! while let Some(event) = conf.poll_event() {
//!     println!("{event:?}");
//! }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod conference;
mod config;
mod error;
mod event;
mod gain;
mod group;
mod id;
mod limiter;
mod matrix;
pub mod reference;
mod talk;

pub use conference::{
    onset_fade, Conference, GroupView, JoinOptions, Output, ParticipantInfo, TickSummary,
};
pub use config::{
    ConferenceConfig, FrameDuration, JoinFlags, SampleRate, TalkConfig, MAX_PARTICIPANTS,
};
pub use error::Error;
pub use event::Event;
pub use gain::{soft_limit, Gain, LIMITER_KNEE};
pub use id::{GroupId, ParticipantId};
pub use limiter::LIMITER_THRESHOLD;
pub use matrix::Relationship;
pub use talk::frame_energy;
