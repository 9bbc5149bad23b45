//! MLLP (Minimal Lower Layer Protocol) framing.
//!
//! On the wire every HL7 message is wrapped as
//! `0x0B <message bytes> 0x1C 0x0D`. This module provides [`encode_frame`] to
//! wrap an outgoing message and [`MllpDecoder`], an incremental decoder that
//! is fed whatever a socket read returned and hands back complete frames.
//!
//! # Decoder behaviour
//!
//! * **Partial input is normal.** [`MllpDecoder::decode`] returns a
//!   [`Decoded`] whose `frame` is `None` when no complete frame is buffered
//!   yet; feed more bytes and call it again.
//! * **Many frames per read / one frame over many reads** both work: call
//!   `decode` in a loop until `frame` is `None` after every `feed`.
//! * **Bytes outside a frame** (anything before a start block `0x0B`) are
//!   dropped and counted in [`Decoded::discarded`] so the caller can log them.
//! * **End marker.** A frame ends at `0x1C 0x0D`. As a leniency, a `0x1C`
//!   followed by any other byte also ends the frame; that other byte is then
//!   outside a frame and is discarded (and counted) unless it is `0x0B`.
//! * **Maximum size.** When the content of the current frame exceeds the
//!   configured maximum, `decode` returns [`FrameError::TooLarge`] as soon as
//!   that is known, without waiting for the end marker. The partial frame is
//!   dropped and the decoder goes back to looking for a start block; the
//!   caller is expected to NAK and close the connection.
//! * **Truncated frames.** A `0x0B` inside a frame means the sender gave up on
//!   the previous frame. The decoder drops the partial frame, returns
//!   [`FrameError::Truncated`] (carrying the number of dropped bytes) and
//!   restarts at the new start block, so the next `decode` call continues
//!   normally. The error is recoverable: see [`FrameError::is_recoverable`].
//!
//! * **What was dropped.** After `TooLarge` or `Truncated`,
//!   [`MllpDecoder::take_rejected`] returns the first bytes (at most
//!   [`REJECTED_HEAD`]) of the dropped frame, enough to read its MSH and
//!   answer or label it; [`MllpDecoder::partial_frame`] shows the frame in
//!   progress (for a peer that disconnects mid-frame).
//!
//! The decoder keeps one internal `Vec<u8>`; consumed bytes are removed
//! lazily (only when more input is needed), and each byte is scanned once even
//! when a frame arrives in many small pieces.

use crate::error::FrameError;

/// MLLP start block byte (vertical tab).
pub const START_BLOCK: u8 = 0x0B;
/// MLLP end block byte (file separator).
pub const END_BLOCK: u8 = 0x1C;
/// Carriage return that follows [`END_BLOCK`].
pub const CARRIAGE_RETURN: u8 = 0x0D;
/// Maximum frame size used by [`MllpDecoder::default`]: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;
/// How many bytes of a dropped frame [`MllpDecoder::take_rejected`] keeps.
pub const REJECTED_HEAD: usize = 4096;

/// Append `msg` wrapped in MLLP framing to `out`.
pub fn encode_frame(msg: &[u8], out: &mut Vec<u8>) {
    out.reserve(msg.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(msg);
    out.push(END_BLOCK);
    out.push(CARRIAGE_RETURN);
}

/// Result of one [`MllpDecoder::decode`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The next complete frame's content (without framing bytes), if any.
    pub frame: Option<Vec<u8>>,
    /// Bytes found outside any frame and dropped during this call.
    pub discarded: usize,
}

/// Incremental MLLP decoder. See the [module docs](self) for the rules.
///
/// ```
/// use switchboard_hl7::framing::{encode_frame, MllpDecoder};
///
/// let mut wire = Vec::new();
/// encode_frame(b"MSH|^~\\&|A", &mut wire);
/// encode_frame(b"MSH|^~\\&|B", &mut wire);
///
/// let mut dec = MllpDecoder::new(1024);
/// dec.feed(&wire);
/// let mut frames = Vec::new();
/// while let Some(frame) = dec.decode().unwrap().frame {
///     frames.push(frame);
/// }
/// assert_eq!(frames.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct MllpDecoder {
    max_frame: usize,
    buf: Vec<u8>,
    /// First byte not yet consumed.
    pos: usize,
    /// `true` once a start block was consumed; the content starts at `pos`.
    in_frame: bool,
    /// Position up to which the current frame's content is known to contain
    /// no marker byte.
    scanned: usize,
    /// Head of the last frame dropped as too large or truncated.
    rejected: Vec<u8>,
}

