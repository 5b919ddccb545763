//! Client side: command encoding and reply decoding (CLI, benchmark, tests, proxy).
//!
//! Reply framing is delegated to the `redis-protocol` crate; this module maps its frames onto
//! the simpler [`Value`] tree.

use bytes::{BufMut, Bytes, BytesMut};
use redis_protocol::{resp2, resp3};

use super::{Proto, ProtoError};

/// A decoded reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `+text`.
    Simple(Bytes),
    /// `-CODE message` (RESP2 `-`, RESP3 `-` and `!`).
    Error(Bytes),
    /// `:n`.
    Int(i64),
    /// `$len` bulk string.
    Bulk(Bytes),
    /// RESP2 `$-1`/`*-1`, RESP3 `_`.
    Nil,
    /// `*n`.
    Array(Vec<Value>),
    /// RESP3 `%n`. Pair order is not preserved (`redis-protocol` decodes maps into a hash
    /// map), and duplicate keys collapse.
    Map(Vec<(Value, Value)>),
    /// RESP3 `~n`. Element order is not preserved (see [`Value::Map`]).
    Set(Vec<Value>),
    /// RESP3 `,d`.
    Double(f64),
    /// RESP3 `#t`/`#f`.
    Bool(bool),
    /// RESP3 `>n`.
    Push(Vec<Value>),
    /// RESP3 `=len fmt:text`: the text, without the format prefix.
    Verbatim(Bytes),
    /// RESP3 `(digits`.
    BigNumber(Bytes),
}

/// Decodes one reply from the front of `buf`, consuming it when complete.
///
/// Returns `Ok(None)` (leaving `buf` untouched) when the reply is incomplete.
///
/// # Errors
/// [`ProtoError::InvalidReply`] when the bytes are not a valid reply in `proto`.
pub fn decode_reply(buf: &mut BytesMut, proto: Proto) -> Result<Option<Value>, ProtoError> {
    match proto {
        Proto::Resp2 => match resp2::decode::decode_bytes_mut(buf) {
            Ok(Some((frame, _, _))) => Ok(Some(from_resp2(frame))),
            Ok(None) => Ok(None),
            Err(_) => Err(ProtoError::InvalidReply),
        },
        Proto::Resp3 => match resp3::decode::complete::decode_bytes_mut(buf) {
            Ok(Some((frame, _, _))) => from_resp3(frame).map(Some),
            Ok(None) => Ok(None),
            Err(_) => Err(ProtoError::InvalidReply),
        },
    }
}

fn from_resp2(frame: resp2::types::BytesFrame) -> Value {
    use resp2::types::BytesFrame as F;
    match frame {
        F::SimpleString(b) => Value::Simple(b),
        F::Error(s) => Value::Error(s.into_inner()),
        F::Integer(n) => Value::Int(n),
        F::BulkString(b) => Value::Bulk(b),
        F::Array(items) => Value::Array(items.into_iter().map(from_resp2).collect()),
        F::Null => Value::Nil,
    }
}

fn from_resp3(frame: resp3::types::BytesFrame) -> Result<Value, ProtoError> {
    use resp3::types::BytesFrame as F;
    let list = |items: Vec<F>| -> Result<Vec<Value>, ProtoError> {
        items.into_iter().map(from_resp3).collect()
    };
    Ok(match frame {
        F::BlobString { data, .. } => Value::Bulk(data),
        F::BlobError { data, .. } => Value::Error(data),
        F::SimpleString { data, .. } => Value::Simple(data),
        F::SimpleError { data, .. } => Value::Error(data.into_inner()),
        F::Boolean { data, .. } => Value::Bool(data),
        F::Null => Value::Nil,
        F::Number { data, .. } => Value::Int(data),
        F::Double { data, .. } => Value::Double(data),
        F::BigNumber { data, .. } => Value::BigNumber(data),
        F::VerbatimString { data, .. } => Value::Verbatim(data),
        F::Array { data, .. } => Value::Array(list(data)?),
        F::Push { data, .. } => Value::Push(list(data)?),
        F::Set { data, .. } => Value::Set(list(data.into_iter().collect())?),
        F::Map { data, .. } => Value::Map(
            data.into_iter()
                .map(|(k, v)| Ok((from_resp3(k)?, from_resp3(v)?)))
                .collect::<Result<_, ProtoError>>()?,
        ),
        // HELLO and streamed chunks are never sent by a server as complete replies.
        _ => return Err(ProtoError::InvalidReply),
    })
}

/// Appends `args` as a RESP multibulk request (`*N\r\n$len\r\narg\r\n…`) to `out`.
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    let mut itoa = itoa::Buffer::new();
    let size: usize = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    out.reserve(size);
    out.put_u8(b'*');
    out.put_slice(itoa.format(args.len()).as_bytes());
    out.put_slice(b"\r\n");
    for a in args {
        out.put_u8(b'$');
        out.put_slice(itoa.format(a.len()).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
