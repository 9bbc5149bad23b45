//! Benchmark of the MLLP listener end to end: the app runs in-process (SQLite in a temp dir, WAL,
//! `synchronous=FULL`, every event committed before its ACK) and 64 connections each send the sample ADT^A01
//! (unique MSH-10 per message) and wait for its ACK before sending the next.
//!
//! Run: `cargo bench -p switchboard --bench mllp` (add `-- --quick` for a short run, `-- --connections N`,
//! `-- --secs N`, `-- --no-stage-events` to emit only `hl7.received` per message, `-- --transformer` to run the HL7 → FHIR
//! transformer too and report how fast messages are transformed end to end, `-- --linger-ms N` to set
//! `hub.batch_linger_ms`).
//! Prints ACKed messages/s and ACK latency percentiles as seen by the clients.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::{Application, Config};
use switchboard_hl7::framing::MllpDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const SAMPLE: &[u8] = include_bytes!("../../switchboard-hl7/tests/data/adt_a01.hl7");

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The sample with `MSG00001` (MSH-10), `12345` (the MRN in PID-3) and the visit number (PV1-19) replaced by an
/// id, framed: every message admits a different patient in a new visit, as a real ADT feed does. The sample is
/// split once at the three places, so a client builds each message with a few copies (the clients share the
/// two cores with the server, so their cost is kept small).
struct Template {
    /// The text between the places where the id goes (the visit number's `V` ends the third piece).
    pieces: Vec<Vec<u8>>,
}

impl Template {
    fn new() -> Self {
        let text = String::from_utf8_lossy(SAMPLE)
            .replace("MSG00001", "\u{0}")
            .replace("12345^^^HOSP^MR", "\u{0}^^^HOSP^MR")
            .replace("V00012345^^^HOSP^VN", "V\u{0}^^^HOSP^VN");
        let pieces = text.split('\u{0}').map(|p| p.as_bytes().to_vec()).collect();
        Template { pieces }
    }

    fn framed(&self, id: &str, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x0b);
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(id.as_bytes());
            }
            out.extend_from_slice(piece);
        }
        out.extend_from_slice(&[0x1c, 0x0d]);
    }
}

struct ClientResult {
    latencies: Vec<Duration>,
    /// Every `AA`, warm-up included.
    acked: usize,
    errors: usize,
}

