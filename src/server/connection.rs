//! One client connection: size-prefixed frames in, responses out in request order.
//!
//! Requests are handled in arrival order up to the point where they would wait (a produce
//! waiting for fsync, a fetch long-polling); the waiting part is queued as a deferred reply, so
//! a connection can pipeline many requests while appends keep their order. Bounds: at most
//! `CONNECTION_IN_FLIGHT_REQUESTS_MAX` unanswered requests and `CONNECTION_IN_FLIGHT_BYTES_MAX`
//! bytes of them; when either is reached we stop reading from the socket. A frame whose
//! declared length is negative or above `REQUEST_FRAME_BYTES_MAX` closes the connection before
//! anything is buffered; so does an undecodable header or body, an unknown API key, or an
//! unsupported version (ApiVersions excepted: it gets the KIP-511 v0 fallback reply).
//! A fetch response built at once counts against the byte budget too, until it is written.
//! Kafka's `connections.max.idle.ms` closes a connection that moves no request and no response
//! for that long, or takes that long to send one request or read one response.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::dispatch::{self, Reply};
use super::Broker;
use crate::limits::{CONNECTION_IN_FLIGHT_BYTES_MAX, CONNECTION_IN_FLIGHT_REQUESTS_MAX, REQUEST_FRAME_BYTES_MAX};

/// First allocation for a request body; it grows to the declared size as bytes arrive. Large
/// enough that a typical produce request (a 64 KiB or 128 KiB batch plus headers) arrives
/// without a reallocation, which would copy the whole body again.
const BODY_INITIAL_CAPACITY_BYTES: usize = 256 * 1024;

/// A request whose response is yet to be written.
struct Pending {
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    reply: Reply,
    _bytes: OwnedSemaphorePermit,
    /// The part of the budget a ready fetch response holds.
    _response_bytes: Option<OwnedSemaphorePermit>,
    /// When the whole frame had been read.
    read_at: std::time::Duration,
}

/// Milliseconds on the broker's monotonic clock.
fn now_ms(broker: &Broker) -> u64 {
    broker.rt.clock.monotonic().as_millis() as u64
}

pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, mut shutdown: watch::Receiver<bool>) {
    let (mut reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Pending>(CONNECTION_IN_FLIGHT_REQUESTS_MAX);
    let bytes_budget = Arc::new(Semaphore::new(CONNECTION_IN_FLIGHT_BYTES_MAX));
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    // When a response was last written (the writer's half of the connection's activity).
    let last_write_ms = Arc::new(AtomicU64::new(now_ms(&broker)));
    let writer_task = tokio::spawn(write_loop(broker.clone(), writer, rx, peer, idle, last_write_ms.clone()));
    let mut last_read_ms = now_ms(&broker);
    'connection: loop {
        // Read the size prefix with `read`, which is cancel-safe (an idle check may time out
        // between two parts of it).
        let mut size_buf = [0u8; 4];
        let mut got = 0;
        while got < size_buf.len() {
            let read = tokio::select! {
                biased;
                _ = shutdown.changed() => break 'connection,
                r = tokio::time::timeout(idle, reader.read(&mut size_buf[got..])) => r,
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => break 'connection, // EOF or reset: the client went away.
                Ok(Ok(n)) => got += n,
                Err(_) => {
                    let last = last_read_ms.max(last_write_ms.load(Ordering::SeqCst));
                    if now_ms(&broker).saturating_sub(last) >= idle.as_millis() as u64 {
                        tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection");
                        break 'connection;
                    }
                }
            }
        }
        let size = i32::from_be_bytes(size_buf);
        if size < 8 || size as usize > REQUEST_FRAME_BYTES_MAX {
            tracing::info!(%peer, size, "closing connection: invalid request frame size");
            break;
        }
        let size = size as usize;
        let permit = match bytes_budget.clone().acquire_many_owned(size as u32).await {
            Ok(p) => p,
            Err(_) => break,
        };
        // Grow the buffer as bytes arrive: a client that declares a large frame and then
        // sends little holds little memory.
        let mut body = Vec::with_capacity(size.min(BODY_INITIAL_CAPACITY_BYTES));
        let mut limited = (&mut reader).take(size as u64);
        let read = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = tokio::time::timeout(idle, limited.read_to_end(&mut body)) => r,
        };
        match read {
            Ok(Ok(n)) if n == size => {}
            Ok(_) => break,
            Err(_) => {
                tracing::info!(%peer, size, received = body.len(), "closing connection: request not received within connections.max.idle.ms");
                break;
            }
        }
        let mut body = Bytes::from(body);
        let read_at = broker.rt.clock.monotonic();
        last_read_ms = now_ms(&broker);
        let (api_key, api_version, correlation_id, reply) = match decode_and_handle(&broker, &mut body, peer).await {
            Some(x) => x,
            None => break,
        };
        if matches!(reply, Reply::Close) || crate::buggify!() {
            break;
        }
        // A fetch answered at once holds its records until written: count them, so pipelined
        // fetches that the client does not read cannot pile up more than the budget.
        let response_bytes = match &reply {
            Reply::Now(ResponseKind::Fetch(r)) => r
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
                .min(CONNECTION_IN_FLIGHT_BYTES_MAX - size),
            _ => 0,
        };
        let response_permit = if response_bytes > 0 {
            match bytes_budget.clone().acquire_many_owned(response_bytes as u32).await {
                Ok(p) => Some(p),
                Err(_) => break,
            }
        } else {
            None
        };
        let pending = Pending { api_key, api_version, correlation_id, reply, _bytes: permit, _response_bytes: response_permit, read_at };
        if tx.send(pending).await.is_err() {
            break; // the writer stopped: the socket is gone.
        }
    }
    drop(tx);
    // Let already-accepted requests finish and their responses go out.
    let _ = writer_task.await;
}

