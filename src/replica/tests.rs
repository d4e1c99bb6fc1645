//! The partition log as Raft storage, one replica at a time. Three replicas under a seeded
//! schedule with power loss are in `sim/tests/replicas.rs`.

use super::store::{leader_change_batch, place_batch, ReplicaStore};
use crate::config::TopicConfig;
use crate::protocol::batch::{build_simple_batch, split_batches};
use crate::raft::{Entry, HardState, LogIndex, LogWrite, NodeId, Payload, Term};
use crate::runtime::Runtime;

const MEMBERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("strand-replica-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A batch of `n` records placed at `base` in `term`, as the entry a leader proposes.
fn entry(base: u64, n: usize, term: u64) -> Entry {
    let values: Vec<Vec<u8>> = (0..n).map(|i| format!("r{base}-{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let bytes = place_batch(&build_simple_batch(0, 1_000, &refs), base as i64, term as i32);
    Entry { term: Term(term), payload: Payload::Batch { count: n as u32, bytes } }
}

async fn open(d: &std::path::Path) -> ReplicaStore {
    ReplicaStore::open(Runtime::real(), d.to_path_buf(), TopicConfig::default(), &MEMBERS).await.unwrap()
}

/// Index 1: term 1's leader change; 2..=4: a batch of 3 records (term 1); 5..=6: a batch of 2
/// (term 2; its leader change left out for brevity).
async fn filled(d: &std::path::Path) -> ReplicaStore {
    let mut s = open(d).await;
    let lc = Entry { term: Term(1), payload: Payload::LeaderChange };
    let entries = vec![lc, entry(1, 3, 1), entry(4, 2, 2)];
    s.write(&LogWrite::Append { id: 1, truncate_from: None, first_index: LogIndex(1), entries }).await.unwrap();
    assert_eq!(s.sync().await.unwrap(), Some(1));
    assert_eq!(s.log().log_end_offset(), 6);
    s
}

#[tokio::test]
async fn an_append_is_sent_as_whole_batches() {
    let d = dir("whole");
    let s = filled(&d).await;
    let bases = |e: &[Entry]| -> Vec<i64> {
        e.iter()
            .map(|e| match &e.payload {
                Payload::Batch { bytes, .. } => split_batches(bytes).unwrap().0[0].base_offset(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    // From a batch boundary: exactly the batches asked for (index 2..=4 is the batch at 1).
    let (prev, term, e) = s.entries_for(LogIndex(1), LogIndex(5), usize::MAX).await.unwrap();
    assert_eq!((prev, term, bases(&e)), (LogIndex(1), Term(1), vec![1]));
    // `prev_index` 3 is inside the batch at offsets 1..=3: the append starts with that batch.
    let (prev, term, e) = s.entries_for(LogIndex(3), LogIndex(5), usize::MAX).await.unwrap();
    assert_eq!((prev, term, bases(&e)), (LogIndex(1), Term(1), vec![1]));
    // A range ending inside a batch gets all of it.
    let (prev, _, e) = s.entries_for(LogIndex(1), LogIndex(6), usize::MAX).await.unwrap();
    assert_eq!((prev, bases(&e)), (LogIndex(1), vec![1, 4]));
    // Empty at a boundary: nothing; empty inside a batch: that batch.
    let (prev, term, e) = s.entries_for(LogIndex(4), LogIndex(5), usize::MAX).await.unwrap();
    assert_eq!((prev, term, e.len()), (LogIndex(4), Term(1), 0));
    let (prev, term, e) = s.entries_for(LogIndex(5), LogIndex(6), usize::MAX).await.unwrap();
    assert_eq!((prev, term, bases(&e)), (LogIndex(4), Term(1), vec![4]));
    // A byte limit stops after the first batch past it (never before the first).
    let (prev, _, e) = s.entries_for(LogIndex(1), LogIndex(7), 1).await.unwrap();
    assert_eq!((prev, bases(&e)), (LogIndex(1), vec![1]));
    // The leader change is sent as its bytes: a one-record batch.
    let (prev, term, e) = s.entries_for(LogIndex(0), LogIndex(2), usize::MAX).await.unwrap();
    assert_eq!((prev, term), (LogIndex(0), Term(0)));
    assert!(matches!(e[0].payload, Payload::Batch { count: 1, .. }) && e[0].term == Term(1));
    s.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_leader_change_is_a_control_batch_clients_skip() {
    let b = leader_change_batch(41, 7, 1_000);
    let (batches, _) = split_batches(&b).unwrap();
    let v = &batches[0];
    assert!(v.is_control());
    assert_eq!((v.base_offset(), v.partition_leader_epoch(), v.records_count()), (41, 7, 1));
    assert_eq!(v.stored_crc(), v.computed_crc());
    // The same batch a stock consumer reads past: the client decoder sees a control record.
    let mut buf = b.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
    assert!(set.records.iter().all(|r| r.control));
}

#[tokio::test]
async fn the_term_vote_and_terms_survive_a_restart_and_a_truncation_cuts_whole_batches() {
    let d = dir("restart");
    let mut s = filled(&d).await;
    let hard = HardState { term: Term(2), voted_for: Some(NodeId(3)) };
    s.save_hard_state(hard).await.unwrap();
    let before = s.log_state();
    assert_eq!(before.epochs, vec![(Term(1), LogIndex(1)), (Term(2), LogIndex(5))]);
    assert_eq!(before.last_index, LogIndex(6));
    s.close().await.unwrap();

    let mut s = open(&d).await;
    assert_eq!((s.hard_state(), s.log_state()), (hard, before));
    // Term 3's leader disagrees from index 5 on (the batch at offsets 4..=5): cut, replaced.
    let e = entry(4, 1, 3);
    s.write(&LogWrite::Append { id: 2, truncate_from: Some(LogIndex(5)), first_index: LogIndex(5), entries: vec![e] }).await.unwrap();
    assert_eq!(s.sync().await.unwrap(), Some(2));
    assert_eq!(s.log_state().epochs, vec![(Term(1), LogIndex(1)), (Term(3), LogIndex(5))]);
    assert_eq!(s.log().log_end_offset(), 5);
    s.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_replicated_batch_must_continue_the_log() {
    let d = dir("contiguous");
    let mut s = filled(&d).await;
    // A batch claiming offset 9 at a log ending at 6 is refused, not written.
    let stray = match entry(9, 1, 2).payload {
        Payload::Batch { bytes, .. } => bytes,
        _ => unreachable!(),
    };
    let err = s.log_mut_for_tests().append_replicated(stray, 0).await.unwrap_err();
    assert!(err.to_string().contains("not at the log end 6"), "{err}");
    // A batch of an older epoch than the log's latest is refused too.
    let old = match entry(6, 1, 1).payload {
        Payload::Batch { bytes, .. } => bytes,
        _ => unreachable!(),
    };
    let err = s.log_mut_for_tests().append_replicated(old, 0).await.unwrap_err();
    assert!(err.to_string().contains("older than the log's 2"), "{err}");
    assert_eq!(s.log().log_end_offset(), 6);
    s.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
