//! Benchmark of Socket.IO fan-out: N clients in one org room, events published over HTTP at a fixed rate.
//!
//! Run: `cargo bench -p switchboard --bench realtime` (defaults: 1,000 clients, 100 events/s for 30 s).
//! Options: `-- --clients N --rate R --seconds S`.
//!
//! The server is the release `switchboard` binary in its own process, so its resident memory can be read from
//! `/proc` before and after the clients connect (memory per idle connection). The clients are minimal Socket.IO
//! clients over websockets (engine.io v4 frames) in this process. Latency is measured from the event's
//! `timestamp`, which the hub stamps just before the batch's commit (fsync), to the moment a client has parsed
//! the message: an upper bound on commit → client.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::event::Timestamp;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

struct Options {
    clients: usize,
    rate: u64,
    seconds: u64,
}

fn options() -> Options {
    let mut options = Options {
        clients: 1000,
        rate: 100,
        seconds: 30,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        let value = || pair[1].parse().expect("a number");
        match pair[0].as_str() {
            "--clients" => options.clients = value() as usize,
            "--rate" => options.rate = value(),
            "--seconds" => options.seconds = value(),
            _ => {}
        }
    }
    options
}

/// Resident memory and CPU time (user + system, in clock ticks) of a process.
fn process_stats(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    (rss_kib, ticks)
}

/// What every client task records.
#[derive(Default)]
struct Shared {
    /// Event timestamp (stamped before the commit) to arrival, per push.
    latencies_us: Mutex<Vec<u32>>,
    /// `(seq, arrival)` per push, matched afterwards with the time the publisher's commit acknowledgement arrived.
    arrivals: Mutex<Vec<(i64, i64)>>,
    /// `seq` → when the publisher got its `201` (the commit is acknowledged), in microseconds since the epoch.
    acks: Mutex<std::collections::HashMap<i64, i64>>,
    received: AtomicU64,
    /// `switchboard:dropped` notices received (the server's own count of misses is read from /metrics).
    dropped_notices: AtomicU64,
}

