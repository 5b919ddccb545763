//! DUMP / RESTORE payloads: Shoal's own serialization of one value.
//!
//! ```text
//! +------+--------------+-------+-----------+------------------+
//! | kind | len (varint) | bytes | version   | checksum         |
//! | u8   |              |       | u16 LE    | FNV-1a 64, LE    |
//! +------+--------------+-------+-----------+------------------+
//! ```
//! The version (0x5301, "S" + 1) can never equal a Redis RDB version (< 256),
//! so a Redis payload is refused with Redis' own "version or checksum" error
//! rather than misread. The checksum covers everything before it.

use shoal_keyspace::types::{Hash, List, Set, ZSet};
use shoal_keyspace::{Entry, Kind, Object};

/// Current payload version.
pub const VERSION: u16 = 0x5301;
const KIND_STRING: u8 = 0;
const KIND_HASH: u8 = 1;
const KIND_LIST: u8 = 2;
const KIND_SET: u8 = 3;
const KIND_ZSET: u8 = 4;

/// Why a payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DumpError {
    /// Wrong version or checksum.
    Version,
    /// Checksum fine but the body is malformed.
    Format,
}

/// A restored value.
#[derive(Debug)]
pub enum Restored {
    /// String bytes.
    String(Vec<u8>),
    /// A collection.
    Object(Object),
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Serializes an entry's value (string or collection).
pub fn encode(e: &Entry) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = match e.object() {
        None => {
            body.extend_from_slice(e.value());
            KIND_STRING
        }
        Some(Object::Hash(h)) => {
            h.dump(&mut body);
            KIND_HASH
        }
        Some(Object::List(l)) => {
            l.dump(&mut body);
            KIND_LIST
        }
        Some(Object::Set(s)) => {
            s.dump(&mut body);
            KIND_SET
        }
        Some(Object::ZSet(z)) => {
            z.dump(&mut body);
            KIND_ZSET
        }
    };
    debug_assert_eq!(kind == KIND_STRING, e.kind() == Kind::String);
    let mut out = Vec::with_capacity(body.len() + 16);
    out.push(kind);
    put_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Parses a payload back into a value.
///
/// # Errors
/// [`DumpError`] for foreign, corrupted or malformed payloads.
pub fn decode(p: &[u8]) -> Result<Restored, DumpError> {
    if p.len() < 10 + 2 {
        return Err(DumpError::Version);
    }
    let (body, sum) = p.split_at(p.len() - 8);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    let sum = u64::from_le_bytes(sum.try_into().map_err(|_| DumpError::Version)?);
    if version != VERSION || fnv1a(body) != sum {
        return Err(DumpError::Version);
    }
    let body = &body[..body.len() - 2];
    let kind = *body.first().ok_or(DumpError::Format)?;
    let (mut len, mut shift, mut i) = (0usize, 0u32, 1usize);
    loop {
        let b = *body.get(i).ok_or(DumpError::Format)?;
        i += 1;
        if shift > 56 {
            return Err(DumpError::Format);
        }
        len |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    if body.len() - i != len {
        return Err(DumpError::Format);
    }
    let data = &body[i..];
    let obj = match kind {
        KIND_STRING => return Ok(Restored::String(data.to_vec())),
        KIND_HASH => Hash::restore(data).map(Object::Hash),
        KIND_LIST => List::restore(data).map(Object::List),
        KIND_SET => Set::restore(data).map(Object::Set),
        KIND_ZSET => ZSet::restore(data).map(Object::ZSet),
        _ => None,
    };
    match obj {
        // An empty collection is never stored (Redis deletes empty collections).
        Some(o) if !o.is_empty() => Ok(Restored::Object(o)),
        _ => Err(DumpError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_keyspace::Meta;

    #[test]
    fn round_trip_and_corruption() {
        for len in [0usize, 5, 200, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let e = Entry::new(b"k", &[&v], &Meta::default());
            let p = encode(&e);
            match decode(&p).unwrap() {
                Restored::String(got) => assert_eq!(got, v),
                other => panic!("{other:?}"),
            }
            let mut bad = p.clone();
            bad[1] ^= 1;
            assert_eq!(decode(&bad).unwrap_err(), DumpError::Version);
        }
        // A Redis 7 payload (RDB version 10) is refused.
        assert_eq!(
            decode(b"\x00\x03bar\n\x00\xe6\xbeI`\xeef\xfd\x17").unwrap_err(),
            DumpError::Version
        );
        assert_eq!(decode(b"").unwrap_err(), DumpError::Version);
    }
}
