//! The MLLP sender: connection reuse, ACK matching (a late or foreign ACK is an error, never matched to the next
//! message), retries; the `switchboard send` CLI; and `POST /api/hl7/send` with its allow list.

use super::{adt, history, mllp_app, sample_path, ORG};
use serde_json::json;
use std::time::Duration;
use switchboard::mllp::{MllpClient, SendError, SendOptions};
use switchboard_hl7::framing::{encode_frame, MllpDecoder};
use switchboard_hl7::{build_ack, AckCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn quick() -> SendOptions {
    SendOptions {
        timeout: Duration::from_millis(500),
        retries: 1,
        backoff: Duration::from_millis(10),
        ..Default::default()
    }
}

#[tokio::test]
async fn client_reuses_its_connection() {
    let app = mllp_app(|_| {}).await;
    let key = app.org_key(ORG).await;
    let mut client = MllpClient::new(app.mllp().to_string(), quick());
    for id in ["C-1", "C-2", "C-3"] {
        let reply = client.send(&adt(id)).await.expect("sent");
        assert_eq!(
            (reply.code, reply.control_id.as_str(), reply.attempts),
            (AckCode::AA, id, 1)
        );
    }
    assert_eq!(
        history(&app, &key, "eventType=connection.opened")
            .await
            .len(),
        1
    );
}

/// A fake destination: answers each message with whatever `answer` returns (or nothing), after `delay`.
async fn fake_destination(
    answer: impl Fn(&Message, usize) -> Option<(Vec<u8>, Duration)> + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            let first = n;
            n += 100;
            tokio::spawn(async move {
                let mut dec = MllpDecoder::default();
                let mut buf = [0u8; 4096];
                let mut count = first;
                while let Ok(read) = socket.read(&mut buf).await {
                    if read == 0 {
                        return;
                    }
                    dec.feed(&buf[..read]);
                    while let Ok(d) = dec.decode() {
                        let Some(frame) = d.frame else { break };
                        let msg = Message::parse(&frame).expect("message");
                        if let Some((bytes, delay)) = answer(&msg, count) {
                            tokio::time::sleep(delay).await;
                            let mut out = Vec::new();
                            encode_frame(&bytes, &mut out);
                            if socket.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                        count += 1;
                    }
                }
            });
        }
    });
    addr
}

fn ack_for(msg: &Message, code: AckCode) -> Vec<u8> {
    build_ack(msg, code, None, "20240101", "A1").into_bytes()
}

#[tokio::test]
async fn a_foreign_ack_is_an_error_not_an_answer() {
    let addr = fake_destination(|msg, _| {
        let wrong =
            Message::parse_str(&String::from_utf8_lossy(&adt("SOMEONE-ELSE"))).expect("msg");
        let _ = msg;
        Some((ack_for(&wrong, AckCode::AA), Duration::ZERO))
    })
    .await;
    let mut client = MllpClient::new(addr.to_string(), quick());
    let err = client.send(&adt("MINE")).await.expect_err("mismatch");
    assert!(
        matches!(err, SendError::Mismatch { ref got, .. } if got == "SOMEONE-ELSE"),
        "{err}"
    );
}

#[tokio::test]
async fn a_late_ack_is_never_matched_to_the_next_message() {
    // SLOW is answered after 800 ms (past the 500 ms timeout), anything else at once. On a reused connection
    // the late ACK for SLOW would arrive before the ACK for NEXT.
    let addr = fake_destination(|msg, _| {
        let slow = msg.control_id().as_deref() == Some("SLOW");
        let delay = if slow {
            Duration::from_millis(800)
        } else {
            Duration::ZERO
        };
        Some((ack_for(msg, AckCode::AA), delay))
    })
    .await;
    let mut client = MllpClient::new(
        addr.to_string(),
        SendOptions {
            retries: 0,
            ..quick()
        },
    );
    let err = client.send(&adt("SLOW")).await.expect_err("timeout");
    assert!(matches!(err, SendError::Timeout { .. }), "{err}");
    let reply = client
        .send(&adt("NEXT"))
        .await
        .expect("answered on a fresh connection");
    assert_eq!(
        (reply.code, reply.control_id.as_str()),
        (AckCode::AA, "NEXT")
    );

    // A NAK is an answer, not a failure: returned at once, not retried.
    let nak = fake_destination(|msg, _| Some((ack_for(msg, AckCode::AE), Duration::ZERO))).await;
    let mut client = MllpClient::new(nak.to_string(), quick());
    let reply = client.send(&adt("NAKED")).await.expect("answered");
    assert_eq!((reply.code, reply.attempts), (AckCode::AE, 1));
}

