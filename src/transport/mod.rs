//! The inter-broker transport: carries the messages of every Raft group (the metadata quorum
//! and every partition) between brokers, written against `tokio::net` so the simulator (madsim
//! under `--cfg madsim`) drives it unchanged.
//!
//! Shape: one TCP connection per *ordered* broker pair, opened by the sender. Node A's messages
//! to B go on the connection A dialed to B; B's to A on the one B dialed. The acceptor only
//! answers the handshake and then reads. So there is no dial race to break, a connection's
//! owner is obvious, and a lost connection is redialed by the one side that needs it.
//!
//! What it owns and bounds:
//! - per peer, a writer task with a bounded queue ([`TransportLimits::outbound_queue_max`]):
//!   [`TransportHandle::send`] never blocks; when the queue is full the message is dropped
//!   and counted (Raft tolerates loss and retries by itself). The writer coalesces what is
//!   queued (up to [`TransportLimits::write_batch_bytes_max`]) into one write and one flush,
//!   each under [`TransportLimits::write_timeout_ms`]; a failed or stalled write drops the
//!   connection (its batch is counted as dropped) and the writer redials with capped
//!   exponential backoff and seeded jitter (`madsim::rand`).
//! - the connect and the handshake each have a timeout; a peer that does not answer in time
//!   costs one redial, never a task or buffer held forever.
//! - inbound: at most [`TransportLimits::inbound_connections_max`] accepted connections; a
//!   frame's length is checked against [`TransportLimits::frame_bytes_max`] before it is
//!   buffered; a newer connection from a peer replaces its older one (the dialer keeps only
//!   one), so a half-open connection lives only until that peer redials; delivered envelopes
//!   go to one bounded inbox ([`TransportLimits::inbox_max`]); when it is full they are
//!   dropped and counted, so a slow consumer never wedges a socket.
//!
//! Bad input (a malformed frame, an unknown version, a handshake from another cluster or an
//! unexpected node, an envelope whose `from` is not the handshake's node) closes that one
//! connection with a one-line log of the reason. It never panics and never touches another
//! connection.
//!
//! Determinism: no clock (tokio/madsim time only), no HashMap (BTreeMap), randomness only from
//! `madsim::rand`, every `select!` is `biased`.

pub mod frame;

pub use frame::{Envelope, Frame, FrameError, GroupId, Hello, Message, PROTOCOL_VERSION};

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::limits;
use crate::raft::NodeId;

/// Every bound of one transport. `Default` takes them from `limits.rs`.
#[derive(Clone, Debug)]
pub struct TransportLimits {
    /// Largest frame (bytes after the length prefix), sent or accepted.
    pub frame_bytes_max: usize,
    /// Messages queued for one peer and not yet written.
    pub outbound_queue_max: usize,
    /// Received envelopes not yet taken from the inbox.
    pub inbox_max: usize,
    /// Bytes coalesced into one write.
    pub write_batch_bytes_max: usize,
    /// Accepted connections open at once.
    pub inbound_connections_max: usize,
    pub connect_timeout_ms: u64,
    pub handshake_timeout_ms: u64,
    pub write_timeout_ms: u64,
    /// Redial backoff: starts here, doubles per failure, capped at `backoff_max_ms`; each wait is
    /// drawn uniformly from [backoff / 2, backoff].
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            frame_bytes_max: limits::INTER_BROKER_FRAME_BYTES_MAX,
            outbound_queue_max: limits::INTER_BROKER_OUTBOUND_QUEUE_MAX,
            inbox_max: limits::INTER_BROKER_INBOX_MAX,
            write_batch_bytes_max: limits::INTER_BROKER_WRITE_BATCH_BYTES_MAX,
            inbound_connections_max: limits::INTER_BROKER_INBOUND_CONNECTIONS_MAX,
            connect_timeout_ms: limits::INTER_BROKER_CONNECT_TIMEOUT_MS,
            handshake_timeout_ms: limits::INTER_BROKER_HANDSHAKE_TIMEOUT_MS,
            write_timeout_ms: limits::INTER_BROKER_WRITE_TIMEOUT_MS,
            backoff_min_ms: limits::INTER_BROKER_BACKOFF_MIN_MS,
            backoff_max_ms: limits::INTER_BROKER_BACKOFF_MAX_MS,
        }
    }
}

