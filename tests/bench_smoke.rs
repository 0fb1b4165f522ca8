//! `mixminus bench` end to end, tiny: four participants for two seconds against a
//! `mixminus serve` the harness starts itself. Checks the outputs exist and the numbers
//! are sane (every output frame arrives, talkers + 1 encodes per tick, the probe hears
//! both talkers). The Janus run needs Debian's `janus` and is ignored by default. Port
//! ranges sit below the ephemeral range, apart from the other tests' ranges.

use std::path::Path;
use std::process::Command;

fn free_tcp_port() -> u16 {
    // Bound then released: the bridge binds it a moment later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// Runs the bench and returns the CSV's rows as maps from column to value.
fn bench(out: &Path, extra: &[&str]) -> Vec<std::collections::HashMap<String, String>> {
    let output = Command::new(env!("CARGO_BIN_EXE_mixminus"))
        .args(["bench", "--participants", "4", "--talkers", "2", "--duration", "2"])
        .args(["--warmup", "1", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("running mixminus bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("participants/core"), "no table:\n{stdout}");
    let csv = std::fs::read_to_string(out.join("bench.csv")).expect("bench.csv");
    let svg = std::fs::read_to_string(out.join("bench.svg")).expect("bench.svg");
    assert!(svg.contains("<svg") && svg.contains("participants"));
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|l| header.iter().map(|h| h.to_string()).zip(l.split(',').map(String::from)).collect())
        .collect()
}

fn num(row: &std::collections::HashMap<String, String>, key: &str) -> f64 {
    row[key].parse().unwrap_or_else(|_| panic!("{key} = {:?}", row[key]))
}

#[test]
fn bench_against_mixminus_smoke() {
    let out = std::env::temp_dir().join(format!("mixminus-bench-smoke-{}", std::process::id()));
    let http = free_tcp_port().to_string();
    let rows = bench(
        &out,
        &[
            "--targets",
            "mixminus",
            "--modes",
            "audio-level",
            "--mixminus-http-port",
            &http,
            "--mixminus-rtp-ports",
            "16000-16999",
            "--generator-ports",
            "17000-17999",
        ],
    );
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["target"], "mixminus");
    assert!(num(row, "received_pct") > 95.0, "{row:?}");
    assert!(num(row, "cpu_cores") > 0.0, "{row:?}");
    assert!(num(row, "rss_mib") > 0.0, "{row:?}");
    // Two talkers, no relationships: one group per talker plus the full mix.
    assert!((num(row, "encodes_per_tick") - 3.0).abs() < 0.05, "{row:?}");
    // Audio level on: the quiet participants' frames are not decoded.
    assert!(num(row, "decodes_per_tick") < 2.5, "{row:?}");
    assert_eq!(row["heard_talkers"], "2", "{row:?}");
    assert!(num(row, "latency_samples") >= 1.0, "{row:?}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "needs Debian's janus package"]
fn bench_against_janus_smoke() {
    let out = std::env::temp_dir().join(format!("mixminus-bench-janus-{}", std::process::id()));
    let http = free_tcp_port().to_string();
    let rows = bench(
        &out,
        &[
            "--targets",
            "janus",
            "--modes",
            "plain",
            "--janus-http-port",
            &http,
            "--janus-rtp-ports",
            "18000-18999",
            "--generator-ports",
            "19000-19999",
        ],
    );
    assert_eq!(rows.len(), 1);
    assert!(num(&rows[0], "received_pct") > 95.0, "{:?}", rows[0]);
    assert_eq!(rows[0]["heard_talkers"], "2", "{:?}", rows[0]);
    let _ = std::fs::remove_dir_all(&out);
}
