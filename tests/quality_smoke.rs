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

/// One run of the bench; `Err` with what failed.
fn run_once(attempt: u32) -> Result<(), String> {
    let out = std::env::temp_dir()
        .join(format!("mixminus-quality-smoke-{}-{attempt}", std::process::id()));
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
    let _ = std::fs::remove_dir_all(&out);
    assert!(svg.contains("<svg") && svg.contains("PESQ"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let rows: Vec<HashMap<&str, &str>> =
        lines.map(|l| header.iter().copied().zip(l.split(',')).collect()).collect();
    println!("attempt {attempt}:\n{csv}");
    // The shape of the report is checked once, hard: these do not depend on timing.
    assert_eq!(rows.len(), 5, "{csv}");
    let num = |row: &HashMap<&str, &str>, key: &str| -> f64 {
        row[key].parse().unwrap_or_else(|_| panic!("{key} = {:?} in {csv}", row[key]))
    };
    for row in &rows {
        assert!(num(row, "kbps") > 8.0, "{row:?}");
        let latency = num(row, "latency_ms");
        assert!((0.0..300.0).contains(&latency), "{row:?}");
    }
    let deaf = rows.iter().find(|r| r["phone"].contains("deaf")).expect("a deaf listener");
    assert!(num(deaf, "removed_talker_db") <= -60.0, "{deaf:?}");
    let hearing = rows.iter().find(|r| r["phone"] == "listener 0").expect("listener 0");
    assert!(num(hearing, "removed_talker_db") > -6.0, "{hearing:?}");
    // The score depends on the bridge keeping time, which a 2-core machine busy with other
    // work does not always let it: a bridge descheduled for 20 ms loses frames.
    match rows.iter().find(|row| !(1.7..=4.65).contains(&num(row, "pesq"))) {
        Some(row) => Err(format!("PESQ out of range: {row:?}\n{csv}")),
        None => Ok(()),
    }
}

/// PESQ is checked on two runs at most: a run on a machine that did not keep time is run
/// again, once; two failures fail.
#[test]
fn quality_bench_scores_a_clean_conversation() {
    let Err(first) = run_once(1) else { return };
    eprintln!("first run failed, running once more: {first}");
    if let Err(second) = run_once(2) {
        panic!("two runs failed:\n{first}\n{second}");
    }
}
