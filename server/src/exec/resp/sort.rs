//! SORT and SORT_RO, Redis 7.0 semantics (`sort.c`).
//!
//! The elements of the list, set or sorted set are copied out under the key's
//! shard lock; `BY` / `GET` pattern lookups then lock each formed key's shard in
//! turn (they may live on any shard), and `STORE` writes the destination last.
//! Against concurrent writers from other threads a SORT with patterns is thus
//! not one atomic snapshot, as it is on single-threaded Redis; each lookup is.
//!
//! Ordering follows Redis exactly: numeric sorts compare the parsed doubles and
//! break ties by the elements' bytes; `ALPHA` compares bytes (redis-server's
//! `strcoll` under the C or C.UTF-8 locale); `ALPHA` with `BY` puts elements
//! whose weight key is missing first and leaves equal weights in the order the
//! sort algorithm leaves them, as Redis does.

use shoal_keyspace::types::{List, Set, ZSet};
use shoal_keyspace::{Object, ObjectKind};

use shoal_client::resp::SortArgs;

use super::{parse_i64, Ctx, Req, Spec};
use super::{DENYOOM, K1, READONLY, WRITE};

/// This module's command table rows.
pub(super) fn table() -> Vec<Spec> {
    super::rows! {
    "sort", -2, WRITE | DENYOOM, K1, sort;
    "sort_ro", -2, READONLY, K1, sort_ro;
    }
}

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA] [STORE destination]
pub fn sort(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    sort_generic(ctx, req, false);
}

/// SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
pub fn sort_ro(ctx: &mut Ctx<'_>, req: &Req<'_>) {
    sort_generic(ctx, req, true);
}

struct Options<'a> {
    desc: bool,
    alpha: bool,
    limit: Option<(i64, i64)>,
    by: Option<&'a [u8]>,
    dontsort: bool,
    gets: Vec<&'a [u8]>,
    store: Option<&'a [u8]>,
}

/// Parses the options from argument 2 on; replies and returns `None` on an error
/// (a bad LIMIT number is reported before a syntax error after it, as Redis does).
fn parse<'a>(ctx: &mut Ctx<'_>, req: &Req<'a>, readonly: bool) -> Option<Options<'a>> {
    let a = SortArgs::parse(req.len(), |i| req.arg(i), !readonly);
    let mut limit = None;
    for &i in &a.limits {
        let (Some(s), Some(c)) = (parse_i64(req.arg(i)), parse_i64(req.arg(i + 1))) else {
            ctx.err("ERR value is not an integer or out of range");
            return None;
        };
        limit = Some((s, c));
    }
    if a.syntax_error.is_some() {
        ctx.syntax();
        return None;
    }
    Some(Options {
        desc: a.desc,
        alpha: a.alpha,
        limit,
        by: a.by.map(|i| req.arg(i)),
        dontsort: a.dontsort,
        gets: a.gets.iter().map(|&i| req.arg(i)).collect(),
        store: a.store.map(|i| req.arg(i)),
    })
}

/// The sorted value's elements, in the order Redis loads them, and its type.
enum Loaded {
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    ZSet(Vec<Vec<u8>>),
}

