//! `mixminus bench --quality` end to end, short: two lines of the espeak-ng conversation
//! through a `mixminus serve` the harness starts, clean network, every phone scored with
//! PESQ wideband (scripts/pesq_score.py). Needs espeak-ng, numpy and pesq, which
//! scripts/install-deps.sh installs; the test fails (does not skip) without them.
//!
//! The PESQ floor (1.7) is under what a working path scores on a clean network (2.2–2.7
//! per phone on the main of 2026-11-30, before the talk-gate and encoder fixes) and over
//! what a broken one does (1.0–1.5: missing, clipped or misaligned audio).

use std::collections::HashMap;
use std::process::Command;

fn free_tcp_port() -> u16 {
    // Bound then released: the bridge binds it a moment later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("a bound listener has an address").port()
}

#[test]
fn quality_bench_scores_a_clean_conversation() {
    let out = std::env::temp_dir().join(format!("mixminus-quality-smoke-{}", std::process::id()));
    let http = free_tcp_port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_mixminus"))
        .args(["bench", "--quality", "--targets", "mixminus", "--quality-conditions", "clean"])
        .args(["--quality-lines", "3", "--quality-glitch-secs", "0"])
        .args(["--mixminus-http-port", &http, "--mixminus-rtp-ports", "11200-11299"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running mixminus bench --quality");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench --quality failed:\n{stderr}");
    let csv = std::fs::read_to_string(out.join("quality.csv")).expect("quality.csv");
    let svg = std::fs::read_to_string(out.join("quality.svg")).expect("quality.svg");
    assert!(svg.contains("<svg") && svg.contains("PESQ"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let rows: Vec<HashMap<&str, &str>> =
        lines.map(|l| header.iter().copied().zip(l.split(',')).collect()).collect();
    println!("{csv}");
    // Three talkers and two listeners, every one scored.
    assert_eq!(rows.len(), 5, "{csv}");
    let num = |row: &HashMap<&str, &str>, key: &str| -> f64 {
        row[key].parse().unwrap_or_else(|_| panic!("{key} = {:?} in {csv}", row[key]))
    };
    for row in &rows {
        let pesq = num(row, "pesq");
        assert!((1.7..=4.65).contains(&pesq), "{row:?}");
        let latency = num(row, "latency_ms");
        assert!((0.0..300.0).contains(&latency), "{row:?}");
        assert!(num(row, "kbps") > 8.0, "{row:?}");
    }
    // The listener that is deaf to talker 1 hears nothing of it; listener 0 hears it whole
    // (the same measure, so it can see speech when speech is there).
    let deaf = rows.iter().find(|r| r["phone"].contains("deaf")).expect("a deaf listener");
    assert!(num(deaf, "removed_talker_db") <= -60.0, "{deaf:?}");
    let hearing = rows.iter().find(|r| r["phone"] == "listener 0").expect("listener 0");
    assert!(num(hearing, "removed_talker_db") > -6.0, "{hearing:?}");
    let _ = std::fs::remove_dir_all(&out);
}
