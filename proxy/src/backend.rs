//! Backend connections: one pipelined TCP connection to one server, shared by every client
//! connection of a worker thread (or checked out by one client for MULTI/EXEC, blocking
//! commands and pub/sub).
//!
//! ```text
//!  client tasks ──enqueue(request bytes, Waiter)──► Queue { out, waiters }
//!                                                      │ writer half: one write per wake,
//!                                                      ▼ carrying every client's requests
//!                                                   backend socket
//!                                                      │ reader half: frame replies, pop
//!  client Batch slots ◄──────── deliver(Bytes) ◄──────┘ waiters in order
//! ```
//!
//! Everything here lives on one worker thread (`Rc`, `RefCell`): a backend connection is
//! never touched by two threads, so the hot path has no locks and no atomics besides the
//! health counters the health checker reads.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::topology::ServerHealth;

/// The wire a backend connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wire {
    /// RESP2 (the default of a fresh Redis connection).
    Resp2,
    /// RESP3 (after `HELLO 3`), for clients that negotiated RESP3.
    Resp3,
    /// memcached ASCII (text and meta).
    Memcache,
}

/// Why a request got no reply from its backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made or was refused.
    Refused,
    /// The connection broke with the request in flight.
    Closed,
    /// No reply within the pool's `timeout`.
    Timeout,
    /// The server is ejected from the pool or marked down.
    Down,
}

impl Failure {
    /// Text of the error reply (twemproxy's wording where it has one).
    pub fn message(self) -> &'static str {
        match self {
            Failure::Refused => "Connection refused",
            Failure::Closed => "Connection reset by peer",
            Failure::Timeout => "Connection timed out",
            Failure::Down => "Server unavailable",
        }
    }
}

/// What a slot of a client batch holds.
#[derive(Clone, Debug, Default)]
pub enum Reply {
    /// Not answered yet.
    #[default]
    Pending,
    /// The backend's reply, byte for byte.
    Data(Bytes),
    /// No reply: the backend failed.
    Failed(Failure),
}

/// The replies of one client's batch of requests: filled by backends in any order, read by
/// the client in request order once `outstanding` is 0. One wake-up per batch.
#[derive(Default)]
pub struct Batch {
    slots: RefCell<Vec<Reply>>,
    outstanding: Cell<usize>,
    waker: RefCell<Option<Waker>>,
    /// Frames pushed to a subscribed client outside the request/reply flow.
    pub pushed: RefCell<BytesMut>,
}

impl Batch {
    /// Starts a new batch (every slot of the previous one must have been taken).
    pub fn reset(&self) {
        self.slots.borrow_mut().clear();
        self.outstanding.set(0);
    }

    /// Reserves a slot for a reply that a backend will deliver.
    pub fn slot(&self) -> u32 {
        let mut s = self.slots.borrow_mut();
        s.push(Reply::Pending);
        self.outstanding.set(self.outstanding.get() + 1);
        (s.len() - 1) as u32
    }

