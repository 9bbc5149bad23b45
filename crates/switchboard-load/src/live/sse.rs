//! An SSE client of `GET /api/events/stream?token=…` (summary view): parses `data:` lines of each message.

use super::LiveStats;
use crate::clock::now_micros;
use tokio::sync::watch;

/// Streams until `stop` turns true, then returns what arrived.
pub async fn run(
    client: reqwest::Client,
    base: String,
    key: String,
    name: String,
    ready: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> LiveStats {
    let mut stats = LiveStats::new(&name);
    let url = format!("{base}/api/events/stream?token={key}");
    let mut response = match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            stats.error = Some(format!("http {}", r.status().as_u16()));
            let _ = ready.send(());
            return stats;
        }
        Err(e) => {
            stats.error = Some(e.to_string());
            let _ = ready.send(());
            return stats;
        }
    };
    stats.connected = true;
    let _ = ready.send(());
    let mut buf: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            chunk = response.chunk() => match chunk {
                Ok(Some(bytes)) => {
                    let at = now_micros();
                    buf.extend_from_slice(&bytes);
                    drain_messages(&mut buf, |data| {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
                            stats.arrived(&v, at);
                        }
                    });
                }
                Ok(None) => { stats.error = Some("stream ended".into()); break; }
                Err(e) => { stats.error = Some(e.to_string()); break; }
            }
        }
    }
    stats
}

/// Calls `on_data` with the `data` of every complete message in `buf` and removes them.
pub fn drain_messages(buf: &mut Vec<u8>, mut on_data: impl FnMut(&str)) {
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        let message = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 2);
        let data: Vec<&str> = message
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if !data.is_empty() {
            on_data(&data.join("\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_messages() {
        let mut buf =
            b"retry: 1000\n\n: keep-alive\n\nid: 1\ndata: {\"id\":\"a\"}\n\nid: 2\ndata: {\"id\""
                .to_vec();
        let mut got = Vec::new();
        drain_messages(&mut buf, |d| got.push(d.to_string()));
        assert_eq!(got, vec!["{\"id\":\"a\"}"]);
        assert_eq!(buf, b"id: 2\ndata: {\"id\"".to_vec());
    }
}
