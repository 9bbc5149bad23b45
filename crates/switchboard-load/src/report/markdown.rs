//! The markdown summary of a [`Report`].

use super::Report;
use crate::stats::Summary;
use std::fmt::Write;

fn lat(s: &Summary) -> String {
    if s.count == 0 {
        return "– | – | – | –".into();
    }
    format!(
        "{} | {} | {} | {}",
        ms(s.p50_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        ms(s.max_ms)
    )
}

/// Milliseconds, with a sensible number of digits.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "**met**"
    } else {
        "**not met**"
    }
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let c = &r.config;
    let _ = writeln!(
        o,
        "### {:?} run, {} for {} s, {:.0} events/s offered\n",
        c.kind,
        r.started,
        c.duration.as_secs(),
        c.rate
    );
    let _ = writeln!(o, "| path | offered ops/s | achieved ops/s | acked / scheduled | errors, unsent | p50 | p95 | p99 | max | kept schedule |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for p in &r.paths {
        let errors: u64 = p.errors.values().sum();
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {} / {} | {}, {} unsent | {} | {} (max start lag {}) |",
            p.path,
            p.offered_per_sec,
            p.achieved_per_sec,
            p.acked,
            p.scheduled,
            errors,
            p.unsent,
            lat(&p.latency),
            if p.kept_schedule { "yes" } else { "no" },
            ms(p.max_start_lag_ms)
        );
    }
    let w = &r.webhook;
    let _ = writeln!(o, "| webhook: commit → first 2xx, retries included | – | – | {} / {} delivered | {} undelivered | {} | – |",
        w.delivered, w.expected, w.undelivered, lat(&w.latency));
    for live in r.sse.iter().chain(&r.socketio) {
        let _ = writeln!(
            o,
            "| {}: commit → received | – | – | {} / {} | {} missing, {} dup | {} | – |",
            live.client,
            live.received.min(live.expected),
            live.expected,
            live.missing,
            live.duplicates,
            lat(&live.latency)
        );
    }
    let _ = writeln!(
        o,
        "\nCommitted events in the load window: {} ({:.0} events/s, every type).",
        r.committed_events, r.committed_events_per_sec
    );
    if let Some(m) = r.mllp_events_per_message_measured {
        let types: Vec<String> = r
            .events_by_type
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "Events per MLLP message stored: {m:.2} (the schedule assumed {}). By type: {}.",
            c.mllp_events_per_message,
            types.join(", ")
        );
    }
    if let Some(h) = &r.history {
        let _ = writeln!(
            o,
            "History: {} events; missing acknowledged: api {}/{}, fhir {}/{}, mllp {}/{}.",
            h.events,
            h.api.missing,
            h.api.acked,
            h.fhir.missing,
            h.fhir.acked,
            h.mllp.missing,
            h.mllp.acked
        );
    }
    let b = &w.backoff;
    let _ = writeln!(o, "Webhook: {} requests, {} answered 500 by the receiver, {} duplicate successes, {} bad signatures, {} redrive(s), {} delivered only after a redrive; drain took {:.1} s{}.",
        w.requests, w.failed_requests, w.duplicates, r.bad_signatures, r.redrives, w.delivered_after_redrive, r.drain_secs,
        if r.drain_timed_out { " (timed out: undelivered ones may still be pending)" } else { "" });
    let _ = writeln!(
        o,
        "Backoff: {} gaps checked, {} early, {} more than 1 s late; lateness p50/p95/p99/max {}.",
        b.gaps_checked,
        b.early,
        b.late_over_1s,
        lat(&b.lateness).replace(" | ", " / ")
    );
    for g in &b.by_retry {
        let _ = writeln!(
            o,
            "  - retry {} (scheduled {} ms): {} gaps, lateness p50/p95/p99/max {}",
            g.retry,
            g.expected_ms,
            g.lateness.count,
            lat(&g.lateness).replace(" | ", " / ")
        );
    }
    let _ = writeln!(o, "\n| process | CPU s (load) | cores (load) | CPU s (run) | RSS start | RSS load end | RSS max | RSS end |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for p in &r.resources.processes {
        let _ = writeln!(
            o,
            "| {} ({}) | {:.1} | {:.2} | {:.1} | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            p.name,
            p.pid,
            p.cpu_secs_load,
            p.cores_load,
            p.cpu_secs_total,
            p.rss_start_mib,
            p.rss_load_end_mib,
            p.rss_max_mib,
            p.rss_end_mib
        );
    }
    if !r.timeline.is_empty() {
        let _ = writeln!(o, "\n| t (s) | server RSS | server threads | webhook deliveries open | listener lag | driver RSS |");
        let _ = writeln!(o, "|---|---|---|---|---|---|");
        let mib = |m: Option<f64>| m.map_or("–".to_string(), |m| format!("{m:.0} MiB"));
        for t in &r.timeline {
            let _ = writeln!(
                o,
                "| {:.0} | {} | {} | {:.0} | {:.0} | {} |",
                t.at_secs,
                mib(t.server_rss_mib),
                t.server_threads.map_or("–".to_string(), |n| n.to_string()),
                t.webhook_open,
                t.listener_lag,
                mib(t.driver_rss_mib)
            );
        }
    }
    let _ = writeln!(o, "\nMachine: {} CPUs, {:.0} % busy during the load (all processes), load average {:.1} at the end.",
        r.resources.cpus, r.resources.machine_busy_pct_load, r.resources.load_average_end);
    let t = &r.targets;
    let _ = writeln!(o, "\nTargets: ≥ 10,000 events/s {}; no backpressure {}; webhook p95 < 5 s {}; exact backoff (never early, p95 lateness ≤ {} ms) {}; zero loss {}.",
        yes(t.events_per_sec_10k), yes(t.no_backpressure), yes(t.webhook_p95_under_5s), super::EXACT_BACKOFF_P95_LATE_MS, yes(t.exact_backoff), yes(t.zero_loss));
    o
}
