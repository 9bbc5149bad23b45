//! Zero loss under `kill -9` for MLLP: 8 connections stream messages to a child `switchboard serve`, each waiting
//! for its ACK; the server is killed mid-stream; after a restart every message that got an AA is in the history.

use super::{adt, Peer};
use crate::kill::start_server;
use reqwest::Client;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_hl7_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}", dir.path().join("kill-mllp.db").display());
    let admin = switchboard::auth::generate_key();
    let env = [("SWITCHBOARD_MLLP_ORG", "org-mllp-kill")];
    let mut server = start_server(&db_url, &admin, &env).await;
    let addr: std::net::SocketAddr = server.mllp.parse().expect("mllp addr");

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let senders: Vec<_> = (0..8)
        .map(|conn| {
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                let mut peer = Peer::over(stream);
                for n in 0.. {
                    let id = format!("K{conn}-{n}");
                    if peer.stream_write(&adt(&id)).await.is_err() {
                        return;
                    }
                    let Some(ack) = peer.try_ack().await else {
                        return;
                    };
                    if ack.contains(&format!("MSA|AA|{id}")) {
                        acked.lock().expect("lock").push(id);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("wait");
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "the load ran ({} acknowledged)",
        acked.len()
    );

    let mut server = start_server(&db_url, &admin, &env).await;
    let client = Client::new();
    let key = server.org_key(&admin, "org-mllp-kill").await;
    let export = client
        .get(format!(
            "{}/api/events/export?format=ndjson&eventType=hl7.received",
            server.base
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("text");
    let stored: HashSet<String> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["messageControlId"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "mllp kill test: {} acknowledged, {} stored",
        acked.len(),
        stored.len()
    );
    let _ = server.child.kill();
    let _ = server.child.wait();
}