    fn fill(&self, slot: u32, reply: Reply) {
        let mut s = self.slots.borrow_mut();
        let Some(cell) = s.get_mut(slot as usize) else {
            return;
        };
        if !matches!(cell, Reply::Pending) {
            return;
        }
        *cell = reply;
        drop(s);
        let left = self.outstanding.get() - 1;
        self.outstanding.set(left);
        if left == 0 {
            if let Some(w) = self.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Takes the reply of `slot` (after [`wait`](Self::wait)).
    pub fn take(&self, slot: u32) -> Reply {
        std::mem::take(&mut self.slots.borrow_mut()[slot as usize])
    }

    /// The reply of `slot`, left in place.
    pub fn peek(&self, slot: u32) -> Reply {
        self.slots.borrow()[slot as usize].clone()
    }

    /// Waits until every slot is filled.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.outstanding.get() == 0 {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    /// Wakes the owner (used for pushed pub/sub frames).
    pub fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Registers the waker without a condition (pub/sub idle wait).
    pub fn register(&self, w: &Waker) {
        *self.waker.borrow_mut() = Some(w.clone());
    }
}

/// Who gets the reply at the head of the queue.
enum Waiter {
    /// A client slot.
    Client { batch: Rc<Batch>, slot: u32 },
    /// A handshake reply (AUTH, SELECT, HELLO) nobody waits for.
    Discard,
}

#[derive(Default)]
struct Queue {
    out: BytesMut,
    waiters: VecDeque<Waiter>,
    /// When the oldest unanswered request was handed to the socket.
    oldest: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Up,
    /// Connecting failed; requests fail at once until this instant.
    Down(Instant),
}

/// Settings of a backend connection.
#[derive(Clone, Debug)]
pub struct BackendOpts {
    /// `host:port`.
    pub addr: String,
    /// Protocol.
    pub wire: Wire,
    /// Pool `timeout`.
    pub timeout: Option<Duration>,
    /// Requests sent first on every (re)connect, their replies discarded.
    pub handshake: Vec<Bytes>,
    /// How long to fail requests at once after a failed connect.
    pub retry: Duration,
    /// Dedicated (checked out by one client) rather than shared.
    pub exclusive: bool,
    /// TCP keepalive on the socket (`tcpkeepalive`).
    pub keepalive: bool,
}

/// One pipelined connection to one backend.
pub struct BackendConn {
    opts: BackendOpts,
    health: Arc<ServerHealth>,
    q: RefCell<Queue>,
    /// The connection task, parked until there is something to write.
    writer: RefCell<Option<Waker>>,
    state: Cell<State>,
    closed: Cell<bool>,
    /// Connect before the first request (`preconnect`).
    eager: Cell<bool>,
    /// Requests queued since the last write (counted into the health's total per write).
    pub sent: Cell<u64>,
    /// Raw pushes (pub/sub) are forwarded here instead of to waiters.
    pub push_target: RefCell<Option<Rc<Batch>>>,
}

impl BackendConn {
    /// Creates the connection object and spawns its task on this worker thread's runtime.
    pub fn spawn(opts: BackendOpts, health: Arc<ServerHealth>) -> Rc<BackendConn> {
        let conn = Rc::new(BackendConn {
            opts,
            health,
            q: RefCell::new(Queue::default()),
            writer: RefCell::new(None),
            state: Cell::new(State::Idle),
            closed: Cell::new(false),
            eager: Cell::new(false),
            sent: Cell::new(0),
            push_target: RefCell::new(None),
        });
        tokio::task::spawn_local(conn.clone().run());
        conn
    }

    /// Wakes the connection task (single-threaded: a plain waker, no atomics).
    #[inline]
    fn kick(&self) {
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once there are bytes to write or the connection was closed.
    async fn work(&self) {
        std::future::poll_fn(|cx| {
            if self.closed.get() || !self.q.borrow().out.is_empty() || self.eager.take() {
                Poll::Ready(())
            } else {
                *self.writer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    /// Connects now rather than at the first request (`preconnect`).
    pub fn preconnect(&self) {
        self.eager.set(true);
        self.kick();
    }

    /// The backend's address.
    pub fn addr(&self) -> &str {
        &self.opts.addr
    }

    /// Whether requests would fail at once (connect failed recently or closed).
    pub fn is_down(&self) -> bool {
        if self.closed.get() {
            return true;
        }
        matches!(self.state.get(), State::Down(until) if Instant::now() < until)
    }

    /// Whether the connection has unanswered requests.
    pub fn busy(&self) -> bool {
        !self.q.borrow().waiters.is_empty()
    }

    /// Queues `req` (one complete request) whose single reply goes to `batch[slot]`.
    pub fn enqueue(&self, req: &[u8], batch: &Rc<Batch>, slot: u32) {
        if self.is_down() {
            batch.fill(slot, Reply::Failed(Failure::Refused));
            return;
        }
        let mut q = self.q.borrow_mut();
        q.out.extend_from_slice(req);
        q.waiters.push_back(Waiter::Client {
            batch: batch.clone(),
            slot,
        });
        drop(q);
        self.sent.set(self.sent.get() + 1);
        self.kick();
    }

    /// Queues `req`, which the server answers with `n` frames (a SUBSCRIBE of `n`
    /// channels), each filling a fresh slot of `batch`.
    pub fn enqueue_n(&self, req: &[u8], batch: &Rc<Batch>, n: usize) {
        if self.is_down() {
            for _ in 0..n {
                let slot = batch.slot();
                batch.fill(slot, Reply::Failed(Failure::Refused));
            }
            return;
        }
        let mut q = self.q.borrow_mut();
        q.out.extend_from_slice(req);
        for _ in 0..n {
            let slot = batch.slot();
            q.waiters.push_back(Waiter::Client {
                batch: batch.clone(),
                slot,
            });
        }
        drop(q);
        self.kick();
    }

    /// Closes the connection: in-flight requests fail, the task ends.
    pub fn close(&self) {
        self.closed.set(true);
        self.kick();
    }

    fn fail_all(&self, why: Failure) {
        let waiters = {
            let mut q = self.q.borrow_mut();
            q.out.clear();
            q.oldest = None;
            std::mem::take(&mut q.waiters)
        };
        for w in waiters {
            if let Waiter::Client { batch, slot } = w {
                batch.fill(slot, Reply::Failed(why));
            }
        }
        if let Some(b) = self.push_target.borrow().as_ref() {
            b.wake();
        }
    }

    async fn run(self: Rc<Self>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.closed.get() {
                self.fail_all(Failure::Closed);
                return;
            }
            // Connect lazily: only once there is something to send.
            self.work().await;
            if self.closed.get() {
                continue;
            }
            self.state.set(State::Connecting);
            let connect = TcpStream::connect(self.opts.addr.as_str());
            let res = match self.opts.timeout {
                Some(t) => tokio::time::timeout(t, connect)
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                None => connect.await,
            };
            match res {
                Ok(stream) => {
                    backoff = Duration::from_millis(50);
                    let _ = stream.set_nodelay(true);
                    if self.opts.keepalive {
                        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
                    }
                    self.state.set(State::Up);
                    self.health.connected();
                    {
                        let mut q = self.q.borrow_mut();
                        let mut pre = BytesMut::new();
                        for h in &self.opts.handshake {
                            pre.extend_from_slice(h);
                            q.waiters.push_front(Waiter::Discard);
                        }
                        if !pre.is_empty() {
                            pre.extend_from_slice(&q.out);
                            q.out = pre;
                        }
                    }
                    let why = self.serve(stream).await;
                    if why != Failure::Closed || !self.closed.get() {
                        self.health.failed();
                    }
                    self.fail_all(why);
                    self.state.set(State::Idle);
                    if self.opts.exclusive {
                        self.closed.set(true);
                    }
                }
                Err(_) => {
                    self.health.failed();
                    self.state
                        .set(State::Down(Instant::now() + backoff.min(self.opts.retry)));
                    self.fail_all(Failure::Refused);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Runs one established connection until it fails; returns why.
    async fn serve(&self, stream: TcpStream) -> Failure {
        let stream = &stream;
        let writer = async {
            let mut buf = BytesMut::with_capacity(16 * 1024);
            loop {
                if self.closed.get() {
                    return Failure::Closed;
                }
                {
                    let mut q = self.q.borrow_mut();
                    if !q.out.is_empty() {
                        std::mem::swap(&mut buf, &mut q.out);
                        if q.oldest.is_none() && self.opts.timeout.is_some() {
                            q.oldest = Some(Instant::now());
                        }
                    }
                }
                if buf.is_empty() {
                    self.work().await;
                    // Let every client task that is ready in this scheduler tick enqueue
                    // its requests first: one write then carries all of them.
                    tokio::task::yield_now().await;
                    continue;
                }
                let n = self.sent.replace(0);
                if n > 0 {
                    self.health
                        .requests_total
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                if crate::io::write_all(stream, &buf).await.is_err() {
                    return Failure::Closed;
                }
                buf.clear();
            }
        };
        let reader = async {
            let mut rbuf = BytesMut::with_capacity(16 * 1024);
            loop {
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(16 * 1024);
                }
                let n = crate::io::read_some(stream, &mut rbuf).await;
                match n {
                    Ok(0) | Err(_) => return Failure::Closed,
                    Ok(_) => {}
                }
                if let Err(why) = self.dispatch(&mut rbuf) {
                    return why;
                }
            }
        };
        // The pool's `timeout`: a watchdog checks for replies overdue (no progress for
        // `timeout` while requests are outstanding) a few times per timeout period,
        // instead of arming a timer around every read.
        let watchdog = async {
            let Some(t) = self.opts.timeout else {
                return std::future::pending().await;
            };
            let tick = (t / 4).max(Duration::from_millis(5));
            loop {
                tokio::time::sleep(tick).await;
                if self.q.borrow().oldest.is_some_and(|o| o.elapsed() >= t) {
                    return Failure::Timeout;
                }
            }
        };
        tokio::select! {
            why = writer => why,
            why = reader => why,
            why = watchdog => why,
        }
    }

    /// Hands every complete reply in `rbuf` to its waiter.
    fn dispatch(&self, rbuf: &mut BytesMut) -> Result<(), Failure> {
        loop {
            let len = match self.opts.wire {
                Wire::Memcache => shoal_client::memcache::scan::response_len(rbuf),
                _ => match shoal_client::resp::scan::reply_len(rbuf) {
                    Ok(l) => l,
                    Err(_) => return Err(Failure::Closed),
                },
            };
            let Some(len) = len else {
                if self.opts.timeout.is_some() {
                    let mut q = self.q.borrow_mut();
                    q.oldest = (!q.waiters.is_empty()).then(Instant::now);
                }
                return Ok(());
            };
            let frame = rbuf.split_to(len).freeze();
            if let Some(batch) = self.push_target.borrow().as_ref() {
                // The replies to the connect handshake (HELLO 3, AUTH, SELECT) come first
                // and are nobody's: they must not reach a subscribed client.
                {
                    let mut q = self.q.borrow_mut();
                    if matches!(q.waiters.front(), Some(Waiter::Discard)) {
                        q.waiters.pop_front();
                        continue;
                    }
                }
                // A confirmation answers the (un)subscribe request at the head of the queue.
                if is_confirmation(&frame) {
                    let w = self.q.borrow_mut().waiters.pop_front();
                    if let Some(Waiter::Client { batch, slot }) = w {
                        batch.fill(slot, Reply::Data(frame.clone()));
                    }
                }
                // Subscribed connection: every other frame goes to the client as it arrives.
                batch.pushed.borrow_mut().extend_from_slice(&frame);
                batch.wake();
                continue;
            }
            if frame.first() == Some(&b'>') {
                continue; // an unsolicited RESP3 push on a shared connection
            }
            let w = self.q.borrow_mut().waiters.pop_front();
            match w {
                Some(Waiter::Client { batch, slot }) => batch.fill(slot, Reply::Data(frame)),
                Some(Waiter::Discard) => {}
                None => return Err(Failure::Closed),
            }
        }
    }
}

/// Whether a frame from a subscribed server connection is a (un)subscribe confirmation
/// (the proxy sends its own).
pub fn is_confirmation(frame: &[u8]) -> bool {
    let Some((n, h)) = shoal_client::resp::scan::array_header(frame) else {
        return false;
    };
    if n != 3 {
        return false;
    }
    let rest = &frame[h..];
    let Ok(Some(len)) = shoal_client::resp::scan::reply_len(rest) else {
        return false;
    };
    let first = &rest[..len];
    [
        &b"$9\r\nsubscribe\r\n"[..],
        b"$11\r\nunsubscribe\r\n",
        b"$10\r\npsubscribe\r\n",
        b"$12\r\npunsubscribe\r\n",
        b"$10\r\nssubscribe\r\n",
        b"$12\r\nsunsubscribe\r\n",
    ]
    .contains(&first)
}
