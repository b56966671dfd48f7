//! Unit tests of a client's buffers, over a socket pair.

use super::*;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use taskpool::protocol::Response;

fn pair() -> (Client, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    (Client::new(OwnedFd::from(ours)), theirs)
}

fn lines(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(r) = c.take_line() {
        out.push(String::from_utf8_lossy(c.line(r)).into_owned());
    }
    out
}

#[test]
fn request_lines_are_split_across_reads() {
    let (mut c, mut peer) = pair();
    peer.write_all(b"{\"type\":\"info\"}\n{\"ty").unwrap();
    c.on_events(libc::POLLIN);
    assert_eq!(lines(&mut c), vec!["{\"type\":\"info\"}"]);
    peer.write_all(b"pe\":\"wait\"}\n").unwrap();
    c.on_events(libc::POLLIN);
    assert_eq!(lines(&mut c), vec!["{\"type\":\"wait\"}"]);
    assert_eq!(c.input(), b"");
}

#[test]
fn an_oversized_line_gets_an_error_and_is_dropped() {
    let (mut c, mut peer) = pair();
    let writer = std::thread::spawn(move || {
        peer.write_all(&vec![b'x'; MAX_LINE * 3]).unwrap();
        peer.write_all(b"\n{\"type\":\"info\"}\n").unwrap();
        peer
    });
    let mut got = Vec::new();
    while got.is_empty() {
        c.on_events(libc::POLLIN);
        got = lines(&mut c);
    }
    let mut peer = writer.join().unwrap();
    assert_eq!(got, vec!["{\"type\":\"info\"}"]);
    c.flush();
    let mut reply = vec![0u8; c.out.len().max(256)];
    let n = peer.read(&mut reply).unwrap();
    let text = String::from_utf8_lossy(&reply[..n]);
    assert!(
        text.contains("\"kind\":\"invalid_input\"") && text.contains("longer than"),
        "{text}"
    );
}

#[test]
fn a_client_that_does_not_read_stops_being_served() {
    let (mut c, _peer) = pair();
    assert_ne!(c.interest(0) & libc::POLLIN, 0);
    let big = vec![b'y'; 4 << 20];
    c.queue_data(&Response::Ok, &big, &[]);
    c.flush();
    assert!(
        c.pending() > OUT_HIGH,
        "the socket took {} bytes",
        big.len() - c.pending()
    );
    let ev = c.interest(0);
    assert_eq!(ev & libc::POLLIN, 0, "still reading requests");
    assert_ne!(ev & libc::POLLOUT, 0, "not waiting to send");
    assert!(!c.dead);
}

#[test]
fn a_half_closed_client_is_answered_then_dropped() {
    let (mut c, peer) = pair();
    (&peer).write_all(b"{\"type\":\"info\"}\n").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    c.on_events(libc::POLLIN);
    c.on_events(libc::POLLIN);
    assert!(c.read_eof);
    assert_eq!(lines(&mut c).len(), 1);
    c.queue(&Response::Ok);
    c.flush();
    assert!(c.dead);
}

#[test]
fn file_spans_go_out_in_order_between_buffered_bytes_across_partial_sends() {
    let (mut c, mut peer) = pair();
    let path = std::env::temp_dir().join(format!("taskpool-clients-span-{}", std::process::id()));
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &body).unwrap();
    let file = Arc::new(File::open(&path).unwrap());
    std::fs::remove_file(&path).unwrap();
    let mut want = Vec::new();
    let mut expect = |c: &Client, before: usize, extra: &[u8]| {
        want.extend_from_slice(&c.out[before..]);
        want.extend_from_slice(extra);
    };
    // Buffered bytes before a span: partly sent, they are compacted under it.
    c.queue_data(&Response::Ok, &vec![9u8; 300_000], &[]);
    expect(&c, 0, &[]);
    let b = c.out.len();
    c.queue_file(&Response::Ok, &file, 10, 2_000_000);
    expect(&c, b, &body[10..2_000_010]);
    let b = c.out.len();
    c.queue_data(&Response::Ok, b"between", &[]);
    expect(&c, b, &[]);
    let b = c.out.len();
    c.queue_file(&Response::Ok, &file, 2_999_990, 10);
    expect(&c, b, &body[2_999_990..]);
    let b = c.out.len();
    c.queue(&Response::Ok);
    expect(&c, b, &[]);
    eq_pending(&c, want.len());
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; want.len()];
        peer.read_exact(&mut got).unwrap();
        assert!(got == want, "bytes out of order");
    });
    // The socket takes far less than 2 MB at once: the spans are sent in pieces.
    let mut rounds = 0;
    while c.pending() > 0 {
        c.blocked = false;
        c.flush();
        assert!(!c.dead);
        rounds += 1;
        std::thread::yield_now();
    }
    reader.join().unwrap();
    assert!(rounds > 1, "sent in one go");
    assert!(c.spans.is_empty() && c.out.is_empty());
}

fn eq_pending(c: &Client, n: usize) {
    assert_eq!(c.pending(), n, "pending");
}
