//! A send-only RTP talker whose clock runs fast or slow: it says a tone in Opus and sends a
//! frame every `ptime · (1 − skew)` of real time while stamping `ptime` of media time, as a
//! phone whose crystal is off by `skew` does. Positive skew = a fast clock (more packets
//! per second than the bridge plays out).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mixminus::rtp::dsp::SineGenerator;
use mixminus::rtp::{
    new_encoder, write_rtp_header, CodecKind, CodecParams, CodecSettings, RtpHeader,
};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub struct SkewedTalker {
    pub sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for SkewedTalker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SkewedTalker {
    /// Starts sending `tone_hz` to `target`; `skew` is the clock error (0.001 = 0.1 % fast).
    pub async fn start(tone_hz: f32, skew: f64, target: SocketAddr, ssrc: u32) -> SkewedTalker {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let codec = CodecParams::new(CodecKind::Opus);
        let frame = 960;
        let mut encoder = new_encoder(&codec, &CodecSettings::default(), 48_000, frame).unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let period = Duration::from_secs_f64(0.020 * (1.0 - skew));
        let task = tokio::spawn(async move {
            let mut sine = SineGenerator::new(tone_hz, 48_000, 8_000.0);
            let mut pcm = vec![0i16; frame];
            let mut payload = vec![0u8; 1500];
            let mut datagram = Vec::with_capacity(1500);
            let start = Instant::now();
            let (mut seq, mut ts) = (ssrc as u16, ssrc);
            for k in 0u32.. {
                // Deadlines computed from the start, so the skew is exact over a long run.
                tokio::time::sleep_until(start + period * k).await;
                sine.fill(&mut pcm);
                let Ok(len) = encoder.encode(&pcm, &mut payload) else { continue };
                datagram.clear();
                let header = RtpHeader {
                    payload_type: 111,
                    marker: k == 0,
                    sequence: seq,
                    timestamp: ts,
                    ssrc,
                };
                write_rtp_header(&mut datagram, &header);
                datagram.extend_from_slice(&payload[..len]);
                let _ = socket.send_to(&datagram, target).await;
                counter.fetch_add(1, Ordering::Relaxed);
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(960);
            }
        });
        SkewedTalker { sent, task }
    }
}
