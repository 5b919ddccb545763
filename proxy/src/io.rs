//! Socket I/O on tokio's readiness API, with one syscall saved per request.
//!
//! `AsyncReadExt::read_buf` leaves the socket marked readable after a successful read, so
//! the next read of a request/reply exchange is a wasted `EAGAIN` syscall before the task
//! parks. A read that returns less than the space offered has drained the socket; we then
//! clear tokio's readiness ourselves (no syscall). That is safe with tokio's edge-triggered
//! driver: readiness set by a newer event carries a newer tick, which this clear does not
//! touch, so data arriving after the read still wakes the task.

use std::io;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// A stream socket usable through `&self` (reader and writer halves in one task).
pub trait Conn {
    /// Waits until the socket may be readable.
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>>;
    /// Waits until the socket may be writable.
    fn writable(&self) -> impl std::future::Future<Output = io::Result<()>>;
    /// One non-blocking read into the spare capacity of `buf`.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    /// One non-blocking write.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Forgets read readiness (the socket was drained).
    fn clear_read(&self);
}

macro_rules! conn_impl {
    ($t:ty) => {
        impl Conn for $t {
            fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> {
                <$t>::readable(self)
            }
            fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> {
                <$t>::writable(self)
            }
            fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
                <$t>::try_read_buf(self, buf)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
            fn clear_read(&self) {
                let _ = self.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
        }
    };
}

conn_impl!(TcpStream);
conn_impl!(UnixStream);

/// Reads at least one byte (0 = the peer closed).
pub async fn read_some<S: Conn>(s: &S, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        s.readable().await?;
        let spare = buf.capacity() - buf.len();
        match s.try_read_buf(buf) {
            Ok(n) => {
                if n > 0 && n < spare {
                    s.clear_read();
                }
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `buf`.
pub async fn write_all<S: Conn>(s: &S, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match s.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
