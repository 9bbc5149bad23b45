//! Zero loss under `kill -9`: a child `switchboard serve` is killed mid-stream; after a restart every event whose
//! publish got a 201 is in the history exactly once, with its audit entry.

use reqwest::Client;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Server {
    pub child: Child,
    pub base: String,
    /// MLLP address (from `SWITCHBOARD_MLLP_ADDR`: a free port unless `extra_env` names one).
    pub mllp: String,
}

impl Server {
    /// Creates an API key for `org` with the admin token and returns the key.
    pub async fn org_key(&self, admin: &str, org: &str) -> String {
        let created: Value = Client::new()
            .post(format!("{}/api/keys", self.base))
            .bearer_auth(admin)
            .json(&json!({"orgId": org, "name": format!("{org} key")}))
            .send()
            .await
            .expect("key")
            .json()
            .await
            .expect("json");
        created["key"].as_str().expect("key").to_string()
    }
}

/// Starts the real binary on a free port with the given database and admin token.
pub async fn start_server(db_url: &str, admin: &str, extra_env: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mllp_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("serve")
        .env("SWITCHBOARD_MLLP_ADDR", format!("127.0.0.1:{mllp_port}"))
        .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_DATABASE_URL", db_url)
        .env("SWITCHBOARD_ADMIN_TOKEN", admin)
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut mllp = format!("127.0.0.1:{mllp_port}");
    for (k, v) in extra_env {
        cmd.env(k, v);
        if *k == "SWITCHBOARD_MLLP_ADDR" {
            mllp = v.to_string();
        }
    }
    let mut child = cmd.spawn().expect("spawn switchboard");
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await {
            if r.status().is_success() {
                return Server { child, base, mllp };
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("kill.db");
    let db_url = format!("sqlite://{}", db_path.display());
    let admin = switchboard::auth::generate_key();
    let mut server = start_server(&db_url, &admin, &[]).await;
    let client = Client::new();
    let key = server.org_key(&admin, "org-kill").await;

    let acked: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let emitters: Vec<_> = (0..32)
        .map(|task| {
            let (client, base, key, acked) = (client.clone(), server.base.clone(), key.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                for n in 0.. {
                    let body = json!({"eventType": "custom.kill.test", "data": {"task": task, "n": n, "pad": "x".repeat(200)}});
                    let Ok(r) = client.post(format!("{base}/api/events")).bearer_auth(&key).json(&body).send().await else {
                        return;
                    };
                    if r.status() != 201 {
                        return;
                    }
                    let Ok(event) = r.json::<Value>().await else { return };
                    let id = event["id"].as_str().unwrap_or_default().to_string();
                    acked.lock().expect("lock").insert(id, (task, n));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("wait");
    for e in emitters {
        e.await.expect("emitter");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 100,
        "the load ran ({} acknowledged)",
        acked.len()
    );

    let mut server = start_server(&db_url, &admin, &[]).await;
    let export = client
        .get(format!(
            "{}/api/events/export?format=ndjson&order=asc",
            server.base
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("text");
    let stored: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let stored_ids: HashSet<String> = stored
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect();
    let payloads: HashSet<(u64, u64)> = stored
        .iter()
        .map(|e| {
            (
                e["data"]["task"].as_u64().expect("t"),
                e["data"]["n"].as_u64().expect("n"),
            )
        })
        .collect();
    let missing: Vec<_> = acked
        .keys()
        .filter(|id| !stored_ids.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(payloads.len(), stored.len(), "no event stored twice");
    eprintln!(
        "kill test: {} acknowledged, {} stored (the rest committed but unanswered at the kill)",
        acked.len(),
        stored.len(),
    );

    // Every stored event is its own audit entry: the newest thousand are there, one per event.
    let audit: Value = client
        .get(format!(
            "{}/api/audit?action=event.emit&limit=1000",
            server.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let targets: HashSet<String> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["target"].as_str().expect("target").to_string())
        .collect();
    assert_eq!(targets.len(), stored.len().min(1000), "one entry per event");
    assert!(
        targets.is_subset(&stored_ids),
        "every entry names a stored event"
    );

    // SIGTERM: graceful shutdown, exit status 0.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = server.child.wait().expect("wait");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}
