//! One MLLP connection: read bytes, cut frames, answer each frame in order, and close cleanly.
//!
//! Partial input is the normal state: a frame may arrive in many reads and a read may hold many frames. Frames are
//! handled one at a time in arrival order (HL7 senders rely on order), each answered before the next is read from
//! the buffer. Bytes outside frames are dropped and logged; a truncated frame is reported and skipped; a frame
//! over the size limit gets a NAK and the connection is closed; so is a connection silent for the idle timeout.
//! On shutdown the message in hand is committed and acknowledged, then the connection closes.

use super::handler::{self, Reply};
use super::payload::ConnectionData;
use super::server::ListenerCtx;
use crate::event::{NewEvent, Source};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use switchboard_hl7::framing::{encode_frame, MllpDecoder};
use switchboard_hl7::message::encode_message;
use switchboard_hl7::FrameError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const READ_BUFFER: usize = 16 * 1024;

/// Serves one accepted socket (after the TLS handshake when the listener has TLS).
pub(crate) async fn serve(
    ctx: Arc<ListenerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let peer = peer.to_string();
    ctx.metrics.connection_opened(&peer);
    let tls = ctx.tls.is_some();
    emit_connection(&ctx, &ctx.types.opened, &peer, tls, None).await;
    let stats = match &ctx.tls {
        None => Conn::new(&ctx, &peer, stream).run(&shutdown).await,
        Some(acceptor) => {
            match tokio::time::timeout(ctx.settings.idle_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => Conn::new(&ctx, &peer, tls_stream).run(&shutdown).await,
                Ok(Err(err)) => Stats::closed(format!("TLS handshake failed: {err}")),
                Err(_) => Stats::closed("TLS handshake timed out".to_string()),
            }
        }
    };
    ctx.metrics
        .connection_closed(&peer, stats.messages, &stats.reason);
    emit_connection(&ctx, &ctx.types.closed, &peer, tls, Some(&stats)).await;
}

async fn emit_connection(
    ctx: &ListenerCtx,
    ty: &crate::event::EventType,
    peer: &str,
    tls: bool,
    stats: Option<&Stats>,
) {
    let data = ConnectionData {
        listener: &ctx.settings.name,
        peer,
        tls,
        messages: stats.map(|s| s.messages),
        bytes_received: stats.map(|s| s.bytes_in),
        bytes_sent: stats.map(|s| s.bytes_out),
        reason: stats.map(|s| s.reason.as_str()),
    };
    let Ok(raw) = serde_json::value::to_raw_value(&data) else {
        return;
    };
    let event = NewEvent::new(ty.clone(), &*ctx.settings.org, Source::MllpServer, raw)
        .actor(format!("mllp:{}", ctx.settings.name));
    if let Err(err) = ctx.hub.emit(event).await {
        tracing::warn!(listener = %ctx.settings.name, %peer, error = %err, event_type = %ty, "connection event not stored");
    }
}

struct Stats {
    messages: u64,
    bytes_in: u64,
    bytes_out: u64,
    reason: String,
}

impl Stats {
    fn closed(reason: String) -> Self {
        Stats {
            messages: 0,
            bytes_in: 0,
            bytes_out: 0,
            reason,
        }
    }
}

/// Why the read loop ended, or that it should go on.
enum Step {
    Continue,
    Close(String),
}

