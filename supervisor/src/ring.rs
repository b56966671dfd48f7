//! [`Ring`]: the bounded in-memory buffer of one output stream, used once the stream's log can no
//! longer take every byte by `splice(2)` (see [`crate::capture`]). It holds the newest bytes of the
//! stream (at most its capacity, the task's `buffer_size`) at their absolute offsets, so a `read`
//! still gets them when the disk is full. Memory is allocated only when output first arrives, and
//! grows with it up to the capacity; after that the buffer wraps in place. (A stream's consume
//! position lives in [`crate::capture::StreamCapture`], since a stream has a ring only after a
//! fallback.)

/// The newest bytes of one stream, at absolute offsets.
#[derive(Debug)]
pub struct Ring {
    /// Storage: linear (`head == 0`, holding `buf.len()` bytes) until it first fills, then exactly
    /// `cap` bytes used circularly.
    buf: Vec<u8>,
    /// The most bytes held.
    cap: usize,
    /// Index in `buf` of the oldest byte held.
    head: usize,
    /// Bytes held.
    len: usize,
    /// Absolute offset one past the newest byte: the stream's length.
    end: u64,
}

impl Ring {
    /// An empty ring of capacity `cap` (at least 1); nothing is allocated yet.
    pub fn new(cap: usize) -> Ring {
        Ring::at(cap, 0)
    }

    /// An empty ring of capacity `cap` whose first byte will be at offset `end` (the stream has
    /// had `end` bytes before it); nothing is allocated yet.
    pub fn at(cap: usize, end: u64) -> Ring {
        Ring {
            buf: Vec::new(),
            cap: cap.max(1),
            head: 0,
            len: 0,
            end,
        }
    }

    /// The offset of the oldest byte held.
    pub fn start(&self) -> u64 {
        self.end - self.len as u64
    }

