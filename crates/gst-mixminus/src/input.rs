//! One input's queue of samples on the element's output timeline, with its fixed capacity.
//!
//! Positions are absolute sample indices of running time (`running_time · rate / 1 s`), so
//! every input lines up with every other and with the output frames. The queue is a flat
//! buffer allocated once: writing never allocates, taking a frame shifts what is left to the
//! front (a few frames at most).

/// Samples handed in by one buffer (or a GAP event), in the pad's negotiated format.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Samples<'a> {
    /// S16LE bytes.
    S16(&'a [u8]),
    /// F32LE bytes.
    F32(&'a [u8]),
    /// That many samples of silence (a GAP event).
    Silence(usize),
}

impl Samples<'_> {
    /// How many samples this holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Samples::S16(b) => b.len() / 2,
            Samples::F32(b) => b.len() / 4,
            Samples::Silence(n) => *n,
        }
    }

    fn copy_to(&self, from: usize, out: &mut [i16]) {
        match self {
            Samples::S16(b) => {
                for (o, c) in out.iter_mut().zip(b[from * 2..].chunks_exact(2)) {
                    *o = i16::from_le_bytes([c[0], c[1]]);
                }
            }
            Samples::F32(b) => {
                for (o, c) in out.iter_mut().zip(b[from * 4..].chunks_exact(4)) {
                    *o = f32_to_i16(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
                }
            }
            Samples::Silence(_) => out.fill(0),
        }
    }
}

/// A float sample (full scale ±1.0) as `i16`, rounded and clamped.
pub(crate) fn f32_to_i16(x: f32) -> i16 {
    (x * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// The queue of one input.
#[derive(Debug)]
pub(crate) struct InputQueue {
    buf: Vec<i16>,
    /// Absolute position of `buf[0]`.
    start: u64,
    len: usize,
}

impl InputQueue {
    /// An empty queue holding at most `capacity` samples.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { buf: vec![0; capacity], start: 0, len: 0 }
    }

    /// How many samples it can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The position just after the last queued sample.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    /// Whether samples up to `until` (exclusive) are queued.
    pub(crate) fn covers(&self, until: u64) -> bool {
        self.len > 0 && self.end() >= until
    }

    /// Forgets everything queued.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Queues `src[done..]`, its first sample at `pos`, as far as it fits. Samples before
    /// `out` (the output frame being built) are late and dropped; a gap after what is queued
    /// is filled with silence; samples before what is queued (the input jumped back) are
    /// dropped. Returns how many samples of `src` were used up: less than `src.len() - done`
    /// means the queue is full and the caller waits for the next frame to be taken.
    pub(crate) fn write(&mut self, pos: u64, out: u64, src: &Samples<'_>, done: usize) -> usize {
        let total = src.len();
        let (mut pos, mut i) = (pos, done);
        while i < total {
            let left = (total - i) as u64;
            if pos < out {
                let skip = (out - pos).min(left);
                pos += skip;
                i += skip as usize;
                continue;
            }
            if self.len == 0 {
                self.start = pos;
            }
            let end = self.end();
            if pos < end {
                let skip = (end - pos).min(left);
                pos += skip;
                i += skip as usize;
                continue;
            }
            let space = self.buf.len() - self.len;
            if space == 0 {
                break;
            }
            if pos > end {
                let fill = ((pos - end) as usize).min(space);
                self.buf[self.len..self.len + fill].fill(0);
                self.len += fill;
                continue;
            }
            let n = space.min(total - i);
            src.copy_to(i, &mut self.buf[self.len..self.len + n]);
            self.len += n;
            pos += n as u64;
            i += n;
        }
        i - done
    }

    /// Copies the frame starting at `out` into `frame` (silence where nothing is queued) and
    /// drops everything before the frame's end. Returns whether any queued sample was used.
    pub(crate) fn take(&mut self, out: u64, frame: &mut [i16]) -> bool {
        let until = out + frame.len() as u64;
        let (lo, hi) = (self.start.max(out), self.end().min(until));
        let used = self.len > 0 && lo < hi;
        if used {
            let (f0, f1) = ((lo - out) as usize, (hi - out) as usize);
            let b0 = (lo - self.start) as usize;
            frame[..f0].fill(0);
            frame[f0..f1].copy_from_slice(&self.buf[b0..b0 + (f1 - f0)]);
            frame[f1..].fill(0);
        } else {
            frame.fill(0);
        }
        if self.end() <= until {
            self.len = 0;
            self.start = until;
        } else if self.start < until {
            let k = (until - self.start) as usize;
            self.buf.copy_within(k..self.len, 0);
            self.len -= k;
            self.start = until;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s16(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn frames_line_up_with_gaps_late_data_and_back_jumps() {
        let mut q = InputQueue::new(8);
        let a = s16(&[1, 2, 3, 4, 5, 6]);
        // Starts at 2: positions 2..8; frame 0..4 has silence for 0 and 1.
        assert_eq!(q.write(2, 0, &Samples::S16(&a), 0), 6);
        assert!(q.covers(4) && q.covers(8) && !q.covers(9));
        let mut f = [9i16; 4];
        assert!(q.take(0, &mut f));
        assert_eq!(f, [0, 0, 1, 2]);
        // A back jump (positions 6..) overlaps 6 and 7: dropped; 8 and 9 queue after.
        assert_eq!(q.write(6, 4, &Samples::S16(&s16(&[70, 71, 80, 90])), 0), 4);
        assert!(q.take(4, &mut f));
        assert_eq!(f, [3, 4, 5, 6]);
        // A gap 10..12 is silence; late data before the output position is skipped.
        assert_eq!(q.write(12, 8, &Samples::F32(&0.5f32.to_le_bytes()), 0), 1);
        assert_eq!(q.write(2, 8, &Samples::Silence(3), 0), 3);
        assert!(q.take(8, &mut f));
        assert_eq!(f, [80, 90, 0, 0]);
        assert!(q.take(12, &mut f));
        assert_eq!(f, [16_384, 0, 0, 0]);
        assert!(!q.take(16, &mut f));
        assert_eq!(f, [0; 4]);
    }

    #[test]
    fn a_full_queue_takes_what_fits_and_resumes() {
        let mut q = InputQueue::new(4);
        let a = s16(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(q.write(0, 0, &Samples::S16(&a), 0), 4);
        let mut f = [0i16; 2];
        q.take(0, &mut f);
        assert_eq!(q.write(4, 2, &Samples::S16(&a), 4), 2);
        q.take(2, &mut f);
        assert_eq!(f, [3, 4]);
        q.take(4, &mut f);
        assert_eq!(f, [5, 6]);
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-1.0), i16::MIN);
    }
}
