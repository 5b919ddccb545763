//! The twelve key hashes twemproxy (nutcracker 0.5.0) offers, bit for bit.
//!
//! twemproxy's hash functions take `const char *` and widen individual bytes with a plain
//! `(uint32_t)key[i]` in several places. `char` is signed on x86-64, so a byte >= 0x80
//! enters those functions sign-extended (`0xff` becomes `0xffffffff`). That quirk decides
//! where binary keys go, so it is reproduced here with [`widen`] exactly where twemproxy
//! widens a `char` (one_at_a_time, the four FNV variants and hsieh's 3-byte tail); every
//! other place reads bytes as unsigned, as twemproxy does.

/// A byte widened the way x86-64 C widens a `char`: sign-extended.
#[inline(always)]
fn widen(b: u8) -> u32 {
    b as i8 as i32 as u32
}

/// Bob Jenkins' one-at-a-time hash.
pub(crate) fn one_at_a_time(key: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in key {
        h = h.wrapping_add(widen(b));
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h.wrapping_add(h << 15)
}

/// The first four bytes of the key's MD5 digest, read little-endian.
pub(crate) fn md5_hash(key: &[u8]) -> u32 {
    let d = md5(key);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// twemproxy 0.5.0's "crc16": the CRC-16/XMODEM table (polynomial 0x1021, MSB first), but
/// with a 32-bit register that is never masked, so the result keeps growing past 16 bits
/// (`"apple"` hashes to 3662830516).
pub(crate) fn crc16(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ u32::from(CRC16_XMODEM[((crc >> 8) ^ u32::from(b)) as usize & 0xff])
    })
}

/// libmemcached's "crc32": the bits 16..30 of the standard CRC-32 (a 15-bit value).
pub(crate) fn crc32(key: &[u8]) -> u32 {
    (crc32_ieee(key) >> 16) & 0x7fff
}

/// The standard CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub(crate) fn crc32a(key: &[u8]) -> u32 {
    crc32_ieee(key)
}

fn crc32_ieee(key: &[u8]) -> u32 {
    !key.iter().fold(u32::MAX, |crc, &b| {
        (crc >> 8) ^ CRC32_IEEE[((crc ^ u32::from(b)) & 0xff) as usize]
    })
}

const FNV64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// 64-bit FNV-1 (multiply, then xor the sign-extended byte), truncated to its low 32 bits.
pub(crate) fn fnv1_64(key: &[u8]) -> u32 {
    let h = key.iter().fold(FNV64_OFFSET, |h, &b| {
        h.wrapping_mul(FNV64_PRIME) ^ (b as i8 as i64 as u64)
    });
    h as u32
}

/// twemproxy's "fnv1a_64" is really a 32-bit FNV-1a run with the 64-bit constants
/// truncated to 32 bits (offset 0x84222325, prime 0x1b3).
pub(crate) fn fnv1a_64(key: &[u8]) -> u32 {
    key.iter().fold(FNV64_OFFSET as u32, |h, &b| {
        (h ^ widen(b)).wrapping_mul(FNV64_PRIME as u32)
    })
}

/// 32-bit FNV-1.
pub(crate) fn fnv1_32(key: &[u8]) -> u32 {
    key.iter()
        .fold(FNV32_OFFSET, |h, &b| h.wrapping_mul(FNV32_PRIME) ^ widen(b))
}

/// 32-bit FNV-1a.
pub(crate) fn fnv1a_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV32_OFFSET, |h, &b| {
        (h ^ widen(b)).wrapping_mul(FNV32_PRIME)
    })
}

/// Paul Hsieh's SuperFastHash (0 for the empty key).
pub(crate) fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let le16 = |p: &[u8]| u32::from(p[0]) | (u32::from(p[1]) << 8);
    let mut h: u32 = 0;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        h = h.wrapping_add(le16(block));
        let tmp = (le16(&block[2..]) << 11) ^ h;
        h = (h << 16) ^ tmp;
        h = h.wrapping_add(h >> 11);
    }
    let tail = blocks.remainder();
    match tail.len() {
        3 => {
            h = h.wrapping_add(le16(tail));
            h ^= h << 16;
            h ^= widen(tail[2]) << 18;
            h = h.wrapping_add(h >> 11);
        }
        2 => {
            h = h.wrapping_add(le16(tail));
            h ^= h << 11;
            h = h.wrapping_add(h >> 17);
        }
        1 => {
            h = h.wrapping_add(u32::from(tail[0]));
            h ^= h << 10;
            h = h.wrapping_add(h >> 1);
        }
        _ => {}
    }
    h ^= h << 3;
    h = h.wrapping_add(h >> 5);
    h ^= h << 4;
    h = h.wrapping_add(h >> 17);
    h ^= h << 25;
    h.wrapping_add(h >> 6)
}