/// Decode the header and body and run the handler. `None` closes the connection.
async fn decode_and_handle(
    broker: &Arc<Broker>,
    body: &mut Bytes,
    peer: SocketAddr,
) -> Option<(ApiKey, i16, i32, Reply)> {
    let raw_key = i16::from_be_bytes([body[0], body[1]]);
    let api_version = i16::from_be_bytes([body[2], body[3]]);
    let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        tracing::info!(%peer, api_key = raw_key, "closing connection: unknown API key");
        return None;
    };
    let Some(range) = dispatch::version_range(api_key) else {
        tracing::info!(%peer, ?api_key, "closing connection: API not supported");
        return None;
    };
    if api_version < range.0 || api_version > range.1 {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and what we support.
            return Some((api_key, 0, correlation_id, Reply::Now(dispatch::api_versions_fallback())));
        }
        tracing::info!(%peer, ?api_key, api_version, "closing connection: unsupported version");
        return None;
    }
    let header_version = api_key.request_header_version(api_version);
    let header = match RequestHeader::decode(body, header_version) {
        Ok(h) => h,
        Err(e) => {
            tracing::info!(%peer, error = %e, "closing connection: malformed request header");
            return None;
        }
    };
    tracing::trace!(%peer, ?api_key, api_version, correlation_id, "request");
    let reply = dispatch::handle(broker, api_key, api_version, &header, peer, body).await;
    if let Reply::Malformed(reason) = &reply {
        tracing::info!(%peer, ?api_key, api_version, reason = %reason, "closing connection: malformed request");
        return None;
    }
    Some((api_key, api_version, correlation_id, reply))
}

async fn write_loop(
    broker: Arc<Broker>,
    mut writer: tokio::io::WriteHalf<TcpStream>,
    mut rx: mpsc::Receiver<Pending>,
    peer: SocketAddr,
    idle: Duration,
    last_write_ms: Arc<AtomicU64>,
) {
    while let Some(p) = rx.recv().await {
        let response = match p.reply {
            Reply::Now(r) => r,
            Reply::Later(fut) => fut.await,
            Reply::NoResponse => continue,
            Reply::Close | Reply::Malformed(_) => break,
        };
        tracing::trace!(%peer, api_key = ?p.api_key, correlation_id = p.correlation_id, "response");
        let frame = match encode_response(p.api_key, p.api_version, p.correlation_id, &response) {
            Ok(f) => f,
            Err(e) => {
                // Our own bug: a response we built does not encode. Close rather than limp.
                tracing::error!(%peer, api_key = ?p.api_key, error = %e, "response does not encode; closing connection");
                break;
            }
        };
        let write = async {
            writer.write_all(&frame).await?;
            writer.flush().await
        };
        match tokio::time::timeout(idle, write).await {
            Ok(Ok(())) => last_write_ms.store(now_ms(&broker), Ordering::SeqCst),
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!(%peer, bytes = frame.len(), "closing connection: response not read within connections.max.idle.ms");
                break;
            }
        }
        if p.api_key == ApiKey::Produce {
            broker.produce_latency.record(broker.rt.clock.monotonic().saturating_sub(p.read_at));
        }
    }
}

fn encode_response(api_key: ApiKey, api_version: i16, correlation_id: i32, response: &ResponseKind) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut buf, api_key.response_header_version(api_version))?;
    response.encode(&mut buf, api_version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod fuzz;
