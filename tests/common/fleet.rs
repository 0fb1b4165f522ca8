//! A fleet for real: `nats-server -js` (Debian's package) on a free loopback port with a
//! temporary store, `mixminus serve` processes (the built binary) joined to it, a TCP
//! proxy that can cut one node off from NATS, and a blocking JSON client for the API.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// NATS credentials every node of the test fleets uses.
pub const NATS_USER: &str = "fleet";
pub const NATS_PASSWORD: &str = "fleet-secret-7f3a";
/// The liveness window the test fleets run with (seconds).
pub const LIVENESS_SECS: u64 = 3;

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mixminus-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where Debian puts `nats-server` (`/usr/sbin`, not always on a user's PATH).
fn nats_binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/bin"])
    {
        let path = Path::new(dir).join("nats-server");
        if path.exists() {
            return path;
        }
    }
    panic!(
        "nats-server is not installed: run scripts/install-deps.sh (Debian package nats-server)"
    );
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its log, for a failure message.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `nats-server -js` with a user and password, on `port`, storing in `dir`.
pub fn start_nats(dir: &Path, port: u16) -> Proc {
    let log = dir.join(format!("nats-{port}.log"));
    let child = Command::new(nats_binary())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("jetstream"))
        .args(["--user", NATS_USER, "--pass", NATS_PASSWORD])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting nats-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc { child, log }
}

/// A `mixminus serve` node.
pub struct Node {
    pub name: String,
    pub http: SocketAddr,
    pub proc: Proc,
}

/// The configuration file of node `name`.
pub fn node_config(
    dir: &Path,
    name: &str,
    nats_port: u16,
    rtp_low: u16,
    password: &str,
) -> PathBuf {
    let http = free_port();
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "node = \"{name}\"\nlisten = \"127.0.0.1:{http}\"\nrtp_ports = \"{rtp_low}-{}\"\n\
         [fleet]\nnats = \"nats://127.0.0.1:{nats_port}\"\nliveness_secs = {LIVENESS_SECS}\n\
         user = \"{NATS_USER}\"\npassword = \"{password}\"\n",
        rtp_low + 99
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `mixminus serve --config …` and waits until its API answers; `None` (with its
/// log) if the process exits first.
pub fn start_node(dir: &Path, config: &Path, name: &str) -> Result<Node, String> {
    let text = std::fs::read_to_string(config).unwrap();
    let http: SocketAddr = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .parse()
        .unwrap();
    let log = dir.join(format!("{name}-{}.log", http.port()));
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mixminus"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info,mixminus_fleet=debug,async_nats=info")
        .env_remove("MIXMINUS_AUTH_TOKEN")
        // The logs go to stdout, start-up errors to stderr: both into the one file.
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("starting mixminus serve");
    let mut proc = Proc { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = proc.child.try_wait() {
            return Err(std::fs::read_to_string(&proc.log).unwrap_or_default());
        }
        if std::net::TcpStream::connect(http).is_ok() {
            return Ok(Node { name: name.to_owned(), http, proc });
        }
        assert!(Instant::now() < deadline, "node {name} did not start:\n{}", proc.tail());
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/v2/accounts/acc1{path}", self.http)
    }

    /// One API call: (status, envelope).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(15)).build();
        let request = agent.request(method, &self.url(path));
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return (0, json!({"transport": e.to_string()})),
        };
        let status = response.status();
        (status, response.into_json().unwrap_or(Value::Null))
    }

    /// A call that must succeed; its envelope.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, envelope) = self.call(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path} via {}: {status} {envelope}",
            self.name
        );
        envelope
    }

    /// Reads the server-sent events of conference `id` into a list, in a thread.
    pub fn events(&self, id: &str) -> Arc<Mutex<Vec<Value>>> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let url = self.url(&format!("/conferences/{id}/events"));
        std::thread::spawn(move || {
            let Ok(response) = ureq::get(&url).call() else { return };
            for line in BufReader::new(response.into_reader()).lines() {
                let Ok(line) = line else { return };
                if let Some(data) = line.strip_prefix("data:") {
                    if let Ok(v) = serde_json::from_str::<Value>(data.trim()) {
                        sink.lock().unwrap().push(v);
                    }
                }
            }
        });
        events
    }
}

/// One fleet test at a time: each starts its own NATS and nodes, and on a two-core CI
/// machine two fleets at once starve each other's one-second heartbeats.
pub static ONE_FLEET_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy to NATS that can cut its clients off (a partition) and let them back.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (flag, list) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut held = list.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up, conns }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
