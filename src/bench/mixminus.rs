//! The mixminus target: a `mixminus serve` child process the harness starts (so its CPU
//! is its own), or a bridge already running at a URL; driven through the Kazoo-shaped API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use super::media::{ENERGY_LEVEL, PAYLOAD_TYPE};
use super::{BridgeMetrics, Target};

const ACCOUNT: &str = "bench";

/// How to reach (or start) the bridge.
pub(crate) enum Launch<'a> {
    /// Start `bin serve` on loopback.
    Spawn {
        bin: &'a Path,
        http_port: u16,
        rtp_ports: &'a str,
        audio_level_ext: Option<u8>,
        /// The bridge's `--quiet-decode-interval`.
        quiet_decode_interval: u32,
        log: &'a Path,
    },
    /// Use the bridge at `url`; `pid` (if known) is measured.
    Attach { url: String, token: String, pid: Option<u32> },
}

pub(crate) struct Mixminus {
    child: Option<Child>,
    pid: Option<u32>,
    base: String,
    token: String,
    agent: ureq::Agent,
    conference: String,
}

impl Mixminus {
    /// Starts or attaches to the bridge and creates the conference: 48 kHz, 20 ms, talk
    /// threshold [`ENERGY_LEVEL`], members not muted, no entry/exit tones, plus the profile
    /// keys in `extra_profile` (e.g. the Opus settings `opus-bitrate`, `opus-complexity`).
    pub(crate) fn start(
        launch: Launch<'_>,
        extra_profile: serde_json::Map<String, Value>,
    ) -> anyhow::Result<Self> {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        let (child, pid, base, token) = match launch {
            Launch::Spawn {
                bin,
                http_port,
                rtp_ports,
                audio_level_ext,
                quiet_decode_interval,
                log,
            } => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                let log = std::fs::File::create(log)
                    .with_context(|| format!("creating {}", log.display()))?;
                let mut command = Command::new(bin);
                command
                    .args(["serve", "--listen", &format!("127.0.0.1:{http_port}")])
                    .args(["--rtp-ports", rtp_ports])
                    .env("MIXMINUS_AUTH_TOKEN", &token)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log);
                if let Some(id) = audio_level_ext {
                    command.args(["--audio-level-ext", &id.to_string()]);
                }
                command.args(["--quiet-decode-interval", &quiet_decode_interval.to_string()]);
                let child =
                    command.spawn().with_context(|| format!("starting {}", bin.display()))?;
                let pid = child.id();
                (Some(child), Some(pid), format!("http://127.0.0.1:{http_port}"), token)
            }
            Launch::Attach { url, token, pid } => {
                (None, pid, url.trim_end_matches('/').to_string(), token)
            }
        };
        let mut bridge = Self { child, pid, base, token, agent, conference: String::new() };
        bridge.wait_ready()?;
        let mut profile = json!({"rate": 48000, "interval": 20, "energy-level": ENERGY_LEVEL});
        if let Some(map) = profile.as_object_mut() {
            map.extend(extra_profile);
        }
        let created = bridge.call(
            "PUT",
            &format!("/v2/accounts/{ACCOUNT}/conferences"),
            json!({"data": {
                "name": "bench",
                "member": {"join_muted": false},
                "play_entry_tone": false,
                "play_exit_tone": false,
                "profile": profile,
            }}),
        )?;
        bridge.conference =
            created["data"]["id"].as_str().context("conference id in the answer")?.to_string();
        Ok(bridge)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let metrics = format!("{}/metrics", self.base);
        let (agent, token) = (&self.agent, &self.token);
        super::wait_until_answering(
            self.child.as_mut(),
            &format!("mixminus serve on {}", self.base),
            Duration::from_secs(15),
            Duration::from_millis(50),
            || agent.get(&metrics).set("X-Auth-Token", token).call().is_ok(),
        )
    }

    fn call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .request(method, &url)
            .set("X-Auth-Token", &self.token)
            .send_json(body)
            .map_err(|e| match e {
                ureq::Error::Status(code, r) => {
                    anyhow::anyhow!(
                        "{method} {path}: {code} {}",
                        r.into_string().unwrap_or_default()
                    )
                }
                other => anyhow::anyhow!("{method} {path}: {other}"),
            })?;
        Ok(response.into_json()?)
    }
}

impl Target for Mixminus {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn join(&mut self, local: SocketAddr) -> anyhow::Result<(u64, SocketAddr)> {
        let answer = self.call(
            "PUT",
            &format!("/v2/accounts/{ACCOUNT}/conferences/{}/participants", self.conference),
            json!({"data": {"action": "join", "data": {
                "caller_id_name": format!("bench {}", local.port()),
                "rtp": {"remote_ip": local.ip().to_string(), "remote_port": local.port(),
                        "codec": "opus", "payload_type": PAYLOAD_TYPE},
            }}}),
        )?;
        let data = &answer["data"];
        let id = data["participant_id"].as_u64().context("participant_id in the answer")?;
        let ip = data["rtp"]["local_ip"].as_str().context("rtp.local_ip")?;
        let port = data["rtp"]["local_port"].as_u64().context("rtp.local_port")?;
        Ok((id, SocketAddr::new(ip.parse()?, u16::try_from(port)?)))
    }

    fn relate(&mut self, participant: u64, other: u64, relationship: &str) -> anyhow::Result<()> {
        self.call(
            "PUT",
            &format!("/v2/accounts/{ACCOUNT}/conferences/{}/participants", self.conference),
            json!({"data": {"action": "relate", "data": {
                "participant_id": participant, "other_participant": other,
                "relationship": relationship,
            }}}),
        )?;
        Ok(())
    }

    fn supports_relationships(&self) -> bool {
        true
    }

    fn whip(&mut self, offer: &str) -> anyhow::Result<String> {
        let path = format!("/v2/accounts/{ACCOUNT}/conferences/{}/whip", self.conference);
        let response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Content-Type", "application/sdp")
            .send_string(offer)
            .map_err(|e| anyhow::anyhow!("POST {path}: {e}"))?;
        Ok(response.into_string()?)
    }

    fn metrics(&mut self) -> anyhow::Result<Option<BridgeMetrics>> {
        let text = self
            .agent
            .get(&format!("{}/metrics", self.base))
            .set("X-Auth-Token", &self.token)
            .call()?
            .into_string()?;
        Ok(Some(BridgeMetrics::parse(&text)))
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        let path = format!("/v2/accounts/{ACCOUNT}/conferences/{}", self.conference);
        let ended = self.call("DELETE", &path, json!({}));
        if let Some(mut child) = self.child.take() {
            super::terminate(&mut child, Duration::from_secs(5))?;
        }
        ended.map(|_| ())
    }
}

impl Drop for Mixminus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
