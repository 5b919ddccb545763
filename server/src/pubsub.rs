//! Pub/Sub registry: channels and patterns to subscribers, shared by every worker.
//!
//! Each subscribing connection gets one bounded channel of encoded frames (its
//! `Conn::push_rx`). Publishers encode a message once per protocol and hand each
//! subscriber a cheap reference to it, wrapped so that the bytes stay accounted
//! to that subscriber until its connection has taken them off the channel. A
//! subscriber whose backlog passes [`OUTPUT_LIMIT`] (Redis' pubsub
//! `client-output-buffer-limit` hard limit) is killed and dropped from the
//! registry, so a client that never reads cannot grow memory without bound.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::RwLock;
use tokio::sync::mpsc::{self, Receiver, Sender};

use crate::shared::ClientHandle;

/// Backlog (bytes not yet taken by the connection) past which a subscriber is
/// disconnected: Redis' default `client-output-buffer-limit pubsub 32mb`.
pub const OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

/// Bytes charged per queued message on top of its frame (channel slot, owner).
const MSG_OVERHEAD: usize = 128;

/// Channel capacity in messages; the byte limit is always reached first.
const CHANNEL_CAP: usize = OUTPUT_LIMIT / MSG_OVERHEAD + 1;

/// One subscribing connection as publishers see it.
pub struct Subscriber {
    /// Client id.
    pub id: u64,
    handle: Arc<ClientHandle>,
    tx: Sender<Bytes>,
    /// Bytes queued on `tx` and not yet taken by the connection.
    queued: Arc<AtomicUsize>,
}

/// A queued frame: gives its bytes back to the subscriber's account when the
/// connection has taken (and dropped) it.
struct Tracked {
    data: Bytes,
    queued: Arc<AtomicUsize>,
    cost: usize,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.cost, Ordering::AcqRel);
    }
}

impl Subscriber {
    fn resp3(&self) -> bool {
        self.handle.info.lock().resp == 3
    }

    /// Queues `frame`; false when the subscriber went over its limit (or is gone)
    /// and has been killed.
    fn deliver(&self, frame: &Bytes) -> bool {
        let cost = frame.len() + MSG_OVERHEAD;
        let before = self.queued.fetch_add(cost, Ordering::AcqRel);
        if before + cost > OUTPUT_LIMIT {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            self.kill();
            return false;
        }
        let msg = Bytes::from_owner(Tracked {
            data: frame.clone(),
            queued: self.queued.clone(),
            cost,
        });
        // A failed send drops `msg`, which gives the bytes back.
        if self.tx.try_send(msg).is_err() {
            self.kill();
            return false;
        }
        true
    }

    fn kill(&self) {
        if !self.handle.killed.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                client = self.id,
                "closing pubsub client that reached its output buffer limit"
            );
        }
        self.handle.kill.notify_one();
    }
}

/// One connection's subscriptions, with the order they were made in.
struct ClientSubs {
    sub: Arc<Subscriber>,
    channels: HashMap<Box<[u8]>, u64>,
    patterns: HashMap<Box<[u8]>, u64>,
    seq: u64,
}

impl ClientSubs {
    fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    fn set(&mut self, pattern: bool) -> &mut HashMap<Box<[u8]>, u64> {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }
}

type Subs = HashMap<Box<[u8]>, HashMap<u64, Arc<Subscriber>>>;

#[derive(Default)]
struct Inner {
    channels: Subs,
    patterns: Subs,
    clients: HashMap<u64, ClientSubs>,
}

impl Inner {
    fn map(&mut self, pattern: bool) -> &mut Subs {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }

    /// Removes client `id` from `name`; returns whether it was subscribed.
    fn remove(&mut self, id: u64, name: &[u8], pattern: bool) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        if c.set(pattern).remove(name).is_none() {
            return false;
        }
        let map = self.map(pattern);
        if let Some(subs) = map.get_mut(name) {
            subs.remove(&id);
            if subs.is_empty() {
                map.remove(name);
            }
        }
        true
    }

    fn count(&self, id: u64) -> usize {
        self.clients.get(&id).map_or(0, ClientSubs::count)
    }
}

/// Channels and patterns with their subscribers.
#[derive(Default)]
pub struct PubSub {
    inner: RwLock<Inner>,
}

