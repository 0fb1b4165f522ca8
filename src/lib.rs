//! mixminus facade.
pub use mixminus_core as core;
