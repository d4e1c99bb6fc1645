//! A small Kafka client over the kafka-protocol crate: one connection, version negotiation via
//! ApiVersions, typed request/response with a deadline on every network wait. Used by the CLI
//! and the benchmark; it is a client for strand or any Kafka broker.

pub mod partitioner;
pub mod pipeline;
pub mod records;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every request waits at most this long for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response frame accepted, checked before allocating.
pub const RESPONSE_FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

pub struct Client {
    stream: TcpStream,
    addr: String,
    /// api key -> (min, max) the broker supports.
    versions: BTreeMap<i16, (i16, i16)>,
    next_correlation_id: i32,
}

/// "NAME (code)" for a Kafka error code, e.g. "TopicAlreadyExists (36)".
pub fn error_name(code: i16) -> String {
    match code.err() {
        None => "NONE (0)".to_string(),
        Some(e) => format!("{e:?} ({code})"),
    }
}

impl Client {
    /// Connect and negotiate versions.
    pub async fn connect(addr: &str) -> anyhow::Result<Client> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = stream.set_nodelay(true);
        let mut client = Client { stream, addr: addr.to_string(), versions: BTreeMap::new(), next_correlation_id: 1 };
        let mut response: ApiVersionsResponse = client.send_at(&ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strand"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION"))), 3).await?;
        if response.error_code == 35 {
            // KIP-511: the broker does not know v3 and answered in v0; ask again in v0.
            response = client.send_at(&ApiVersionsRequest::default(), 0).await?;
        }
        if response.error_code != 0 {
            bail!("{addr}: ApiVersions failed: {}", error_name(response.error_code));
        }
        client.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(client)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The highest version of `R` both sides support, at most `cap`.
    pub fn version_for<R: Request>(&self, cap: i16) -> anyhow::Result<i16> {
        common_version::<R>(&self.versions, cap, &self.addr)
    }

    /// Send at the best common version (capped at `cap`) and return (version, response).
    pub async fn send<R: Request>(&mut self, request: &R, cap: i16) -> anyhow::Result<(i16, R::Response)> {
        let version = self.version_for::<R>(cap)?;
        Ok((version, self.send_at(request, version).await?))
    }

    /// Send at an explicit version and wait for the response.
    pub async fn send_at<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<R::Response> {
        let correlation_id = self.write_request(request, version).await?;
        let body = tokio::time::timeout(REQUEST_TIMEOUT, self.read_frame())
            .await
            .map_err(|_| anyhow!("{}: no response within {:?}", self.addr, REQUEST_TIMEOUT))??;
        decode_response::<R>(body, version, correlation_id, &self.addr)
    }

    /// Send a request that gets no response (Produce with acks=0).
    pub async fn send_no_response<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<()> {
        self.write_request(request, version).await.map(|_| ())
    }

    /// Encode and write one request; returns its correlation id.
    pub async fn write_request<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<i32> {
        let frame = encode_request(request, version, self.next_correlation_id)?;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| anyhow!("{}: sending timed out", self.addr))?
        .with_context(|| format!("sending to {}", self.addr))?;
        Ok(correlation_id)
    }

    /// Read one response frame (without its header decoded).
    pub async fn read_frame(&mut self) -> anyhow::Result<Bytes> {
        read_frame_from(&mut self.stream, &self.addr).await
    }

    /// Turn this connection into a pipeline: a writer and a reader half with up to
    /// `max_in_flight` requests sent but not yet answered (see [`pipeline`]).
    pub fn into_pipeline(
        self,
        max_in_flight: usize,
        clock: std::sync::Arc<dyn crate::runtime::Clock>,
    ) -> (pipeline::PipelineWriter, pipeline::PipelineReader) {
        pipeline::split(self.stream, self.addr, self.versions, self.next_correlation_id, max_in_flight, clock)
    }
}

/// The highest version of `R` in both the broker's range and kafka-protocol's, at most `cap`.
fn common_version<R: Request>(versions: &BTreeMap<i16, (i16, i16)>, cap: i16, addr: &str) -> anyhow::Result<i16> {
    let name = || ApiKey::try_from(R::KEY).map(|k| format!("{k:?}")).unwrap_or_else(|_| format!("api key {}", R::KEY));
    let (broker_min, broker_max) =
        versions.get(&R::KEY).copied().ok_or_else(|| anyhow!("{addr}: broker does not support {}", name()))?;
    let max = broker_max.min(R::VERSIONS.max).min(cap);
    let min = broker_min.max(R::VERSIONS.min);
    if max < min {
        bail!("{addr}: no common version of {} (broker {broker_min}..{broker_max}, client {}..{})", name(), R::VERSIONS.min, R::VERSIONS.max.min(cap));
    }
    Ok(max)
}

/// Read one size-prefixed response frame, refusing sizes over [`RESPONSE_FRAME_BYTES_MAX`]
/// before allocating. The caller puts a deadline around it.
pub async fn read_frame_from<S: AsyncRead + Unpin>(stream: &mut S, addr: &str) -> anyhow::Result<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.with_context(|| format!("reading from {addr}"))?;
    let len = i32::from_be_bytes(len);
    if len < 0 || len as usize > RESPONSE_FRAME_BYTES_MAX {
        bail!("{addr}: response frame of {len} bytes (limit {RESPONSE_FRAME_BYTES_MAX})");
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await.with_context(|| format!("reading from {addr}"))?;
    Ok(Bytes::from(body))
}

/// Decode a response frame's header and body, checking the correlation id.
pub fn decode_response<R: Request>(mut body: Bytes, version: i16, correlation_id: i32, addr: &str) -> anyhow::Result<R::Response> {
    let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
        .with_context(|| format!("{addr}: decoding {api_key:?} v{version} response header"))?;
    if header.correlation_id != correlation_id {
        bail!("{addr}: response correlation id {} for request {correlation_id}", header.correlation_id);
    }
    R::Response::decode(&mut body, version).with_context(|| format!("{addr}: decoding {api_key:?} v{version} response"))
}

/// A size-prefixed request frame.
pub fn encode_request<R: Request>(request: &R, version: i16, correlation_id: i32) -> anyhow::Result<Bytes> {
    let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("strand-cli")))
        .encode(&mut buf, api_key.request_header_version(version))?;
    request.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// A consumer's Fetch of one topic's partitions from the given offsets (no fetch session, no
/// rack): waits up to `max_wait_ms` for at least one byte, takes at most `max_bytes` in all and
/// `partition_max_bytes` per partition.
pub fn fetch_request(
    topic: &str,
    from: impl IntoIterator<Item = (i32, i64)>,
    max_wait_ms: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(
            from.into_iter()
                .map(|(partition, offset)| FetchPartition::default().with_partition(partition).with_fetch_offset(offset).with_partition_max_bytes(partition_max_bytes))
                .collect(),
        )])
}