    /// One past the newest byte: how many bytes the stream has had in all.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes of memory in use (the storage's capacity).
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    /// Append bytes; the oldest ones go once the capacity is reached.
    pub fn push(&mut self, data: &[u8]) {
        let n = data.len();
        self.end += n as u64;
        if n >= self.cap {
            // Only the last `cap` bytes survive.
            self.buf.clear();
            self.buf.reserve_exact(self.cap);
            self.buf.extend_from_slice(&data[n - self.cap..]);
            self.head = 0;
            self.len = self.cap;
            return;
        }
        if self.head == 0 && self.len == self.buf.len() && self.len + n <= self.cap {
            // Still linear: grow (doubling, but never past the capacity).
            if self.buf.capacity() < self.len + n {
                let want = (self.buf.capacity() * 2)
                    .max(self.len + n)
                    .max(4096)
                    .min(self.cap);
                self.buf.reserve_exact(want - self.buf.len());
            }
            self.buf.extend_from_slice(data);
            self.len += n;
            return;
        }
        // Circular from now on: the storage is exactly `cap` bytes.
        if self.buf.len() < self.cap {
            self.buf.reserve_exact(self.cap - self.buf.len());
            self.buf.resize(self.cap, 0);
        }
        let tail = (self.head + self.len) % self.cap;
        let first = n.min(self.cap - tail);
        self.buf[tail..tail + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..]);
        let total = self.len + n;
        if total > self.cap {
            self.head = (self.head + (total - self.cap)) % self.cap;
            self.len = self.cap;
        } else {
            self.len = total;
        }
    }

    /// True when the byte at `offset` is held (or `offset` is the end: an empty read).
    pub fn holds(&self, offset: u64) -> bool {
        offset >= self.start() && offset <= self.end
    }

    /// Up to `max` bytes from `offset`, as two slices (the second is non-empty when the range
    /// wraps). Empty when `offset` is not held.
    pub fn peek(&self, offset: u64, max: usize) -> (&[u8], &[u8]) {
        if offset < self.start() || offset >= self.end {
            return (&[], &[]);
        }
        let skip = (offset - self.start()) as usize;
        let n = (self.len - skip).min(max);
        let from = (self.head + skip) % self.cap.max(1);
        if from + n <= self.buf.len() {
            (&self.buf[from..from + n], &[])
        } else {
            let first = self.buf.len() - from;
            (&self.buf[from..], &self.buf[..n - first])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(r: &Ring, offset: u64, max: usize) -> Vec<u8> {
        let (a, b) = r.peek(offset, max);
        [a, b].concat()
    }

    #[test]
    fn nothing_is_allocated_before_output() {
        let r = Ring::new(1 << 20);
        eq(r.allocated(), 0);
        eq((r.start(), r.end()), (0, 0));
        eq(read(&r, 0, 10), vec![]);
    }

    #[test]
    fn grows_lazily_up_to_its_capacity() {
        let mut r = Ring::new(10_000);
        r.push(b"hello");
        assert!(r.allocated() < 10_000);
        eq(read(&r, 0, 100), b"hello".to_vec());
        r.push(&[b'x'; 9_000]);
        assert!(r.allocated() <= 10_000, "allocated {}", r.allocated());
        r.push(&[b'y'; 9_000]);
        eq(r.allocated(), 10_000);
        eq((r.start(), r.end()), (8_005, 18_005));
    }

    #[test]
    fn offsets_stay_absolute_across_wraps() {
        let mut r = Ring::new(8);
        r.push(b"abcdef");
        eq((r.start(), r.end()), (0, 6));
        r.push(b"ghij");
        eq((r.start(), r.end()), (2, 10));
        eq(read(&r, 2, 100), b"cdefghij".to_vec());
        eq(read(&r, 7, 100), b"hij".to_vec());
        eq(read(&r, 1, 100), vec![]); // dropped
        eq(read(&r, 10, 100), vec![]); // the end
        assert!(r.holds(10) && r.holds(2) && !r.holds(1) && !r.holds(11));
        r.push(b"klmno");
        eq((r.start(), r.end()), (7, 15));
        eq(read(&r, 7, 100), b"hijklmno".to_vec());
        // A read that wraps comes in two slices.
        let (a, b) = r.peek(7, 6);
        assert!(!b.is_empty());
        eq([a, b].concat(), b"hijklm".to_vec());
    }

    #[test]
    fn a_push_larger_than_the_capacity_keeps_the_newest_bytes() {
        let mut r = Ring::new(4);
        r.push(b"ab");
        r.push(b"0123456789");
        eq((r.start(), r.end()), (8, 12));
        eq(read(&r, 0, 100), vec![]);
        eq(read(&r, 8, 100), b"6789".to_vec());
        r.push(b"Z");
        eq(read(&r, 9, 100), b"789Z".to_vec());
    }

    #[test]
    fn many_small_pushes_match_a_reference() {
        let mut r = Ring::new(37);
        let mut all = Vec::new();
        for i in 0..500u32 {
            let piece: Vec<u8> = (0..(i % 11)).map(|k| (i * 7 + k) as u8).collect();
            r.push(&piece);
            all.extend_from_slice(&piece);
            let start = r.start() as usize;
            eq(r.end() as usize, all.len());
            eq(read(&r, start as u64, 1000), all[start..].to_vec());
        }
    }

    #[test]
    fn a_peek_leaves_the_bytes_in_place() {
        let mut r = Ring::new(16);
        r.push(b"one\ntwo\n");
        eq(read(&r, 0, 4), b"one\n".to_vec());
        eq(read(&r, 0, 100), b"one\ntwo\n".to_vec());
        eq(read(&r, 4, 100), b"two\n".to_vec());
    }

    #[test]
    fn a_ring_started_late_holds_offsets_from_there() {
        let mut r = Ring::at(8, 1000);
        eq((r.start(), r.end(), r.allocated()), (1000, 1000, 0));
        assert!(r.holds(1000) && !r.holds(999));
        eq(read(&r, 999, 10), vec![]);
        r.push(b"abcdef");
        eq((r.start(), r.end()), (1000, 1006));
        eq(read(&r, 1002, 100), b"cdef".to_vec());
        r.push(b"ghij");
        eq((r.start(), r.end()), (1002, 1010));
        eq(read(&r, 1002, 100), b"cdefghij".to_vec());
        assert!(!r.holds(1001));
    }

    fn eq<T: PartialEq + std::fmt::Debug>(actual: T, expected: T) {
        assert!(
            actual == expected,
            "\nexpected: {expected:?}\n  actual: {actual:?}"
        );
    }
}
