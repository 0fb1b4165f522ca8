//! Ogg/Opus (RFC 7845) through the `ogg` crate and libopus: decoding a file whole, and a
//! writer for recordings (mono, the conference rate as the input rate).

use std::io::{Cursor, Write};

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate};
use ogg::writing::PacketWriteEndInfo;
use ogg::PacketReader;

use super::{MediaError, MediaLimits};

/// Opus always decodes at up to 48 kHz; granule positions count 48 kHz samples.
const OPUS_RATE: u32 = 48_000;
/// The longest Opus packet is 120 ms: 5760 samples per channel at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5760;
/// Packets per Ogg page in a recording: about a second of 20 ms frames.
const PACKETS_PER_PAGE: u32 = 50;

/// Decodes an Ogg/Opus file (channel mapping family 0: mono or stereo) to mono at 48 kHz,
/// pre-skip and end trimming applied, the header's output gain applied.
pub(super) fn decode(bytes: &[u8], limits: &MediaLimits) -> Result<(Vec<f32>, u32), MediaError> {
    let malformed = |what: &str| MediaError::Malformed(what.to_owned());
    let mut reader = PacketReader::new(Cursor::new(bytes));
    let mut next = || reader.read_packet().map_err(|e| MediaError::Malformed(format!("Ogg: {e}")));
    let head = next()?.ok_or_else(|| malformed("no OpusHead"))?;
    let h = &head.data;
    if h.len() < 19 || &h[..8] != b"OpusHead" {
        return Err(MediaError::Unsupported("an Ogg stream that is not Opus"));
    }
    let channels = h[9];
    let pre_skip = usize::from(u16::from_le_bytes([h[10], h[11]]));
    let gain_q8 = i16::from_le_bytes([h[16], h[17]]);
    if h[18] != 0 || !(1..=2).contains(&channels) {
        return Err(MediaError::Unsupported("Opus with more than two channels"));
    }
    let serial = head.stream_serial();
    let tags = next()?.ok_or_else(|| malformed("no OpusTags"))?;
    if !tags.data.starts_with(b"OpusTags") {
        return Err(malformed("no OpusTags"));
    }
    let channel_count = usize::from(channels);
    let mut decoder = Decoder::new(
        SampleRate::Hz48000,
        if channels == 1 { Channels::Mono } else { Channels::Stereo },
    )
    .map_err(|e| MediaError::Malformed(e.to_string()))?;
    let max_samples = limits.max_seconds as usize * OPUS_RATE as usize + pre_skip;
    let mut buf = vec![0i16; MAX_PACKET_SAMPLES * channel_count];
    let mut out: Vec<f32> = Vec::new();
    let mut end_granule = None;
    while let Some(packet) = next()? {
        if packet.stream_serial() != serial {
            continue; // another logical stream (chained or multiplexed): not ours
        }
        if packet.data.is_empty() {
            continue;
        }
        let opus =
            Packet::try_from(packet.data.as_slice()).map_err(|_| malformed("empty Opus packet"))?;
        let signals = MutSignals::try_from(buf.as_mut_slice())
            .map_err(|e| MediaError::Malformed(e.to_string()))?;
        let n = decoder
            .decode(Some(opus), signals, false)
            .map_err(|e| MediaError::Malformed(format!("Opus: {e}")))?;
        let frames = &buf[..n * channel_count];
        out.extend(
            frames
                .chunks_exact(channel_count)
                .map(|f| f.iter().map(|&s| f32::from(s)).sum::<f32>() / channel_count as f32),
        );
        if out.len() > max_samples {
            return Err(MediaError::TooLong(limits.max_seconds));
        }
        if packet.last_in_page() {
            end_granule = Some(packet.absgp_page());
        }
        if packet.last_in_stream() {
            break;
        }
    }
    // The last page's granule position says where the audio ends (RFC 7845 §4.5).
    if let Some(end) = end_granule.and_then(|g| usize::try_from(g).ok()) {
        out.truncate(end.max(pre_skip));
    }
    let mut pcm: Vec<f32> = out.get(pre_skip..).unwrap_or_default().to_vec();
    if gain_q8 != 0 {
        let factor = 10f32.powf(f32::from(gain_q8) / (20.0 * 256.0));
        pcm.iter_mut().for_each(|s| *s *= factor);
    }
    Ok((pcm, OPUS_RATE))
}

/// Writes mono Opus frames into an Ogg stream: `OpusHead` and `OpusTags` first, then one
/// packet per frame, a page about every second; [`OggOpusWriter::finish`] ends the stream.
pub(super) struct OggOpusWriter<W: Write> {
    writer: ogg::PacketWriter<'static, W>,
    encoder: Encoder,
    serial: u32,
    /// 48 kHz samples per frame.
    frame_48k: u64,
    frame_samples: usize,
    pre_skip: u64,
    frames: u64,
    packet: Vec<u8>,
    /// The last packet, held back so the stream's end can be marked on it.
    pending: Option<Vec<u8>>,
}

