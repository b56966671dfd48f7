//! [`PageBuf`]: a fixed-size byte buffer mapped straight from the kernel (anonymous `mmap`), for
//! the supervisor's read buffer. The kernel backs a page only once it is written, so a task that
//! never prints never pays for the buffer; the allocator could not promise that, since `calloc`
//! clears (and so dirties) memory it reuses. Output normally goes from the pipes to the log and
//! from the log to followers without passing through it (see [`crate::capture`]), so even a busy
//! task only touches it after a fallback to copying, or when its followers are sent copies (a
//! task with a log cap).

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// `len` zeroed bytes whose pages become resident only when first written.
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl PageBuf {
    /// Map `len` bytes (at least one). Panics when the kernel refuses, as an allocation would.
    pub fn new(len: usize) -> PageBuf {
        let len = len.max(1);
        // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "cannot map a {len}-byte read buffer");
        PageBuf {
            ptr: NonNull::new(p.cast()).expect("mmap never returns null on success"),
            len,
        }
    }
}

impl Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, zero-filled by the kernel, alive until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length and is unmapped only here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_written_and_starts_zeroed() {
        let mut b = PageBuf::new(65536);
        assert_eq!(b.len(), 65536);
        assert!(b.iter().all(|&x| x == 0));
        b[65535] = 7;
        b[..3].copy_from_slice(b"abc");
        assert_eq!(&b[..3], b"abc");
        assert_eq!(b[65535], 7);
    }
}