/// MurmurHash2 with twemproxy's length-dependent seed (`0xdeadbeef * len`).
pub(crate) fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let len = key.len() as u32;
    let mut h = 0xdead_beef_u32.wrapping_mul(len) ^ len;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// Bob Jenkins' lookup3 `hashlittle` with initval 13, as read on a little-endian machine.
pub(crate) fn jenkins(key: &[u8]) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(13);
    let (mut a, mut b, mut c) = (init, init, init);
    if key.is_empty() {
        return c;
    }
    // Every block but the last goes through `mix`; the last one (1..=12 bytes, zero
    // padded) goes through `final`.
    let mut rest = key;
    while rest.len() > 12 {
        a = a.wrapping_add(le32_padded(&rest[0..4]));
        b = b.wrapping_add(le32_padded(&rest[4..8]));
        c = c.wrapping_add(le32_padded(&rest[8..12]));
        jenkins_mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    let word = |i: usize| le32_padded(rest.get(i * 4..).unwrap_or(&[]));
    a = a.wrapping_add(word(0));
    b = b.wrapping_add(word(1));
    c = c.wrapping_add(word(2));
    jenkins_final(&mut a, &mut b, &mut c);
    c
}

/// Up to four bytes as a little-endian word, missing bytes taken as zero.
#[inline(always)]
fn le32_padded(p: &[u8]) -> u32 {
    p.iter()
        .take(4)
        .enumerate()
        .fold(0, |w, (i, &b)| w | (u32::from(b) << (8 * i)))
}

#[inline(always)]
fn jenkins_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn jenkins_final(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

// ---------------------------------------------------------------------------------------
// Tables, computed at compile time.

/// CRC-16/XMODEM table: polynomial 0x1021, most significant bit first.
static CRC16_XMODEM: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE) table: reflected polynomial 0xedb88320.
static CRC32_IEEE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
};

// ---------------------------------------------------------------------------------------
// MD5 (RFC 1321), small and allocation-free: ketama runs it 40 times per server when a
// ring is built, and the `md5` key hash once per lookup.

/// Per-round left-rotation amounts.
const MD5_SHIFTS: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, //
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, //
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, //
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

/// `floor(abs(sin(i + 1)) * 2^32)`, as listed in RFC 1321.
const MD5_K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// The MD5 digest of `data`.
pub(crate) fn md5(data: &[u8]) -> [u8; 16] {
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        md5_block(&mut state, block.try_into().expect("64-byte block"));
    }
    // Padding: 0x80, zeros, then the bit length (little-endian) in the last 8 bytes of
    // the final block; one or two blocks depending on what is left.
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bits = (data.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_le_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        md5_block(&mut state, block.try_into().expect("64-byte block"));
    }
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

fn md5_block(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (w, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    // One step: mix the round function's output into `a`, then rotate the registers.
    macro_rules! rounds {
        ($range:expr, |$x:ident, $y:ident, $z:ident| $f:expr, |$i:ident| $g:expr) => {
            for $i in $range {
                let ($x, $y, $z) = (b, c, d);
                let mixed = a
                    .wrapping_add($f)
                    .wrapping_add(MD5_K[$i])
                    .wrapping_add(m[$g])
                    .rotate_left(MD5_SHIFTS[$i]);
                a = d;
                d = c;
                c = b;
                b = b.wrapping_add(mixed);
            }
        };
    }
    rounds!(0..16, |x, y, z| (x & y) | (!x & z), |i| i);
    rounds!(16..32, |x, y, z| (z & x) | (!z & y), |i| (5 * i + 1) % 16);
    rounds!(32..48, |x, y, z| x ^ y ^ z, |i| (3 * i + 5) % 16);
    rounds!(48..64, |x, y, z| y ^ (x | !z), |i| (7 * i) % 16);
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}