impl Default for MllpDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl MllpDecoder {
    /// Create a decoder that rejects frames whose content exceeds
    /// `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            buf: Vec::new(),
            pos: 0,
            in_frame: false,
            scanned: 0,
            rejected: Vec::new(),
        }
    }

    /// The configured maximum frame size.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Append bytes received from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned or discarded.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// `true` while a frame has started but not ended (useful to tell a clean
    /// disconnect from one in the middle of a message).
    pub fn is_mid_frame(&self) -> bool {
        self.in_frame
    }

    /// The content received so far of a frame that has started but not ended
    /// (empty between frames).
    pub fn partial_frame(&self) -> &[u8] {
        if self.in_frame {
            self.buf.get(self.pos..).unwrap_or_default()
        } else {
            &[]
        }
    }

    /// The first bytes (at most [`REJECTED_HEAD`]) of the frame dropped by
    /// the last `TooLarge` or `Truncated` error; empty if there was none
    /// since the last call.
    pub fn take_rejected(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rejected)
    }

    fn keep_rejected(&mut self, start: usize, end: usize) {
        let end = end.min(start.saturating_add(REJECTED_HEAD));
        self.rejected = self.buf.get(start..end).unwrap_or_default().to_vec();
    }

    /// Try to pull the next complete frame out of the buffered bytes.
    pub fn decode(&mut self) -> Result<Decoded, FrameError> {
        let mut discarded = 0;
        if !self.in_frame {
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            match rest.iter().position(|&b| b == START_BLOCK) {
                None => {
                    discarded += rest.len();
                    self.pos = self.buf.len();
                    return Ok(self.need_more(discarded));
                }
                Some(i) => {
                    discarded += i;
                    self.pos += i + 1;
                    self.in_frame = true;
                    self.scanned = self.pos;
                }
            }
        }

        let content_start = self.pos;
        let hay = self.buf.get(self.scanned..).unwrap_or_default();
        let Some(i) = hay.iter().position(|&b| b == START_BLOCK || b == END_BLOCK) else {
            self.scanned = self.buf.len();
            if self.scanned - content_start > self.max_frame {
                return Err(self.too_large(self.scanned));
            }
            return Ok(self.need_more(discarded));
        };

        let at = self.scanned + i;
        if at - content_start > self.max_frame {
            return Err(self.too_large(at));
        }
        if self.buf.get(at) == Some(&START_BLOCK) {
            // The old start block plus the partial content are dropped; the
            // new start block at `at` begins the next frame.
            self.keep_rejected(content_start, at);
            discarded += at - content_start + 1;
            self.pos = at + 1;
            self.scanned = self.pos;
            return Err(FrameError::Truncated { discarded });
        }

        // `at` holds END_BLOCK: need the byte after it to finish the frame.
        let Some(&next) = self.buf.get(at + 1) else {
            self.scanned = at;
            return Ok(self.need_more(discarded));
        };
        let frame = self.buf.get(content_start..at).unwrap_or_default().to_vec();
        self.pos = if next == CARRIAGE_RETURN {
            at + 2
        } else {
            at + 1
        };
        self.in_frame = false;
        Ok(Decoded {
            frame: Some(frame),
            discarded,
        })
    }

    /// Drop the oversized partial frame (everything before `upto`) and go back
    /// to looking for a start block.
    fn too_large(&mut self, upto: usize) -> FrameError {
        self.keep_rejected(self.pos, upto);
        self.pos = upto;
        self.in_frame = false;
        self.compact();
        FrameError::TooLarge {
            limit: self.max_frame,
        }
    }

    fn need_more(&mut self, discarded: usize) -> Decoded {
        self.compact();
        Decoded {
            frame: None,
            discarded,
        }
    }

    /// Remove consumed bytes from the front of the buffer.
    fn compact(&mut self) {
        if self.pos == 0 {
            return;
        }
        if self.pos >= self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.pos);
        }
        self.scanned = self.scanned.saturating_sub(self.pos);
        self.pos = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            encode_frame(m, &mut out);
        }
        out
    }

    fn drain(dec: &mut MllpDecoder) -> (Vec<Vec<u8>>, usize) {
        let mut frames = Vec::new();
        let mut discarded = 0;
        loop {
            let d = dec.decode().unwrap();
            discarded += d.discarded;
            match d.frame {
                Some(f) => frames.push(f),
                None => return (frames, discarded),
            }
        }
    }

    #[test]
    fn encode_wraps_message() {
        let mut out = vec![b'x'];
        encode_frame(b"MSH|", &mut out);
        assert_eq!(out, b"x\x0bMSH|\x1c\x0d");
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut dec = MllpDecoder::default();
        dec.feed(&framed(&[b"one", b"two", b"three"]));
        let (frames, discarded) = drain(&mut dec);
        assert_eq!(
            frames,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(discarded, 0);
        assert_eq!(dec.buffered(), 0);
        assert!(!dec.is_mid_frame());
    }

    #[test]
    fn one_frame_byte_by_byte() {
        let mut dec = MllpDecoder::default();
        let wire = framed(&[b"MSH|^~\\&|APP\rPID|1"]);
        let mut got = Vec::new();
        for b in &wire {
            dec.feed(std::slice::from_ref(b));
            got.extend(drain(&mut dec).0);
        }
        assert_eq!(got, vec![b"MSH|^~\\&|APP\rPID|1".to_vec()]);
    }

    #[test]
    fn empty_frame_is_a_frame() {
        let mut dec = MllpDecoder::default();
        dec.feed(b"\x0b\x1c\x0d");
        assert_eq!(drain(&mut dec).0, vec![Vec::<u8>::new()]);
    }

    #[test]
    fn garbage_before_start_is_reported() {
        let mut dec = MllpDecoder::default();
        dec.feed(b"\r\nnoise");
        let d = dec.decode().unwrap();
        assert_eq!(
            d,
            Decoded {
                frame: None,
                discarded: 7
            }
        );
        dec.feed(b"xx\x0bmsg\x1c\x0d\n");
        let d = dec.decode().unwrap();
        assert_eq!(d.frame.as_deref(), Some(&b"msg"[..]));
        assert_eq!(d.discarded, 2);
        let d = dec.decode().unwrap();
        assert_eq!(
            d,
            Decoded {
                frame: None,
                discarded: 1
            }
        );
    }

    #[test]
    fn end_block_without_cr_is_accepted() {
        let mut dec = MllpDecoder::default();
        dec.feed(b"\x0bA\x1c");
        assert_eq!(dec.decode().unwrap().frame, None);
        assert!(dec.is_mid_frame());
        dec.feed(b"\x0bB\x1c\x0d");
        let (frames, discarded) = drain(&mut dec);
        assert_eq!(frames, vec![b"A".to_vec(), b"B".to_vec()]);
        assert_eq!(discarded, 0);
    }

    #[test]
    fn too_large_is_reported_before_end_arrives() {
        let mut dec = MllpDecoder::new(4);
        dec.feed(b"\x0b1234");
        assert_eq!(dec.decode().unwrap().frame, None);
        dec.feed(b"5");
        assert_eq!(dec.decode(), Err(FrameError::TooLarge { limit: 4 }));
        assert!(!dec.is_mid_frame());
        // Exactly at the limit is fine.
        let mut dec = MllpDecoder::new(4);
        dec.feed(b"\x0b1234\x1c\x0d");
        assert_eq!(drain(&mut dec).0, vec![b"1234".to_vec()]);
    }

    #[test]
    fn too_large_with_end_in_same_buffer() {
        let mut dec = MllpDecoder::new(2);
        dec.feed(b"\x0b12345\x1c\x0d\x0bok\x1c\x0d");
        assert_eq!(dec.decode(), Err(FrameError::TooLarge { limit: 2 }));
        let (frames, discarded) = drain(&mut dec);
        assert_eq!(frames, vec![b"ok".to_vec()]);
        assert_eq!(discarded, 2);
    }

    #[test]
    fn start_inside_frame_reports_truncation_and_resyncs() {
        let mut dec = MllpDecoder::default();
        dec.feed(b"zz\x0bpartial\x0bfull\x1c\x0d");
        assert_eq!(
            dec.decode(),
            Err(FrameError::Truncated {
                discarded: 2 + 1 + 7
            })
        );
        assert_eq!(drain(&mut dec).0, vec![b"full".to_vec()]);
    }

    #[test]
    fn dropped_frames_can_be_inspected() {
        let mut dec = MllpDecoder::new(4);
        dec.feed(b"\x0bMSH|abcdef");
        assert_eq!(dec.decode(), Err(FrameError::TooLarge { limit: 4 }));
        assert_eq!(dec.take_rejected(), b"MSH|abcdef".to_vec());
        assert!(dec.take_rejected().is_empty());
        let mut dec = MllpDecoder::default();
        dec.feed(b"\x0bMSH|1");
        assert_eq!(dec.decode().unwrap().frame, None);
        assert_eq!(dec.partial_frame(), b"MSH|1");
        dec.feed(b"\x0bMSH|2\x1c\x0d");
        assert!(dec.decode().is_err());
        assert_eq!(dec.take_rejected(), b"MSH|1".to_vec());
        assert_eq!(drain(&mut dec).0, vec![b"MSH|2".to_vec()]);
        assert!(dec.partial_frame().is_empty());
    }

    #[test]
    fn truncation_across_reads() {
        let mut dec = MllpDecoder::default();
        dec.feed(b"\x0bpart");
        assert_eq!(dec.decode().unwrap().frame, None);
        dec.feed(b"ial\x0bnext\x1c\x0d");
        assert!(matches!(dec.decode(), Err(e) if e.is_recoverable()));
        assert_eq!(drain(&mut dec).0, vec![b"next".to_vec()]);
    }
}