async fn client(
    url: String,
    token: String,
    shared: Arc<Shared>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> u64 {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let open = ws.next().await.expect("open").expect("frame");
    assert!(open.to_text().expect("text").starts_with('0'));
    ws.send(Message::text(format!("40{}", json!({"token": token}))))
        .await
        .expect("connect");
    loop {
        let frame = ws.next().await.expect("connected").expect("frame");
        let text = frame.to_text().expect("text");
        if text == "2" {
            ws.send(Message::text("3")).await.expect("pong");
            continue;
        }
        assert!(text.starts_with("40{\"sid\""), "{frame:?}");
        break;
    }
    ready.send(()).await.expect("ready");
    drop(ready);
    let mut latencies = Vec::new();
    let mut arrivals = Vec::new();
    let mut count = 0u64;
    let mut unreported = 0u64;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let text = text.as_str();
        if text == "2" {
            let _ = ws.send(Message::text("3")).await;
            continue;
        }
        if !text.starts_with("42") {
            continue;
        }
        if text.starts_with("42[\"switchboard:dropped\"") {
            shared.dropped_notices.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Only the timestamp is read: the client's own parsing should not be what is measured.
        const FIELD: &str = "\"timestamp\":\"";
        let Some(stamp) = text
            .find(FIELD)
            .and_then(|i| text.get(i + FIELD.len()..i + FIELD.len() + 27))
            .and_then(Timestamp::parse_rfc3339)
        else {
            continue;
        };
        let now = Timestamp::now();
        latencies.push((now.0 - stamp.0).max(0) as u32);
        const SEQ: &str = "\"seq\":";
        if let Some(seq) = text.find(SEQ).and_then(|i| {
            let digits = &text[i + SEQ.len()..];
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            digits[..end].parse::<i64>().ok()
        }) {
            arrivals.push((seq, now.0));
        }
        count += 1;
        unreported += 1;
        if unreported == 64 {
            shared.received.fetch_add(unreported, Ordering::Relaxed);
            shared.arrivals.lock().expect("lock").append(&mut arrivals);
            unreported = 0;
        }
        if arrivals.len() >= 4096 {
            shared.arrivals.lock().expect("lock").append(&mut arrivals);
        }
        if latencies.len() >= 4096 {
            shared
                .latencies_us
                .lock()
                .expect("lock")
                .append(&mut latencies);
        }
    }
    shared.received.fetch_add(unreported, Ordering::Relaxed);
    shared
        .latencies_us
        .lock()
        .expect("lock")
        .append(&mut latencies);
    count
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn run(options: Options) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = switchboard::auth::generate_key();
    let mut server = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "SWITCHBOARD_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        )
        .env("SWITCHBOARD_ADMIN_TOKEN", &admin)
        .env("SWITCHBOARD_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    let pid = server.id().expect("pid");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let key: Value = http
        .post(format!("{base}/api/keys"))
        .bearer_auth(&admin)
        .json(&json!({"orgId": "org-bench", "name": "bench"}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("json");
    let token = key["key"].as_str().expect("key").to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_before, _) = process_stats(pid);

    let shared = Arc::new(Shared::default());
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(options.clients);
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let connecting = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..options.clients {
        clients.spawn(client(
            url.clone(),
            token.clone(),
            shared.clone(),
            ready_tx.clone(),
        ));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(ready_tx);
    for _ in 0..options.clients {
        ready.recv().await.expect("a client connected");
    }
    let connect_time = connecting.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_idle, cpu_before) = process_stats(pid);
    let (_, own_cpu_before) = process_stats(std::process::id());

    let total = options.rate * options.seconds;
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    let start = tokio::time::Instant::now();
    let mut publishes = tokio::task::JoinSet::new();
    let load_started = Instant::now();
    for k in 0..total {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let (http, base, token, shared) =
            (http.clone(), base.clone(), token.clone(), shared.clone());
        publishes.spawn(async move {
            let body = json!({"eventType": "custom.bench.tick", "resourceType": "Appointment",
                "resourceId": format!("ap-{k}"), "data": {"k": k, "note": "x".repeat(200)}});
            let r = http
                .post(format!("{base}/api/events"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("publish");
            let acked = Timestamp::now();
            assert_eq!(r.status(), 201);
            let event: Value = r.json().await.expect("json");
            let seq = event["seq"].as_i64().expect("seq");
            shared.acks.lock().expect("lock").insert(seq, acked.0);
        });
    }
    while let Some(done) = publishes.join_next().await {
        done.expect("publish task");
    }
    let expected = total * options.clients as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load_time = load_started.elapsed();
    let (rss_loaded, cpu_after) = process_stats(pid);
    let (_, own_cpu_after) = process_stats(std::process::id());
    let ticks_per_sec = 100.0;
    let cpu = (cpu_after - cpu_before) as f64 / ticks_per_sec / load_time.as_secs_f64();
    let own_cpu = (own_cpu_after - own_cpu_before) as f64 / ticks_per_sec / load_time.as_secs_f64();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let _ = server.start_kill();
    let _ = server.wait().await;
    let mut per_client = Vec::new();
    while let Some(done) = clients.join_next().await {
        per_client.push(done.expect("client"));
    }

    let mut latencies = std::mem::take(&mut *shared.latencies_us.lock().expect("lock"));
    latencies.sort_unstable();
    let received = shared.received.load(Ordering::Relaxed);
    let acks = std::mem::take(&mut *shared.acks.lock().expect("lock"));
    let arrivals = std::mem::take(&mut *shared.arrivals.lock().expect("lock"));
    let mut from_ack: Vec<u32> = arrivals
        .iter()
        .filter_map(|(seq, at)| acks.get(seq).map(|acked| (at - acked).max(0) as u32))
        .collect();
    let before_ack = arrivals
        .iter()
        .filter(|(seq, at)| acks.get(seq).is_some_and(|acked| at < acked))
        .count();
    from_ack.sort_unstable();
    let commit_mean_ms = {
        let value = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        value("switchboard_commit_seconds_sum") / value("switchboard_commit_seconds_count") * 1000.0
    };
    let complete = per_client.iter().filter(|&&n| n == total).count();
    let dropped: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("switchboard_realtime_dropped_total"))
        .collect();
    println!(
        "Socket.IO fan-out: {} clients in one org room, {} events/s for {} s",
        options.clients, options.rate, options.seconds
    );
    println!(
        "  connect {} clients:         {:.2} s",
        options.clients,
        connect_time.as_secs_f64()
    );
    println!("  events published:          {total}");
    println!(
        "  pushes received:           {received} of {expected} ({:.1}/s)",
        received as f64 / load_time.as_secs_f64()
    );
    println!(
        "  clients that got every event: {complete} of {}",
        options.clients
    );
    println!(
        "  drop notices / server drops: {} / {:?}",
        shared.dropped_notices.load(Ordering::Relaxed),
        dropped
    );
    println!(
        "  latency timestamp -> client (ms): p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "  latency commit ack -> client (ms): p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}  ({before_ack} of {} pushes arrived before the publisher's 201)",
        percentile(&from_ack, 0.50),
        percentile(&from_ack, 0.95),
        percentile(&from_ack, 0.99),
        percentile(&from_ack, 1.0),
        from_ack.len()
    );
    println!("  mean commit (fsync) time:  {commit_mean_ms:.1} ms");
    println!(
        "  server RSS: {:.1} MiB before, {:.1} MiB with {} idle clients ({:.1} KiB per connection), {:.1} MiB under load",
        rss_before as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        options.clients,
        (rss_idle.saturating_sub(rss_before)) as f64 / options.clients as f64,
        rss_loaded as f64 / 1024.0
    );
    println!(
        "  CPU under load: server {:.0}%, load clients {:.0}% of one core",
        cpu * 100.0,
        own_cpu * 100.0
    );
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(options));
}
