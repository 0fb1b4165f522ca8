//! End to end: GStreamer's `rtpbin` reads our RTCP and we read its, over real UDP.
//!
//! `mixminus serve` runs as a process (RTCP every 1 s on average); one participant is a
//! `gst-launch-1.0` pipeline whose `rtpbin` session sends Opus RTP and RTCP to the bridge
//! and receives the mix and our RTCP back. Two `identity` elements drop packets at random
//! (10 % of what GStreamer sends us, 20 % of what we send it) and, with `-v`, print every
//! packet they pass or drop: the ground truth. GStreamer's debug log (`rtpsource`,
//! `rtpbin`) prints what it parsed from our reports.
//!
//! Checked: GStreamer parsed our report block exactly as the participant GET shows it (its
//! loss within the drops GStreamer made, its extended highest sequence number within the
//! packets GStreamer sent, across a sequence number wrap), computed a loopback round trip from our LSR/DLSR,
//! associated our SSRC with our SDES CNAME, and read a sender report whose NTP time is now
//! and whose octet count is payload bytes only; the participant GET and `/metrics` show
//! GStreamer's reports about our stream (loss within the drops made, round trip, jitter).
//!
//! Needs `gst-launch-1.0` with the good plugins (`scripts/install-deps.sh` installs them).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const TOKEN: &str = "rtcp-e2e-token";
const UPSTREAM_DROP: f64 = 0.1;
const DOWNSTREAM_DROP: f64 = 0.2;
/// GStreamer's first sequence number: its stream wraps within the first second, so our
/// extended highest sequence number must count a cycle.
const FIRST_SEQ: u64 = 65_500;

