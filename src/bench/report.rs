//! One run's numbers, and the sweep's outputs: CSV, an SVG plot of CPU against
//! participants, and the participants-per-core table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::generator::ReceiveStats;
use super::{BridgeMetrics, Mode, TargetKind};

/// What [`RunResult::new`] is computed from.
pub(crate) struct RunInput {
    pub(crate) target: TargetKind,
    pub(crate) mode: Mode,
    pub(crate) participants: usize,
    pub(crate) talkers: usize,
    pub(crate) relationships: usize,
    pub(crate) duration: f64,
    pub(crate) join_seconds: f64,
    pub(crate) cores: Option<f64>,
    pub(crate) generator_cores: f64,
    pub(crate) rss: Option<(f64, f64)>,
    pub(crate) metrics: Option<(BridgeMetrics, BridgeMetrics)>,
    pub(crate) received: ReceiveStats,
    pub(crate) load: f64,
}

/// One measured point: a CSV row.
#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub(crate) target: TargetKind,
    pub(crate) mode: Mode,
    pub(crate) participants: usize,
    pub(crate) talkers: usize,
    relationships: usize,
    duration_s: f64,
    join_s: f64,
    /// Bridge CPU, cores (1.0 = one core busy), NaN when the process is unknown.
    pub(crate) cpu_cores: f64,
    generator_cores: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    packets_expected: u64,
    packets_received: u64,
    missing: u64,
    late_frames: u64,
    silent_participants: u64,
    send_errors: u64,
    sender_late: u64,
    ticks: Option<f64>,
    late_ticks: Option<f64>,
    encodes_per_tick: Option<f64>,
    decodes_per_tick: Option<f64>,
    tick_mean_us: Option<f64>,
    tick_p99_us: Option<f64>,
    tick_max_us: Option<f64>,
    latency_median_ms: f64,
    latency_max_ms: f64,
    latency_samples: usize,
    heard_talkers: Option<usize>,
    pub(crate) load: f64,
}

impl RunResult {
    pub(crate) fn new(input: RunInput) -> Self {
        let r = &input.received;
        let mut latencies = r.latencies_ms.clone();
        latencies.sort_by(f64::total_cmp);
        let median = latencies.get(latencies.len() / 2).copied().unwrap_or(f64::NAN);
        let max = latencies.last().copied().unwrap_or(f64::NAN);
        let (rss, peak) = input.rss.unwrap_or((f64::NAN, f64::NAN));
        let delta = input.metrics.map(|(a, b)| {
            let ticks = b.ticks - a.ticks;
            let per_tick = |x: f64| if ticks > 0.0 { x / ticks } else { f64::NAN };
            let count = b.tick_seconds_count - a.tick_seconds_count;
            let mean = if count > 0.0 {
                (b.tick_seconds_sum - a.tick_seconds_sum) / count * 1e6
            } else {
                f64::NAN
            };
            (
                ticks,
                b.late_ticks - a.late_ticks,
                per_tick(b.encodes - a.encodes),
                per_tick(b.decodes - a.decodes),
                mean,
                b.tick_p99_seconds * 1e6,
                b.tick_max_seconds * 1e6,
            )
        });
        Self {
            target: input.target,
            mode: input.mode,
            participants: input.participants,
            talkers: input.talkers,
            relationships: input.relationships,
            duration_s: input.duration,
            join_s: input.join_seconds,
            cpu_cores: input.cores.unwrap_or(f64::NAN),
            generator_cores: input.generator_cores,
            rss_mib: rss,
            peak_rss_mib: peak,
            packets_expected: r.expected,
            packets_received: r.packets,
            missing: r.missing,
            late_frames: r.late,
            silent_participants: r.silent_participants,
            send_errors: r.send_errors,
            sender_late: r.sender_late,
            ticks: delta.map(|d| d.0),
            late_ticks: delta.map(|d| d.1),
            encodes_per_tick: delta.map(|d| d.2),
            decodes_per_tick: delta.map(|d| d.3),
            tick_mean_us: delta.map(|d| d.4),
            tick_p99_us: delta.map(|d| d.5),
            tick_max_us: delta.map(|d| d.6),
            latency_median_ms: median,
            latency_max_ms: max,
            latency_samples: latencies.len(),
            heard_talkers: r.heard_talkers,
            load: input.load,
        }
    }

    /// Late ticks while measuring (0 where the bridge does not count them).
    pub(crate) fn late_ticks(&self) -> f64 {
        self.late_ticks.unwrap_or(0.0)
    }

