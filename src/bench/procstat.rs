//! A process's CPU time and memory from /proc: `utime + stime` of /proc/PID/stat (every
//! thread of the process, in clock ticks) and `VmRSS` / `VmHWM` of /proc/PID/status.

use std::time::Instant;

use anyhow::Context;

/// Linux reports /proc times in USER_HZ, which the kernel ABI fixes at 100 on every
/// architecture we run on (sysconf(_SC_CLK_TCK) returns the same constant).
const USER_HZ: f64 = 100.0;

/// One reading of a process's CPU time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    at: Instant,
    cpu_seconds: f64,
}

impl CpuSample {
    /// Reads process `pid` now (`None` = this process).
    pub(crate) fn read(pid: Option<u32>) -> anyhow::Result<Self> {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/stat"),
            None => "/proc/self/stat".into(),
        };
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // The command name (field 2) may hold spaces and parentheses: fields restart after
        // the last ')'. utime and stime are fields 14 and 15, i.e. 12th and 13th after it.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields.get(i).context("short stat")?.parse::<u64>()? as f64)
        };
        Ok(Self { at: Instant::now(), cpu_seconds: (ticks(11)? + ticks(12)?) / USER_HZ })
    }

    /// Cores used on average between `self` and a later sample (1.0 = one core busy).
    pub(crate) fn cores_until(&self, later: &CpuSample) -> f64 {
        let wall = later.at.saturating_duration_since(self.at).as_secs_f64();
        if wall <= 0.0 {
            0.0
        } else {
            (later.cpu_seconds - self.cpu_seconds) / wall
        }
    }
}

/// Resident memory now and at its peak, MiB.
pub(crate) fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Ok((field("VmRSS:").unwrap_or(0.0), field("VmHWM:").unwrap_or(0.0)))
}

/// The 1-minute load average (what `uptime` shows first).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let a = CpuSample::read(None).unwrap();
        let mut x = 0u64;
        let until = Instant::now() + std::time::Duration::from_millis(60);
        while Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = CpuSample::read(None).unwrap();
        assert!(a.cores_until(&b) >= 0.0);
        let (rss, peak) = rss_mib(std::process::id()).unwrap();
        assert!(rss > 0.0 && peak >= rss);
    }
}
