//! Fuzz target: feed arbitrary bytes to the MLLP decoder in arbitrary
//! chunks. The first two input bytes pick the maximum frame size and the
//! chunk length; the rest is the byte stream.
//!
//! Checked: no panic; `decode` always makes progress (a bounded number of
//! calls drains the buffer); no frame exceeds the maximum or contains a
//! marker byte; the kept head of a dropped frame is bounded; and the frames
//! and errors seen do not depend on how the stream was split into reads
//! (chunked feeding is compared with feeding the whole stream at once and
//! byte by byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_hl7::framing::{MllpDecoder, END_BLOCK, REJECTED_HEAD, START_BLOCK};
use switchboard_hl7::FrameError;

/// What the decoder produced, in order; error details that legitimately
/// depend on read boundaries (byte counts) are left out.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame(Vec<u8>),
    TooLarge,
    Truncated,
}

fn run(max: usize, stream: &[u8], chunk: usize) -> Vec<Event> {
    let mut dec = MllpDecoder::new(max);
    let mut events = Vec::new();
    for piece in stream.chunks(chunk) {
        dec.feed(piece);
        // Every call that does not return "need more" consumes at least one
        // byte, so this many calls always suffice.
        let bound = dec.buffered() + 2;
        let mut drained = false;
        for _ in 0..bound {
            match dec.decode() {
                Ok(d) => match d.frame {
                    Some(frame) => {
                        assert!(frame.len() <= max, "frame over the limit");
                        assert!(
                            !frame.contains(&START_BLOCK) && !frame.contains(&END_BLOCK),
                            "frame holds a marker byte"
                        );
                        events.push(Event::Frame(frame));
                    }
                    None => {
                        drained = true;
                        break;
                    }
                },
                Err(e) => {
                    assert!(dec.take_rejected().len() <= REJECTED_HEAD);
                    events.push(match e {
                        FrameError::TooLarge { limit } => {
                            assert_eq!(limit, max);
                            Event::TooLarge
                        }
                        FrameError::Truncated { .. } => Event::Truncated,
                        _ => unreachable!("unknown frame error"),
                    });
                }
            }
        }
        assert!(drained, "decode made no progress");
        // The frame in progress may end with an END_BLOCK waiting for its CR.
        assert!(dec.partial_frame().len() <= max + 1);
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let (max, chunk, stream) = match data {
        [a, b, rest @ ..] => (usize::from(*a) * 4, usize::from(*b).max(1), rest),
        _ => return,
    };
    let chunked = run(max, stream, chunk);
    if stream.is_empty() {
        return;
    }
    let whole = run(max, stream, stream.len());
    assert_eq!(chunked, whole, "result depends on read boundaries");
    if stream.len() <= 512 {
        let bytewise = run(max, stream, 1);
        assert_eq!(bytewise, whole, "result differs when fed byte by byte");
    }
});
