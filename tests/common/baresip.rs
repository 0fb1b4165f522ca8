//! baresip (Debian's `baresip`) as a real SIP client, headless: its `aufile` module says a
//! WAV into the call, its `sndfile` module writes what it hears (the decoded stream) to a
//! WAV, and its `ctrl_tcp` module takes commands (`dial`, `hangup`, `sndcode` for DTMF)
//! and reports call events over a TCP connection (JSON in netstrings).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running baresip.
pub struct Baresip {
    child: Child,
    ctrl: TcpStream,
    pending: Vec<u8>,
    pub dir: PathBuf,
    /// Every event seen so far (`type` names).
    pub events: Vec<String>,
    token: u64,
}

/// A free loopback port (bound and released: a race, but a short one).
fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

/// A mono 16-bit WAV at `rate` holding a `hz` sine, `secs` long (aufile loops nothing: make
/// it longer than the call).
pub fn write_tone_wav(path: &Path, rate: u32, hz: f32, secs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..rate * secs {
        let t = n as f32 / rate as f32;
        w.write_sample((8_000.0 * (std::f32::consts::TAU * hz * t).sin()) as i16).unwrap();
    }
    w.finalize().unwrap();
}

impl Baresip {
    /// Starts baresip in a fresh directory under `root`, saying a `tone_hz` sine (PCMU
    /// only, so the WAV is 8 kHz); `account_params` go on the account line (e.g.
    /// `;mediaenc=srtp-mand`).
    pub async fn start(root: &Path, name: &str, tone_hz: f32, account_params: &str) -> Baresip {
        // Free ports are only free when asked: baresip also binds the SIP port + 1 (TLS),
        // which another test may hold. That is a collision, not a failure: try new ports.
        let mut log = String::new();
        for _ in 0..3 {
            match Self::try_start(root, name, tone_hz, account_params).await {
                Ok(baresip) => return baresip,
                Err(text) if text.contains("Address already in use") => log = text,
                Err(text) => panic!("baresip's ctrl_tcp did not come up: {text}"),
            }
        }
        panic!("baresip's ports collided three times: {log}")
    }

    async fn try_start(
        root: &Path,
        name: &str,
        tone_hz: f32,
        account_params: &str,
    ) -> Result<Baresip, String> {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("heard")).unwrap();
        write_tone_wav(&dir.join("say.wav"), 8_000, tone_hz, 120);
        let (sip_port, ctrl_port) = (free_port(true), free_port(false));
        let config = format!(
            "poll_method epoll\n\
             net_interface 127.0.0.1\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             call_local_timeout 120\n\
             audio_player aubridge,nowhere\n\
             audio_source aufile,{say}\n\
             audio_alert aubridge,nowhere\n\
             audio_level no\n\
             rtp_ports 40000-49999\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aufile.so\n\
             module aubridge.so\n\
             module sndfile.so\n\
             module srtp.so\n\
             module_app account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
             snd_path {heard}\n",
            say = dir.join("say.wav").display(),
            heard = dir.join("heard").display(),
        );
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{name}@127.0.0.1:{sip_port}>;regint=0;answermode=manual{account_params}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("baresip must be installed (scripts/install-deps.sh)");
        let mut ctrl = None;
        for _ in 0..100 {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", ctrl_port)).await {
                ctrl = Some(stream);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(ctrl) = ctrl else {
            return Err(std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default());
        };
        Ok(Baresip { child, ctrl, pending: Vec::new(), dir, events: Vec::new(), token: 0 })
    }

    /// Sends a command (`dial`, `hangup`, `sndcode`, …) and waits for its response.
    pub async fn command(&mut self, command: &str, params: &str) -> Value {
        self.token += 1;
        let token = self.token.to_string();
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.ctrl.write_all(frame.as_bytes()).await.unwrap();
        loop {
            let message = self.next_message(Duration::from_secs(10)).await.expect("no response");
            if message.get("response").is_some() && message["token"] == token.as_str() {
                return message;
            }
        }
    }

    /// Types DTMF digits (RFC 4733), one key press each, 150 ms apart.
    pub async fn type_digits(&mut self, digits: &str) {
        for digit in digits.chars() {
            self.command("sndcode", &digit.to_string()).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits (up to `patience`) for an event of this `type`; true when it came.
    pub async fn wait_event(&mut self, kind: &str, patience: Duration) -> bool {
        if self.events.iter().any(|e| e == kind) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.next_message(left).await {
                Some(_) if self.events.iter().any(|e| e == kind) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }

    async fn next_message(&mut self, patience: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(message) = self.take_frame() {
                if message.get("event").is_some() {
                    if let Some(kind) = message["type"].as_str() {
                        self.events.push(kind.to_owned());
                    }
                }
                return Some(message);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, self.ctrl.read(&mut chunk)).await;
            match read {
                Ok(Ok(n)) if n > 0 => self.pending.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    fn take_frame(&mut self) -> Option<Value> {
        let colon = self.pending.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.pending[..colon]).ok()?.parse().ok()?;
        if self.pending.len() < colon + 1 + len + 1 {
            return None;
        }
        let body = self.pending[colon + 1..colon + 1 + len].to_vec();
        self.pending.drain(..colon + 1 + len + 1);
        serde_json::from_slice(&body).ok()
    }

    /// What it has heard so far (the decoded stream sndfile writes), at 8 kHz.
    pub fn heard(&self) -> Vec<i16> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("heard")) else { return Vec::new() };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("dec") {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                // The header may not be final while the call runs: read the data chunk raw.
                let start = bytes.windows(4).position(|w| w == b"data").map_or(44, |p| p + 8);
                return bytes
                    .get(start..)
                    .unwrap_or_default()
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
            }
        }
        Vec::new()
    }

    /// Its log so far (for a failing assertion's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Stops it.
    pub async fn quit(mut self) {
        let _ = self.command("quit", "").await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
