//! mixminus-control (placeholder, being written).