    /// Participants per core at this point.
    pub(crate) fn per_core(&self) -> f64 {
        self.participants as f64 / self.cpu_cores
    }

    fn received_pct(&self) -> f64 {
        100.0 * self.packets_received as f64 / self.packets_expected.max(1) as f64
    }

    /// The bridge kept up: (almost) every output frame arrived, on time, every talker is
    /// heard, and (mixminus) no tick was late.
    pub(crate) fn clean(&self) -> bool {
        self.received_pct() >= 99.0
            && (self.late_frames as f64) <= 0.005 * self.packets_received as f64
            && self.late_ticks.unwrap_or(0.0) == 0.0
            && self.heard_talkers.is_none_or(|h| h == self.talkers)
            && self.cpu_cores.is_finite()
    }

    /// A progress line.
    pub(crate) fn one_line(&self) -> String {
        let mut s = format!(
            "CPU {:.1}% of a core ({:.3}%/participant, {:.0} participants/core), RSS {:.0} MiB, \
             received {:.2}% ({} missing, {} late), latency {:.0} ms, heard {}/{} talkers, \
             generator {:.1}%",
            self.cpu_cores * 100.0,
            self.cpu_cores * 100.0 / self.participants as f64,
            self.per_core(),
            self.rss_mib,
            self.received_pct(),
            self.missing,
            self.late_frames,
            self.latency_median_ms,
            self.heard_talkers.map_or("-".into(), |h| h.to_string()),
            self.talkers,
            self.generator_cores * 100.0,
        );
        if let (Some(late), Some(enc), Some(dec), Some(mean)) =
            (self.late_ticks, self.encodes_per_tick, self.decodes_per_tick, self.tick_mean_us)
        {
            let _ = write!(
                s,
                "; ticks: {late:.0} late, {enc:.2} encodes and {dec:.1} decodes per tick, \
                 mean {mean:.0} µs"
            );
        }
        if !self.clean() {
            s.push_str(" [NOT CLEAN]");
        }
        s
    }
}

const CSV_HEADER: &str = "target,mode,participants,talkers,relationships,duration_s,join_s,\
cpu_cores,cpu_pct_per_participant,participants_per_core,generator_cores,rss_mib,peak_rss_mib,\
packets_expected,packets_received,received_pct,missing,late_frames,silent_participants,\
send_errors,sender_late,ticks,late_ticks,encodes_per_tick,decodes_per_tick,tick_mean_us,\
tick_p99_us,tick_max_us,latency_median_ms,latency_max_ms,latency_samples,heard_talkers,\
load1,clean";

/// Writes every result so far (rewritten after each run, so a long sweep leaves data).
pub(crate) fn write_csv(path: &Path, results: &[RunResult]) -> anyhow::Result<()> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in results {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.1},{:.2},{:.6},{:.5},{:.1},{:.4},{:.1},{:.1},{},{},{:.3},{},{},{},{},{},\
             {},{},{},{},{},{},{},{:.1},{:.1},{},{},{:.2},{}",
            r.target.name(),
            r.mode.name(),
            r.participants,
            r.talkers,
            r.relationships,
            r.duration_s,
            r.join_s,
            r.cpu_cores,
            r.cpu_cores * 100.0 / r.participants as f64,
            r.per_core(),
            r.generator_cores,
            r.rss_mib,
            r.peak_rss_mib,
            r.packets_expected,
            r.packets_received,
            r.received_pct(),
            r.missing,
            r.late_frames,
            r.silent_participants,
            r.send_errors,
            r.sender_late,
            opt(r.ticks),
            opt(r.late_ticks),
            opt(r.encodes_per_tick),
            opt(r.decodes_per_tick),
            opt(r.tick_mean_us),
            opt(r.tick_p99_us),
            opt(r.tick_max_us),
            r.latency_median_ms,
            r.latency_max_ms,
            r.latency_samples,
            r.heard_talkers.map_or(String::new(), |h| h.to_string()),
            r.load,
            r.clean(),
        );
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

/// Reads back a CSV that [`write_csv`] wrote (to redraw its plot and table).
pub(crate) fn read_csv(path: &Path) -> anyhow::Result<Vec<RunResult>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    anyhow::ensure!(header == CSV_HEADER.split(',').collect::<Vec<_>>(), "not a bench CSV");
    lines
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| parse_row(line).with_context(|| format!("CSV row {}", i + 1)))
        .collect()
}

