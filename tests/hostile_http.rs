//! HTTP limits (issue 11): thousands of idle connections from one address, a slowloris
//! trickling a header, and a legitimate client beside them. Served by
//! `mixminus_control::server::serve`, as `mixminus serve` does. On main (`axum::serve`, no
//! limits) every idle connection stayed open for good and the slowloris was never cut off;
//! about 20,000 of them exhausted the descriptor limit and the API stopped answering.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mixminus::control::config::AccountScope;
use mixminus::control::server::{serve, HttpLimits};
use mixminus::control::{Api, Auth, Registry};
use mixminus::rtp::{Bridge, BridgeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const TOKEN: &str = "http-limits-token";

async fn connect_from(ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{ip}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// Reads until the server closes the connection or `within` passes; returns what came and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (bytes, true),
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => return (bytes, false),
        }
    }
}

struct Served {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: HttpLimits, ports: (u16, u16)) -> Served {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let auth = Auth::default().with_token(TOKEN, AccountScope::All);
    let router = Api::new(registry, auth).router();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, limits, async {
        let _ = stopped.await;
    }));
    Served { addr, stop: Some(stop), task }
}

async fn legit_request(addr: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = connect_from("127.0.0.1", addr).await.unwrap();
    let request = format!(
        "GET /v2/accounts/acc1/conferences HTTP/1.1\r\nhost: x\r\nx-auth-token: {TOKEN}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (bytes, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&bytes);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_slowloris_cannot_lock_the_api_out() {
    let mut limits = HttpLimits::default();
    limits.header_timeout = Duration::from_secs(2);
    limits.max_connections_per_ip = 200;
    limits.drain = Duration::from_secs(1);
    let mut served = start(limits, (17_400, 17_499)).await;

    // 2,500 idle connections from one address: 200 are held, the rest refused at once.
    let mut idle = Vec::new();
    for _ in 0..2_500 {
        match connect_from("127.0.0.2", served.addr).await {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("connect failed after {}: {e}", idle.len()),
        }
    }
    // A slowloris on another address: one header byte every 300 ms.
    let mut slow = connect_from("127.0.0.3", served.addr).await.unwrap();
    let slow_started = Instant::now();
    let slowloris = tokio::spawn(async move {
        for byte in b"GET /v2/accounts/acc1/conferences HTTP/1.1\r\nhost: x\r\nx-a: " {
            if slow.write_all(&[*byte]).await.is_err() {
                return slow_started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(30)).await;
        assert!(closed);
        slow_started.elapsed()
    });

    let (status, took) = legit_request(served.addr).await;
    println!("with 2,500 idle connections and a slowloris: a legitimate request answered {status} in {took:?}");
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "the legitimate request took {took:?}");

    // The ones over the per-address limit were answered 503, saying why, and closed.
    let mut refused = 0;
    let mut closed_idle = 0;
    let mut sample = String::new();
    for stream in idle.iter_mut().rev().take(300) {
        let (bytes, closed) = read_until_closed(stream, Duration::from_millis(20)).await;
        if bytes.starts_with(b"HTTP/1.1 503") {
            refused += 1;
            sample = String::from_utf8_lossy(&bytes).into_owned();
        }
        closed_idle += usize::from(closed);
    }
    assert!(refused >= 250, "over-limit connections were not refused: {refused} of the last 300");
    assert!(closed_idle >= 250, "over-limit connections stayed open: {closed_idle}");
    assert!(sample.contains("max_connections_per_ip"), "the refusal says why: {sample}");

    // The 200 held ones are closed by the idle timeout.
    let (_, closed) = read_until_closed(&mut idle[0], Duration::from_secs(4)).await;
    assert!(closed, "an idle connection outlived the header/keep-alive timeout");
    let slow_for = slowloris.await.unwrap();
    println!("the slowloris was cut off after {slow_for:?}");
    assert!(slow_for < Duration::from_secs(5), "the slowloris held on for {slow_for:?}");

    // Shutdown is bounded even with a request half sent.
    let mut half = connect_from("127.0.0.4", served.addr).await.unwrap();
    half.write_all(
        b"PUT /v2/accounts/acc1/conferences HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    let _ = served.stop.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(3), &mut served.task)
        .await
        .expect("shutdown hung")
        .unwrap();
    println!("shutdown with a request in flight took {:?}", stopping.elapsed());
    assert!(stopping.elapsed() < Duration::from_millis(1_600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_clearly() {
    let mut limits = HttpLimits::default();
    limits.max_connections = 40;
    let served = start(limits, (17_500, 17_599)).await;
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(connect_from("127.0.0.5", served.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = connect_from("127.0.0.6", served.addr).await.unwrap();
    let (bytes, closed) = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 503") && text.contains("max_connections"), "{text}");
    assert!(closed);
    drop(held);
    // Slots come back as connections close.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, _) = legit_request(served.addr).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots never came back: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
