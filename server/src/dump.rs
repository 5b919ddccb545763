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

use shoal_keyspace::{Entry, Kind};

/// Current payload version.
pub const VERSION: u16 = 0x5301;
const KIND_STRING: u8 = 0;

/// Why a payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DumpError {
    /// Wrong version or checksum.
    Version,
    /// Checksum fine but the body is malformed.
    Format,
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Serializes an entry's value.
pub fn encode(e: &Entry) -> Vec<u8> {
    let v = e.value();
    let mut out = Vec::with_capacity(v.len() + 16);
    // Collections get their own kinds with the data-types work (#3); until then
    // DUMP of a collection is refused by the caller.
    debug_assert_eq!(e.kind(), Kind::String);
    out.push(KIND_STRING);
    let mut n = v.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(v);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Parses a payload back into a string value.
///
/// # Errors
/// [`DumpError`] for foreign, corrupted or malformed payloads.
pub fn decode(p: &[u8]) -> Result<Vec<u8>, DumpError> {
    if p.len() < 10 + 2 {
        return Err(DumpError::Version);
    }
    let (body, sum) = p.split_at(p.len() - 8);
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    if version != VERSION
        || fnv1a(body) != u64::from_le_bytes(sum.try_into().map_err(|_| DumpError::Version)?)
    {
        return Err(DumpError::Version);
    }
    let body = &body[..body.len() - 2];
    if body.first() != Some(&KIND_STRING) {
        return Err(DumpError::Format);
    }
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
    Ok(body[i..].to_vec())
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
            assert_eq!(decode(&p).unwrap(), v);
            let mut bad = p.clone();
            bad[1] ^= 1;
            assert_eq!(decode(&bad), Err(DumpError::Version));
        }
        // A Redis 7 payload (RDB version 10) is refused.
        assert_eq!(
            decode(b"\x00\x03bar\n\x00\xe6\xbeI`\xeef\xfd\x17"),
            Err(DumpError::Version)
        );
        assert_eq!(decode(b""), Err(DumpError::Version));
    }
}
