//! Every named bound in strand, with compile-time checks on how they relate.

/// Largest request frame a client may send (Kafka's `socket.request.max.bytes` default).
pub const REQUEST_FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Requests read from one connection but not yet answered. When full, we stop reading.
pub const CONNECTION_IN_FLIGHT_REQUESTS_MAX: usize = 64;
/// Bytes of requests read from one connection but not yet answered.
pub const CONNECTION_IN_FLIGHT_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Concurrent client connections per broker (Kafka's `max.connections` is unbounded by default).
pub const CONNECTIONS_MAX: usize = 4096;
/// Partitions in one topic.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;
/// Topic name length (Kafka: 249).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Topics or partitions named in one request, checked before any loop over them.
pub const REQUEST_PARTITIONS_MAX: usize = 100_000;
/// Records in one batch (a batch's count field is checked against this before use).
pub const BATCH_RECORDS_MAX: i32 = 1 << 24;
/// Offsets one produce request may take in one partition (the sum of its batches' record
/// counts). Keeps a segment's relative offsets (u32 in its indexes) in range: a segment rolls
/// before a request that would take it past 2^32 offsets.
pub const REQUEST_OFFSET_SPAN_MAX: i64 = 1 << 30;
/// Longest a fetch may wait (a client's max_wait_ms is capped to this).
pub const FETCH_WAIT_MS_MAX: u64 = 60_000;
/// Largest fetch response we build, whatever the client asks.
pub const FETCH_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest `max.message.bytes` a topic may set.
pub const MESSAGE_BYTES_MAX: i64 = 64 * 1024 * 1024;
/// Produce timeout cap (a client's timeout_ms is capped to this).
pub const PRODUCE_TIMEOUT_MS_MAX: u64 = 300_000;

const _: () = assert!(MESSAGE_BYTES_MAX as usize <= REQUEST_FRAME_BYTES_MAX);
const _: () = assert!(BATCH_RECORDS_MAX as i64 <= REQUEST_OFFSET_SPAN_MAX);
const _: () = assert!(2 * REQUEST_OFFSET_SPAN_MAX < u32::MAX as i64);
const _: () = assert!(REQUEST_FRAME_BYTES_MAX <= CONNECTION_IN_FLIGHT_BYTES_MAX);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX <= i32::MAX as usize);
const _: () = assert!(REQUEST_FRAME_BYTES_MAX <= i32::MAX as usize);

/// Synced data further than this behind the end of a partition's active segment is dropped from
/// the page cache after each sync (tailing consumers read the newest data from memory; older
/// reads go to disk). Bounds the page cache a partition holds, and lets the kernel reuse warm
/// pages for appends: on the development VM, fresh pages were slow enough to come by that the
/// benchmark's produce p99 over 10 s went from a median 10 x the fsync p99 to 3.4 x with this.
pub const PAGE_CACHE_WINDOW_BYTES: u64 = 64 * 1024 * 1024;

/// Largest inter-broker frame (bytes after its length prefix): room for one Raft append of a
/// maximum-size record batch plus the envelope around it.
pub const INTER_BROKER_FRAME_BYTES_MAX: usize = MESSAGE_BYTES_MAX as usize + 1024 * 1024;
/// Raft messages queued for one peer and not yet written; beyond this they are dropped.
pub const INTER_BROKER_OUTBOUND_QUEUE_MAX: usize = 1024;
/// Received Raft messages not yet taken by the node; beyond this they are dropped.
pub const INTER_BROKER_INBOX_MAX: usize = 4096;
/// Bytes of queued messages coalesced into one write to a peer.
pub const INTER_BROKER_WRITE_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Accepted inter-broker connections open at once (a cluster needs one per peer).
pub const INTER_BROKER_INBOUND_CONNECTIONS_MAX: usize = 256;
pub const INTER_BROKER_CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const INTER_BROKER_HANDSHAKE_TIMEOUT_MS: u64 = 3_000;
/// One coalesced write and its flush; a peer that does not take it in time loses the connection.
pub const INTER_BROKER_WRITE_TIMEOUT_MS: u64 = 5_000;
pub const INTER_BROKER_BACKOFF_MIN_MS: u64 = 50;
pub const INTER_BROKER_BACKOFF_MAX_MS: u64 = 2_000;

const _: () = assert!(INTER_BROKER_FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(INTER_BROKER_WRITE_BATCH_BYTES_MAX <= INTER_BROKER_FRAME_BYTES_MAX);
const _: () = assert!(INTER_BROKER_BACKOFF_MIN_MS <= INTER_BROKER_BACKOFF_MAX_MS);
