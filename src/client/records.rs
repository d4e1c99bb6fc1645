//! Decoding the record set of a Fetch response for a consumer positioned at some offset.
//!
//! A broker returns whole batches, so a batch may start before the consumer's position; it may
//! also end the set with a batch cut short by the size limit (older Kafka brokers do). Control
//! batches (transaction markers) are skipped but still move the position. Every batch is
//! length-, CRC- and count-checked before kafka-protocol decodes it, since the decoder reserves
//! memory for the record count the batch claims.

use anyhow::{anyhow, bail};
use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::protocol::batch::{split_batches, HEADER_BYTES};

/// The smallest encoded record (magic 2): length, attributes, timestamp delta, offset delta,
/// key length, value length and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;
/// Most records this client decodes from one compressed batch (whose count cannot be checked
/// against its size). A 1 MiB batch of empty records compresses to far fewer.
pub const COMPRESSED_BATCH_RECORDS_MAX: i32 = 1 << 20;

/// What one fetched record set holds for a consumer at `from`.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Data records at offsets >= `from`, in offset order.
    pub records: Vec<Record>,
    /// Where the next fetch starts: after the last complete batch, or `from` if there was none.
    pub next_offset: i64,
    /// Bytes of a trailing partial batch that were ignored.
    pub partial_tail_bytes: usize,
}

/// Decode `set` (a partition's `records` from a Fetch response) for a consumer at `from`.
pub fn decode_fetched(set: &Bytes, from: i64) -> anyhow::Result<Fetched> {
    let (batches, covered) = split_batches(set).map_err(|e| anyhow!("{e}"))?;
    let mut out = Fetched { records: Vec::new(), next_offset: from, partial_tail_bytes: set.len() - covered };
    let mut position = 0usize;
    for view in batches {
        let size = view.size_bytes();
        view.validate(position).map_err(|e| anyhow!("{e}"))?;
        let count = view.records_count();
        let payload = size - HEADER_BYTES;
        let too_many = if view.compression() == 0 {
            count as usize > payload / RECORD_BYTES_MIN
        } else {
            count > COMPRESSED_BATCH_RECORDS_MAX
        };
        if too_many {
            bail!("record batch at byte {position}: {count} records cannot fit in {payload} bytes");
        }
        let next = view.next_offset();
        if next > from && !view.is_control() {
            let mut bytes = set.slice(position..position + size);
            let decoded = RecordBatchDecoder::decode(&mut bytes)
                .map_err(|e| anyhow!("record batch at byte {position} (offset {}): {e}", view.base_offset()))?;
            out.records.extend(decoded.records.into_iter().filter(|r| r.offset >= from && !r.control));
        }
        out.next_offset = out.next_offset.max(next);
        position += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{build_simple_batch, set_base_offset};

    fn values(f: &Fetched) -> Vec<(i64, String)> {
        f.records.iter().map(|r| (r.offset, String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())).collect()
    }

    fn two_batches() -> Bytes {
        let mut a = build_simple_batch(10, 1, &[b"a", b"b", b"c"]).to_vec();
        set_base_offset(&mut a, 10);
        let mut b = build_simple_batch(13, 1, &[b"d", b"e"]).to_vec();
        set_base_offset(&mut b, 13);
        a.extend_from_slice(&b);
        Bytes::from(a)
    }

    #[test]
    fn records_before_the_position_are_skipped() {
        let set = two_batches();
        let f = decode_fetched(&set, 11).unwrap();
        assert_eq!(values(&f), vec![(11, "b".into()), (12, "c".into()), (13, "d".into()), (14, "e".into())]);
        assert_eq!(f.next_offset, 15);
        let f = decode_fetched(&set, 13).unwrap();
        assert_eq!(values(&f), vec![(13, "d".into()), (14, "e".into())]);
        let f = decode_fetched(&set, 15).unwrap();
        assert!(f.records.is_empty());
        assert_eq!(f.next_offset, 15);
    }

    #[test]
    fn a_partial_tail_is_ignored() {
        let set = two_batches();
        let cut = set.slice(..set.len() - 3);
        let f = decode_fetched(&cut, 10).unwrap();
        assert_eq!(values(&f), vec![(10, "a".into()), (11, "b".into()), (12, "c".into())]);
        assert_eq!(f.next_offset, 13);
        assert!(f.partial_tail_bytes > 0);
        let f = decode_fetched(&Bytes::new(), 7).unwrap();
        assert_eq!((f.records.len(), f.next_offset), (0, 7));
    }

    #[test]
    fn control_batches_move_the_position() {
        let mut set = build_simple_batch(0, 1, &[b"marker"]).to_vec();
        // Set the control attribute (bit 5) and fix the CRC.
        let attrs = i16::from_be_bytes([set[21], set[22]]) | 0x20;
        set[21..23].copy_from_slice(&attrs.to_be_bytes());
        let crc = crc32c::crc32c(&set[21..]);
        set[17..21].copy_from_slice(&crc.to_be_bytes());
        let f = decode_fetched(&Bytes::from(set), 0).unwrap();
        assert!(f.records.is_empty());
        assert_eq!(f.next_offset, 1);
    }

    #[test]
    fn bad_batches_are_errors_not_panics() {
        let mut set = two_batches().to_vec();
        let last = set.len() - 1;
        set[last] ^= 0xff;
        assert!(decode_fetched(&Bytes::from(set.clone()), 0).unwrap_err().to_string().contains("CRC"));
        // A huge record count with a matching CRC.
        let mut set = build_simple_batch(0, 1, &[b"x"]).to_vec();
        set[57..61].copy_from_slice(&(1i32 << 23).to_be_bytes());
        set[23..27].copy_from_slice(&((1i32 << 23) - 1).to_be_bytes());
        let crc = crc32c::crc32c(&set[21..]);
        set[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_fetched(&Bytes::from(set), 0).unwrap_err().to_string().contains("cannot fit"));
    }
}
