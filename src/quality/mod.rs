//! Measuring what a caller hears: a scripted [`phone`](phone::Phone) that talks and listens
//! over real RTP (its uplink impaired by [`network`] if asked), and the [`glitch`] measure (a steady tone's residual, 5 ms at a time).
//! The end-to-end tests and `mixminus bench --quality` share them.

pub mod glitch;
pub mod network;
pub mod phone;
pub mod sources;

pub use glitch::ToneResidual;
pub use network::{Impairment, Loss};
pub use phone::{Phone, PhoneConfig, PhoneStats, Source};
