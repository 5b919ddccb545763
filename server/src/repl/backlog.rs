//! The replication backlog: the tail of the write stream, addressed by
//! replication offset, kept for partial resyncs and read by every replica feeder.
//!
//! Offsets follow Redis: `end` is `master_repl_offset` (bytes ever appended) and
//! the first byte held is at `end - len + 1`. A replica asks for the first byte
//! it lacks (`PSYNC replid offset+1`).

use std::collections::VecDeque;

/// The backlog bytes and their offsets.
#[derive(Default)]
pub struct Backlog {
    buf: VecDeque<u8>,
    end: u64,
}

/// The requested offset is no longer (or not yet) held.
#[derive(Debug, PartialEq, Eq)]
pub struct Lost;

impl Backlog {
    /// `master_repl_offset`.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Offset of the first byte held (`repl_backlog_first_byte_offset`).
    pub fn start(&self) -> u64 {
        self.end + 1 - self.buf.len() as u64
    }

    /// Bytes held (`repl_backlog_histlen`).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends stream bytes.
    pub fn append(&mut self, data: &[u8]) {
        self.buf.extend(data);
        self.end += data.len() as u64;
    }

    /// Drops the oldest bytes so at most `keep` remain.
    pub fn trim(&mut self, keep: usize) {
        if self.buf.len() > keep {
            let n = self.buf.len() - keep;
            self.buf.drain(..n);
        }
    }

    /// Forgets everything; the next byte appended has offset `end + 1`.
    pub fn reset(&mut self, end: u64) {
        self.buf.clear();
        self.buf.shrink_to(64 * 1024);
        self.end = end;
    }

    /// Whether a replica may continue from `from` (the first byte it lacks).
    pub fn can_serve(&self, from: u64) -> bool {
        from >= self.start() && from <= self.end + 1
    }

    /// Up to `max` bytes starting at offset `from` (empty when `from` is past the end).
    ///
    /// # Errors
    /// [`Lost`] when `from` was already trimmed away.
    #[cfg(test)]
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<u8>, Lost> {
        let mut out = Vec::new();
        self.read_into(from, max, &mut out)?;
        Ok(out)
    }

    /// Up to `max` bytes starting at offset `from` into `out` (cleared first; empty
    /// when `from` is past the end), so a feeder reuses one buffer for every send.
    ///
    /// # Errors
    /// [`Lost`] when `from` was already trimmed away.
    pub fn read_into(&self, from: u64, max: usize, out: &mut Vec<u8>) -> Result<(), Lost> {
        out.clear();
        if from < self.start() {
            return Err(Lost);
        }
        if from > self.end {
            return Ok(());
        }
        let skip = (from - self.start()) as usize;
        let n = (self.buf.len() - skip).min(max);
        let (a, b) = self.buf.as_slices();
        if skip < a.len() {
            let take = (a.len() - skip).min(n);
            out.extend_from_slice(&a[skip..skip + take]);
            let rest = n - take;
            out.extend_from_slice(&b[..rest]);
        } else {
            let s = skip - a.len();
            out.extend_from_slice(&b[s..s + n]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_trim_and_read() {
        let mut b = Backlog::default();
        b.reset(100);
        assert_eq!(b.start(), 101);
        assert!(b.can_serve(101));
        b.append(b"hello");
        assert_eq!((b.start(), b.end()), (101, 105));
        assert_eq!(b.read(101, 100).unwrap(), b"hello");
        assert_eq!(b.read(103, 2).unwrap(), b"ll");
        assert_eq!(b.read(106, 10).unwrap(), b"");
        b.append(b" world");
        b.trim(4);
        assert_eq!(b.start(), 108);
        assert_eq!(b.read(107, 1), Err(Lost));
        assert_eq!(b.read(108, 10).unwrap(), b"orld");
        assert!(!b.can_serve(107));
        assert!(b.can_serve(112));
        assert!(!b.can_serve(113));
    }
}