/// Kills the processes when the test ends, passed or not.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn api(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let request = ureq::request(method, &format!("http://{addr}{path}")).set("x-auth-token", TOKEN);
    let response = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    match response {
        Ok(response) => response.into_json().unwrap_or(Value::Null),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// An even UDP port whose odd neighbour is free too (RTP and RTCP for GStreamer).
fn free_port_pair() -> u16 {
    loop {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port() & !1;
        drop(socket);
        if port > 1024
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

/// The pipeline sends RTP from port `send` and RTCP from `send + 1` (bound, as a symmetric
/// client does): the bridge trusts RTCP only from the latched RTP source's address or its
/// port + 1.
fn gst_pipeline(bridge_rtp: u16, recv: u16, send: u16) -> String {
    let caps = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=96";
    format!(
        "rtpbin name=rb rb::rtpsession0::rtcp-min-interval=1000000000 \
         audiotestsrc is-live=true freq=440 volume=0.2 ! audioconvert ! audioresample \
         ! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=96 seqnum-offset={FIRST_SEQ} ! rb.send_rtp_sink_0 \
         rb.send_rtp_src_0 ! identity name=upstream silent=false drop-probability={UPSTREAM_DROP} \
         ! udpsink host=127.0.0.1 port={bridge_rtp} bind-port={send} \
         rb.send_rtcp_src_0 ! udpsink host=127.0.0.1 port={} bind-port={} sync=false async=false \
         udpsrc port={recv} caps=\"{caps}\" \
         ! identity name=downstream silent=false drop-probability={DOWNSTREAM_DROP} \
         ! rb.recv_rtp_sink_0 \
         udpsrc port={} caps=application/x-rtcp ! rb.recv_rtcp_sink_0 \
         rb. ! rtpopusdepay ! opusdec ! fakesink async=false",
        bridge_rtp + 1,
        send + 1,
        recv + 1,
    )
}

/// One packet an `identity` saw: its size, running time, and whether it dropped it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    bytes: usize,
    pts: f64,
    dropped: bool,
}

/// Parses `identity`'s `last-message` lines (`-v`) for the element `name`.
fn seen(stdout: &str, name: &str) -> Vec<Seen> {
    let tag = format!("GstIdentity:{name}: last-message = ");
    stdout
        .lines()
        .filter_map(|line| {
            let message = &line[line.find(&tag)? + tag.len()..];
            let dropped = message.starts_with("dropping");
            let bytes = message.split(") (").nth(1)?.split(' ').next()?.parse().ok()?;
            let pts = message.split("pts: ").nth(1)?.split(',').next()?;
            Some(Seen { bytes, pts: clock_seconds(pts)?, dropped })
        })
        .collect()
}

/// `H:MM:SS.NNNNNNNNN` as seconds.
fn clock_seconds(text: &str) -> Option<f64> {
    let mut parts = text.trim().split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Drops a receiver counts as lost: all but those before the first packet through (its
/// count starts there); and how many of them in the last `window` seconds of the stream.
fn drops(packets: &[Seen], window: f64) -> (u64, u64) {
    let end = packets.iter().map(|p| p.pts).fold(0.0, f64::max);
    let leading = packets.iter().take_while(|p| p.dropped).count();
    let dropped = packets[leading..].iter().filter(|p| p.dropped);
    let recent = dropped.clone().filter(|p| p.pts > end - window).count() as u64;
    (dropped.count() as u64, recent)
}

/// Packets in the last `window` seconds of the stream.
fn recent_packets(packets: &[Seen], window: f64) -> u64 {
    let end = packets.iter().map(|p| p.pts).fold(0.0, f64::max);
    packets.iter().filter(|p| p.pts > end - window).count() as u64
}

/// The text after `key` up to the next `,` (or the end).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    Some(rest.split(',').next()?.trim())
}

/// A 16.16 fixed point `XXXX:YYYY` in seconds.
fn fixed_16_16(text: &str) -> Option<f64> {
    let (hi, lo) = text.split_once(':')?;
    let value = u32::from_str_radix(hi, 16).ok()? << 16 | u32::from_str_radix(lo, 16).ok()?;
    Some(f64::from(value) / 65536.0)
}

fn participant(addr: SocketAddr, path: &str) -> Value {
    api(addr, "GET", path, None)["data"].as_array().and_then(|a| a.first().cloned()).unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn gstreamer_rtpbin_reads_our_reports_and_we_read_its() {
    assert!(
        Command::new("gst-launch-1.0").arg("--version").output().is_ok(),
        "gst-launch-1.0 is missing: run scripts/install-deps.sh"
    );
    let dir = std::env::temp_dir().join(format!("mixminus-rtcp-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = dir.join("mixminus.toml");
    std::fs::write(
        &config,
        format!("listen = \"{listen}\"\nrtp_ports = \"10500-10599\"\nrtcp_interval_ms = 1000\n"),
    )
    .unwrap();
    let serve = Command::new(env!("CARGO_BIN_EXE_mixminus"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("MIXMINUS_AUTH_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("mixminus serve starts");
    let mut children = Children(vec![serve]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "serve did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }

    let base = "/v2/accounts/rtcp/conferences";
    let created = api(
        listen,
        "PUT",
        base,
        Some(json!({"data": {"name": "rtcp", "member": {"join_muted": false},
            "play_entry_tone": false, "play_exit_tone": false}})),
    );
    let conference = created["data"]["id"].as_str().unwrap().to_owned();
    let participants = format!("{base}/{conference}/participants");
    let recv = free_port_pair();
    let send = loop {
        let send = free_port_pair();
        if send != recv {
            break send;
        }
    };
    let joined = api(
        listen,
        "PUT",
        &participants,
        Some(json!({"data": {"action": "join", "data": {"rtp": {"remote_ip": "127.0.0.1",
            "remote_port": recv, "codec": "opus", "payload_type": 96}}}})),
    );
    let bridge_rtp = joined["data"]["rtp"]["local_port"].as_u64().unwrap() as u16;

    let (stdout, stderr) = (dir.join("gst.out"), dir.join("gst.err"));
    let gst = Command::new("gst-launch-1.0")
        .arg("-v")
        .args(shell_words(&gst_pipeline(bridge_rtp, recv, send)))
        .env("GST_DEBUG", "rtpsource:5,rtpbin:5")
        .env("GST_DEBUG_NO_COLOR", "1")
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("gst-launch-1.0 starts");
    children.0.push(gst);

    // Until GStreamer has sent a few reports about our stream and we some about its.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ours = loop {
        let p = participant(listen, &participants);
        let rtcp = &p["rtcp"];
        if rtcp["reports_received"].as_u64() >= Some(4) && rtcp["inbound"].is_object() {
            break p["rtcp"].clone();
        }
        assert!(Instant::now() < deadline, "no RTCP exchange within 30 s: {p}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let metrics = ureq::get(&format!("http://{listen}/metrics"))
        .set("x-auth-token", TOKEN)
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    // Give GStreamer time to log the report the GET showed, then stop it (SIGINT: it
    // flushes its output and exits).
    std::thread::sleep(Duration::from_millis(1_000));
    let gst = children.0.pop().unwrap();
    let _ = Command::new("kill").args(["-INT", &gst.id().to_string()]).status();
    let mut gst = Children(vec![gst]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gst.0[0].try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(gst);
    let read = |path: &Path| {
        let mut text = String::new();
        std::fs::File::open(path).unwrap().read_to_string(&mut text).unwrap();
        text
    };
    let (stdout, log) = (read(&stdout), read(&stderr));
    let upstream = seen(&stdout, "upstream");
    let downstream = seen(&stdout, "downstream");
    assert!(upstream.len() > 150 && downstream.len() > 150, "too few packets seen");

    let ssrc = format!("{:08x}", ours["ssrc"].as_u64().unwrap());
    let cname = ours["cname"].as_str().unwrap().to_owned();
    let inbound = &ours["inbound"];
    let mut failures = Vec::new();

    // 1. Our report block about GStreamer's stream, as GStreamer parsed it. The fraction
    //    is printed in hex, the rest in decimal.
    let want = (
        (inbound["fraction_lost"].as_f64().unwrap() * 256.0).round() as u32,
        inbound["cumulative_lost"].as_i64().unwrap(),
        inbound["extended_highest_seq"].as_u64().unwrap(),
        (inbound["jitter_ms"].as_f64().unwrap() * 48.0).round() as u64,
    );
    let blocks: Vec<(u32, i64, u64, u64, String, String)> = log
        .lines()
        .filter(|l| l.contains("got RB packet") && field(l, "SSRC ") == Some(&ssrc))
        .filter_map(|l| {
            Some((
                u32::from_str_radix(field(l, "FL ")?, 16).ok()?,
                field(l, "PL ")?.parse().ok()?,
                field(l, "HS ")?.parse().ok()?,
                field(l, "jitter ")?.parse().ok()?,
                field(l, "LSR ")?.to_owned(),
                field(l, "DLSR ")?.to_owned(),
            ))
        })
        .collect();
    let matching = blocks
        .iter()
        .find(|b| (b.0, b.1, b.2) == (want.0, want.1, want.2) && b.3.abs_diff(want.3) <= 1);
    match matching {
        None => failures.push(format!("GStreamer never parsed our block {want:?}: {blocks:?}")),
        Some(block) => {
            // Its loss is what GStreamer dropped before the report: all but the last few
            // seconds' drops, at most all of them.
            let (total, recent) = drops(&upstream, 8.0);
            if !(total - recent <= block.1 as u64 && block.1 as u64 <= total && block.1 > 0) {
                failures.push(format!(
                    "our cumulative loss {} vs GStreamer's drops {total} ({recent} recent)",
                    block.1
                ));
            }
            // Its extended highest sequence number: packets GStreamer sent up to then (the
            // count starts at FIRST_SEQ, one cycle is crossed), bounded the same way.
            let sent = block.2 + 1 - FIRST_SEQ;
            let (total, recent) = (upstream.len() as u64, recent_packets(&upstream, 8.0));
            if !(block.2 >= 1 << 16 && total - recent <= sent && sent <= total) {
                failures.push(format!(
                    "our extended highest seq {} says {sent} sent; GStreamer sent {total} \
                     ({recent} recent)",
                    block.2
                ));
            }
            if block.4 == "0000:0000" {
                failures.push("our block has no LSR though GStreamer sends SRs".into());
            }
        }
    }
    if want.3 > 40 * 48 {
        failures.push(format!("jitter {} RTP units on loopback", want.3));
    }

    // 2. The round trip GStreamer computes from our LSR/DLSR: loopback, so small.
    let round_trips: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("round trip "))
        .filter_map(|l| fixed_16_16(l.split("round trip ").nth(1)?.trim()))
        .collect();
    let with_lsr = blocks.iter().filter(|b| b.4 != "0000:0000").count();
    if with_lsr == 0 || round_trips.iter().filter(|&&rtt| rtt > 0.0).count() == 0 {
        failures.push(format!("no round trip from our LSR/DLSR: {round_trips:?}"));
    }
    if let Some(rtt) = round_trips.iter().find(|&&rtt| rtt > 0.1) {
        failures.push(format!("GStreamer's round trip through us {rtt:.3} s on loopback"));
    }

    // 3. Our SDES CNAME, associated with our SSRC (rtpbin needs SR + CNAME for that).
    let association = format!("association of SSRC {ssrc} with client");
    if !log.lines().any(|l| l.contains(&association) && l.ends_with(&format!("CNAME {cname}"))) {
        failures.push(format!("rtpbin never associated SSRC {ssrc} with CNAME {cname}"));
    }

    // 4. Our sender report: NTP time is now; octets are payload bytes (identity saw whole
    //    RTP packets: 12 header bytes each, no CSRC or extension).
    let srs: Vec<(u64, u64, u64)> = log
        .lines()
        .filter(|l| {
            l.contains("got SR packet") && l.contains(" PC ") && field(l, "SSRC ") == Some(&ssrc)
        })
        .filter_map(|l| {
            let ntp_secs = u64::from_str_radix(field(l, "NTP ")?.split(':').next()?, 16).ok()?;
            Some((ntp_secs, field(l, "PC ")?.parse().ok()?, field(l, "OC ")?.parse().ok()?))
        })
        .collect();
    let now_ntp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 2_208_988_800;
    match srs.last() {
        None => failures.push("GStreamer parsed no sender report from us".into()),
        Some(&(ntp, packets, octets)) => {
            if now_ntp.abs_diff(ntp) > 60 {
                failures.push(format!("SR NTP seconds {ntp}, now {now_ntp}"));
            }
            let mean_payload = downstream.iter().map(|p| p.bytes as f64 - 12.0).sum::<f64>()
                / downstream.len() as f64;
            let per_packet = octets as f64 / packets.max(1) as f64;
            if (per_packet - mean_payload).abs() > 3.0 {
                failures.push(format!(
                    "SR octets/packet {per_packet:.1}, payload bytes/packet {mean_payload:.1}"
                ));
            }
        }
    }

    // 5. GStreamer's reports about our stream, as the participant GET shows them.
    let remote = &ours["remote_inbound"];
    let lost = remote["cumulative_lost"].as_i64().unwrap_or(-1);
    let (total, recent) = drops(&downstream, 10.0);
    if !(lost > 0 && total - recent <= lost as u64 && lost as u64 <= total) {
        failures.push(format!("GStreamer's loss {lost} vs its drops {total} ({recent} recent)"));
    }
    match remote["round_trip_ms"].as_f64() {
        Some(rtt) if (0.0..100.0).contains(&rtt) => {}
        other => failures.push(format!("round trip {other:?} ms on loopback")),
    }
    if !remote["jitter_ms"].as_f64().is_some_and(|j| j < 40.0) {
        failures.push(format!("jitter {} ms on loopback", remote["jitter_ms"]));
    }

    // 6. And in /metrics, as histograms over every leg.
    for name in [
        "mixminus_rtcp_round_trip_seconds_count",
        "mixminus_rtcp_remote_fraction_lost_count",
        "mixminus_rtcp_inbound_jitter_seconds_count",
    ] {
        if metric(&metrics, name) < 1.0 {
            failures.push(format!("{name} missing from /metrics"));
        }
    }
    if metric(&metrics, "mixminus_rtcp_reports_sent_total") < 3.0 {
        failures.push("fewer than 3 reports sent per /metrics".into());
    }

    eprintln!(
        "rtcp e2e: our block as GStreamer parsed it {matching:?}; GStreamer's drops of its \
         stream {:?}, of ours {:?} (total, last seconds); its round trips through us {:?} s; \
         our SRs (NTP s, PC, OC) last {:?}; our rtcp object {ours}",
        drops(&upstream, 8.0),
        drops(&downstream, 10.0),
        round_trips.iter().filter(|&&r| r > 0.0).collect::<Vec<_>>(),
        srs.last(),
    );
    drop(children);
    assert!(failures.is_empty(), "{failures:#?}\nour rtcp object: {ours}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Splits a pipeline description into arguments the way a shell would (double quotes only).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}
