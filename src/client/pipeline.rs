//! Many requests in flight on one connection. Kafka answers a connection's requests in the order
//! it received them, so the writer records each request it sends (correlation id, version, send
//! time) in a bounded channel and the reader pops one entry per response frame. The channel's
//! capacity is the in-flight cap: when it is full the writer waits for a response.
//!
//! Requests that get no response (Produce with acks=0) are written without an entry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Request;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{decode_response, encode_request, read_frame_from, REQUEST_TIMEOUT};
use crate::runtime::Clock;

/// One request sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Pending {
    correlation_id: i32,
    api_key: i16,
    version: i16,
    sent_at: Duration,
}

/// The sending half of a pipelined connection.
pub struct PipelineWriter {
    wr: WriteHalf<TcpStream>,
    pending: mpsc::Sender<Pending>,
    versions: BTreeMap<i16, (i16, i16)>,
    next_correlation_id: i32,
    clock: Arc<dyn Clock>,
    addr: String,
}

/// The receiving half: responses in request order.
pub struct PipelineReader {
    rd: ReadHalf<TcpStream>,
    pending: mpsc::Receiver<Pending>,
    clock: Arc<dyn Clock>,
    addr: String,
}

pub(super) fn split(
    stream: TcpStream,
    addr: String,
    versions: BTreeMap<i16, (i16, i16)>,
    next_correlation_id: i32,
    max_in_flight: usize,
    clock: Arc<dyn Clock>,
) -> (PipelineWriter, PipelineReader) {
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(max_in_flight.max(1));
    (
        PipelineWriter { wr, pending: tx, versions, next_correlation_id, clock: clock.clone(), addr: addr.clone() },
        PipelineReader { rd, pending: rx, clock, addr },
    )
}

impl PipelineWriter {
    /// The highest version of `R` both sides support, at most `cap`.
    pub fn version_for<R: Request>(&self, cap: i16) -> anyhow::Result<i16> {
        super::common_version::<R>(&self.versions, cap, &self.addr)
    }

    /// Encode and send `request`; waits while `max_in_flight` requests are unanswered.
    /// Returns the correlation id used.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<i32> {
        let mut frame = encode_request(request, version, 0)?.to_vec();
        let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        self.send_frame(&mut frame, api_key, version, true).await
    }

    /// Send a request that gets no response (Produce with acks=0). Does not count in flight.
    pub async fn send_no_response<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<i32> {
        let mut frame = encode_request(request, version, 0)?.to_vec();
        let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        self.send_frame(&mut frame, api_key, version, false).await
    }

    /// Send a frame made by [`encode_request`] (with any correlation id) at `version` of
    /// `api_key`; its correlation id is overwritten in place, so one encoded frame can be sent
    /// many times.
    pub async fn send_frame(&mut self, frame: &mut [u8], api_key: ApiKey, version: i16, expects_response: bool) -> anyhow::Result<i32> {
        // size (4), api key (2), api version (2), correlation id (4): the same in every header version.
        if frame.len() < 12 {
            bail!("request frame of {} bytes is too short", frame.len());
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        frame[8..12].copy_from_slice(&correlation_id.to_be_bytes());
        if expects_response {
            let entry = Pending { correlation_id, api_key: api_key as i16, version, sent_at: self.clock.monotonic() };
            // Waits for the reader when the pipeline is full; the reader's own reads have deadlines.
            self.pending.send(entry).await.map_err(|_| anyhow!("{}: the pipeline's reader is gone", self.addr))?;
        }
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.wr.write_all(frame).await?;
            self.wr.flush().await
        })
        .await
        .map_err(|_| anyhow!("{}: sending timed out after {REQUEST_TIMEOUT:?}", self.addr))?
        .with_context(|| format!("sending to {}", self.addr))?;
        Ok(correlation_id)
    }
}

impl PipelineReader {
    /// The next response and how long it took since its request was sent. `Ok(None)` once the
    /// writer is dropped and every request it sent is answered. `R` must be the type of the
    /// oldest unanswered request.
    pub async fn recv<R: Request>(&mut self) -> anyhow::Result<Option<(R::Response, Duration)>> {
        let Some(entry) = self.pending.recv().await else { return Ok(None) };
        if entry.api_key != R::KEY {
            bail!("pipeline: the next response is for api key {}, not {}", entry.api_key, R::KEY);
        }
        let body = tokio::time::timeout(REQUEST_TIMEOUT, read_frame_from(&mut self.rd, &self.addr))
            .await
            .map_err(|_| anyhow!("{}: no response within {REQUEST_TIMEOUT:?}", self.addr))??;
        let latency = self.clock.monotonic().saturating_sub(entry.sent_at);
        let response = decode_response::<R>(body, entry.version, entry.correlation_id, &self.addr)?;
        Ok(Some((response, latency)))
    }
}