async fn client(
    addr: SocketAddr,
    conn: usize,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
) -> ClientResult {
    let mut result = ClientResult {
        latencies: Vec::with_capacity(200_000),
        acked: 0,
        errors: 0,
    };
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        result.errors += 1;
        return result;
    };
    let _ = stream.set_nodelay(true);
    let mut decoder = MllpDecoder::default();
    let mut buf = vec![0u8; 8192];
    let mut n: u64 = 0;
    let template = Template::new();
    let mut frame = Vec::with_capacity(SAMPLE.len() + 64);
    let mut id = String::with_capacity(24);
    let mut expected = String::with_capacity(32);
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        id.clear();
        let _ = write!(id, "B{conn}-{n}");
        template.framed(&id, &mut frame);
        let started = Instant::now();
        if stream.write_all(&frame).await.is_err() {
            result.errors += 1;
            return result;
        }
        let ack = loop {
            match decoder.decode() {
                Ok(d) => {
                    if let Some(f) = d.frame {
                        break f;
                    }
                }
                Err(_) => {
                    result.errors += 1;
                    return result;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    result.errors += 1;
                    return result;
                }
                Ok(k) => decoder.feed(&buf[..k]),
            }
        };
        let elapsed = started.elapsed();
        expected.clear();
        let _ = write!(expected, "MSA|AA|{id}");
        if !ack
            .windows(expected.len())
            .any(|w| w == expected.as_bytes())
        {
            result.errors += 1;
        } else {
            result.acked += 1;
            if measuring.load(Ordering::Relaxed) {
                result.latencies.push(elapsed);
            }
        }
    }
    result
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let stage_events = !std::env::args().any(|a| a == "--no-stage-events");
    let transformer = std::env::args().any(|a| a == "--transformer");
    let connections: usize = arg("--connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let secs: u64 = arg("--secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 15 });
    let linger_ms: u64 = arg("--linger-ms").and_then(|v| v.parse().ok()).unwrap_or(0);
    let warmup = Duration::from_secs(if quick { 1 } else { 3 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::defaults().expect("config");
        config.http.addr = "127.0.0.1:0".parse().expect("addr");
        config.mllp.addr = "127.0.0.1:0".parse().expect("addr");
        config.mllp.stage_events = stage_events;
        config.listeners.transformer = transformer;
        config.hub.batch_linger_ms = linger_ms;
        config.database.url = format!("sqlite://{}", dir.path().join("bench.db").display());
        config.auth.admin_token = switchboard::auth::generate_key();
        let app = Application::build(config).await.expect("build");
        let addr = app.mllp_addr().expect("mllp listener");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let first_sent = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|c| tokio::spawn(client(addr, c, Arc::clone(&stop), Arc::clone(&measuring))))
            .collect();
        tokio::time::sleep(warmup).await;
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let cpu_before = process_cpu();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let cpu = process_cpu().zip(cpu_before).map(|(after, before)| after - before);
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut errors = 0;
        let mut acked = 0;
        for t in tasks {
            let r = t.await.expect("client");
            all.extend(r.latencies);
            errors += r.errors;
            acked += r.acked;
        }
        let last_ack = Instant::now();
        let transformed = if transformer {
            Some(wait_for_transforms(&dir.path().join("bench.db"), acked).await)
        } else {
            None
        };
        print_stage_times(&switchboard::app::metrics_handle().render());
        shutdown.cancel();
        server.await.expect("join").expect("app");
        all.sort();
        let pick = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default();
        let events = if stage_events { 3 } else { 1 };
        println!(
            "MLLP: {connections} connections, one message in flight each, ADT^A01 of {} bytes, {events} event(s) per message, SQLite synchronous=FULL",
            SAMPLE.len()
        );
        println!(
            "  {:.0} ACKed messages/s ({} in {:.1} s, {errors} errors)",
            all.len() as f64 / elapsed.as_secs_f64(),
            all.len(),
            elapsed.as_secs_f64()
        );
        println!(
            "  ACK latency: p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
            pick(0.50),
            pick(0.90),
            pick(0.99),
            pick(0.999),
            all.last().copied().unwrap_or_default()
        );
        if let Some(cpu) = cpu.filter(|_| !all.is_empty()) {
            // Steadier than messages/s on a shared machine: what each message costs, whatever the scheduler did.
            println!(
                "  CPU (server and clients): {:.2} cores, {:.1} µs per ACKed message",
                cpu / elapsed.as_secs_f64(),
                cpu * 1e6 / all.len() as f64
            );
        }
        if let Some((done, at)) = transformed {
            let span = at.duration_since(first_sent).as_secs_f64();
            println!(
                "  transformed (transform.completed): {done} of {acked} ACKed messages, the last {:.1} s after the last ACK: {:.0} messages/s end to end over {span:.1} s",
                at.saturating_duration_since(last_ack).as_secs_f64(),
                done as f64 / span
            );
        }
    });
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`; `None` elsewhere).
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks; 100 per second on every Linux this runs on (`getconf CLK_TCK`).
    Some((utime + stime) / 100.0)
}

/// Polls the log until it holds a `transform.completed` for each of `acked` messages (or a minute passes);
/// returns how many there are and when the count was reached.
async fn wait_for_transforms(db: &std::path::Path, acked: usize) -> (usize, Instant) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the bench database");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Counted incrementally along seq, so each poll reads only the events committed since the last one.
    let (mut done, mut after) = (0usize, 0i64);
    loop {
        let (found, last): (i64, Option<i64>) = conn
            .query_row(
                "SELECT COUNT(*) FILTER (WHERE event_type = 'transform.completed'), MAX(seq) FROM events \
                 WHERE seq > ?1",
                [after],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("count");
        done += found as usize;
        after = last.unwrap_or(after);
        if done >= acked || Instant::now() >= deadline {
            return (done, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Mean time per batch of the hub's stages, from the process's Prometheus metrics: where an ACK's latency goes.
fn print_stage_times(rendered: &str) {
    let value = |name: &str| -> f64 {
        rendered
            .lines()
            .find(|l| l.starts_with(name) && (!l.contains('{') || l.contains("listener=")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    for (label, metric) in [
        ("commit", "switchboard_commit_seconds"),
        ("fsync", "switchboard_sync_seconds"),
        (
            "frame in -> ACK out (server)",
            "switchboard_mllp_ack_seconds",
        ),
        (
            "commit -> ACK out (server)",
            "switchboard_mllp_commit_to_ack_seconds",
        ),
    ] {
        let (sum, count) = (
            value(&format!("{metric}_sum")),
            value(&format!("{metric}_count")),
        );
        // (`count` is batches for the hub's stages and messages for the MLLP ones.)
        if count > 0.0 {
            println!(
                "  {label}: {count:.0} batches, mean {:.2} ms",
                sum / count * 1e3
            );
        }
    }
    let (sum, count) = (
        value("switchboard_append_batch_size_sum"),
        value("switchboard_append_batch_size_count"),
    );
    if count > 0.0 {
        println!("  events per batch: mean {:.1}", sum / count);
    }
}
