//! Encodes 48 kHz mono speech with one conference encoder setting and decodes it at 16 kHz
//! as a wideband phone would, for the bitrate × complexity × PESQ × CPU table in
//! `docs/QUALITY.md` (`scripts/opus-settings-table.sh` runs the sweep and scores it).
//!
//! ```text
//! cargo run --release -p mixminus-rtp --example opus_settings -- \
//!     speech48.raw decoded16.raw <bitrate> <complexity> <fec 0|1> <loss %>
//! ```
//! Input and output are raw signed 16-bit little-endian mono. Prints
//! `kbit/s encode_us_per_frame`.

use std::time::Instant;

use mixminus_rtp::{new_decoder, new_encoder, CodecKind, CodecParams, CodecSettings};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        return Err("usage: opus_settings IN48.raw OUT16.raw BITRATE COMPLEXITY FEC LOSS%".into());
    }
    let input = std::fs::read(&args[1])?;
    let pcm: Vec<i16> = input.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let mut settings = CodecSettings::default();
    settings.bitrate = args[3].parse()?;
    settings.complexity = args[4].parse()?;
    settings.fec = args[5] == "1";
    settings.expected_loss_percent = args[6].parse()?;
    let params = CodecParams::new(CodecKind::Opus);
    let mut encoder = new_encoder(&params, &settings, 48_000, 960)?;
    let mut decoder = new_decoder(&params, 16_000, 320)?;
    let (mut payload, mut out) = ([0u8; 1500], vec![0i16; 320]);
    let (mut bytes, mut frames, mut encode_time) = (0usize, 0usize, 0.0f64);
    let mut decoded = Vec::with_capacity(pcm.len() / 3 * 2);
    for frame in pcm.chunks_exact(960) {
        let started = Instant::now();
        let n = encoder.encode(frame, &mut payload)?;
        encode_time += started.elapsed().as_secs_f64();
        bytes += n;
        frames += 1;
        decoder.decode(&payload[..n], &mut out)?;
        decoded.extend(out.iter().flat_map(|s| s.to_le_bytes()));
    }
    std::fs::write(&args[2], decoded)?;
    let seconds = frames as f64 * 0.02;
    println!(
        "{:.1} {:.1}",
        bytes as f64 * 8.0 / seconds / 1000.0,
        encode_time / frames as f64 * 1e6
    );
    Ok(())
}