/// Encodes a `message` / `pmessage` frame as a RESP2 array (RESP3 differs only
/// in the first byte: `>` instead of `*`).
fn encode(pattern: Option<&[u8]>, channel: &[u8], msg: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(msg.len() + channel.len() + 64);
    let bulk = |b: &mut BytesMut, s: &[u8]| {
        b.put_u8(b'$');
        b.put_slice(itoa::Buffer::new().format(s.len()).as_bytes());
        b.put_slice(b"\r\n");
        b.put_slice(s);
        b.put_slice(b"\r\n");
    };
    match pattern {
        Some(p) => {
            b.put_slice(b"*4\r\n");
            bulk(&mut b, b"pmessage");
            bulk(&mut b, p);
        }
        None => {
            b.put_slice(b"*3\r\n");
            bulk(&mut b, b"message");
        }
    }
    bulk(&mut b, channel);
    bulk(&mut b, msg);
    b
}

/// A frame in both protocols, each encoded on first use.
struct Frames<'a> {
    pattern: Option<&'a [u8]>,
    channel: &'a [u8],
    msg: &'a [u8],
    resp2: Option<Bytes>,
    resp3: Option<Bytes>,
}

impl<'a> Frames<'a> {
    fn new(pattern: Option<&'a [u8]>, channel: &'a [u8], msg: &'a [u8]) -> Self {
        Frames {
            pattern,
            channel,
            msg,
            resp2: None,
            resp3: None,
        }
    }

    fn get(&mut self, resp3: bool) -> &Bytes {
        let (pattern, channel, msg) = (self.pattern, self.channel, self.msg);
        if resp3 {
            self.resp3.get_or_insert_with(|| {
                let mut b = encode(pattern, channel, msg);
                b[0] = b'>';
                b.freeze()
            })
        } else {
            self.resp2
                .get_or_insert_with(|| encode(pattern, channel, msg).freeze())
        }
    }
}

impl PubSub {
    /// Subscribes client `id` to a channel (or a pattern). The first subscription
    /// of a connection creates its message channel and stores the receiving end
    /// in `push_rx`. Returns the client's subscription count afterwards.
    pub fn subscribe(
        &self,
        id: u64,
        handle: &Arc<ClientHandle>,
        push_rx: &mut Option<Receiver<Bytes>>,
        name: &[u8],
        pattern: bool,
    ) -> usize {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let fresh = match inner.clients.get(&id) {
            Some(c) => push_rx.is_none() || c.sub.tx.is_closed(),
            None => true,
        };
        if fresh {
            let (tx, rx) = mpsc::channel(CHANNEL_CAP);
            *push_rx = Some(rx);
            let sub = Arc::new(Subscriber {
                id,
                handle: handle.clone(),
                tx,
                queued: Arc::new(AtomicUsize::new(0)),
            });
            match inner.clients.get_mut(&id) {
                Some(c) => {
                    // Re-point existing subscriptions at the new channel.
                    c.sub = sub.clone();
                    let (chs, pats): (Vec<_>, Vec<_>) = (
                        c.channels.keys().cloned().collect(),
                        c.patterns.keys().cloned().collect(),
                    );
                    for ch in chs {
                        inner
                            .channels
                            .entry(ch)
                            .or_default()
                            .insert(id, sub.clone());
                    }
                    for p in pats {
                        inner.patterns.entry(p).or_default().insert(id, sub.clone());
                    }
                }
                None => {
                    inner.clients.insert(
                        id,
                        ClientSubs {
                            sub,
                            channels: HashMap::new(),
                            patterns: HashMap::new(),
                            seq: 0,
                        },
                    );
                }
            }
        }
        let Some(c) = inner.clients.get_mut(&id) else {
            return 0;
        };
        let seq = c.seq;
        let sub = c.sub.clone();
        if c.set(pattern).contains_key(name) {
            return c.count();
        }
        c.set(pattern).insert(name.into(), seq);
        c.seq += 1;
        let count = c.count();
        inner
            .map(pattern)
            .entry(name.into())
            .or_default()
            .insert(id, sub);
        count
    }

