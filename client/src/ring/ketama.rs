//! twemproxy's server order and ketama continuum.

use std::fmt::Write as _;

use super::hash::md5;
use super::RingNode;

/// Points per server at average weight.
const POINTS_PER_SERVER: u32 = 160;
/// Points taken from one MD5 digest.
const POINTS_PER_HASH: u32 = 4;

/// Node indices in twemproxy's server order: by name, shorter names first, names of equal
/// length byte-wise (twemproxy's `string_compare`), ties in configuration order.
pub(super) fn server_order(nodes: &[RingNode]) -> Vec<usize> {
    let names: Vec<_> = nodes.iter().map(RingNode::ketama_name).collect();
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (names[a].as_bytes(), names[b].as_bytes());
        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
    });
    order
}

/// How many points a server of `weight` gets among `live` servers of `total_weight`,
/// computed in single precision exactly as twemproxy's `ketama_update` does it (including
/// its `+ 0.0000000001`, which is added in double precision and then rounded back to
/// single precision).
pub(super) fn points_for(weight: u32, total_weight: u64, live: usize) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let scaled = pct * POINTS_PER_SERVER as f32 / POINTS_PER_HASH as f32 * live as f32;
    let nudged = (f64::from(scaled) + 0.000_000_000_1) as f32;
    // `as` saturates (and maps NaN to 0), where C would be undefined.
    (nudged.floor() as u32).saturating_mul(POINTS_PER_HASH)
}

/// The sorted continuum over the live servers `live_order` (indices into `nodes`, in
/// server order): parallel arrays of point values and owning node indices.
pub(super) fn continuum(nodes: &[RingNode], live_order: &[usize]) -> (Box<[u32]>, Box<[u32]>) {
    let total_weight: u64 = live_order.iter().map(|&i| u64::from(nodes[i].weight)).sum();
    let mut entries: Vec<(u32, u32)> = Vec::new();
    let mut label = String::new();
    for &index in live_order {
        let node = &nodes[index];
        let name = node.ketama_name();
        let digests = points_for(node.weight, total_weight, live_order.len()) / POINTS_PER_HASH;
        entries.reserve(digests as usize * POINTS_PER_HASH as usize);
        for i in 0..digests {
            label.clear();
            // twemproxy formats "%.*s-%u" into an 86-byte buffer; longer labels (names of
            // about 80 bytes) are undefined behaviour there and hashed in full here.
            write!(label, "{name}-{i}").expect("writing to a String");
            let digest = md5(label.as_bytes());
            for word in digest.chunks_exact(4) {
                let point = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                entries.push((point, index as u32));
            }
        }
    }
    // Stable, like glibc's merge-sort qsort: equal points keep server order, and lookups
    // take the first of them.
    entries.sort_by_key(|&(point, _)| point);
    let (points, owners): (Vec<u32>, Vec<u32>) = entries.into_iter().unzip();
    (points.into_boxed_slice(), owners.into_boxed_slice())
}
