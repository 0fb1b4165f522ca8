//! Per-source INVITE rate limiting: a token bucket per source address, in a bounded map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Most sources tracked at once; past it, full buckets are forgotten first (a source that
/// is forgotten starts again with a full bucket, which only ever helps it by `burst`).
const MAX_SOURCES: usize = 10_000;

/// Token buckets by source address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` requests per second, up to `burst` at once, per source.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self { rate: f64::from(rate), burst: f64::from(burst.max(1)), buckets: HashMap::new() }
    }

    /// Whether `source` may send one more request at `now`.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(source).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_flood_gets_the_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(10, 20);
        let t0 = Instant::now();
        let flood: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let admitted = (0..1000).filter(|_| limiter.admit(flood, t0)).count();
        assert_eq!(admitted, 20);
        assert!(limiter.admit(other, t0), "another source is not held back");
        let later = t0 + Duration::from_secs(1);
        let admitted = (0..1000).filter(|_| limiter.admit(flood, later)).count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut limiter = RateLimiter::new(10, 20);
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 500) {
            limiter.admit(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(limiter.buckets.len() <= MAX_SOURCES);
    }
}