fn parse_row(line: &str) -> anyhow::Result<RunResult> {
    let cells: Vec<&str> = line.split(',').collect();
    anyhow::ensure!(cells.len() == CSV_HEADER.split(',').count(), "wrong number of columns");
    let f = |i: usize| -> anyhow::Result<f64> { Ok(cells[i].parse::<f64>()?) };
    let u = |i: usize| -> anyhow::Result<u64> { Ok(cells[i].parse::<u64>()?) };
    let opt = |i: usize| -> anyhow::Result<Option<f64>> {
        Ok(if cells[i].is_empty() { None } else { Some(cells[i].parse::<f64>()?) })
    };
    use clap::ValueEnum;
    let target = TargetKind::from_str(cells[0], false).map_err(anyhow::Error::msg)?;
    let mode = Mode::from_str(cells[1], false).map_err(anyhow::Error::msg)?;
    Ok(RunResult {
        target,
        mode,
        participants: usize::try_from(u(2)?)?,
        talkers: usize::try_from(u(3)?)?,
        relationships: usize::try_from(u(4)?)?,
        duration_s: f(5)?,
        join_s: f(6)?,
        cpu_cores: f(7)?,
        generator_cores: f(10)?,
        rss_mib: f(11)?,
        peak_rss_mib: f(12)?,
        packets_expected: u(13)?,
        packets_received: u(14)?,
        missing: u(16)?,
        late_frames: u(17)?,
        silent_participants: u(18)?,
        send_errors: u(19)?,
        sender_late: u(20)?,
        ticks: opt(21)?,
        late_ticks: opt(22)?,
        encodes_per_tick: opt(23)?,
        decodes_per_tick: opt(24)?,
        tick_mean_us: opt(25)?,
        tick_p99_us: opt(26)?,
        tick_max_us: opt(27)?,
        latency_median_ms: f(28)?,
        latency_max_ms: f(29)?,
        latency_samples: usize::try_from(u(30)?)?,
        heard_talkers: opt(31)?.map(|h| h as usize),
        load: f(32)?,
    })
}