struct Conn<'a, S> {
    ctx: &'a ListenerCtx,
    peer: &'a str,
    stream: S,
    decoder: MllpDecoder,
    out: Vec<u8>,
    stats: Stats,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Conn<'a, S> {
    fn new(ctx: &'a ListenerCtx, peer: &'a str, stream: S) -> Self {
        Conn {
            ctx,
            peer,
            stream,
            decoder: MllpDecoder::new(ctx.settings.max_frame_bytes),
            out: Vec::with_capacity(1024),
            stats: Stats::closed(String::new()),
        }
    }

    async fn run(mut self, shutdown: &CancellationToken) -> Stats {
        let mut buf = vec![0u8; READ_BUFFER];
        let reason = loop {
            if let Step::Close(reason) = self.drain_frames(shutdown).await {
                break reason;
            }
            let read = tokio::select! {
                _ = shutdown.cancelled() => break "server shutting down".to_string(),
                read = tokio::time::timeout(self.ctx.settings.idle_timeout, self.stream.read(&mut buf)) => read,
            };
            match read {
                Err(_) => break "idle timeout".to_string(),
                Ok(Err(err)) => break format!("read failed: {err}"),
                Ok(Ok(0)) => {
                    let partial = self.decoder.partial_frame();
                    if partial.is_empty() {
                        break "peer closed".to_string();
                    }
                    self.ctx.metrics.frame_incomplete(self.peer, partial.len());
                    let head = partial
                        .get(..partial.len().min(switchboard_hl7::framing::REJECTED_HEAD))
                        .unwrap_or_default()
                        .to_vec();
                    handler::frame_error(
                        self.ctx,
                        self.peer,
                        &head,
                        "connection closed in the middle of a frame",
                    )
                    .await;
                    break "peer closed mid-frame".to_string();
                }
                Ok(Ok(n)) => {
                    self.stats.bytes_in += n as u64;
                    self.ctx.metrics.bytes_received(n);
                    self.decoder.feed(buf.get(..n).unwrap_or_default());
                }
            }
        };
        let _ = self.stream.shutdown().await;
        self.stats.reason = reason;
        self.stats
    }

    /// Answers every complete frame buffered so far.
    async fn drain_frames(&mut self, shutdown: &CancellationToken) -> Step {
        loop {
            if shutdown.is_cancelled() {
                // Frames not yet handled are not acknowledged: the sender will send them again.
                return Step::Close("server shutting down".into());
            }
            let decoded = match self.decoder.decode() {
                Ok(decoded) => decoded,
                Err(FrameError::TooLarge { limit }) => {
                    self.ctx.metrics.frame_too_large(self.peer, limit);
                    let head = self.decoder.take_rejected();
                    let text = format!("frame larger than {limit} bytes");
                    let started = Instant::now();
                    let reply = handler::frame_error(self.ctx, self.peer, &head, &text).await;
                    let _ = self.answer(reply, started).await;
                    return Step::Close("frame too large".into());
                }
                Err(FrameError::Truncated { discarded }) => {
                    // The sender gave up on that frame and started another: record it, do not answer it.
                    self.ctx.metrics.frame_truncated(self.peer, discarded);
                    let head = self.decoder.take_rejected();
                    handler::frame_error(
                        self.ctx,
                        self.peer,
                        &head,
                        "frame cut short by a new start block",
                    )
                    .await;
                    continue;
                }
                Err(other) => return Step::Close(format!("framing error: {other}")),
            };
            if decoded.discarded > 0 {
                self.ctx.metrics.discarded(self.peer, decoded.discarded);
            }
            let Some(frame) = decoded.frame else {
                return Step::Continue;
            };
            let started = Instant::now();
            let reply = handler::handle_frame(self.ctx, self.peer, &frame).await;
            self.stats.messages += 1;
            if let Step::Close(reason) = self.answer(reply, started).await {
                return Step::Close(reason);
            }
        }
    }

    /// Writes the ACK (if any) and records the metrics.
    async fn answer(&mut self, reply: Reply, started: Instant) -> Step {
        let code = reply.ack.as_ref().map(|_| reply.code);
        if let Some(ack) = reply.ack {
            self.out.clear();
            encode_frame(&encode_message(&ack), &mut self.out);
            let write = async {
                self.stream.write_all(&self.out).await?;
                self.stream.flush().await
            };
            match tokio::time::timeout(self.ctx.settings.idle_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Step::Close(format!("write failed: {err}")),
                Err(_) => return Step::Close("write timed out".into()),
            }
            self.stats.bytes_out += self.out.len() as u64;
            self.ctx.metrics.bytes_sent(self.out.len());
        }
        let since_commit = reply.committed.map(|c| c.elapsed());
        self.ctx
            .metrics
            .acked(code, since_commit, started.elapsed());
        Step::Continue
    }
}
