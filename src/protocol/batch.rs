//! A view over Kafka record batches (magic 2) kept as opaque bytes.
//!
//! Layout (apache/kafka `clients/.../record/DefaultRecordBatch.java`), offsets in bytes:
//!
//! | field                 | offset | size | in CRC |
//! |-----------------------|--------|------|--------|
//! | base_offset           | 0      | 8    | no     |
//! | batch_length          | 8      | 4    | no     |
//! | partition_leader_epoch| 12     | 4    | no     |
//! | magic (= 2)           | 16     | 1    | no     |
//! | crc (CRC-32C)         | 17     | 4    | no     |
//! | attributes            | 21     | 2    | yes    |
//! | last_offset_delta     | 23     | 4    | yes    |
//! | base_timestamp        | 27     | 8    | yes    |
//! | max_timestamp         | 35     | 8    | yes    |
//! | producer_id           | 43     | 8    | yes    |
//! | producer_epoch        | 51     | 2    | yes    |
//! | base_sequence         | 53     | 4    | yes    |
//! | records_count         | 57     | 4    | yes    |
//! | records…              | 61     |      | yes    |
//!
//! `batch_length` counts the bytes after itself, so a batch occupies `12 + batch_length` bytes.
//! The CRC covers everything from `attributes` to the end. `base_offset` and
//! `partition_leader_epoch` sit outside the CRC, so the broker patches them in place.

use bytes::{Bytes, BytesMut};

use crate::limits::BATCH_RECORDS_MAX;
use crate::protocol::errors::ErrorCode;

pub const BASE_OFFSET_AT: usize = 0;
pub const BATCH_LENGTH_AT: usize = BASE_OFFSET_AT + 8;
pub const PARTITION_LEADER_EPOCH_AT: usize = BATCH_LENGTH_AT + 4;
pub const MAGIC_AT: usize = PARTITION_LEADER_EPOCH_AT + 4;
pub const CRC_AT: usize = MAGIC_AT + 1;
pub const ATTRIBUTES_AT: usize = CRC_AT + 4;
pub const LAST_OFFSET_DELTA_AT: usize = ATTRIBUTES_AT + 2;
pub const BASE_TIMESTAMP_AT: usize = LAST_OFFSET_DELTA_AT + 4;
pub const MAX_TIMESTAMP_AT: usize = BASE_TIMESTAMP_AT + 8;
pub const PRODUCER_ID_AT: usize = MAX_TIMESTAMP_AT + 8;
pub const PRODUCER_EPOCH_AT: usize = PRODUCER_ID_AT + 8;
pub const BASE_SEQUENCE_AT: usize = PRODUCER_EPOCH_AT + 2;
pub const RECORDS_COUNT_AT: usize = BASE_SEQUENCE_AT + 4;
/// Size of the fixed batch header; the smallest possible batch.
pub const HEADER_BYTES: usize = RECORDS_COUNT_AT + 4;
/// Bytes before `batch_length`'s counted region begins.
pub const LOG_OVERHEAD_BYTES: usize = BATCH_LENGTH_AT + 4;

const _: () = assert!(HEADER_BYTES == 61);
const _: () = assert!(LOG_OVERHEAD_BYTES == 12);

pub const MAGIC_V2: u8 = 2;
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch at byte {position}: truncated ({available} bytes, need {needed})")]
    Truncated { position: usize, available: usize, needed: usize },
    #[error("record batch at byte {position}: batch_length {length} is invalid")]
    BadLength { position: usize, length: i32 },
    #[error("record batch at byte {position}: magic {magic} is not supported (only 2)")]
    BadMagic { position: usize, magic: u8 },
    #[error("record batch at byte {position}: CRC-32C mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc { position: usize, stored: u32, computed: u32 },
    #[error("record batch at byte {position}: records_count {count} with last_offset_delta {last_offset_delta}")]
    BadCount { position: usize, count: i32, last_offset_delta: i32 },
    #[error("record batch at byte {position}: compression codec {codec} is unknown")]
    BadCompression { position: usize, codec: i16 },
    #[error("record set is empty")]
    Empty,
}

impl BatchError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BatchError::BadMagic { .. } => ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            BatchError::BadCount { .. } | BatchError::Empty => ErrorCode::INVALID_RECORD,
            BatchError::BadCompression { .. } => ErrorCode::UNSUPPORTED_COMPRESSION_TYPE,
            BatchError::Truncated { .. } | BatchError::BadLength { .. } | BatchError::BadCrc { .. } => {
                ErrorCode::CORRUPT_MESSAGE
            }
        }
    }
}

/// What `BatchView::find_record_by_timestamp` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSearch {
    Found { offset: i64, timestamp: i64 },
    /// The records were read and none matches.
    NotFound,
    /// The records cannot be read without a codec (or do not parse).
    Opaque,
}

