//! CPU and memory of the watched processes (the server, the driver, the Socket.IO helper, …), sampled once a
//! second from `/proc`, plus the whole machine's busy share and load average, so a report says how much of the
//! two cores each process actually got.

use crate::target::procstat::{self, ProcSample};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per process: CPU used during the load window and over the whole run; RSS at start, load end, peak, end.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ProcUsage {
    pub name: String,
    pub pid: u32,
    pub cpu_secs_load: f64,
    pub cores_load: f64,
    pub cpu_secs_total: f64,
    pub rss_start_mib: f64,
    pub rss_load_end_mib: f64,
    pub rss_max_mib: f64,
    pub rss_end_mib: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ResourceReport {
    pub processes: Vec<ProcUsage>,
    /// Share of all CPUs busy during the load window (100 % = every core busy).
    pub machine_busy_pct_load: f64,
    pub cpus: usize,
    pub load_average_end: f64,
}

struct State {
    procs: Vec<(String, u32, ProcSample, ProcSample)>,
    max_rss: Vec<f64>,
    machine_start: Option<(u64, u64)>,
}

/// A running sampler.
pub struct Resources {
    state: Arc<Mutex<State>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What was read at the end of the load window.
pub struct Mark {
    procs: Vec<Option<ProcSample>>,
    machine: Option<(u64, u64)>,
}

impl Resources {
    pub fn start(watched: Vec<(String, u32)>) -> Resources {
        let procs: Vec<_> = watched
            .into_iter()
            .map(|(n, pid)| {
                let s = procstat::sample(pid).unwrap_or_default();
                (n, pid, s, s)
            })
            .collect();
        let max_rss = procs.iter().map(|p| p.2.rss_mib).collect();
        let state = Arc::new(Mutex::new(State {
            procs,
            max_rss,
            machine_start: procstat::machine_jiffies(),
        }));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let s2 = state.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                if let Ok(mut st) = s2.lock() {
                    let st = &mut *st;
                    for (i, p) in st.procs.iter_mut().enumerate() {
                        if let Some(now) = procstat::sample(p.1) {
                            p.3 = now;
                            st.max_rss[i] = st.max_rss[i].max(now.rss_mib);
                        }
                    }
                }
            }
        });
        Resources { state, stop, task }
    }

    /// Reads everything now (the end of the load window).
    pub fn mark(&self) -> Mark {
        let procs = self
            .state
            .lock()
            .map(|st| st.procs.iter().map(|p| procstat::sample(p.1)).collect())
            .unwrap_or_default();
        Mark {
            procs,
            machine: procstat::machine_jiffies(),
        }
    }

    /// Stops sampling; CPU "during load" is from the start to `mark`, over `load_secs`.
    pub async fn finish(self, mark: Mark, load_secs: f64) -> ResourceReport {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let Ok(st) = self.state.lock() else {
            return ResourceReport::default();
        };
        let processes = st
            .procs
            .iter()
            .enumerate()
            .map(|(i, (name, pid, start, last))| {
                let at_mark = mark.procs.get(i).copied().flatten().unwrap_or(*last);
                let end = procstat::sample(*pid).unwrap_or(*last);
                let cpu_load = at_mark.cpu_secs - start.cpu_secs;
                ProcUsage {
                    name: name.clone(),
                    pid: *pid,
                    cpu_secs_load: cpu_load,
                    cores_load: cpu_load / load_secs.max(1e-9),
                    cpu_secs_total: end.cpu_secs - start.cpu_secs,
                    rss_start_mib: start.rss_mib,
                    rss_load_end_mib: at_mark.rss_mib,
                    rss_max_mib: st.max_rss[i].max(end.rss_mib),
                    rss_end_mib: end.rss_mib,
                }
            })
            .collect();
        let machine_busy_pct_load = match (st.machine_start, mark.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64
            }
            _ => 0.0,
        };
        ResourceReport {
            processes,
            machine_busy_pct_load,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            load_average_end: procstat::load_average(),
        }
    }
}
