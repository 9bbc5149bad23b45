//! MLLP listener and sender tests over real TCP: an independent client (the python `hl7` package), raw sockets
//! for framing edge cases, TLS, the sender, the `send` CLI and `POST /api/hl7/send`, and a kill -9 test.

mod framing;
mod interop;
mod kill;
mod sender;
mod tls;

use crate::helpers::{spawn_app_with, TestApp};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_hl7::framing::{encode_frame, MllpDecoder};
use switchboard_hl7::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ORG: &str = "hospital-a";

/// A sample message from the parser crate's test data.
pub fn sample(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../switchboard-hl7/tests/data/{name}.hl7",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn sample_path(name: &str) -> String {
    format!(
        "{}/../switchboard-hl7/tests/data/{name}.hl7",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A small valid ADT^A01 with the given control id.
pub fn adt(control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|SENDER|FAC|RECV|HUB|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\rEVN|A01|20240101120000\rPID|1||{control_id}^^^HOSP^MR||DOE^JANE\r"
    )
    .into_bytes()
}

/// An app whose default MLLP listener belongs to [`ORG`].
pub async fn mllp_app(adjust: impl FnOnce(&mut switchboard::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.mllp.org = ORG.into();
        adjust(c);
    })
    .await
}

/// A raw MLLP peer: writes bytes as told and reads ACK frames.
pub struct Peer<S> {
    pub stream: S,
    decoder: MllpDecoder,
}

impl Peer<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Peer::over(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    pub fn over(stream: S) -> Self {
        Peer {
            stream,
            decoder: MllpDecoder::new(1 << 20),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Frames and writes a message; an error when the connection is gone.
    pub async fn stream_write(&mut self, message: &[u8]) -> std::io::Result<()> {
        let mut framed = Vec::new();
        encode_frame(message, &mut framed);
        self.stream.write_all(&framed).await
    }

    /// The next ACK as text, or `None` when the connection ends first.
    pub async fn try_ack(&mut self) -> Option<String> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = self.decoder.decode().ok()?.frame {
                return Some(String::from_utf8_lossy(&frame).into_owned());
            }
            let n = self.stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    pub async fn send(&mut self, message: &[u8]) {
        let mut framed = Vec::new();
        encode_frame(message, &mut framed);
        self.write(&framed).await;
    }

    /// The next ACK frame, as raw bytes.
    pub async fn ack_bytes(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(frame) = self.decoder.decode().expect("ack framing").frame {
                    return frame;
                }
                let n = self.stream.read(&mut buf).await.expect("read");
                assert!(n > 0, "connection closed while waiting for an ACK");
                self.decoder.feed(&buf[..n]);
            }
        })
        .await
        .expect("ACK within 10 s")
    }

    pub async fn ack(&mut self) -> Message {
        Message::parse(&self.ack_bytes().await).expect("ACK parses")
    }

    /// True when the server closes the connection (EOF) within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 4096];
        matches!(
            tokio::time::timeout(within, async {
                loop {
                    match self.stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    }
                }
            })
            .await,
            Ok(())
        )
    }
}

/// (MSA-1, MSA-2) of an ACK.
pub fn msa(ack: &Message) -> (String, String) {
    (
        ack.get("MSA-1").map(|s| s.into_owned()).unwrap_or_default(),
        ack.get("MSA-2").map(|s| s.into_owned()).unwrap_or_default(),
    )
}

/// Events of `org` matching `query` (a query string without `?`), oldest first.
pub async fn history(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let body = app
        .get_json(key, &format!("/api/events?order=asc&limit=1000&{query}"))
        .await;
    body["events"].as_array().cloned().unwrap_or_default()
}