/// A zigzag varint or varlong (Kafka's record fields) from the front of `buf`, advancing it.
fn read_varint(buf: &mut &[u8]) -> Option<i64> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A borrowed view of one complete, length-checked batch, or of only its header (see
/// `header_only`). Field accessors never panic because construction checked that at least
/// `HEADER_BYTES` are present.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    /// The whole batch, or only its first `HEADER_BYTES` for a header-only view.
    bytes: &'a [u8],
    /// The whole batch's size, `12 + batch_length`.
    size_bytes: usize,
}

impl<'a> BatchView<'a> {
    /// A view of a batch's header alone (its first `HEADER_BYTES`), for a batch of
    /// `size_bytes` whose records are elsewhere: the log patches a copy of the header (offsets
    /// are outside the CRC) and writes the records from the request buffer as they are.
    /// Header fields work as on a whole view; `bytes`, `computed_crc` and `validate` panic.
    pub fn header_only(header: &'a [u8], size_bytes: usize) -> BatchView<'a> {
        assert_eq!(header.len(), HEADER_BYTES, "a batch header is {HEADER_BYTES} bytes");
        assert!(size_bytes >= HEADER_BYTES, "a batch of {size_bytes} bytes is shorter than its header");
        BatchView { bytes: header, size_bytes }
    }

    fn assert_whole(&self) {
        assert_eq!(self.bytes.len(), self.size_bytes, "whole-batch access on a header-only view");
    }

    /// The whole batch, `12 + batch_length` bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.assert_whole();
        self.bytes
    }
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }
    pub fn base_offset(&self) -> i64 {
        be_i64(self.bytes, BASE_OFFSET_AT)
    }
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.bytes, LAST_OFFSET_DELTA_AT)
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(self.bytes, PARTITION_LEADER_EPOCH_AT)
    }
    pub fn magic(&self) -> u8 {
        self.bytes[MAGIC_AT]
    }
    pub fn stored_crc(&self) -> u32 {
        be_u32(self.bytes, CRC_AT)
    }
    pub fn computed_crc(&self) -> u32 {
        self.assert_whole();
        crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..])
    }
    pub fn attributes(&self) -> i16 {
        be_i16(self.bytes, ATTRIBUTES_AT)
    }
    pub fn compression(&self) -> i16 {
        self.attributes() & ATTR_COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & ATTR_TIMESTAMP_TYPE_LOG_APPEND != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.bytes, BASE_TIMESTAMP_AT)
    }
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, MAX_TIMESTAMP_AT)
    }
    pub fn producer_id(&self) -> i64 {
        be_i64(self.bytes, PRODUCER_ID_AT)
    }
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.bytes, PRODUCER_EPOCH_AT)
    }
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.bytes, BASE_SEQUENCE_AT)
    }
    /// The sequence number of the last record (sequences wrap at i32::MAX, as Kafka's).
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base < 0 {
            return base;
        }
        let last = i64::from(base) + i64::from(self.last_offset_delta());
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
    pub fn records_count(&self) -> i32 {
        be_i32(self.bytes, RECORDS_COUNT_AT)
    }

    /// The first record at or after `from_offset` whose timestamp is at or after
    /// `timestamp_ms`, read from the records themselves (Kafka's lookup by timestamp answers a
    /// record, not a batch). Only an uncompressed CreateTime batch can be looked into without
    /// a codec: any other is `Opaque`, and so is one whose records do not parse (they are
    /// inside the CRC, but a producer may have put anything there). Never panics.
    pub fn find_record_by_timestamp(&self, timestamp_ms: i64, from_offset: i64) -> RecordSearch {
        if self.compression() != 0 || self.is_log_append_time() || self.bytes.len() != self.size_bytes {
            return RecordSearch::Opaque;
        }
        let (base_offset, base_timestamp) = (self.base_offset(), self.base_timestamp());
        let mut rest = &self.bytes[HEADER_BYTES..];
        for _ in 0..self.records_count() {
            let Some(length) = read_varint(&mut rest) else { return RecordSearch::Opaque };
            let Ok(length) = usize::try_from(length) else { return RecordSearch::Opaque };
            if length > rest.len() {
                return RecordSearch::Opaque;
            }
            let (mut record, after) = rest.split_at(length);
            rest = after;
            if record.is_empty() {
                return RecordSearch::Opaque;
            }
            record = &record[1..]; // attributes
            let (Some(timestamp_delta), Some(offset_delta)) = (read_varint(&mut record), read_varint(&mut record)) else {
                return RecordSearch::Opaque;
            };
            let (timestamp, offset) = (base_timestamp.wrapping_add(timestamp_delta), base_offset.wrapping_add(offset_delta));
            if timestamp >= timestamp_ms && offset >= from_offset {
                return RecordSearch::Found { offset, timestamp };
            }
        }
        RecordSearch::NotFound
    }

    /// Full validation of one batch as a producer sent it or as recovery reads it:
    /// magic 2, CRC-32C, a sane record count that matches the batch's offset range
    /// (`last_offset_delta == records_count - 1`, as Kafka's LogValidator requires of client
    /// batches; strand never compacts, so its own log holds the same), a known codec.
    pub fn validate(&self, position: usize) -> Result<(), BatchError> {
        if self.magic() != MAGIC_V2 {
            return Err(BatchError::BadMagic { position, magic: self.magic() });
        }
        let (stored, computed) = (self.stored_crc(), self.computed_crc());
        if stored != computed {
            return Err(BatchError::BadCrc { position, stored, computed });
        }
        let count = self.records_count();
        let last_offset_delta = self.last_offset_delta();
        if !(1..=BATCH_RECORDS_MAX).contains(&count) || last_offset_delta != count - 1 {
            return Err(BatchError::BadCount { position, count, last_offset_delta });
        }
        if self.compression() > 4 {
            return Err(BatchError::BadCompression { position, codec: self.compression() });
        }
        Ok(())
    }
}

