//! The connection's socket with its time-outs: each set only when it changes, so a request that
//! arrives in one read costs no extra system call.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A client must take each this many bytes of an answer within the write deadline; a JSON
/// body up to this size goes out in one write with its head.
pub(super) const WRITE_PIECE: usize = 256 << 10;

/// The socket with the time-outs last set on it, so that each is set only when it changes.
pub(super) struct Sock<'s> {
    pub(super) stream: &'s TcpStream,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

fn timed_out() -> io::Error {
    io::Error::from(io::ErrorKind::TimedOut)
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Sets a socket time-out through `set` unless it is already `timeout`; a time-out under a
/// millisecond is one that has passed.
fn arm(
    current: &mut Option<Duration>,
    timeout: Duration,
    set: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    if timeout < Duration::from_millis(1) {
        return Err(timed_out());
    }
    if *current != Some(timeout) {
        set(Some(timeout))?;
        *current = Some(timeout);
    }
    Ok(())
}

impl<'s> Sock<'s> {
    pub(super) fn new(stream: &'s TcpStream) -> Sock<'s> {
        Sock {
            stream,
            read_timeout: None,
            write_timeout: None,
        }
    }

    fn arm_read(&mut self, timeout: Duration) -> io::Result<()> {
        let stream = self.stream;
        arm(&mut self.read_timeout, timeout, |t| {
            stream.set_read_timeout(t)
        })
    }

    fn arm_write(&mut self, timeout: Duration) -> io::Result<()> {
        let stream = self.stream;
        arm(&mut self.write_timeout, timeout, |t| {
            stream.set_write_timeout(t)
        })
    }

    /// Reads what is there, waiting at most `timeout` for it.
    pub(super) fn read_for(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.arm_read(timeout)?;
        loop {
            match (&*self.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    /// Reads what is there, waiting until `deadline` at most.
    pub(super) fn read_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        self.read_for(buf, deadline.saturating_duration_since(Instant::now()))
    }

    /// Writes all of `data` in as few calls as the socket takes it, the client taking each
    /// [`WRITE_PIECE`] bytes within `timeout` (a call that times out part-way returns what
    /// went, so a client is dropped within `timeout` of its last 256 KiB).
    pub(super) fn write_all(&mut self, data: &[u8], timeout: Duration) -> io::Result<()> {
        self.arm_write(timeout)?;
        let mut deadline = Instant::now() + timeout;
        let (mut written, mut earned) = (0, 0);
        while written < data.len() {
            match (&*self.stream).write(&data[written..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if written < data.len() {
                // A slow reader: another piece taken earns it another `timeout`; else the rest
                // gets what is left of its time.
                if written - earned >= WRITE_PIECE {
                    earned = written;
                    deadline = Instant::now() + timeout;
                }
                self.arm_write(deadline.saturating_duration_since(Instant::now()))?;
            }
        }
        Ok(())
    }
}