fn sort_generic(ctx: &mut Ctx<'_>, req: &Req<'_>, readonly: bool) {
    let Some(mut o) = parse(ctx, req, readonly) else {
        return;
    };
    let key = req.arg(1);
    let loaded = {
        let no_touch = ctx.conn.no_touch;
        let now = ctx.now;
        let mut g = ctx.ks.lock(key);
        match g.lookup_read(key, now, no_touch) {
            None => Loaded::List(Vec::new()),
            Some(e) => match e.object() {
                Some(obj) => match load(obj) {
                    Some(l) => l,
                    None => {
                        drop(g);
                        ctx.wrongtype();
                        return;
                    }
                },
                None => {
                    drop(g);
                    ctx.wrongtype();
                    return;
                }
            },
        }
    };
    // A set in its iteration order is not deterministic: stored results (which
    // replicas recompute) are sorted by the elements instead.
    if o.dontsort && matches!(loaded, Loaded::Set(_)) && o.store.is_some() {
        o.dontsort = false;
        o.alpha = true;
        o.by = None;
    }
    let (is_ordered, mut elems) = match loaded {
        Loaded::List(v) | Loaded::ZSet(v) => (true, v),
        Loaded::Set(v) => (false, v),
    };
    let len = elems.len() as i64;
    let (limit_start, limit_count) = o.limit.unwrap_or((0, -1));
    let mut start = limit_start.clamp(0, len);
    let count = limit_count.clamp(-1, len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    if o.dontsort && is_ordered {
        // Native order (reversed for DESC), only the LIMIT range.
        if o.desc {
            elems.reverse();
        }
        if end >= start {
            elems = elems
                .drain(start as usize..=end as usize)
                .collect::<Vec<_>>();
        } else {
            elems.clear();
        }
        end -= start;
        start = 0;
    } else if !o.dontsort {
        match sort_elements(ctx, &o, elems) {
            Some(v) => elems = v,
            None => {
                ctx.err("ERR One or more scores can't be converted into double");
                return;
            }
        }
    }
    let range: &[Vec<u8>] = if end >= start {
        &elems[start as usize..=end as usize]
    } else {
        &[]
    };
    let mut out: Vec<Option<Vec<u8>>> = Vec::new();
    for e in range {
        if o.gets.is_empty() {
            out.push(Some(e.clone()));
        }
        for p in &o.gets {
            out.push(lookup_pattern(ctx, p, e));
        }
    }
    match o.store {
        None => {
            ctx.w().array(out.len());
            for v in &out {
                match v {
                    Some(b) => ctx.w().bulk(b),
                    None => ctx.w().null(),
                }
            }
        }
        Some(dst) => {
            let now = ctx.now;
            let n = out.len();
            let mut g = ctx.ks.lock(dst);
            if n == 0 {
                g.remove(dst, now);
            } else {
                let list = List::from_elems(out.iter().map(|v| v.as_deref().unwrap_or(b"")));
                g.insert_object(dst, Object::List(list), None, now);
            }
            drop(g);
            ctx.w().int(n as i64);
        }
    }
}

/// Copies out the elements of a list (in order), set (iteration order) or
/// sorted set (by rank); `None` for any other type.
fn load(obj: &Object) -> Option<Loaded> {
    if let Some(l) = List::of(obj) {
        return Some(Loaded::List(l.iter().map(<[u8]>::to_vec).collect()));
    }
    if let Some(s) = Set::of(obj) {
        return Some(Loaded::Set(s.iter().map(|m| m.to_vec()).collect()));
    }
    if let Some(z) = ZSet::of(obj) {
        let mut v = Vec::with_capacity(z.len());
        z.range(0, z.len(), false, |m, _| v.push(m.to_vec()));
        return Some(Loaded::ZSet(v));
    }
    None
}

/// Sorts `elems` as the options say; `None` when a weight is not a number.
fn sort_elements(ctx: &mut Ctx<'_>, o: &Options<'_>, elems: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    let weights: Vec<Option<Vec<u8>>> = match o.by {
        Some(p) => elems.iter().map(|e| lookup_pattern(ctx, p, e)).collect(),
        None => Vec::new(),
    };
    let mut idx: Vec<usize> = (0..elems.len()).collect();
    if o.alpha {
        if o.by.is_some() {
            // Missing weights first; equal weights keep no particular order in Redis,
            // here their load order.
            idx.sort_by(|&a, &b| weights[a].cmp(&weights[b]));
        } else {
            idx.sort_by(|&a, &b| elems[a].cmp(&elems[b]));
        }
    } else {
        let mut scores = Vec::with_capacity(elems.len());
        for i in 0..elems.len() {
            let w = if o.by.is_some() {
                weights[i].as_deref()
            } else {
                Some(elems[i].as_slice())
            };
            // A missing weight key sorts as 0 (Redis leaves the score unset).
            scores.push(match w {
                Some(w) => strtod_whole(w)?,
                None => 0.0,
            });
        }
        idx.sort_by(|&a, &b| {
            scores[a]
                .partial_cmp(&scores[b])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| elems[a].cmp(&elems[b]))
        });
    }
    if o.desc {
        idx.reverse();
    }
    let mut slots: Vec<Option<Vec<u8>>> = elems.into_iter().map(Some).collect();
    Some(idx.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// A weight as SORT reads it (`strtod` must consume the whole string, no ERANGE,
/// no NaN); the empty string is 0.
fn strtod_whole(b: &[u8]) -> Option<f64> {
    let (v, used, erange) = super::zsets::strtod(b);
    (used == b.len() && !erange && !v.is_nan()).then_some(v)
}

/// Redis' `lookupKeyByPattern`: `#` is the element itself; otherwise the first
/// `*` is replaced by the element, and a `->field` after it reads that hash
/// field instead of a string. `None` for a pattern without `*`, a missing key or
/// field, or a key of another type.
fn lookup_pattern(ctx: &mut Ctx<'_>, pattern: &[u8], elem: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(elem.to_vec());
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    let after = &pattern[star + 1..];
    let (post, field) = match after.windows(2).position(|w| w == b"->") {
        Some(f) if f + 2 < after.len() => (&after[..f], Some(&after[f + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(star + elem.len() + post.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(post);
    let no_touch = ctx.conn.no_touch;
    let now = ctx.now;
    let mut g = ctx.ks.lock(&key);
    let e = g.lookup_read(&key, now, no_touch)?;
    match field {
        Some(f) => {
            let h = shoal_keyspace::types::Hash::of(e.object()?)?;
            h.get(f).map(<[u8]>::to_vec)
        }
        None => e.is_string().then(|| e.value().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_like_strtod() {
        assert_eq!(strtod_whole(b""), Some(0.0));
        assert_eq!(strtod_whole(b"  12.5"), Some(12.5));
        assert_eq!(strtod_whole(b"-1e3"), Some(-1000.0));
        assert_eq!(strtod_whole(b"0x10"), Some(16.0));
        assert_eq!(strtod_whole(b"inf"), Some(f64::INFINITY));
        assert_eq!(strtod_whole(b"12 "), None);
        assert_eq!(strtod_whole(b"nan"), None);
        assert_eq!(strtod_whole(b"abc"), None);
        assert_eq!(strtod_whole(b"   "), None);
    }
}