/// Split a byte buffer into complete batches, checking only lengths (not CRCs).
/// Returns the batches and the number of bytes they cover; a trailing partial batch is left
/// out (`Ok` with fewer bytes covered) so callers reading a log tail can treat it as torn.
pub fn split_batches(buf: &[u8]) -> Result<(Vec<BatchView<'_>>, usize), BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while buf.len() - pos >= LOG_OVERHEAD_BYTES {
        let length = be_i32(buf, pos + BATCH_LENGTH_AT);
        let min_length = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if length < min_length || length as usize > crate::limits::REQUEST_FRAME_BYTES_MAX {
            return Err(BatchError::BadLength { position: pos, length });
        }
        let total = LOG_OVERHEAD_BYTES + length as usize;
        if buf.len() - pos < total {
            break;
        }
        out.push(BatchView { bytes: &buf[pos..pos + total], size_bytes: total });
        pos += total;
    }
    Ok((out, pos))
}

/// Like `split_batches`, but a bad length does not discard the batches before it: returns the
/// complete batches up to the first bad or partial one, the bytes they cover, and the error
/// that stopped the split, if any. Recovery uses this to keep every valid batch before a torn
/// tail (regression: a zero-filled torn sector after valid batches once made recovery cut the
/// whole segment).
pub fn split_valid_prefix(buf: &[u8]) -> (Vec<BatchView<'_>>, usize, Option<BatchError>) {
    match split_batches(buf) {
        Ok((batches, covered)) => (batches, covered, None),
        Err(e) => {
            let position = match &e {
                BatchError::BadLength { position, .. } => *position,
                _ => 0,
            };
            let (batches, covered) = split_batches(&buf[..position]).expect("the prefix before the first bad length splits");
            (batches, covered, Some(e))
        }
    }
}

/// Parse and fully validate a record set from a produce request. Every byte must belong to a
/// complete valid batch.
pub fn validate_record_set(buf: &[u8]) -> Result<Vec<BatchView<'_>>, BatchError> {
    let (batches, covered) = split_batches(buf)?;
    if covered != buf.len() {
        return Err(BatchError::Truncated {
            position: covered,
            available: buf.len() - covered,
            needed: if buf.len() - covered >= LOG_OVERHEAD_BYTES {
                LOG_OVERHEAD_BYTES + be_i32(buf, covered + BATCH_LENGTH_AT).max(0) as usize
            } else {
                LOG_OVERHEAD_BYTES
            },
        });
    }
    if batches.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut position = 0;
    for b in &batches {
        b.validate(position)?;
        position += b.size_bytes();
    }
    Ok(batches)
}

/// Write `base_offset` into a batch in place (outside the CRC: nothing else changes).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Write `partition_leader_epoch` into a batch in place (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamp LogAppendTime: set the timestamp-type attribute bit and max_timestamp, then recompute
/// the CRC (both fields are inside it). Records are not touched, as in Kafka's LogValidator.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES_AT) | ATTR_TIMESTAMP_TYPE_LOG_APPEND;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Build a valid uncompressed batch of `values` (no keys, no headers) for tests and tools.
pub fn build_simple_batch(base_offset: i64, timestamp_ms: i64, values: &[&[u8]]) -> Bytes {
    let records: Vec<(Option<Bytes>, Option<Bytes>)> =
        values.iter().map(|v| (None, Some(Bytes::copy_from_slice(v)))).collect();
    build_batch(base_offset, timestamp_ms, &records)
}

