//! CPU time and resident memory of processes, from `/proc/<pid>/stat` and `/proc/<pid>/status`, and the
//! machine's busy share from `/proc/stat`: to say how much of the two cores each process actually got.

use serde::Serialize;

/// Clock ticks per second of `/proc` CPU times (USER_HZ; 100 on Linux x86-64).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    pub rss_mib: f64,
}

/// Reads `pid`; `None` when it is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        cpu_secs: cpu_secs_of_stat(&stat)?,
        rss_mib: rss_kib_of_status(&status)? as f64 / 1024.0,
    })
}

/// The thread count of `pid` (`Threads:` of `/proc/<pid>/status`); `None` when it is gone.
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds.
pub fn cpu_secs_of_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces; fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// `VmRSS` of a `/proc/<pid>/status`, in KiB.
pub fn rss_kib_of_status(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Busy and total jiffies of all CPUs, from `/proc/stat`.
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat =
            "1234 (tokio worker) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 8 0 100 0 0";
        assert_eq!(cpu_secs_of_stat(stat), Some(4.0));
        let status = "Name:\tswitchboard\nVmRSS:\t   20480 kB\nThreads: 8\n";
        assert_eq!(rss_kib_of_status(status), Some(20480));
        assert!(sample(std::process::id()).is_some());
    }
}
