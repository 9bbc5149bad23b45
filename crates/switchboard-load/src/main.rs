//! `switchboard-load`: drives a running `switchboard serve` (or the seed baseline) with the mixed workload and
//! prints the report (`run`), or compares two reports (`compare`).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::time::Duration;
use switchboard_load::report::{compare, markdown};
use switchboard_load::run::{run, RunConfig, TargetKind};
use switchboard_load::target::RetryConfig;

/// mimalloc, as in the server: with glibc's malloc a quarter of the driver's CPU went to the allocator (its maps
/// of millions of per-event records and the HTTP buffers), CPU the server on the same two cores then lacked.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "switchboard-load", about = "Load suite for Switchboard")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Switchboard,
    Baseline,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the workload against one server and writes the report.
    Run(Box<RunArgs>),
    /// Compares a Switchboard report with a baseline report (JSON files).
    Compare {
        switchboard: String,
        baseline: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "switchboard")]
    target: Kind,
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// MLLP listener (host:port); the MLLP path is skipped without it.
    #[arg(long)]
    mllp: Option<String>,
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN")]
    admin_token: String,
    /// Org of the key (the MLLP listener's org, so its events are visible too).
    #[arg(long, default_value = "default")]
    org: String,
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Total offered events per second over all paths.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Events one MLLP ADT^A01 makes on the server (3 stage events + the transformer's output).
    #[arg(long, default_value_t = 7.0)]
    mllp_events_per_message: f64,
    /// Shares of the offered events per path: api,fhir,mllp.
    #[arg(long, default_value = "50,25,25")]
    mix: String,
    /// MLLP sender connections (each sends one message at a time).
    #[arg(long, default_value_t = 128)]
    mllp_connections: usize,
    /// Operations in flight per HTTP path at most.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    #[arg(long, default_value_t = 2)]
    sse: usize,
    #[arg(long, default_value_t = 20)]
    socketio: usize,
    /// Events/s of the type the Socket.IO clients follow (under the server's 100/s per-socket limit).
    #[arg(long, default_value_t = 50.0)]
    socketio_rate: f64,
    #[arg(long, default_value = "tests/js/sio-driver.mjs")]
    socketio_script: String,
    /// Share of webhook requests the receiver answers 500.
    #[arg(long, default_value_t = 1.0 / 3.0)]
    fail_ratio: f64,
    /// retryConfig of the subscription: retries, backoff type, initial delay (ms).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    #[arg(long, default_value_t = false)]
    linear: bool,
    #[arg(long, default_value_t = 2000)]
    initial_delay: u64,
    /// Event types of the subscription, comma-separated (exact, `prefix.**` or `**`).
    #[arg(long, default_value = "hl7.received,fhir.created,custom.**")]
    events: String,
    /// Seconds to wait for webhook deliveries after the load.
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
    /// The server's pid, for CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds between timeline samples during the load (server RSS and threads, open webhook deliveries,
    /// listener lag); 0: none. For soaks: whether memory and queues stay flat.
    #[arg(long, default_value_t = 30)]
    timeline_every: u64,
    /// More processes to account for, as name=pid (repeatable).
    #[arg(long = "watch")]
    watch: Vec<String>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "load-report.json")]
    out: String,
}

fn config(a: RunArgs) -> anyhow::Result<RunConfig> {
    let weights: Vec<f64> = a
        .mix
        .split(',')
        .map(|w| w.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .context("--mix must be three numbers: api,fhir,mllp")?;
    let [api, fhir, mllp] = weights[..] else {
        anyhow::bail!("--mix must be three numbers: api,fhir,mllp");
    };
    let watch = a
        .watch
        .iter()
        .map(|w| {
            let (name, pid) = w.split_once('=').context("--watch takes name=pid")?;
            Ok((name.to_string(), pid.parse::<u32>().context("--watch pid")?))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(RunConfig {
        kind: match a.target {
            Kind::Switchboard => TargetKind::Switchboard,
            Kind::Baseline => TargetKind::Baseline,
        },
        base_url: a.url,
        mllp_addr: a.mllp,
        admin_token: a.admin_token,
        org: a.org,
        duration: Duration::from_secs(a.duration),
        rate: a.rate,
        mllp_events_per_message: a.mllp_events_per_message,
        weight_api: api,
        weight_fhir: fhir,
        weight_mllp: mllp,
        mllp_connections: a.mllp_connections,
        max_in_flight: a.max_in_flight,
        sse_clients: a.sse,
        sio_clients: a.socketio,
        sio_rate: a.socketio_rate,
        sio_script: a.socketio_script,
        fail_ratio: a.fail_ratio,
        retry: RetryConfig {
            max_attempts: a.retries,
            exponential: !a.linear,
            initial_delay_ms: a.initial_delay,
        },
        subscription_events: a
            .events
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        drain_timeout: Duration::from_secs(a.drain_timeout),
        server_pid: a.server_pid,
        timeline_every: Duration::from_secs(a.timeline_every),
        watch,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let out = args.out.clone();
            let report = run(config(*args)?).await?;
            std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {out}"))?;
            println!("{}", markdown::render(&report));
            println!("JSON report: {out}");
        }
        Command::Compare {
            switchboard,
            baseline,
        } => {
            let read = |p: &str| -> anyhow::Result<serde_json::Value> {
                Ok(serde_json::from_slice(
                    &std::fs::read(p).with_context(|| format!("reading {p}"))?,
                )?)
            };
            println!(
                "{}",
                compare::render(&read(&switchboard)?, &read(&baseline)?)
            );
        }
    }
    Ok(())
}
