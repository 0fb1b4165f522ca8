//! The Janus AudioBridge target: the harness writes a minimal Janus configuration into a
//! temporary directory (only the AudioBridge plugin and the HTTP transport, on loopback;
//! plain-RTP ports from a range; no session timeout), starts `janus`, and drives it
//! through its HTTP API: one session, one AudioBridge handle per participant, a room at
//! 48 kHz that allows plain-RTP participants, and a `join` with an `rtp` object per
//! participant whose `joined` event names the port Janus listens on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::media::{AUDIO_LEVEL_EXT, PAYLOAD_TYPE};
use super::{BridgeMetrics, Target};

const ROOM: u64 = 4242;
/// Plugins and transports the harness does not load (everything but AudioBridge and HTTP).
const OTHER_PLUGINS: &str = "libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,\
libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,\
libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so";
const OTHER_TRANSPORTS: &str = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,\
libjanus_rabbitmq.so,libjanus_nanomsg.so";

/// Where Janus is and how to run it.
pub(crate) struct JanusSetup<'a> {
    pub(crate) bin: &'a Path,
    /// Debian's `/usr/lib/x86_64-linux-gnu/janus` (holds plugins/, transports/, …).
    pub(crate) lib_dir: &'a Path,
    pub(crate) http_port: u16,
    /// Plain-RTP port range, `LO-HI`.
    pub(crate) rtp_ports: &'a str,
    /// Ask for the audio-level extension on joins.
    pub(crate) audio_level: bool,
    pub(crate) log: &'a Path,
}

pub(crate) struct Janus {
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
    base: String,
    agent: ureq::Agent,
    poll_agent: ureq::Agent,
    session: u64,
    audio_level: bool,
    transaction: u64,
    /// Events read while waiting for another handle's.
    pending: HashMap<u64, Vec<Value>>,
}

impl Janus {
    /// Writes the configuration, starts Janus, creates the session and the room.
    pub(crate) fn start(setup: JanusSetup<'_>) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "mixminus-bench-janus-{}-{}",
            std::process::id(),
            setup.http_port
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_config(&dir, &setup)?;
        let log = std::fs::File::create(setup.log)
            .with_context(|| format!("creating {}", setup.log.display()))?;
        let child = Command::new(setup.bin)
            .arg(format!("--config={}", dir.join("janus.jcfg").display()))
            .arg(format!("--configs-folder={}", dir.display()))
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", setup.bin.display()))?;
        let pid = child.id();
        let mut janus = Self {
            child: Some(child),
            pid,
            dir,
            base: format!("http://127.0.0.1:{}/janus", setup.http_port),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build(),
            poll_agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(70)).build(),
            session: 0,
            audio_level: setup.audio_level,
            transaction: 0,
            pending: HashMap::new(),
        };
        janus.wait_ready()?;
        let created = janus.post(&janus.base.clone(), json!({"janus": "create"}))?;
        janus.session = created["data"]["id"].as_u64().context("session id")?;
        let admin = janus.attach()?;
        let room = janus.post(
            &format!("{}/{}/{admin}", janus.base, janus.session),
            json!({"janus": "message", "body": {
                "request": "create", "room": ROOM, "description": "mixminus bench",
                "sampling_rate": 48000, "allow_rtp_participants": true,
                "audiolevel_ext": setup.audio_level,
            }}),
        )?;
        let answer = &room["plugindata"]["data"];
        if answer["audiobridge"] != "created" {
            bail!("Janus refused the room: {answer}");
        }
        Ok(janus)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let info = format!("{}/info", self.base);
        let agent = &self.agent;
        super::wait_until_answering(
            self.child.as_mut(),
            &format!("janus on {}", self.base),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || agent.get(&info).call().is_ok(),
        )
    }

    fn post(&mut self, url: &str, mut body: Value) -> anyhow::Result<Value> {
        self.transaction += 1;
        body["transaction"] = json!(format!("t{}", self.transaction));
        let answer: Value = self.agent.post(url).send_json(body)?.into_json()?;
        if answer["janus"] == "error" {
            bail!("Janus error: {}", answer["error"]);
        }
        Ok(answer)
    }

    fn attach(&mut self) -> anyhow::Result<u64> {
        let url = format!("{}/{}", self.base, self.session);
        let answer =
            self.post(&url, json!({"janus": "attach", "plugin": "janus.plugin.audiobridge"}))?;
        answer["data"]["id"].as_u64().context("handle id")
    }

    /// Waits for the next event from `handle`, keeping other handles' events aside.
    fn event_for(&mut self, handle: u64) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(queue) = self.pending.get_mut(&handle) {
                if !queue.is_empty() {
                    return Ok(queue.remove(0));
                }
            }
            if Instant::now() > deadline {
                bail!("no event from Janus handle {handle} within 30 s");
            }
            let url = format!("{}/{}?maxev=100", self.base, self.session);
            let events: Value = self.poll_agent.get(&url).call()?.into_json()?;
            let events = match events {
                Value::Array(list) => list,
                one => vec![one],
            };
            for event in events {
                if event["janus"] != "event" {
                    continue;
                }
                let data = &event["plugindata"]["data"];
                // Only answers to our own requests matter; room notifications about other
                // participants (one per join per participant) are dropped.
                if data["audiobridge"] == "joined" && data.get("rtp").is_some()
                    || data.get("error").is_some()
                {
                    if let Some(sender) = event["sender"].as_u64() {
                        self.pending.entry(sender).or_default().push(data.clone());
                    }
                }
            }
        }
    }
}