impl<W: Write> OggOpusWriter<W> {
    pub(super) fn new(
        out: W,
        rate: u32,
        frame_samples: usize,
        bitrate: i32,
        serial: u32,
    ) -> Result<Self, std::io::Error> {
        let invalid = |e: audiopus::Error| std::io::Error::other(format!("Opus: {e}"));
        let sample_rate = SampleRate::try_from(rate as i32).map_err(invalid)?;
        let mut encoder =
            Encoder::new(sample_rate, Channels::Mono, Application::Audio).map_err(invalid)?;
        encoder.set_bitrate(Bitrate::BitsPerSecond(bitrate)).map_err(invalid)?;
        // The lookahead is in input samples; the header wants 48 kHz samples.
        let pre_skip = u64::from(encoder.lookahead().map_err(invalid)?) * u64::from(OPUS_RATE)
            / u64::from(rate);
        let mut writer = ogg::PacketWriter::new(out);
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&(pre_skip as u16).to_le_bytes());
        head.extend_from_slice(&rate.to_le_bytes()); // the input rate, informational
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0
        writer.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        let vendor = b"mixminus";
        let mut tags = Vec::with_capacity(8 + 4 + vendor.len() + 4);
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        writer.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        Ok(Self {
            writer,
            encoder,
            serial,
            frame_48k: frame_samples as u64 * u64::from(OPUS_RATE) / u64::from(rate),
            frame_samples,
            pre_skip,
            frames: 0,
            packet: vec![0; 4000],
            pending: None,
        })
    }

    /// Encodes and writes one frame; returns the bytes the file grew by (roughly: the
    /// packet's length, pages add a few bytes each).
    pub(super) fn write_frame(&mut self, pcm: &[i16]) -> Result<usize, std::io::Error> {
        let n = self
            .encoder
            .encode(pcm, &mut self.packet)
            .map_err(|e| std::io::Error::other(format!("Opus: {e}")))?;
        self.flush_pending(PacketWriteEndInfo::NormalPacket)?;
        self.pending = Some(self.packet[..n].to_vec());
        Ok(n)
    }

    fn flush_pending(&mut self, end: PacketWriteEndInfo) -> Result<(), std::io::Error> {
        let Some(packet) = self.pending.take() else { return Ok(()) };
        self.frames += 1;
        let end = if end == PacketWriteEndInfo::NormalPacket
            && self.frames % u64::from(PACKETS_PER_PAGE) == 0
        {
            PacketWriteEndInfo::EndPage
        } else {
            end
        };
        // The granule position counts the pre-skip too: decoders drop that many first.
        let granule = self.frames * self.frame_48k;
        self.writer.write_packet(packet, self.serial, end, granule)
    }

    /// Ends the stream and hands back the output. One frame of silence flushes the
    /// encoder's lookahead, and the last page's granule position (pre-skip plus the
    /// frames written) trims it off again, so a decoder gets exactly what was written.
    pub(super) fn finish(mut self) -> Result<W, std::io::Error> {
        self.flush_pending(PacketWriteEndInfo::NormalPacket)?;
        let silence = vec![0i16; self.frame_samples];
        let n = self
            .encoder
            .encode(&silence, &mut self.packet)
            .map_err(|e| std::io::Error::other(format!("Opus: {e}")))?;
        let granule = self.pre_skip + self.frames * self.frame_48k;
        let last = self.packet[..n].to_vec();
        self.writer.write_packet(last, self.serial, PacketWriteEndInfo::EndStream, granule)?;
        Ok(self.writer.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_writer_writes_the_reader_reads_back() {
        let rate = 16_000;
        let frame = 320;
        let mut writer = OggOpusWriter::new(Vec::new(), rate, frame, 32_000, 7).unwrap();
        let tone: Vec<i16> = (0..rate as usize)
            .map(|n| {
                ((n as f32 * std::f32::consts::TAU * 440.0 / rate as f32).sin() * 9000.0) as i16
            })
            .collect();
        for chunk in tone.chunks_exact(frame) {
            writer.write_frame(chunk).unwrap();
        }
        let bytes = writer.finish().unwrap();
        let (pcm, decoded_rate) = decode(&bytes, &MediaLimits::default()).unwrap();
        assert_eq!(decoded_rate, 48_000);
        // One second at 48 kHz, exactly: pre-skip and end trimming both applied.
        assert_eq!(pcm.len(), 48_000);
        let mid = &pcm[12_000..36_000];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
        assert!((430..=450).contains(&crossings), "{crossings}");
    }
}