impl TransportLimits {
    fn validate(&self) -> io::Result<()> {
        let bad = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("transport limits: {what}")));
        if self.frame_bytes_max < 64 || self.frame_bytes_max > u32::MAX as usize {
            return bad("frame_bytes_max must be in 64..=u32::MAX");
        }
        if self.outbound_queue_max == 0 || self.inbox_max == 0 || self.inbound_connections_max == 0 {
            return bad("queue, inbox and connection bounds must be positive");
        }
        if self.backoff_min_ms == 0 || self.backoff_min_ms > self.backoff_max_ms {
            return bad("backoff_min_ms must be positive and at most backoff_max_ms");
        }
        if self.connect_timeout_ms == 0 || self.handshake_timeout_ms == 0 || self.write_timeout_ms == 0 {
            return bad("timeouts must be positive");
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub listen: SocketAddr,
    /// Where each peer listens. This node's own id, if present, is ignored.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    pub limits: TransportLimits,
}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Envelopes written and flushed to a peer's connection.
    pub sent: u64,
    /// Envelopes never written: queue full, unknown peer, too large for a frame, or in a batch
    /// whose write failed.
    pub dropped: u64,
    /// Connections established to a peer after an earlier connection or attempt failed.
    pub reconnects: u64,
    /// Inbound connections closed for bad input (malformed or oversized frame, unknown
    /// version, refused handshake, handshake timeout).
    pub frames_refused: u64,
    /// Envelopes received and put in the inbox.
    pub received: u64,
    /// Envelopes received but dropped because the inbox was full.
    pub inbox_dropped: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    frames_refused: AtomicU64,
    received: AtomicU64,
    inbox_dropped: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

struct Peer {
    addr: SocketAddr,
    queue: mpsc::Sender<Envelope>,
    writer: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    shut_down: bool,
    peers: BTreeMap<NodeId, Peer>,
    /// Every accepted connection's task, by connection number.
    inbound: BTreeMap<u64, JoinHandle<()>>,
    /// The current accepted connection of each peer that completed a handshake.
    inbound_by_peer: BTreeMap<NodeId, u64>,
    next_conn: u64,
    listener: Option<JoinHandle<()>>,
}

struct Shared {
    node_id: NodeId,
    cluster_id: String,
    limits: TransportLimits,
    counters: Counters,
    inbox: mpsc::Sender<Envelope>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a bug in this module; the node stops anyway.
        self.state.lock().expect("transport state lock poisoned")
    }
}

pub struct Transport;

impl Transport {
    /// Binds `config.listen`, starts dialing every peer, and returns the handle and the inbox
    /// of received envelopes.
    pub async fn start(config: TransportConfig) -> io::Result<(TransportHandle, mpsc::Receiver<Envelope>)> {
        config.limits.validate()?;
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let (inbox_tx, inbox_rx) = mpsc::channel(config.limits.inbox_max);
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            cluster_id: config.cluster_id,
            limits: config.limits,
            counters: Counters::default(),
            inbox: inbox_tx,
            state: Mutex::new(State::default()),
        });
        let permits = Arc::new(Semaphore::new(shared.limits.inbound_connections_max));
        let accept = tokio::spawn(accept_loop(shared.clone(), listener, permits));
        shared.state().listener = Some(accept);
        let handle = TransportHandle { shared, local_addr };
        handle.set_peers(config.peers);
        tracing::info!(node = %handle.shared.node_id, %local_addr, "inter-broker transport listening");
        Ok((handle, inbox_rx))
    }
}

/// Owns the transport: dropping it shuts the transport down.
pub struct TransportHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl TransportHandle {
    /// The address the listener is bound to (the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// Queues `envelope` for `to` without waiting. Its `from` is set to this node. Returns
    /// false (and counts a drop) when `to` is not a peer or its queue is full.
    pub fn send(&self, to: NodeId, mut envelope: Envelope) -> bool {
        envelope.from = self.shared.node_id;
        let queue = self.shared.state().peers.get(&to).map(|p| p.queue.clone());
        let queued = match queue {
            Some(q) => q.try_send(envelope).is_ok(),
            None => false,
        };
        if !queued {
            bump(&self.shared.counters.dropped, 1);
        }
        queued
    }

