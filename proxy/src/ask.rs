//! Requests for keys that a reshard is moving (docs/resharding.md).
//!
//! While a pool has two rings, a request whose key changes owner is sent to the **old**
//! owner wrapped in `SHOAL.ASK` (RESP) or prefixed with `shoal.ask ` (memcache). The old
//! owner runs it if it still has the key, answers `SHOALMOVED` if it has not (the key
//! moved, or never existed: the new owner decides), or `TRYAGAIN` while the key is inside a
//! migrating batch. After the client's batch comes back, [`resolve`] sends the plain
//! request to the new owner for every `SHOALMOVED` and asks again after a short pause for
//! every `TRYAGAIN`, until each has a final reply. Clients never see either answer.
//!
//! Pools of plain redis-server or memcached servers have no `SHOAL.ASK`: their asks are
//! sent and resolved by [`crate::reshard::plain`] (an ask script or an on-demand `MIGRATE`
//! on redis; reads that try the new owner first on memcached), told apart by [`AskKind`].

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Batch, Reply};
use crate::topology::PoolView;

/// Pause before asking again about a key inside a migrating batch.
const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// After this long the `TRYAGAIN` reaches the client (a migration that is stuck).
const GIVE_UP: Duration = Duration::from_secs(10);

/// One request sent to a moving key's old owner.
pub struct Ask {
    /// Index of the client request's output.
    pub out: usize,
    /// Part of a gathered output (`usize::MAX`: the output is one slot).
    pub part: usize,
    /// Old and new owner (server indices).
    pub src: usize,
    pub dst: usize,
    /// The request without the wrapper.
    pub plain: Bytes,
    /// The slot its reply is in now.
    pub slot: u32,
    /// How its replies are read.
    pub kind: AskKind,
}

/// How an ask was sent and how its replies are read (see [`crate::reshard::plain`] for
/// every kind but `Shoal`). `src` is the old owner and `dst` the new one for every kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AskKind {
    /// `SHOAL.ASK` / `shoal.ask ` on the old owner (`backend: shoal`).
    Shoal,
    /// redis: the ask script on the old owner.
    Script,
    /// redis: `MIGRATE` of the request's keys on the old owner, then the request on the
    /// new one.
    Migrate,
    /// memcached: a read on the new owner, then on the old one after a miss.
    McRead,
    /// memcached: a read on the old owner after a miss on the new one (after a miss here
    /// too, the new owner is read again).
    McReadOld,
    /// memcached: a write on the new owner; after a miss, the item is copied first.
    McWrite,
    /// memcached: the item fetched from the old owner, copied before the write.
    McFetch,
    /// memcached: a delete on the new owner, then on the old one.
    McDelete,
    /// memcached: the delete on the old owner (then the new owner's is repeated);
    /// `deleted_new`: the first leg deleted the item.
    McDeleteOld { deleted_new: bool },
    /// memcached: an on-demand copy was sent; once it is stored, `delete` retires the old
    /// item.
    McCleanup { delete: Bytes },
}

impl AskKind {
    /// A memcache write that may copy its item first: later requests of the client's
    /// batch wait for it, so they see its effect.
    pub fn ends_batch(&self) -> bool {
        matches!(self, AskKind::McWrite | AskKind::McFetch)
    }
}

/// What the old owner said.
enum Verdict {
    Final,
    Moved,
    Retry,
}

fn verdict(reply: Option<&Bytes>, memcache: bool) -> Verdict {
    let Some(b) = reply else {
        return Verdict::Final;
    };
    if memcache {
        if b.as_ref() == b"SHOAL_MOVED\r\n" {
            return Verdict::Moved;
        }
        if b.as_ref() == b"SHOAL_TRYAGAIN\r\n" {
            return Verdict::Retry;
        }
    } else {
        if b.starts_with(b"-SHOALMOVED") {
            return Verdict::Moved;
        }
        if b.starts_with(b"-TRYAGAIN") {
            return Verdict::Retry;
        }
    }
    Verdict::Final
}