/// Build a valid uncompressed batch of (key, value) records; a `None` value is a tombstone.
pub fn build_batch(base_offset: i64, timestamp_ms: i64, records: &[(Option<Bytes>, Option<Bytes>)]) -> Bytes {
    build_producer_batch(base_offset, timestamp_ms, -1, -1, -1, records)
}

/// Build a batch as an idempotent producer (`producer_id` >= 0) would, with sequence numbers
/// from `base_sequence` (-1: none).
pub fn build_producer_batch(
    base_offset: i64,
    timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: &[(Option<Bytes>, Option<Bytes>)],
) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            // kafka-protocol keeps records in one batch only while offset - sequence is
            // constant; base_sequence is the first record's, and -1 means non-idempotent.
            sequence: if base_sequence < 0 { i as i32 - 1 } else { base_sequence.wrapping_add(i as i32) },
            timestamp: timestamp_ms,
            key: k.clone(),
            value: v.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("encoding an in-memory batch cannot fail");
    buf.freeze()
}

/// One uncompressed batch, encoded by kafka-protocol, of records `v0, v1, ...` at offsets from
/// `base_offset` with the given timestamps (for tests of lookups by timestamp).
#[cfg(test)]
pub(crate) fn timestamped_batch(base_offset: i64, timestamps: &[i64]) -> Bytes {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            sequence: i as i32, // kafka-protocol starts a new batch where offset - sequence changes
            timestamp,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encodes");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_lookup_reads_the_records_of_an_uncompressed_batch() {
        let buf = timestamped_batch(100, &[1_000, 2_000, 3_000, 4_000, 5_000]);
        let (views, _) = split_batches(&buf).unwrap();
        assert_eq!(views.len(), 1);
        let b = &views[0];
        assert_eq!(b.find_record_by_timestamp(0, 0), RecordSearch::Found { offset: 100, timestamp: 1_000 });
        assert_eq!(b.find_record_by_timestamp(2_500, 0), RecordSearch::Found { offset: 102, timestamp: 3_000 });
        assert_eq!(b.find_record_by_timestamp(3_000, 0), RecordSearch::Found { offset: 102, timestamp: 3_000 });
        assert_eq!(b.find_record_by_timestamp(1_000, 103), RecordSearch::Found { offset: 103, timestamp: 4_000 }, "not below the log start");
        assert_eq!(b.find_record_by_timestamp(5_001, 0), RecordSearch::NotFound);
        // Garbage records inside a valid CRC: opaque, never a panic.
        let mut bad = buf.to_vec();
        for byte in &mut bad[HEADER_BYTES..] {
            *byte = 0xff;
        }
        let crc = crc32c::crc32c(&bad[ATTRIBUTES_AT..]);
        bad[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let (views, _) = split_batches(&bad).unwrap();
        assert_eq!(views[0].find_record_by_timestamp(0, 0), RecordSearch::Opaque);
    }

    #[test]
    fn simple_batch_validates_and_patches() {
        let b = build_simple_batch(0, 1000, &[b"a", b"bb", b"ccc"]);
        let views = validate_record_set(&b).unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].records_count(), 3);
        assert_eq!(views[0].last_offset_delta(), 2);
        let mut m = b.to_vec();
        set_base_offset(&mut m, 42);
        set_partition_leader_epoch(&mut m, 7);
        let v = validate_record_set(&m).unwrap();
        assert_eq!(v[0].base_offset(), 42);
        assert_eq!(v[0].last_offset(), 44);
        assert_eq!(v[0].partition_leader_epoch(), 7);
        set_log_append_time(&mut m, 5555);
        let v = validate_record_set(&m).unwrap();
        assert!(v[0].is_log_append_time());
        assert_eq!(v[0].max_timestamp(), 5555);
    }

    #[test]
    fn flipped_bit_is_a_crc_error() {
        let b = build_simple_batch(0, 1000, &[b"hello"]);
        let mut m = b.to_vec();
        let last = m.len() - 1;
        m[last] ^= 0x01;
        assert!(matches!(validate_record_set(&m), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn wrong_magic_and_truncation_are_rejected() {
        let b = build_simple_batch(0, 1000, &[b"hello"]);
        let mut m = b.to_vec();
        m[MAGIC_AT] = 1;
        assert!(matches!(validate_record_set(&m), Err(BatchError::BadMagic { .. })));
        assert!(matches!(validate_record_set(&b[..b.len() - 1]), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate_record_set(&[]), Err(BatchError::Empty)));
        let mut short = b.to_vec();
        short[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&3i32.to_be_bytes());
        assert!(matches!(validate_record_set(&short), Err(BatchError::BadLength { .. })));
    }
}