    /// Replaces the peer set (a membership change). New peers are dialed; removed peers'
    /// writers stop (their queued messages are dropped) and their inbound connections close; a
    /// peer whose address changed is redialed at the new one. Handshakes are accepted only
    /// from peers in this set.
    pub fn set_peers(&self, peers: BTreeMap<NodeId, SocketAddr>) {
        let mut stopped = Vec::new();
        {
            let mut st = self.shared.state();
            if st.shut_down {
                return;
            }
            let gone: Vec<NodeId> = st
                .peers
                .iter()
                .filter(|(id, p)| peers.get(id) != Some(&p.addr))
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                let peer = st.peers.remove(&id).expect("listed above");
                stopped.push(peer.writer);
                if !peers.contains_key(&id) {
                    if let Some(conn) = st.inbound_by_peer.remove(&id) {
                        stopped.extend(st.inbound.remove(&conn));
                    }
                }
            }
            for (&id, &addr) in &peers {
                if id == self.shared.node_id || st.peers.contains_key(&id) {
                    continue;
                }
                let (tx, rx) = mpsc::channel(self.shared.limits.outbound_queue_max);
                let writer = tokio::spawn(peer_writer(self.shared.clone(), id, addr, rx));
                st.peers.insert(id, Peer { addr, queue: tx, writer });
            }
        }
        // Aborted outside the lock: a task's drop may take it.
        for task in stopped {
            task.abort();
        }
    }

    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        TransportStats {
            sent: c.sent.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            frames_refused: c.frames_refused.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            inbox_dropped: c.inbox_dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the listener, every writer and every accepted connection. Idempotent.
    pub fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut st = self.shared.state();
            st.shut_down = true;
            let mut tasks: Vec<_> = st.listener.take().into_iter().collect();
            tasks.extend(std::mem::take(&mut st.peers).into_values().map(|p| p.writer));
            tasks.extend(std::mem::take(&mut st.inbound).into_values());
            st.inbound_by_peer.clear();
            tasks
        };
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for TransportHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Why a connection ended or could not be made; only ever logged.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("{0}")]
    Protocol(String),
}

async fn within<T>(ms: u64, fut: impl std::future::Future<Output = Result<T, ConnError>>) -> Result<T, ConnError> {
    match tokio::time::timeout(Duration::from_millis(ms), fut).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::Timeout(ms)),
    }
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, ConnError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    // Checked before a byte of the body is buffered.
    let len = frame::check_len(u32::from_be_bytes(len), max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(frame::decode_body(&body)?)
}

async fn write_frames<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), ConnError> {
    w.write_all(bytes).await?;
    // madsim's TcpStream sends only on flush.
    w.flush().await?;
    Ok(())
}

async fn write_one<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame, limits: &TransportLimits) -> Result<(), ConnError> {
    let mut buf = Vec::new();
    frame::encode(f, limits.frame_bytes_max, &mut buf)?;
    within(limits.write_timeout_ms, write_frames(w, &buf)).await
}

// ---- inbound ----------------------------------------------------------------------------

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, permits: Arc<Semaphore>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(node = %shared.node_id, error = %e, "inter-broker accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(node = %shared.node_id, %addr, max = shared.limits.inbound_connections_max,
                "refusing inter-broker connection: too many open");
            bump(&shared.counters.frames_refused, 1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut st = shared.state();
        if st.shut_down {
            return;
        }
        let conn = st.next_conn;
        st.next_conn += 1;
        // Spawned under the lock, so the task cannot deregister before it is registered.
        let task = tokio::spawn(serve_inbound(shared.clone(), stream, addr, conn, permit));
        st.inbound.insert(conn, task);
    }
}