/// `SHOAL.ASK` + a multibulk request.
pub fn wrap_resp(req: &[u8], out: &mut BytesMut) {
    out.clear();
    let eol = memchr::memchr(b'\n', req).map_or(req.len(), |i| i + 1);
    let n: usize = std::str::from_utf8(&req[1..eol.saturating_sub(2).max(1)])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut b = itoa::Buffer::new();
    out.put_u8(b'*');
    out.put_slice(b.format(n + 1).as_bytes());
    out.put_slice(b"\r\n$9\r\nSHOAL.ASK\r\n");
    out.put_slice(&req[eol..]);
}

/// `shoal.ask ` + a memcache request.
pub fn wrap_memcache(req: &[u8], out: &mut BytesMut) {
    out.clear();
    out.put_slice(b"shoal.ask ");
    out.put_slice(req);
}

/// Resolves every ask of a batch whose first replies are in: `send(ask, to_new_owner,
/// bytes)` enqueues a request and returns its slot; `set_slot(out, part, slot)` points the
/// client's output at the slot holding the final reply.
pub async fn resolve(
    asks: &mut Vec<Ask>,
    batch: &Batch,
    pool: &PoolView,
    memcache: bool,
    mut send: impl FnMut(&Ask, bool, &[u8]) -> u32,
    mut set_slot: impl FnMut(usize, usize, u32),
) {
    let started = Instant::now();
    let mut wrapped = BytesMut::new();
    while !asks.is_empty() {
        let mut again = Vec::new();
        let mut retried = false;
        for mut a in asks.drain(..) {
            let reply = match batch.peek(a.slot) {
                Reply::Data(b) => Some(b),
                _ => None,
            };
            if a.kind != AskKind::Shoal {
                let young = started.elapsed() < GIVE_UP;
                let step = crate::reshard::plain::step(
                    &mut a,
                    reply.as_ref(),
                    pool,
                    young,
                    &mut send,
                    &mut set_slot,
                    &mut wrapped,
                );
                if let crate::reshard::plain::Step::Again { pause } = step {
                    retried |= pause;
                    again.push(a);
                }
                continue;
            }
            match verdict(reply.as_ref(), memcache) {
                Verdict::Final => {}
                Verdict::Moved => {
                    let _ = batch.take(a.slot);
                    let slot = send(&a, true, &a.plain);
                    set_slot(a.out, a.part, slot);
                }
                Verdict::Retry if started.elapsed() < GIVE_UP => {
                    let _ = batch.take(a.slot);
                    if memcache {
                        wrap_memcache(&a.plain, &mut wrapped);
                    } else {
                        wrap_resp(&a.plain, &mut wrapped);
                    }
                    a.slot = send(&a, false, &wrapped);
                    set_slot(a.out, a.part, a.slot);
                    retried = true;
                    again.push(a);
                }
                Verdict::Retry => {}
            }
        }
        if retried {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        batch.wait().await;
        *asks = again;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_resp() {
        let mut out = BytesMut::new();
        wrap_resp(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &mut out);
        assert_eq!(
            &out[..],
            b"*3\r\n$9\r\nSHOAL.ASK\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
        wrap_resp(b"*11\r\n", &mut out);
        assert_eq!(&out[..], b"*12\r\n$9\r\nSHOAL.ASK\r\n");
    }

    #[test]
    fn verdicts() {
        let v = |s: &'static [u8], mc| verdict(Some(&Bytes::from_static(s)), mc);
        assert!(matches!(v(b"-SHOALMOVED\r\n", false), Verdict::Moved));
        assert!(matches!(v(b"-TRYAGAIN x\r\n", false), Verdict::Retry));
        assert!(matches!(v(b"$1\r\nx\r\n", false), Verdict::Final));
        assert!(matches!(v(b"SHOAL_MOVED\r\n", true), Verdict::Moved));
        assert!(matches!(v(b"SHOAL_TRYAGAIN\r\n", true), Verdict::Retry));
        assert!(matches!(v(b"END\r\n", true), Verdict::Final));
        assert!(matches!(verdict(None, true), Verdict::Final));
    }
}
