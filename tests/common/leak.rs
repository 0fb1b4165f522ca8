//! What a leak check counts in this process: resident memory, open sockets, live tokio
//! tasks (Linux `/proc`).

use std::time::Duration;

/// Resident set size, kB.
pub fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors that are sockets (UDP and TCP alike).
pub fn sockets() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Tasks alive on the current tokio runtime.
pub fn tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Polls `read` until it returns `want` (connections and tasks wind down asynchronously),
/// for at most `patience`; returns the last value read.
pub async fn settle<T: PartialEq + Copy>(want: T, patience: Duration, read: impl Fn() -> T) -> T {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let now = read();
        if now == want || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