async fn serve_inbound(
    shared: Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    conn: u64,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let me = shared.node_id;
    let peer = match handshake_inbound(&shared, &mut r, &mut w).await {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::warn!(node = %me, %addr, "refused inter-broker connection: {reason}");
            bump(&shared.counters.frames_refused, 1);
            deregister(&shared, conn, None);
            return;
        }
    };
    let superseded = {
        let mut st = shared.state();
        let old = st.inbound_by_peer.insert(peer, conn);
        old.and_then(|old| st.inbound.remove(&old))
    };
    if let Some(old) = superseded {
        old.abort();
    }
    tracing::debug!(node = %me, from = %peer, %addr, "inter-broker connection accepted");
    let reason = loop {
        match read_frame(&mut r, shared.limits.frame_bytes_max).await {
            Ok(Frame::Envelope(env)) if env.from == peer => match shared.inbox.try_send(env) {
                Ok(()) => bump(&shared.counters.received, 1),
                Err(mpsc::error::TrySendError::Full(_)) => bump(&shared.counters.inbox_dropped, 1),
                Err(mpsc::error::TrySendError::Closed(_)) => break None,
            },
            Ok(Frame::Envelope(env)) => {
                break Some(format!("envelope from node {} on node {peer}'s connection", env.from));
            }
            Ok(other) => break Some(format!("unexpected {} frame after the handshake", kind_name(&other))),
            Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::debug!(node = %me, from = %peer, %addr, "inter-broker connection closed by peer");
                break None;
            }
            Err(ConnError::Io(e)) => {
                tracing::info!(node = %me, from = %peer, %addr, "inter-broker connection failed: {e}");
                break None;
            }
            Err(e) => break Some(e.to_string()),
        }
    };
    if let Some(reason) = reason {
        tracing::warn!(node = %me, from = %peer, %addr, "closing inter-broker connection: {reason}");
        bump(&shared.counters.frames_refused, 1);
    }
    deregister(&shared, conn, Some(peer));
}

fn kind_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello(_) => "hello",
        Frame::Welcome(_) => "welcome",
        Frame::Refused(_) => "refused",
        Frame::Envelope(_) => "envelope",
    }
}

fn deregister(shared: &Shared, conn: u64, peer: Option<NodeId>) {
    let mut st = shared.state();
    st.inbound.remove(&conn);
    if let Some(peer) = peer {
        if st.inbound_by_peer.get(&peer) == Some(&conn) {
            st.inbound_by_peer.remove(&peer);
        }
    }
}

/// Reads and checks the dialer's Hello; answers Welcome, or Refused with the reason (also
/// returned, for the log line).
async fn handshake_inbound<R, W>(shared: &Shared, r: &mut R, w: &mut W) -> Result<NodeId, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let limits = &shared.limits;
    let hello = match within(limits.handshake_timeout_ms, read_frame(r, limits.frame_bytes_max)).await {
        Ok(Frame::Hello(h)) => h,
        Ok(other) => return Err(format!("expected a handshake, got a {} frame", kind_name(&other))),
        Err(e) => return Err(format!("handshake: {e}")),
    };
    let refusal = if hello.protocol_version != PROTOCOL_VERSION {
        Some(format!("protocol version {} (this node speaks {PROTOCOL_VERSION})", hello.protocol_version))
    } else if hello.cluster_id != shared.cluster_id {
        Some(format!(
            "node {} is in cluster {:?}, this node is in cluster {:?}",
            hello.from, hello.cluster_id, shared.cluster_id
        ))
    } else if hello.to != shared.node_id {
        Some(format!("node {} dialed node {}, but this is node {}", hello.from, hello.to, shared.node_id))
    } else if hello.from == shared.node_id || !shared.state().peers.contains_key(&hello.from) {
        Some(format!("node id {} is not a peer of node {}", hello.from, shared.node_id))
    } else {
        None
    };
    if let Some(reason) = refusal {
        let _ = write_one(w, &Frame::Refused(reason.clone()), limits).await;
        return Err(reason);
    }
    let welcome = Hello { protocol_version: PROTOCOL_VERSION, cluster_id: shared.cluster_id.clone(), from: shared.node_id, to: hello.from };
    write_one(w, &Frame::Welcome(welcome), limits).await.map_err(|e| format!("handshake reply: {e}"))?;
    Ok(hello.from)
}

// ---- outbound ---------------------------------------------------------------------------

