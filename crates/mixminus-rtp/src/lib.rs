//! mixminus-rtp (placeholder, being written).
