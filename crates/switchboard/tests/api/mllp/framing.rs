//! Framing edge cases over raw TCP: every case is answered (or dropped) as documented and the server keeps
//! serving afterwards.

use super::{adt, history, mllp_app, msa, sample, Peer, ORG};
use crate::helpers::eventually;
use std::time::Duration;
use switchboard_hl7::framing::encode_frame;

fn framed(messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        encode_frame(m, &mut out);
    }
    out
}

#[tokio::test]
async fn split_frames_and_many_frames_per_packet() {
    let app = mllp_app(|_| {}).await;
    let mut peer = Peer::connect(app.mllp()).await;

    // One frame in many small writes.
    let wire = framed(&[&adt("SPLIT-1")]);
    for chunk in wire.chunks(7) {
        peer.write(chunk).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(msa(&peer.ack().await), ("AA".into(), "SPLIT-1".into()));

    // Three frames in one write: three ACKs, in order.
    peer.write(&framed(&[&adt("MANY-1"), &adt("MANY-2"), &adt("MANY-3")]))
        .await;
    for id in ["MANY-1", "MANY-2", "MANY-3"] {
        assert_eq!(msa(&peer.ack().await), ("AA".into(), id.into()));
    }

    // Frames split across writes at awkward places (inside the end marker).
    let wire = framed(&[&adt("EDGE-1"), &adt("EDGE-2")]);
    let cut = wire.len() / 2 + wire.len() / 4;
    let end_of_first = wire.iter().position(|&b| b == 0x1c).expect("end block") + 1;
    peer.write(&wire[..end_of_first]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    peer.write(&wire[end_of_first..cut]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    peer.write(&wire[cut..]).await;
    assert_eq!(msa(&peer.ack().await).1, "EDGE-1");
    assert_eq!(msa(&peer.ack().await).1, "EDGE-2");
}

#[tokio::test]
async fn lf_segments_garbage_and_truncated_frames() {
    let app = mllp_app(|_| {}).await;
    let key = app.org_key(ORG).await;
    let mut peer = Peer::connect(app.mllp()).await;

    // LF-separated segments parse like CR-separated ones.
    let lf = String::from_utf8(adt("LF-1"))
        .expect("utf8")
        .replace('\r', "\n");
    peer.send(lf.as_bytes()).await;
    assert_eq!(msa(&peer.ack().await), ("AA".into(), "LF-1".into()));
    let received = history(&app, &key, "eventType=hl7.received").await;
    let segments = &received[0]["data"]["message"]["segments"];
    assert_eq!(segments.as_array().map(Vec::len), Some(3));
    assert_eq!(segments[2]["fields"][4][0], "DOE");

    // Garbage before, between and after frames is dropped.
    let mut wire = b"hello\r\n".to_vec();
    wire.extend(framed(&[&adt("G-1")]));
    wire.extend_from_slice(b"\r\n\x00noise");
    wire.extend(framed(&[&adt("G-2")]));
    wire.extend_from_slice(b"\n");
    peer.write(&wire).await;
    assert_eq!(msa(&peer.ack().await).1, "G-1");
    assert_eq!(msa(&peer.ack().await).1, "G-2");

    // A frame cut short by a new start block: not answered, recorded as hl7.error; the next frame is fine.
    let mut wire = b"\x0bMSH|^~\\&|S|FAC|R|H|1||ADT^A01|CUT-1|P|2.5\rPID|1|".to_vec();
    wire.extend(framed(&[&adt("AFTER-CUT")]));
    peer.write(&wire).await;
    assert_eq!(msa(&peer.ack().await).1, "AFTER-CUT");
    let errors = history(&app, &key, "eventType=hl7.error").await;
    let cut = errors
        .iter()
        .find(|e| e["messageControlId"] == "CUT-1")
        .expect("hl7.error for the cut frame");
    assert_eq!(cut["data"]["stage"], "frame");
    assert_eq!(cut["messageType"], "ADT^A01");

    // Not HL7 at all: a NAK (AE, ERR) built from nothing, an hl7.error, and the connection stays usable.
    peer.send(b"this is not an HL7 message").await;
    let nak = peer.ack().await;
    assert_eq!(msa(&nak).0, "AE");
    assert!(nak.segment("ERR", 1).is_some());
    let errors = history(&app, &key, "eventType=hl7.error&messageType=UNKNOWN").await;
    assert_eq!(errors[0]["data"]["stage"], "parse");

    // Parses but fails validation: AR with ERR (unsupported version), and the control id echoed.
    peer.send(b"MSH|^~\\&|S|FAC|R|H|1||ADT^A01|BADVER|P|9.9\rPID|1")
        .await;
    let nak = peer.ack().await;
    assert_eq!(msa(&nak), ("AR".into(), "BADVER".into()));
    assert!(nak.get("ERR-3").is_some_and(|c| c.starts_with("203")));

    peer.send(&adt("STILL-OK")).await;
    assert_eq!(msa(&peer.ack().await), ("AA".into(), "STILL-OK".into()));
}

#[tokio::test]
async fn oversized_frames_get_a_nak_and_the_connection_closes() {
    let app = mllp_app(|c| c.mllp.max_frame_bytes = 4096).await;
    let key = app.org_key(ORG).await;
    let mut peer = Peer::connect(app.mllp()).await;
    let mut big = adt("BIG-1");
    for _ in 0..40 {
        big.extend_from_slice(b"NTE|1||");
        big.extend(std::iter::repeat_n(b'x', 200));
        big.push(b'\r');
    }
    peer.send(&big).await;
    let nak = peer.ack().await;
    assert_eq!(
        msa(&nak),
        ("AR".into(), "BIG-1".into()),
        "NAK names the message from its MSH"
    );
    assert!(
        peer.closed_within(Duration::from_secs(5)).await,
        "connection closed after the NAK"
    );
    let errors = history(&app, &key, "eventType=hl7.error").await;
    assert_eq!(errors[0]["messageControlId"], "BIG-1");
    assert_eq!(errors[0]["data"]["stage"], "frame");

    // The server keeps serving.
    let mut peer = Peer::connect(app.mllp()).await;
    peer.send(&adt("SMALL-1")).await;
    assert_eq!(msa(&peer.ack().await).0, "AA");
}

/// The structured view is derived when an event is served, so the event limit applies to the event as served:
/// a message that fits but whose view would not is stored and served without the view (`message: null`).
#[tokio::test]
async fn a_message_whose_view_is_too_large_is_stored_without_it() {
    let app = mllp_app(|c| c.hub.max_event_bytes = 8192).await;
    let key = app.org_key(ORG).await;
    let mut peer = Peer::connect(app.mllp()).await;

    // 3,000 empty repetitions: 3 KB of HL7, over 9 KB of JSON view.
    let mut wide = adt("WIDE-1");
    wide.extend_from_slice(b"NTE|1||");
    wide.extend(std::iter::repeat_n(b'~', 3000));
    wide.push(b'\r');
    peer.send(&wide).await;
    assert_eq!(msa(&peer.ack().await), ("AA".into(), "WIDE-1".into()));
    peer.send(&adt("NARROW-1")).await;
    assert_eq!(msa(&peer.ack().await), ("AA".into(), "NARROW-1".into()));

    let received = history(&app, &key, "eventType=hl7.received").await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["messageControlId"], "WIDE-1");
    assert!(received[0]["data"]["message"].is_null());
    assert!(received[0]["data"]["raw"]
        .as_str()
        .is_some_and(|r| r.contains("NTE|1||~~~")));
    assert_eq!(received[1]["data"]["message"]["segments"][2]["name"], "PID");
}

#[tokio::test]
async fn disconnect_mid_frame_is_recorded_and_the_server_keeps_serving() {
    let app = mllp_app(|_| {}).await;
    let key = app.org_key(ORG).await;
    let mut peer = Peer::connect(app.mllp()).await;
    let wire = framed(&[&adt("HALF-1")]);
    peer.write(&wire[..wire.len() / 2]).await;
    drop(peer);
    eventually("hl7.error for the unfinished frame", || async {
        history(&app, &key, "eventType=hl7.error")
            .await
            .iter()
            .any(|e| e["messageControlId"] == "HALF-1" && e["data"]["stage"] == "frame")
    })
    .await;
    // Nothing was stored as received: the sender was never told AA.
    assert!(history(&app, &key, "eventType=hl7.received")
        .await
        .is_empty());
    let mut peer = Peer::connect(app.mllp()).await;
    peer.send(&adt("NEXT-1")).await;
    assert_eq!(msa(&peer.ack().await).0, "AA");
    eventually("connection.closed says why", || async {
        history(&app, &key, "eventType=connection.closed")
            .await
            .iter()
            .any(|e| e["data"]["reason"] == "peer closed mid-frame")
    })
    .await;
}

#[tokio::test]
async fn latin1_bytes_are_decoded_and_the_ack_is_latin1() {
    let app = mllp_app(|_| {}).await;
    let mut peer = Peer::connect(app.mllp()).await;
    peer.send(&sample("latin1_adt")).await;
    let raw_ack = peer.ack_bytes().await;
    let ack = switchboard_hl7::Message::parse(&raw_ack).expect("ACK");
    assert_eq!(msa(&ack), ("AA".into(), "FR000042".into()));
    // MSH-4 of the original (HÔPITAL MONTRÉAL) becomes MSH-6 of the ACK, in ISO-8859-1 bytes.
    assert_eq!(
        ack.get("MSH-6").as_deref(),
        Some("H\u{d4}PITAL MONTR\u{c9}AL")
    );
    assert!(
        raw_ack.windows(2).any(|w| w == b"\xd4P"),
        "sent as ISO-8859-1, not UTF-8"
    );
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let app = mllp_app(|c| c.mllp.idle_timeout_secs = 1).await;
    let mut peer = Peer::connect(app.mllp()).await;
    peer.send(&adt("IDLE-1")).await;
    assert_eq!(msa(&peer.ack().await).0, "AA");
    assert!(peer.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn accept_ack_type_never_sends_no_ack_but_stores_the_message() {
    let app = mllp_app(|_| {}).await;
    let key = app.org_key(ORG).await;
    let mut peer = Peer::connect(app.mllp()).await;
    peer.send(b"MSH|^~\\&|S|FAC|R|H|1||ADT^A01|NE-1|P|2.5|||NE|NE\rPID|1")
        .await;
    peer.send(b"MSH|^~\\&|S|FAC|R|H|1||ADT^A01|AL-1|P|2.5|||AL|NE\rPID|1")
        .await;
    let ack = peer.ack().await;
    assert_eq!(
        msa(&ack),
        ("CA".into(), "AL-1".into()),
        "only the AL message is acknowledged"
    );
    let received = history(&app, &key, "eventType=hl7.received").await;
    assert_eq!(received.len(), 2);
}
