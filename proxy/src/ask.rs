//! Requests for keys that a reshard is moving (docs/resharding.md).
//!
//! While a pool has two rings, a request whose key changes owner is sent to the **old**
//! owner wrapped in `SHOAL.ASK` (RESP) or prefixed with `shoal.ask ` (memcache). The old
//! owner runs it if it still has the key, answers `SHOALMOVED` if it has not (the key
//! moved, or never existed: the new owner decides), or `TRYAGAIN` while the key is inside a
//! migrating batch. After the client's batch comes back, [`resolve`] sends the plain
//! request to the new owner for every `SHOALMOVED` and asks again after a short pause for
//! every `TRYAGAIN`, until each has a final reply. Clients never see either answer.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::{Batch, Reply};

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