async fn peer_writer(shared: Arc<Shared>, to: NodeId, addr: SocketAddr, mut queue: mpsc::Receiver<Envelope>) {
    let limits = &shared.limits;
    let me = shared.node_id;
    let mut backoff_ms = limits.backoff_min_ms;
    let mut failed_before = false;
    loop {
        match connect(&shared, to, addr).await {
            Ok((r, w)) => {
                if failed_before {
                    bump(&shared.counters.reconnects, 1);
                }
                tracing::debug!(node = %me, %to, %addr, "inter-broker connection established");
                backoff_ms = limits.backoff_min_ms;
                match pump(&shared, r, w, &mut queue).await {
                    None => return, // the handle is gone
                    Some(reason) => tracing::info!(node = %me, %to, %addr, "inter-broker connection lost: {reason}"),
                }
            }
            Err(ConnError::Protocol(reason)) => tracing::warn!(node = %me, %to, %addr, "inter-broker handshake refused: {reason}"),
            Err(e) => tracing::debug!(node = %me, %to, %addr, "inter-broker connect failed: {e}"),
        }
        failed_before = true;
        let wait_ms = backoff_ms / 2 + crate::runtime::rng::random_u64() % (backoff_ms - backoff_ms / 2 + 1);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        backoff_ms = (backoff_ms * 2).min(limits.backoff_max_ms);
    }
}

type Reader = BufReader<tokio::io::ReadHalf<TcpStream>>;
type Writer = tokio::io::WriteHalf<TcpStream>;

async fn connect(shared: &Shared, to: NodeId, addr: SocketAddr) -> Result<(Reader, Writer), ConnError> {
    let limits = &shared.limits;
    let stream = within(limits.connect_timeout_ms, async { Ok(TcpStream::connect(addr).await?) }).await?;
    let _ = stream.set_nodelay(true);
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let hello = Hello { protocol_version: PROTOCOL_VERSION, cluster_id: shared.cluster_id.clone(), from: shared.node_id, to };
    within(limits.handshake_timeout_ms, async {
        let mut buf = Vec::new();
        frame::encode(&Frame::Hello(hello), limits.frame_bytes_max, &mut buf)?;
        write_frames(&mut w, &buf).await?;
        match read_frame(&mut r, limits.frame_bytes_max).await {
            Ok(Frame::Welcome(h)) if h.cluster_id == shared.cluster_id && h.from == to => Ok(()),
            Ok(Frame::Welcome(h)) => Err(ConnError::Protocol(format!(
                "expected node {to} of cluster {:?}, node {} of cluster {:?} answered",
                shared.cluster_id, h.from, h.cluster_id
            ))),
            Ok(Frame::Refused(reason)) => Err(ConnError::Protocol(reason)),
            Ok(other) => Err(ConnError::Protocol(format!("expected a handshake reply, got a {} frame", kind_name(&other)))),
            Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(ConnError::Protocol("peer closed the connection during the handshake".into()))
            }
            Err(e) => Err(e),
        }
    })
    .await?;
    Ok((r, w))
}

/// Writes queued envelopes until the connection fails (Some(reason)) or the queue closes
/// (None). The acceptor never speaks after Welcome, so a read returning is the peer closing
/// (or misbehaving): either way the connection is done.
async fn pump(shared: &Shared, mut r: Reader, mut w: Writer, queue: &mut mpsc::Receiver<Envelope>) -> Option<String> {
    let limits = &shared.limits;
    let mut probe = [0u8; 1];
    let mut buf = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            read = r.read(&mut probe) => return Some(match read {
                Ok(0) => "closed by peer".to_string(),
                Ok(_) => "peer sent bytes on a send-only connection".to_string(),
                Err(e) => e.to_string(),
            }),
            env = queue.recv() => match env {
                Some(env) => env,
                None => return None,
            },
        };
        buf.clear();
        let mut batch = 0u64;
        let mut next = Some(first);
        while let Some(env) = next.take() {
            match frame::encode(&Frame::Envelope(env), limits.frame_bytes_max, &mut buf) {
                Ok(()) => batch += 1,
                Err(e) => {
                    tracing::warn!(node = %shared.node_id, "dropping an inter-broker message: {e}");
                    bump(&shared.counters.dropped, 1);
                }
            }
            if buf.len() < limits.write_batch_bytes_max {
                next = queue.try_recv().ok();
            }
        }
        if batch == 0 {
            continue;
        }
        if let Err(e) = within(limits.write_timeout_ms, write_frames(&mut w, &buf)).await {
            bump(&shared.counters.dropped, batch);
            return Some(format!("write: {e}"));
        }
        bump(&shared.counters.sent, batch);
    }
}
