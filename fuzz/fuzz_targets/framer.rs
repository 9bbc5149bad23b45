//! Fuzz target: feed arbitrary bytes to the MLLP decoder in arbitrary
//! chunks. The first two input bytes pick the maximum frame size and the
//! chunk length; the rest is the byte stream. Any panic is a bug, and no
//! returned frame may exceed the maximum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_hl7::framing::MllpDecoder;

fuzz_target!(|data: &[u8]| {
    let (max, chunk, stream) = match data {
        [a, b, rest @ ..] => (usize::from(*a) * 4, usize::from(*b).max(1), rest),
        _ => return,
    };
    let mut dec = MllpDecoder::new(max);
    for piece in stream.chunks(chunk) {
        dec.feed(piece);
        // Each call consumes at least one byte or reports that it needs more.
        for _ in 0..=piece.len() + 1 {
            match dec.decode() {
                Ok(d) => match d.frame {
                    Some(frame) => assert!(frame.len() <= max),
                    None => break,
                },
                Err(_) => {}
            }
        }
    }
});