    /// Unsubscribes client `id` from a channel (or pattern); returns its
    /// subscription count afterwards.
    pub fn unsubscribe(&self, id: u64, name: &[u8], pattern: bool) -> usize {
        let mut inner = self.inner.write();
        inner.remove(id, name, pattern);
        inner.count(id)
    }

    /// The channels (or patterns) client `id` is subscribed to, oldest first.
    pub fn subscriptions(&self, id: u64, pattern: bool) -> Vec<Box<[u8]>> {
        let inner = self.inner.read();
        let Some(c) = inner.clients.get(&id) else {
            return Vec::new();
        };
        let set = if pattern { &c.patterns } else { &c.channels };
        let mut v: Vec<(&Box<[u8]>, u64)> = set.iter().map(|(k, s)| (k, *s)).collect();
        v.sort_by_key(|(_, s)| *s);
        v.into_iter().map(|(k, _)| k.clone()).collect()
    }

    /// Client `id`'s channel + pattern subscription count.
    pub fn count(&self, id: u64) -> usize {
        self.inner.read().count(id)
    }

    /// Drops every subscription of client `id`, keeping its message channel
    /// (RESET: messages already queued are still delivered).
    pub fn unsubscribe_all(&self, id: u64) {
        let mut inner = self.inner.write();
        for pattern in [false, true] {
            let names: Vec<Box<[u8]>> = match inner.clients.get(&id) {
                Some(c) => {
                    let set = if pattern { &c.patterns } else { &c.channels };
                    set.keys().cloned().collect()
                }
                None => return,
            };
            for n in names {
                inner.remove(id, &n, pattern);
            }
        }
    }

    /// Forgets client `id` entirely (disconnect, or killed for its backlog).
    pub fn remove_client(&self, id: u64) {
        self.unsubscribe_all(id);
        self.inner.write().clients.remove(&id);
    }

    /// Publishes `msg` on `channel`; returns the number of receivers (channel
    /// subscribers plus matching pattern subscriptions). Messages for client
    /// `me` are not queued but passed to `to_me` (with the matching pattern, if
    /// any) so they are written in order with the publisher's own replies.
    pub fn publish(
        &self,
        channel: &[u8],
        msg: &[u8],
        me: u64,
        to_me: &mut dyn FnMut(Option<&[u8]>),
    ) -> usize {
        let mut receivers = 0;
        let mut dead: Vec<u64> = Vec::new();
        {
            let inner = self.inner.read();
            if let Some(subs) = inner.channels.get(channel) {
                let mut frames = Frames::new(None, channel, msg);
                for s in subs.values() {
                    receivers += 1;
                    if s.id == me {
                        to_me(None);
                    } else if !s.deliver(frames.get(s.resp3())) {
                        dead.push(s.id);
                    }
                }
            }
            for (pat, subs) in &inner.patterns {
                if !crate::glob::matches(pat, channel, false) {
                    continue;
                }
                let mut frames = Frames::new(Some(pat), channel, msg);
                for s in subs.values() {
                    receivers += 1;
                    if s.id == me {
                        to_me(Some(pat));
                    } else if !s.deliver(frames.get(s.resp3())) {
                        dead.push(s.id);
                    }
                }
            }
        }
        if !dead.is_empty() {
            let unique: HashSet<u64> = dead.into_iter().collect();
            for id in unique {
                self.remove_client(id);
            }
        }
        receivers
    }

    /// Active channels (with at least one subscriber), optionally filtered by a glob.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Box<[u8]>> {
        let inner = self.inner.read();
        inner
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| crate::glob::matches(p, c, false)))
            .cloned()
            .collect()
    }

    /// Subscribers of `channel` (patterns not included).
    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.inner
            .read()
            .channels
            .get(channel)
            .map_or(0, HashMap::len)
    }

    /// Number of active channels (INFO `pubsub_channels`).
    pub fn num_channels(&self) -> usize {
        self.inner.read().channels.len()
    }

    /// Number of distinct subscribed patterns.
    pub fn numpat(&self) -> usize {
        self.inner.read().patterns.len()
    }

    /// Bytes queued for client `id` and not yet taken by its connection.
    pub fn backlog(&self, id: u64) -> usize {
        self.inner
            .read()
            .clients
            .get(&id)
            .map_or(0, |c| c.sub.queued.load(Ordering::Relaxed))
    }
}