impl Target for Janus {
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn join(&mut self, local: SocketAddr) -> anyhow::Result<(u64, SocketAddr)> {
        let handle = self.attach()?;
        let mut rtp = json!({"ip": local.ip().to_string(), "port": local.port(),
                             "payload_type": PAYLOAD_TYPE});
        if self.audio_level {
            rtp["audiolevel_ext"] = json!(AUDIO_LEVEL_EXT);
        }
        let url = format!("{}/{}/{handle}", self.base, self.session);
        self.post(
            &url,
            json!({"janus": "message", "body": {
                "request": "join", "room": ROOM, "display": format!("bench {}", local.port()),
                "rtp": rtp,
            }}),
        )?;
        let joined = self.event_for(handle)?;
        if let Some(error) = joined.get("error") {
            bail!("Janus refused the join: {error}");
        }
        let id = joined["id"].as_u64().context("participant id")?;
        let ip = joined["rtp"]["ip"].as_str().context("rtp.ip")?;
        let port = joined["rtp"]["port"].as_u64().context("rtp.port")?;
        Ok((id, SocketAddr::new(ip.parse()?, u16::try_from(port)?)))
    }

    fn relate(&mut self, _: u64, _: u64, _: &str) -> anyhow::Result<()> {
        bail!("Janus AudioBridge has no relationship matrix")
    }

    fn supports_relationships(&self) -> bool {
        false
    }

    fn metrics(&mut self) -> anyhow::Result<Option<BridgeMetrics>> {
        Ok(None)
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            super::terminate(&mut child, Duration::from_secs(10))?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(dir: &Path, setup: &JanusSetup<'_>) -> anyhow::Result<()> {
    let lib = setup.lib_dir.display();
    let files = [
        (
            "janus.jcfg",
            format!(
                "general: {{\n\tconfigs_folder = \"{dir}\"\n\tplugins_folder = \"{lib}/plugins\"\n\
                 \ttransports_folder = \"{lib}/transports\"\n\tevents_folder = \"{lib}/events\"\n\
                 \tloggers_folder = \"{lib}/loggers\"\n\tdebug_level = 3\n\tsession_timeout = 0\n}}\n\
                 media: {{\n}}\nnat: {{\n\tnice_debug = false\n}}\n\
                 plugins: {{\n\tdisable = \"{OTHER_PLUGINS}\"\n}}\n\
                 transports: {{\n\tdisable = \"{OTHER_TRANSPORTS}\"\n}}\n\
                 loggers: {{\n\tdisable = \"libjanus_jsonlog.so\"\n}}\nevents: {{\n\tbroadcast = false\n}}\n",
                dir = dir.display(),
            ),
        ),
        (
            "janus.transport.http.jcfg",
            format!(
                "general: {{\n\tjson = \"plain\"\n\tbase_path = \"/janus\"\n\thttp = true\n\
                 \tport = {}\n\tip = \"127.0.0.1\"\n\thttps = false\n}}\n\
                 admin: {{\n\tadmin_http = false\n}}\n",
                setup.http_port
            ),
        ),
        (
            "janus.plugin.audiobridge.jcfg",
            format!(
                "general: {{\n\trtp_port_range = \"{}\"\n\tlocal_ip = \"127.0.0.1\"\n\tevents = false\n}}\n",
                setup.rtp_ports
            ),
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
