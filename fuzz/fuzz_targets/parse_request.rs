//! The request parser and the reply reader against arbitrary bytes: no panic, no unbounded
//! allocation, and whatever parses survives a round trip through the encoder unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use taskpool::protocol::{encode_line, parse_request, read_response, Request};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_request(data) {
        let mut line = Vec::new();
        encode_line(&req, &mut line);
        let again: Request = parse_request(&line).expect("an encoded request parses");
        assert_eq!(again, req, "round trip changed the request");
    }
    // The client side: a stream of reply lines and data frames.
    let mut r = std::io::BufReader::new(data);
    let (mut line, mut frame) = (Vec::new(), Vec::new());
    for _ in 0..64 {
        match read_response(&mut r, &mut line, &mut frame) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