/// Plots bridge CPU (% of one core) against participants, one line per target and mode.
pub(crate) fn plot(path: &Path, results: &[RunResult], talkers: usize) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let series = by_series(results);
    let max_n = results.iter().map(|r| r.participants).max().unwrap_or(1) as f64;
    let max_cpu = results
        .iter()
        .map(|r| r.cpu_cores * 100.0)
        .filter(|c| c.is_finite())
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting: {e}");
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Bridge CPU vs participants (Opus 48 kHz, 20 ms, {talkers} talkers; \
                 hollow = did not keep up)"
            ),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max_n * 1.05, 0f64..max_cpu * 1.1)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("participants")
        .y_desc("bridge CPU, % of one core")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| draw(&e))?;
    let palette = [
        RGBColor(200, 40, 30),
        RGBColor(30, 80, 200),
        RGBColor(240, 140, 30),
        RGBColor(60, 170, 220),
        RGBColor(140, 30, 120),
        RGBColor(40, 150, 60),
    ];
    for (i, ((target, mode), points)) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        let measured: Vec<&RunResult> =
            points.iter().copied().filter(|r| r.cpu_cores.is_finite()).collect();
        let xy: Vec<(f64, f64)> =
            measured.iter().map(|r| (r.participants as f64, r.cpu_cores * 100.0)).collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label(format!("{} ({})", target.name(), mode.name()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(measured.iter().map(|r| {
                let style = if r.clean() { color.filled() } else { color.stroke_width(2) };
                Circle::new((r.participants as f64, r.cpu_cores * 100.0), 4, style)
            }))
            .map_err(|e| draw(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}

fn by_series(results: &[RunResult]) -> BTreeMap<(TargetKind, Mode), Vec<&RunResult>> {
    let mut series: BTreeMap<(TargetKind, Mode), Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        series.entry((r.target, r.mode)).or_default().push(r);
    }
    for points in series.values_mut() {
        points.sort_by_key(|r| r.participants);
    }
    series
}

/// The table the README shows: for each mode, per N the CPU of both targets and their
/// participants per core, then the headline — each target's participants per core at the
/// largest N it ran clean, and the ratio.
pub(crate) fn summary(results: &[RunResult]) -> String {
    let series = by_series(results);
    let mut modes: Vec<Mode> = results.iter().map(|r| r.mode).collect();
    modes.sort();
    modes.dedup();
    let mut out = String::new();
    for mode in modes {
        let mixminus = series.get(&(TargetKind::Mixminus, mode));
        let janus = series.get(&(TargetKind::Janus, mode));
        let _ = writeln!(out, "\n### Mode: {}\n", mode.name());
        let _ = writeln!(
            out,
            "| N | mixminus CPU | mixminus participants/core | mixminus late ticks | \
             encodes/tick | decodes/tick | janus CPU | janus participants/core | ratio |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut ns: Vec<usize> =
            results.iter().filter(|r| r.mode == mode).map(|r| r.participants).collect();
        ns.sort_unstable();
        ns.dedup();
        fn find<'a>(s: Option<&Vec<&'a RunResult>>, n: usize) -> Option<&'a RunResult> {
            s.and_then(|s| s.iter().find(|r| r.participants == n).copied())
        }
        for n in ns {
            let m = find(mixminus, n);
            let j = find(janus, n);
            let cell = |r: Option<&RunResult>, f: &dyn Fn(&RunResult) -> String| {
                r.map_or("–".to_string(), |r| {
                    let mut s = f(r);
                    if !r.clean() {
                        s.push_str(" ✗");
                    }
                    s
                })
            };
            let opt = |v: Option<f64>, digits: usize| {
                v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
            };
            let ratio = match (m, j) {
                (Some(m), Some(j)) => format!("{:.1}×", m.per_core() / j.per_core()),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {ratio} |",
                cell(m, &|r| format!("{:.1}%", r.cpu_cores * 100.0)),
                cell(m, &|r| format!("{:.0}", r.per_core())),
                m.map_or("–".into(), |r| opt(r.late_ticks, 0)),
                m.map_or("–".into(), |r| opt(r.encodes_per_tick, 2)),
                m.map_or("–".into(), |r| opt(r.decodes_per_tick, 1)),
                cell(j, &|r| format!("{:.1}%", r.cpu_cores * 100.0)),
                cell(j, &|r| format!("{:.0}", r.per_core())),
            );
        }
        fn best<'a>(s: Option<&Vec<&'a RunResult>>) -> Option<&'a RunResult> {
            s.and_then(|s| s.iter().rev().find(|r| r.clean()).copied())
        }
        let (bm, bj) = (best(mixminus), best(janus));
        let headline = |r: Option<&RunResult>| {
            r.map_or("no clean run".to_string(), |r| {
                format!("{:.0} (at N={})", r.per_core(), r.participants)
            })
        };
        let _ = writeln!(
            out,
            "\nParticipants per core at the largest clean N — mixminus: {}, janus: {}{}",
            headline(bm),
            headline(bj),
            match (bm, bj) {
                (Some(m), Some(j)) => format!(", ratio {:.1}×", m.per_core() / j.per_core()),
                _ => String::new(),
            }
        );
    }
    out.push_str("\n✗ = not clean: under 99% of output frames received, over 0.5% late, a late tick, or a talker not heard.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips() {
        let received = ReceiveStats {
            packets: 980,
            expected: 1000,
            latencies_ms: vec![20.0, 30.0, 25.0],
            heard_talkers: Some(3),
            ..Default::default()
        };
        let result = RunResult::new(RunInput {
            target: TargetKind::Janus,
            mode: Mode::AudioLevel,
            participants: 40,
            talkers: 3,
            relationships: 0,
            duration: 10.0,
            join_seconds: 1.5,
            cores: Some(0.123456),
            generator_cores: 0.01,
            rss: Some((30.0, 31.0)),
            metrics: None,
            received,
            load: 2.5,
        });
        assert_eq!(result.latency_median_ms, 25.0);
        assert!(!result.clean(), "98% of frames received is not clean");
        let path = std::env::temp_dir().join(format!("bench-csv-{}.csv", std::process::id()));
        write_csv(&path, std::slice::from_ref(&result)).unwrap();
        let back = read_csv(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(back.len(), 1);
        let b = &back[0];
        assert_eq!(
            (b.target, b.mode, b.participants, b.talkers),
            (TargetKind::Janus, Mode::AudioLevel, 40, 3)
        );
        assert!((b.cpu_cores - 0.123456).abs() < 1e-9);
        assert_eq!((b.packets_received, b.heard_talkers, b.ticks), (980, Some(3), None));
        assert!(summary(&back).contains("| 40 |"));
    }
}
