//! Runs the Node clients in `tests/js` and reads what they print (one JSON object a line).

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(10);

/// `tests/js` at the repository root; its `node_modules` come from `npm ci` (scripts/test.sh runs it).
pub fn js_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/js"));
    assert!(
        dir.join("node_modules/socket.io-client").is_dir(),
        "the Node test clients are not installed: run `npm ci` in tests/js (scripts/test.sh does it)"
    );
    dir
}

/// A running Node script.
pub struct NodeProcess {
    _child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    backlog: Vec<Value>,
}

impl NodeProcess {
    pub fn spawn(script: &str, args: &[String]) -> NodeProcess {
        let dir = js_dir();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if tx.send(value).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("node: {line}"),
                }
            }
        });
        NodeProcess {
            _child: child,
            stdin,
            lines,
            backlog: Vec::new(),
        }
    }

    pub async fn send(&mut self, command: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let mut line = command.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to node");
        stdin.flush().await.expect("flush");
    }

    /// Waits for the first line (kept back or new) that `matches`; other lines are kept for later.
    pub async fn expect(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&matches) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if matches(&line) => return line,
                Ok(Some(line)) => self.backlog.push(line),
                Ok(None) => panic!(
                    "node exited while waiting for {what}; saw {:?}",
                    self.backlog
                ),
                Err(_) => panic!("timed out waiting for {what}; saw {:?}", self.backlog),
            }
        }
    }

    /// Everything printed so far plus whatever arrives within `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut all = std::mem::take(&mut self.backlog);
        while let Ok(Some(line)) = tokio::time::timeout(quiet, self.lines.recv()).await {
            all.push(line);
        }
        all
    }
}

/// Socket.IO clients (socket.io-client v4) in one Node process, named by the test.
pub struct SocketIoClients {
    node: NodeProcess,
    next_ref: u64,
}

impl SocketIoClients {
    pub fn start(server_url: &str) -> Self {
        SocketIoClients {
            node: NodeProcess::spawn("sio-driver.mjs", &[server_url.to_string()]),
            next_ref: 0,
        }
    }

    /// Connects and returns the outcome: a `connect` or a `connect_error` line.
    pub async fn connect(&mut self, client: &str, auth: Value) -> Value {
        self.connect_with(client, auth, json!(["websocket"])).await
    }

    pub async fn connect_with(&mut self, client: &str, auth: Value, transports: Value) -> Value {
        self.node
            .send(
                json!({"op": "connect", "client": client, "auth": auth, "transports": transports}),
            )
            .await;
        self.node
            .expect(&format!("{client} to connect"), |l| {
                l["client"] == client && (l["type"] == "connect" || l["type"] == "connect_error")
            })
            .await
    }

    /// Connects and panics unless it worked.
    pub async fn connected(&mut self, client: &str, auth: Value) {
        let outcome = self.connect(client, auth).await;
        assert_eq!(outcome["type"], "connect", "{client}: {outcome}");
    }

    /// Emits with an acknowledgement and returns the server's answer.
    pub async fn emit(&mut self, client: &str, event: &str, data: Value) -> Value {
        self.next_ref += 1;
        let reference = self.next_ref;
        self.node
            .send(json!({"op": "emit", "client": client, "event": event, "data": data, "ref": reference}))
            .await;
        let line = self
            .node
            .expect(&format!("ack {reference} for {client}"), |l| {
                l["client"] == client && l["ref"] == reference
            })
            .await;
        assert_eq!(line["type"], "ack", "{line}");
        line["response"].clone()
    }

    /// The acknowledgement line of an emit sent with [`SocketIoClients::send`].
    pub async fn ack(&mut self, reference: i64) -> Value {
        self.node
            .expect(&format!("ack {reference}"), |l| l["ref"] == reference)
            .await
    }

    /// Sends a command without waiting for anything.
    pub async fn send(&mut self, command: Value) {
        self.node.send(command).await;
    }

    /// The next event `client` receives (any name).
    pub async fn next_event(&mut self, client: &str) -> Value {
        self.node
            .expect(&format!("an event for {client}"), |l| {
                l["client"] == client && l["type"] == "event"
            })
            .await
    }

    /// The next event named `name` for `client`.
    pub async fn event_named(&mut self, client: &str, name: &str) -> Value {
        self.node
            .expect(&format!("{name} for {client}"), |l| {
                l["client"] == client && l["type"] == "event" && l["name"] == name
            })
            .await
    }

    /// Waits for `client`'s disconnect line.
    pub async fn disconnected(&mut self, client: &str) -> Value {
        self.node
            .expect(&format!("{client} to be disconnected"), |l| {
                l["client"] == client && l["type"] == "disconnect"
            })
            .await
    }

    /// Every event received so far (and within `quiet`), per client.
    pub async fn events_of(&mut self, client: &str, quiet: Duration) -> Vec<Value> {
        let all = self.node.drain(quiet).await;
        let (mine, others): (Vec<Value>, Vec<Value>) = all
            .into_iter()
            .partition(|l| l["client"] == client && l["type"] == "event");
        self.node.backlog = others;
        mine
    }
}
