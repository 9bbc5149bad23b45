//! The MLLP path: connections that each send HL7 ADT^A01 messages (framed `0x0B … 0x1C 0x0D`) on their share of
//! the schedule, one at a time as real senders do, and wait for the ACK. An operation is acknowledged by an
//! `AA` (or `CA`) whose MSA-2 echoes the message's control id, which is the id recorded.

use super::pacer::Schedule;
use super::PathStats;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// An ADT^A01 with control id `control_id` and patient id `patient_id`, segments ended by CR. Every admission is a
/// new visit: the visit number (PV1-19) is `V` and the control id, so the transformer creates an Encounter per
/// message instead of updating one.
pub fn adt_a01(control_id: &str, patient_id: &str) -> String {
    [
        format!("MSH|^~\\&|LOADGEN|LOAD HOSPITAL|SWITCHBOARD|HUB|20260101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1"),
        "EVN|A01|20260101120000".to_string(),
        format!("PID|1||{patient_id}^^^LOAD^MR||Load^Test^Q||19800101|F|||1 Main St^^Springfield^IL^62701||555-0100"),
        format!("PV1|1|I|3B^301^1^LOAD||||1234^Attending^Alice|||MED||||ADM|||||V{control_id}|||||||||||||||||||||||||20260101120000"),
    ]
    .join("\r")
        + "\r"
}

/// Wraps a message in an MLLP frame.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&END);
    out
}

/// The ACK code (MSA-1) and the control id it answers (MSA-2), from an ACK message.
pub fn parse_ack(ack: &str) -> Option<(String, String)> {
    let field_sep = ack.strip_prefix("MSH")?.chars().next()?;
    let msa = ack
        .split(['\r', '\n'])
        .find(|segment| segment.starts_with("MSA"))?;
    let mut fields = msa.split(field_sep).skip(1);
    let code = fields.next()?.to_string();
    let control = fields.next().unwrap_or_default().to_string();
    Some((code, control))
}

/// Takes one complete frame's content off the front of `buf`, if it holds one.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let start = buf.iter().position(|&b| b == START)?;
    let end = buf[start..].windows(2).position(|w| w == END)? + start;
    let content = buf[start + 1..end].to_vec();
    buf.drain(..end + 2);
    Some(content)
}

/// Sender connection `conn` of `connections`: runs operations `conn`, `conn + connections`, … of `schedule`.
pub async fn run_connection(
    addr: String,
    conn: usize,
    connections: usize,
    schedule: Schedule,
) -> PathStats {
    let mine: Vec<u64> = (conn as u64..schedule.total())
        .step_by(connections.max(1))
        .collect();
    let mut stats = PathStats::default();
    let mut stream = match TcpStream::connect(&addr).await {
        Ok(s) => s,
        Err(_) => {
            stats.errors.insert("connect".into(), mine.len() as u64);
            return stats;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut broken = false;
    let end = schedule.start + schedule.duration;
    let count = mine.len() as u64;
    for (done, i) in mine.into_iter().enumerate() {
        let due = schedule.due(i);
        tokio::time::sleep_until(due).await;
        if Instant::now() >= end {
            // The window closed while this connection was still behind: the rest is never sent.
            stats.unsent = count - done as u64;
            break;
        }
        stats.started(due, Instant::now());
        if broken {
            stats.record(due, Instant::now(), Err("connection lost".into()));
            continue;
        }
        let control_id = format!("L{i}");
        let message = adt_a01(&control_id, &format!("MRN{i}"));
        let result = exchange(&mut stream, &mut buf, &message, &control_id).await;
        if matches!(&result, Err(e) if e != "nak") {
            broken = true;
        }
        stats.record(due, Instant::now(), result);
    }
    stats
}

async fn exchange(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    message: &str,
    control_id: &str,
) -> Result<String, String> {
    stream
        .write_all(&frame(message))
        .await
        .map_err(|_| "write".to_string())?;
    let deadline = Instant::now() + ACK_TIMEOUT;
    loop {
        if let Some(content) = take_frame(buf) {
            let text = String::from_utf8_lossy(&content);
            return match parse_ack(&text) {
                Some((code, control))
                    if (code == "AA" || code == "CA") && control == control_id =>
                {
                    Ok(control)
                }
                Some(_) => Err("nak".into()),
                None => Err("bad ack".into()),
            };
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| "ack timeout".to_string())?
            .map_err(|_| "read".to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_acks() {
        let msg = adt_a01("C1", "P1");
        assert!(msg.starts_with("MSH|^~\\&|LOADGEN"));
        let pv1 = msg.split('\r').find(|s| s.starts_with("PV1")).expect("PV1");
        assert_eq!(
            pv1.split('|').nth(19),
            Some("VC1"),
            "the visit number follows the control id"
        );
        let mut buf = b"junk".to_vec();
        buf.extend(frame(
            "MSH|^~\\&|A|B|C|D|||ACK^A01^ACK|9|P|2.5.1\rMSA|AA|C1\r",
        ));
        buf.extend(&frame("partial")[..4]);
        let content = take_frame(&mut buf).expect("a frame");
        let text = String::from_utf8_lossy(&content);
        assert_eq!(parse_ack(&text), Some(("AA".into(), "C1".into())));
        assert_eq!(buf, frame("partial")[..4].to_vec());
        assert!(take_frame(&mut buf).is_none());
        assert_eq!(parse_ack("garbage"), None);
    }
}