#[tokio::test]
async fn retries_reach_a_destination_that_recovers() {
    // Drops the first message without answering (closes), then answers.
    let addr =
        fake_destination(|msg, n| (n >= 100).then(|| (ack_for(msg, AckCode::AA), Duration::ZERO)))
            .await;
    let mut client = MllpClient::new(
        addr.to_string(),
        SendOptions {
            timeout: Duration::from_millis(300),
            ..quick()
        },
    );
    let reply = client
        .send(&adt("RETRY"))
        .await
        .expect("second attempt answers");
    assert_eq!((reply.code, reply.attempts), (AckCode::AA, 2));
}

#[tokio::test]
async fn send_cli_prints_ack_codes_and_fails_on_a_nak() {
    let app = mllp_app(|_| {}).await;
    let to = app.mllp().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let many = dir.path().join("many.hl7");
    let text = format!(
        "{}\n{}\n",
        String::from_utf8_lossy(&adt("CLI-1")).replace('\r', "\n"),
        String::from_utf8_lossy(&adt("CLI-2")).replace('\r', "\n")
    );
    std::fs::write(&many, text).expect("write");
    let run = |files: Vec<String>| {
        let to = to.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .args(["send", "--to", &to])
                .args(files)
                .env("SWITCHBOARD_LOG", "error")
                .output()
                .expect("run switchboard send")
        })
    };
    let out = run(vec![many.display().to_string(), sample_path("orm_o01")])
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes: Vec<&str> = stdout
        .lines()
        .map(|l| l.rsplit('\t').next().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["AA", "AA", "CA"], "{stdout}");

    let bad = dir.path().join("bad.hl7");
    std::fs::write(&bad, "MSH|^~\\&|S|F|R|H|1||ADT^A01|V9|P|9.9\nPID|1\n").expect("write");
    let out = run(vec![bad.display().to_string()]).await.expect("join");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("V9\tAR"));
}

#[tokio::test]
async fn api_send_reaches_allowed_destinations_only() {
    let app = mllp_app(|_| {}).await;
    // The app's own listener is the destination; it must be on the allow list, which needs its port first.
    let destination = app.mllp().to_string();
    let (config, dir) = app.stop().await;
    let mut config = config;
    config.mllp.addr = destination.parse().expect("addr");
    config.hl7.destinations = vec![destination.clone()];
    let app = crate::helpers::start(config, dir).await;
    let key = app.org_key(ORG).await;

    let message = String::from_utf8_lossy(&adt("API-1")).replace('\r', "\n");
    let r = app
        .client
        .post(app.url("/api/hl7/send"))
        .bearer_auth(&key)
        .json(&json!({"destination": destination, "message": message}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["ackCode"], "AA");
    assert_eq!(body["controlId"], "API-1");
    assert!(body["ack"].as_str().expect("ack").contains("MSA|AA|API-1"));
    let sent = history(&app, &key, "eventType=hl7.sent").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["orgId"], ORG);
    assert_eq!(sent[0]["source"], "mllp-client");
    assert_eq!(sent[0]["messageType"], "ADT^A01");
    assert_eq!(sent[0]["data"]["ackCode"], "AA");

    // Not on the allow list: 403 before any connection.
    let r = app
        .client
        .post(app.url("/api/hl7/send"))
        .bearer_auth(&key)
        .json(&json!({"destination": "127.0.0.1:1", "message": message}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    // Admin keys must name the org; an org key cannot name another.
    let r = app
        .client
        .post(app.url("/api/hl7/send"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"destination": destination, "message": message}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(app.url("/api/hl7/send"))
        .bearer_auth(&key)
        .json(&json!({"destination": destination, "message": message, "orgId": "other"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    // Not a message: 400.
    let r = app
        .client
        .post(app.url("/api/hl7/send"))
        .bearer_auth(&key)
        .json(&json!({"destination": destination, "message": "hello"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
}
