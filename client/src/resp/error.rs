//! RESP protocol errors and their exact Redis 7.0 wire text.

/// A RESP framing error. Every variant raised by [`decode_request`](super::decode_request) is
/// fatal: write [`reply`](Self::reply) and close the connection, as Redis does.
///
/// `Display` is the text Redis sends after `-ERR ` (e.g. `Protocol error: invalid bulk
/// length`); [`message`](Self::message) is the whole line without `-` and CRLF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// `*<n>` is not a valid integer or exceeds the multibulk limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<n>` is not a valid integer, is negative, or exceeds the bulk limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A multibulk element did not start with `$`. The byte is the one Redis echoes (`\r` and
    /// `\n` are shown as a space, as Redis' error sanitizer does).
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// An inline request line grew past the inline limit without a newline.
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// A `*<n>` header grew past the inline limit without a `\r`.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMbulkCount,
    /// A `$<n>` header grew past the inline limit without a `\r`.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An inline request had unbalanced quotes (or a closing quote not followed by a space).
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// Client side: a reply could not be parsed (not sent by a server).
    #[error("Protocol error: invalid reply")]
    InvalidReply,
}

const DOLLAR_PREFIX: &[u8] = b"-ERR Protocol error: expected '$', got '";
const DOLLAR_LINE_LEN: usize = DOLLAR_PREFIX.len() + 4;

const fn build_dollar_lines() -> [[u8; DOLLAR_LINE_LEN]; 256] {
    let mut out = [[0u8; DOLLAR_LINE_LEN]; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < DOLLAR_PREFIX.len() {
            out[b][i] = DOLLAR_PREFIX[i];
            i += 1;
        }
        out[b][i] = b as u8;
        out[b][i + 1] = b'\'';
        out[b][i + 2] = b'\r';
        out[b][i + 3] = b'\n';
        b += 1;
    }
    out
}

/// One precomputed reply line per possible offending byte, so the error path stays
/// allocation free and `reply()` can hand out `&'static` bytes.
static DOLLAR_LINES: [[u8; DOLLAR_LINE_LEN]; 256] = build_dollar_lines();

impl ProtoError {
    /// The error code Redis uses (`ERR`), for reply prefixes and metric labels.
    pub fn code(&self) -> &'static str {
        "ERR"
    }

    /// The exact reply line Redis 7.0 sends, including `-` and the trailing CRLF.
    pub fn reply(&self) -> &'static [u8] {
        match self {
            Self::InvalidMultibulkLength => b"-ERR Protocol error: invalid multibulk length\r\n",
            Self::InvalidBulkLength => b"-ERR Protocol error: invalid bulk length\r\n",
            Self::ExpectedDollar(b) => &DOLLAR_LINES[usize::from(*b)],
            Self::TooBigInlineRequest => b"-ERR Protocol error: too big inline request\r\n",
            Self::TooBigMbulkCount => b"-ERR Protocol error: too big mbulk count string\r\n",
            Self::TooBigBulkCount => b"-ERR Protocol error: too big bulk count string\r\n",
            Self::UnbalancedQuotes => b"-ERR Protocol error: unbalanced quotes in request\r\n",
            Self::InvalidReply => b"-ERR Protocol error: invalid reply\r\n",
        }
    }

    /// The reply line without the leading `-` and the trailing CRLF, e.g.
    /// `ERR Protocol error: invalid bulk length`.
    ///
    /// For [`ExpectedDollar`](Self::ExpectedDollar) with a non-ASCII byte the line is not
    /// UTF-8; this then returns the text with `?` in place of the byte. Use
    /// [`reply`](Self::reply) to write the exact bytes.
    pub fn message(&self) -> &'static str {
        let line = self.reply();
        match std::str::from_utf8(&line[1..line.len() - 2]) {
            Ok(s) => s,
            Err(_) => "ERR Protocol error: expected '$', got '?'",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            ProtoError::InvalidBulkLength.message(),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            ProtoError::ExpectedDollar(b'+').reply(),
            b"-ERR Protocol error: expected '$', got '+'\r\n"
        );
        assert_eq!(
            ProtoError::ExpectedDollar(b'x').message(),
            "ERR Protocol error: expected '$', got 'x'"
        );
        assert_eq!(
            ProtoError::ExpectedDollar(0xff).reply(),
            b"-ERR Protocol error: expected '$', got '\xff'\r\n"
        );
        for e in [
            ProtoError::InvalidMultibulkLength,
            ProtoError::InvalidBulkLength,
            ProtoError::ExpectedDollar(b'x'),
            ProtoError::TooBigInlineRequest,
            ProtoError::TooBigMbulkCount,
            ProtoError::TooBigBulkCount,
            ProtoError::UnbalancedQuotes,
        ] {
            assert_eq!(format!("ERR {e}"), e.message());
        }
    }
}
