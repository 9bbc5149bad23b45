//! Switchboard against the seed baseline on the paths both implement (`POST /api/events`, webhook delivery):
//! reads two JSON reports and prints the figures side by side with their ratio.

use super::markdown::ms;
use serde_json::Value;
use std::fmt::Write;

fn f(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

fn api_path(report: &Value) -> Value {
    report
        .get("paths")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("path").and_then(Value::as_str) == Some("POST /api/events"))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// The comparison table, `a` = Switchboard, `b` = baseline.
pub fn render(a: &Value, b: &Value) -> String {
    let (pa, pb) = (api_path(a), api_path(b));
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| measure | Switchboard | baseline (EventEmitter2 + Bull) | ratio |"
    );
    let _ = writeln!(o, "|---|---|---|---|");
    let row = |o: &mut String, name: &str, x: f64, y: f64, as_ms: bool, higher_better: bool| {
        let show = |v: f64| if as_ms { ms(v) } else { format!("{v:.0}") };
        let r = if higher_better {
            ratio(x, y)
        } else {
            ratio(y, x)
        };
        let _ = writeln!(o, "| {name} | {} | {} | {r} |", show(x), show(y));
    };
    row(
        &mut o,
        "POST /api/events offered/s",
        f(&pa, &["offered_per_sec"]),
        f(&pb, &["offered_per_sec"]),
        false,
        true,
    );
    row(
        &mut o,
        "POST /api/events achieved/s",
        f(&pa, &["achieved_per_sec"]),
        f(&pb, &["achieved_per_sec"]),
        false,
        true,
    );
    for (name, key) in [
        ("p50", "p50_ms"),
        ("p95", "p95_ms"),
        ("p99", "p99_ms"),
        ("max", "max_ms"),
    ] {
        row(
            &mut o,
            &format!("POST /api/events {name}"),
            f(&pa, &["latency", key]),
            f(&pb, &["latency", key]),
            true,
            false,
        );
    }
    row(
        &mut o,
        "webhooks delivered",
        f(a, &["webhook", "delivered"]),
        f(b, &["webhook", "delivered"]),
        false,
        true,
    );
    row(
        &mut o,
        "webhooks undelivered at the end",
        f(a, &["webhook", "undelivered"]),
        f(b, &["webhook", "undelivered"]),
        false,
        false,
    );
    for (name, key) in [
        ("p50", "p50_ms"),
        ("p95", "p95_ms"),
        ("p99", "p99_ms"),
        ("max", "max_ms"),
    ] {
        row(
            &mut o,
            &format!("webhook commit → 2xx {name}"),
            f(a, &["webhook", "latency", key]),
            f(b, &["webhook", "latency", key]),
            true,
            false,
        );
    }
    row(
        &mut o,
        "webhook drain after load (s)",
        f(a, &["drain_secs"]),
        f(b, &["drain_secs"]),
        false,
        false,
    );
    let _ = writeln!(o, "\nRatios: higher is better for Switchboard (throughput: Switchboard / baseline; latency: baseline / Switchboard).");
    o
}
