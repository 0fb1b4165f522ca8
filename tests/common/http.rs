//! The bridge's HTTP API served for real (axum on a loopback TCP port) and a minimal
//! HTTP/1.1 client that writes requests by hand, so a test can send what no well-behaved
//! client would (no length, chunked bodies, bad headers) and reads the raw answer.

use std::net::SocketAddr;
use std::time::Duration;

use mixminus::control::config::AccountScope;
use mixminus::control::{Api, Auth, Registry};
use mixminus::rtp::{Bridge, BridgeConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A served API.
pub struct Server {
    pub addr: SocketAddr,
    pub registry: Registry,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `api` (over `registry`) on an ephemeral loopback port.
    pub async fn start(registry: Registry, auth: Auth, body_limit: usize) -> Server {
        let app = Api::new(registry.clone(), auth).node("hostile").body_limit(body_limit).router();
        Self::serve(registry, app).await
    }

    /// A bridge on `config`, a registry of at most four conferences over it, and its API
    /// served with `token` admitting every account (64 KiB body limit).
    pub async fn with_bridge(config: BridgeConfig, token: &str) -> Server {
        let registry = Registry::new(Bridge::new(config).unwrap(), 4);
        let auth = Auth::default().with_token(token, AccountScope::All);
        Self::start(registry, auth, 64 * 1024).await
    }

    /// `PUT path` with `body` as `token`; asserts a 2xx and returns the answer's `data`.
    pub async fn put_data(&self, path: &str, token: &str, body: serde_json::Value) -> Value {
        let r = self.call("PUT", path, Some(token), Some(body.to_string().as_bytes())).await;
        assert!(r.status < 300, "PUT {path} {body}: {} {}", r.status, r.text);
        r.json["data"].clone()
    }

    /// Serves a router built by the caller (over `registry`) on an ephemeral loopback port.
    pub async fn serve(registry: Registry, app: axum::Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, registry, task }
    }

    /// One request on a fresh connection; `body` is sent with a `content-length`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Response {
        self.raw(&self.request(method, path, token, body)).await
    }

    /// The bytes of [`Server::call`]'s request.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        if let Some(token) = token {
            head.push_str(&format!("x-auth-token: {token}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("connection: close\r\n\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body.unwrap_or_default());
        raw
    }

    /// Writes `request` as is and reads the answer until the server closes.
    pub async fn raw(&self, request: &[u8]) -> Response {
        self.raw_within(request, Duration::from_secs(3)).await
    }

    /// [`Server::raw`], waiting up to `patience` for the answer.
    pub async fn raw_within(&self, request: &[u8], patience: Duration) -> Response {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        // The server may answer (413) and close before it read everything: a failed write
        // is then expected, the answer is what counts.
        let _ = stream.write_all(request).await;
        // Until the server closes, or for 3 s when it keeps the connection open (a request
        // it refused may leave it waiting for more): whatever came by then is the answer.
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + patience;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
        Response::parse(&bytes)
    }
}

/// A parsed HTTP/1.1 answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub text: String,
    pub json: Value,
    /// The body's bytes (dechunked).
    pub body: Vec<u8>,
}

impl Response {
    fn parse(bytes: &[u8]) -> Response {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(at) => (&bytes[..at], &bytes[at + 4..]),
            None => (bytes, &[][..]),
        };
        let head = String::from_utf8_lossy(head).into_owned();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_vec()
        };
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response { status, head, text, json, body }
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(at) = body.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&body[..at]).into_owned();
        let rest = &body[at + 2..];
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The bridge's RTP address in a join's answer (`data.rtp.local_ip` / `local_port`).
pub fn local_rtp(joined: &Value) -> SocketAddr {
    format!("{}:{}", joined["rtp"]["local_ip"].as_str().unwrap(), joined["rtp"]["local_port"])
        .parse()
        .unwrap()
}
