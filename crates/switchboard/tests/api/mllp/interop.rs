//! An independent client: the python `hl7` package's `MLLPClient` (via `tests/py/send_files.py`) sends the sample
//! ADT, ORM, ORU and ISO-8859-1 messages; the ACKs are checked and so is the history, org by org.

use super::{history, mllp_app, msa, sample_path, ORG};
use crate::helpers::eventually;
use std::collections::HashMap;
use switchboard_hl7::Message;

/// Runs the python client on a blocking thread (the server shares this test's runtime).
async fn python_send(addr: std::net::SocketAddr, files: Vec<String>) -> Vec<(String, Message)> {
    let script = format!(
        "{}/../../tests/py/send_files.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .args(files)
            .output()
            .expect("python3 runs (pip install -r tests/requirements.txt)")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            let file = v["file"]
                .as_str()
                .expect("file")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let ack = Message::parse_str(v["ack"].as_str().expect("ack")).expect("ACK parses");
            (file, ack)
        })
        .collect()
}

#[tokio::test]
async fn python_hl7_client_gets_correct_acks_and_events_are_stored() {
    let app = mllp_app(|c| {
        c.mllp
            .facility_orgs
            .insert("GHH LAB".into(), "lab-org".into());
    })
    .await;
    let files: Vec<String> = ["adt_a01", "orm_o01", "oru_r01", "latin1_adt"]
        .iter()
        .map(|n| sample_path(n))
        .collect();
    let acks = python_send(app.mllp(), files).await;
    let by_file: HashMap<_, _> = acks.into_iter().collect();
    assert_eq!(by_file.len(), 4);

    let expect = [
        ("adt_a01.hl7", "AA", "MSG00001", "ADT^A01", ORG),
        ("orm_o01.hl7", "CA", "ORD000123", "ORM^O01", ORG), // MSH-15/16 set: enhanced mode
        (
            "oru_r01.hl7",
            "AA",
            "LAB20240315-0007",
            "ORU^R01",
            "lab-org",
        ), // MSH-4 mapped
        ("latin1_adt.hl7", "AA", "FR000042", "ADT^A04", ORG),
    ];
    for (file, code, control_id, _, _) in expect {
        let ack = &by_file[file];
        assert_eq!(
            msa(ack),
            (code.to_string(), control_id.to_string()),
            "{file}"
        );
        assert!(ack.segment("ERR", 1).is_none(), "{file}: no ERR on success");
    }
    // The ACK swaps sender and receiver and echoes version and charset.
    let adt = &by_file["adt_a01.hl7"];
    assert_eq!(adt.get("MSH-3").as_deref(), Some("GHH LAB, INC."));
    assert_eq!(adt.get("MSH-5").as_deref(), Some("ADT1"));
    assert_eq!(adt.get("MSH-12").as_deref(), Some("2.5.1"));
    assert_eq!(adt.get("MSH-9").as_deref(), Some("ACK^A01^ACK"));
    assert_eq!(
        by_file["latin1_adt.hl7"].get("MSH-18").as_deref(),
        Some("8859/1")
    );

    let key = app.org_key(ORG).await;
    let lab_key = app.org_key("lab-org").await;
    for (file, _, control_id, message_type, org) in expect {
        let k = if org == ORG { &key } else { &lab_key };
        let events = history(
            &app,
            k,
            &format!("messageType={}", message_type.replace('^', "%5E")),
        )
        .await;
        let types: Vec<&str> = events
            .iter()
            .filter(|e| e["messageControlId"] == control_id)
            .map(|e| e["eventType"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            types,
            ["hl7.received", "hl7.parsed", "hl7.validated"],
            "{file}"
        );
        let received = &events[0];
        assert_eq!(received["orgId"], org, "{file}");
        assert_eq!(received["source"], "mllp-server");
        assert_eq!(received["data"]["listener"], "default");
        assert!(received["data"]["raw"]
            .as_str()
            .expect("raw")
            .starts_with("MSH|^~\\&|"));
        assert_eq!(received["data"]["message"]["segments"][0]["name"], "MSH");
    }
    // Tenants are walls: the hospital key does not see the lab's ORU, and the other way round.
    let seen: Vec<_> = history(&app, &key, "eventType=hl7.received").await;
    assert!(seen.iter().all(|e| e["orgId"] == ORG));
    assert_eq!(seen.len(), 3);
    assert_eq!(
        history(&app, &lab_key, "eventType=hl7.received")
            .await
            .len(),
        1
    );

    // ISO-8859-1 text arrived intact: the structured view holds decoded Unicode.
    let latin = history(&app, &key, "messageType=ADT%5EA04&eventType=hl7.received").await;
    let pid = &latin[0]["data"]["message"]["segments"][2];
    assert_eq!(pid["name"], "PID");
    assert_eq!(pid["fields"][4][0], "L\u{e9}vesque");
    assert_eq!(latin[0]["data"]["charset"], "8859/1");

    // One connection: opened and closed, with the peer and the listener.
    eventually("connection events", || async {
        let opened = history(&app, &key, "eventType=connection.opened").await;
        let closed = history(&app, &key, "eventType=connection.closed").await;
        opened.len() == 1 && closed.len() == 1 && closed[0]["data"]["messages"] == 4
    })
    .await;
}
