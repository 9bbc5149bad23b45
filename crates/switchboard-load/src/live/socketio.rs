//! Socket.IO clients through `tests/js/sio-driver.mjs` (socket.io-client 4.8.1): the driver writes one `connect`
//! command per client and reads the helper's JSON lines (`connect`, `event` with its receive time in ms, …).

use super::LiveStats;
use serde_json::json;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The running helper and its clients.
pub struct SocketIo {
    child: Child,
    task: tokio::task::JoinHandle<Vec<LiveStats>>,
}

impl SocketIo {
    /// Starts `node <script>` with `clients` sockets following `event_type`; returns once all answered.
    pub async fn start(
        script: &str,
        base: &str,
        key: &str,
        clients: usize,
        event_type: &str,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<SocketIo> {
        let mut child = Command::new("node")
            .arg(script)
            .arg(base)
            .arg("/socket.io/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        for c in 0..clients {
            let cmd = json!({"op": "connect", "client": format!("sio{c}"),
                "auth": {"token": key, "events": [event_type]}, "transports": ["websocket"]});
            stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        }
        stdin.flush().await?;
        let (ready_tx, mut ready_rx) = watch::channel(0usize);
        let task = tokio::spawn(read_lines(stdout, stdin, clients, ready_tx, stop));
        let wait = async {
            while *ready_rx.borrow() < clients {
                if ready_rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), wait).await;
        Ok(SocketIo { child, task })
    }

    /// The helper's pid (for CPU accounting).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the reader (which ends when `stop` turns true) and stops the helper.
    pub async fn finish(mut self) -> Vec<LiveStats> {
        let stats = self.task.await.unwrap_or_default();
        let _ = self.child.kill().await;
        stats
    }
}

async fn read_lines(
    stdout: tokio::process::ChildStdout,
    _stdin: tokio::process::ChildStdin,
    clients: usize,
    ready: watch::Sender<usize>,
    mut stop: watch::Receiver<bool>,
) -> Vec<LiveStats> {
    let mut stats: Vec<LiveStats> = (0..clients)
        .map(|c| LiveStats::new(&format!("sio{c}")))
        .collect();
    let mut lines = BufReader::new(stdout).lines();
    let mut answered = 0;
    loop {
        let line = tokio::select! {
            _ = stop.changed() => break,
            line = lines.next_line() => match line { Ok(Some(l)) => l, _ => break },
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let index = v
            .get("client")
            .and_then(|c| c.as_str())
            .and_then(|c| c.strip_prefix("sio"))
            .and_then(|n| n.parse::<usize>().ok());
        let Some(s) = index.and_then(|i| stats.get_mut(i)) else {
            continue;
        };
        match v.get("type").and_then(|t| t.as_str()) {
            Some("connect") => {
                s.connected = true;
                answered += 1;
                let _ = ready.send(answered);
            }
            Some("connect_error") | Some("disconnect") => {
                s.error = v.get("message").or(v.get("reason")).map(|m| m.to_string());
                answered += 1;
                let _ = ready.send(answered);
            }
            Some("event") => {
                let at = v.get("at").and_then(|a| a.as_i64()).unwrap_or(0) * 1000;
                let payload = v.get("payload").cloned().unwrap_or_default();
                if v.get("name").and_then(|n| n.as_str()) == Some("switchboard:dropped") {
                    s.dropped_reported +=
                        payload.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
                } else {
                    s.arrived(&payload, at);
                }
            }
            _ => {}
        }
    }
    stats
}
