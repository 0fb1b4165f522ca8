//! The quality bench's talkers: a scripted turn-taking conversation spoken by espeak-ng
//! (Debian's `espeak-ng`), one voice per talker, resampled to 16 kHz (rubato) and laid out
//! on one timeline, so each talker's track and every listener's ideal mix are known exactly.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use rubato::{FftFixedIn, Resampler};

/// The rate the tracks are at (and the phones speak and listen at): PESQ wideband's.
pub(crate) const RATE: u32 = 16_000;
/// What espeak-ng writes.
const ESPEAK_RATE: usize = 22_050;
/// Pause between one line's end and the next line's start, seconds.
const GAP_SECS: f64 = 0.35;
/// Every fourth line starts this long before the previous one ends (an interruption).
const OVERLAP_SECS: f64 = 0.4;
/// Each line's RMS over its speech (about −24 dBFS).
const LINE_RMS: f64 = 2_000.0;

/// One voice per talker (espeak-ng voice + variant), distinct in pitch and accent.
const VOICES: [&str; 4] = ["en-us+m3", "en-gb+f3", "en-us+m1", "en-gb-scotland+f2"];

/// The script: who says what, in order (talker index modulo the talker count).
const SCRIPT: [(usize, &str); 8] = [
    (0, "Good morning everyone. Can you all hear me clearly?"),
    (1, "Yes, loud and clear. The line sounds good from here."),
    (2, "Same here. Shall we start with the numbers from last week?"),
    (0, "Sure. We shipped four releases and closed thirty two tickets."),
    (1, "That is better than planned. What slowed down the fifth one?"),
    (2, "A test failed on the build machine, so we held it back a day."),
    (0, "Fine. Let us move the review to Thursday afternoon, then."),
    (1, "Thursday works for me. I will send the invitation right away."),
];

/// One line on the timeline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub(crate) talker: usize,
    /// First and one-past-last sample at [`RATE`].
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The conversation, ready to say.
pub(crate) struct Conversation {
    /// One track per talker at [`RATE`], all the same length (silence where it listens).
    pub(crate) tracks: Vec<Vec<i16>>,
    pub(crate) lines: Vec<Line>,
    pub(crate) voices: Vec<&'static str>,
}

impl Conversation {
    /// Speaks the first `lines` lines of the script (all when 0) with `talkers` voices
    /// (1–4), working files in `dir`.
    pub(crate) fn synthesize(talkers: usize, lines: usize, dir: &Path) -> anyhow::Result<Self> {
        if !(1..=VOICES.len()).contains(&talkers) {
            bail!("--quality-talkers must be 1 to {}", VOICES.len());
        }
        let mut spoken = Vec::new();
        let count = if lines == 0 { SCRIPT.len() } else { lines.min(SCRIPT.len()) };
        for (i, &(who, text)) in SCRIPT.iter().take(count).enumerate() {
            let talker = if talkers == 4 && i % 4 == 3 { 3 } else { who % talkers };
            let wav = dir.join(format!("line-{i}.wav"));
            let status = Command::new("espeak-ng")
                .args(["-v", VOICES[talker], "-s", "160", "-w"])
                .arg(&wav)
                .arg(text)
                .status()
                .context("running espeak-ng (apt-get install espeak-ng)")?;
            if !status.success() {
                bail!("espeak-ng failed on line {i}: {status}");
            }
            let pcm = to_rate(&read_wav(&wav)?)?;
            spoken.push((talker, normalise(trim(&pcm))));
        }
        let (gap, overlap) = (secs(GAP_SECS), secs(OVERLAP_SECS));
        let mut lines = Vec::new();
        let mut at = secs(0.5);
        for (i, (talker, pcm)) in spoken.iter().enumerate() {
            let start = if i > 0 && i % 4 == 0 { at.saturating_sub(overlap + gap) } else { at };
            lines.push(Line { talker: *talker, start, end: start + pcm.len() });
            at = start + pcm.len() + gap;
        }
        let total = at + secs(1.0);
        let mut tracks = vec![vec![0i16; total]; talkers];
        for (line, (_, pcm)) in lines.iter().zip(&spoken) {
            tracks[line.talker][line.start..line.end].copy_from_slice(pcm);
        }
        Ok(Self { tracks, lines, voices: VOICES[..talkers].to_vec() })
    }

    /// Seconds of audio.
    pub(crate) fn seconds(&self) -> f64 {
        self.tracks.first().map_or(0.0, |t| t.len() as f64 / RATE as f64)
    }

