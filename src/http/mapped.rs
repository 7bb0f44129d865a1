//! A window of a file mapped into memory, whose bytes only `write(2)` ever reads.
//!
//! Why: a download sent by one copy, file pages to socket, instead of two (file to a buffer,
//! buffer to socket) measured 1.5 times nginx's `sendfile` for a 1 GiB file on loopback, where
//! read-and-write measured level with it (bench row 13, whole and ranged).
//!
//! Why it is sound here: the mapping is handed to the kernel and never read by our code. A file
//! cut short under it makes that `write` fail with `EFAULT` (a fault inside a system call is an
//! error returned to the caller), where a read by our code would raise `SIGBUS` and end the
//! process; a file changed in place changes the bytes sent, as `read(2)` would, and is caught
//! the same way (the sender looks at the file's metadata before its last piece).

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// A read-only, shared mapping of part of a file.
pub(super) struct Window(memmap2::Mmap);

impl Window {
    /// Maps `len` bytes of `file` from `offset` (`len` above zero).
    pub(super) fn map(file: &File, offset: u64, len: usize) -> io::Result<Window> {
        // SAFETY: the bytes are only handed to write(2) (see the module's comment), so neither
        // a file changed in place nor one cut short under the mapping reaches our code.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)?
        };
        Ok(Window(map))
    }

    /// The mapped bytes, for `write(2)` only.
    pub(super) fn for_write(&self) -> &[u8] {
        &self.0
    }
}
