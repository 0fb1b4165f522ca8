//! What a phone's uplink does to its packets: loss (random, or bursty after Gilbert and
//! Elliott), delay jitter and reordering, from a seeded generator so a run replays.

use std::time::Duration;

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Loss {
    /// No loss.
    None,
    /// Each packet lost with this probability, independently.
    Random(f64),
    /// Two-state Gilbert–Elliott: every packet in the bad state is lost, none in the good
    /// one; [`Loss::bursty`] builds it from a loss rate and a mean burst length.
    Bursty {
        /// Probability of going from good to bad, per packet.
        p: f64,
        /// Probability of going from bad to good, per packet.
        r: f64,
    },
}

impl Loss {
    /// A Gilbert–Elliott loss averaging `rate` in bursts of `mean_burst` packets.
    pub fn bursty(rate: f64, mean_burst: f64) -> Self {
        let r = 1.0 / mean_burst.max(1.0);
        let rate = rate.clamp(0.0, 0.99);
        Loss::Bursty { p: rate * r / (1.0 - rate), r }
    }

    /// The long-run fraction of packets lost.
    pub fn rate(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Random(p) => p,
            Loss::Bursty { p, r } => p / (p + r),
        }
    }
}

/// An uplink's impairment.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Impairment {
    /// Loss model.
    pub loss: Loss,
    /// Extra delay per packet, uniform in `0..jitter` (reorders once it passes the frame).
    pub jitter: Duration,
    /// Probability a packet is held back [`reorder_by`](Self::reorder_by) more.
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub reorder_by: Duration,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for Impairment {
    /// A clean uplink.
    fn default() -> Self {
        Self {
            loss: Loss::None,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_by: Duration::from_millis(50),
            seed: 1,
        }
    }
}

impl Impairment {
    /// Whether anything is impaired at all.
    pub fn is_clean(&self) -> bool {
        self.loss.rate() == 0.0 && self.jitter.is_zero() && self.reorder == 0.0
    }
}

/// Applies an [`Impairment`] packet by packet.
#[derive(Debug, Clone)]
pub struct Channel {
    impairment: Impairment,
    rng: u64,
    bad: bool,
}

impl Channel {
    /// A channel in the good state.
    pub fn new(impairment: Impairment) -> Self {
        Self { impairment, rng: impairment.seed | 1, bad: false }
    }

    /// The fate of the next packet: `None` if lost, else the delay it gets.
    pub fn next_packet(&mut self) -> Option<Duration> {
        let lost = match self.impairment.loss {
            Loss::None => false,
            Loss::Random(p) => self.uniform() < p,
            Loss::Bursty { p, r } => {
                let flip = self.uniform();
                self.bad = if self.bad { flip >= r } else { flip < p };
                self.bad
            }
        };
        if lost {
            return None;
        }
        let mut delay = self.impairment.jitter.mul_f64(self.uniform());
        if self.impairment.reorder > 0.0 && self.uniform() < self.impairment.reorder {
            delay += self.impairment.reorder_by;
        }
        Some(delay)
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*: plenty for impairment.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost_runs(loss: Loss, n: usize) -> (f64, f64) {
        let mut channel = Channel::new(Impairment { loss, seed: 7, ..Impairment::default() });
        let (mut lost, mut runs, mut previous) = (0usize, 0usize, false);
        for _ in 0..n {
            let gone = channel.next_packet().is_none();
            lost += usize::from(gone);
            runs += usize::from(gone && !previous);
            previous = gone;
        }
        (lost as f64 / n as f64, lost as f64 / runs.max(1) as f64)
    }

    #[test]
    fn random_and_bursty_loss_hit_their_rates() {
        let (rate, burst) = lost_runs(Loss::Random(0.10), 200_000);
        assert!((rate - 0.10).abs() < 0.005 && burst < 1.2, "{rate} {burst}");
        let bursty = Loss::bursty(0.10, 3.0);
        assert!((bursty.rate() - 0.10).abs() < 1e-9);
        let (rate, burst) = lost_runs(bursty, 200_000);
        assert!((rate - 0.10).abs() < 0.01 && (burst - 3.0).abs() < 0.2, "{rate} {burst}");
    }

    #[test]
    fn jitter_stays_in_its_range() {
        let jitter = Duration::from_millis(40);
        let mut channel = Channel::new(Impairment { jitter, ..Impairment::default() });
        let delays: Vec<Duration> = (0..1000).filter_map(|_| channel.next_packet()).collect();
        assert_eq!(delays.len(), 1000);
        assert!(delays.iter().all(|d| *d < jitter));
        assert!(delays.iter().any(|d| *d > jitter / 2));
    }
}