    /// What a listener should hear: the sum of the talkers in `heard`, talker `t` starting
    /// `shifts[t]` samples late (its phone's send phase).
    pub(crate) fn mix(&self, heard: impl Fn(usize) -> bool, shifts: &[usize]) -> Vec<i16> {
        let len = self.tracks.first().map_or(0, Vec::len);
        let mut sum = vec![0i32; len + shifts.iter().copied().max().unwrap_or(0)];
        for (t, track) in self.tracks.iter().enumerate().filter(|(t, _)| heard(*t)) {
            let shift = shifts.get(t).copied().unwrap_or(0);
            for (acc, &s) in sum[shift..].iter_mut().zip(track) {
                *acc += i32::from(s);
            }
        }
        sum.into_iter().map(|s| s.clamp(-32_768, 32_767) as i16).collect()
    }

    /// Who speaks at sample `n` of [`mix`](Self::mix) with `shifts`, among the talkers in
    /// `heard` (the first line's talker where lines overlap).
    pub(crate) fn speaker_at(
        &self,
        n: usize,
        heard: impl Fn(usize) -> bool,
        shifts: &[usize],
    ) -> Option<usize> {
        self.lines.iter().find_map(|line| {
            let shift = shifts.get(line.talker).copied().unwrap_or(0);
            (heard(line.talker) && (line.start + shift..line.end + shift).contains(&n))
                .then_some(line.talker)
        })
    }

    /// The spans where `talker` speaks and nobody else does.
    pub(crate) fn solo(&self, talker: usize) -> Vec<(usize, usize)> {
        let len = self.tracks.first().map_or(0, Vec::len);
        let mut speakers = vec![(0u8, false); len];
        for line in &self.lines {
            for slot in &mut speakers[line.start..line.end] {
                slot.0 += 1;
                slot.1 |= line.talker == talker;
            }
        }
        let mut spans = Vec::new();
        let mut open = None;
        for (n, &(count, mine)) in speakers.iter().chain([(0, false)].iter()).enumerate() {
            match (count == 1 && mine, open) {
                (true, None) => open = Some(n),
                (false, Some(start)) => {
                    spans.push((start, n));
                    open = None;
                }
                _ => {}
            }
        }
        spans
    }
}

fn secs(s: f64) -> usize {
    (s * RATE as f64).round() as usize
}

/// Reads a mono 16-bit WAV.
pub(crate) fn read_wav(path: &Path) -> anyhow::Result<Vec<i16>> {
    let mut reader =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let spec = reader.spec();
    if spec.channels != 1 || spec.bits_per_sample != 16 || spec.sample_rate as usize != ESPEAK_RATE
    {
        bail!("{}: expected mono 16-bit {ESPEAK_RATE} Hz, got {spec:?}", path.display());
    }
    Ok(reader.samples::<i16>().collect::<Result<_, _>>()?)
}

/// Writes a mono 16-bit WAV at [`RATE`].
pub(crate) fn write_wav(path: &Path, pcm: &[i16]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)
        .with_context(|| format!("writing {}", path.display()))?;
    for &s in pcm {
        writer.write_sample(s)?;
    }
    writer.finalize()?;
    Ok(())
}

/// espeak-ng's 22.05 kHz to [`RATE`], without the resampler's delay.
fn to_rate(pcm: &[i16]) -> anyhow::Result<Vec<i16>> {
    let chunk = 1024;
    let mut resampler = FftFixedIn::<f64>::new(ESPEAK_RATE, RATE as usize, chunk, 2, 1)?;
    let delay = resampler.output_delay();
    let mut input: Vec<f64> = pcm.iter().map(|&s| f64::from(s)).collect();
    // Flush the delay out with silence, and fill the last chunk.
    input.resize(input.len() + 2 * chunk + delay * ESPEAK_RATE / RATE as usize, 0.0);
    let mut out = Vec::new();
    for block in input.chunks_exact(chunk) {
        let resampled = resampler.process(&[block], None)?;
        out.extend(resampled[0].iter().map(|&s| s.round().clamp(-32_768.0, 32_767.0) as i16));
    }
    let want = pcm.len() * RATE as usize / ESPEAK_RATE;
    Ok(out.into_iter().skip(delay).take(want).collect())
}

/// The line without the silence espeak-ng puts around it.
fn trim(pcm: &[i16]) -> &[i16] {
    let loud = |s: &i16| s.unsigned_abs() > 64;
    let first = pcm.iter().position(loud).unwrap_or(0);
    let last = pcm.iter().rposition(loud).map_or(first, |i| i + 1);
    &pcm[first..last]
}

/// Scales a line to [`LINE_RMS`].
fn normalise(pcm: &[i16]) -> Vec<i16> {
    let energy = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
    let rms = (energy / pcm.len().max(1) as f64).sqrt();
    let gain = if rms > 0.0 { LINE_RMS / rms } else { 1.0 };
    pcm.iter().map(|&s| (f64::from(s) * gain).round().clamp(-32_768.0, 32_767.0) as i16).collect()
}
