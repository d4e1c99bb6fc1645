//! Invariant checkers: pure functions over the history of one run. Each returns the violations
//! it found, as one-line messages.

use std::collections::{BTreeMap, BTreeSet};

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Values acknowledged with acks=all, at (offset of the first value).
    pub acked: Vec<(i64, Vec<String>)>,
    /// Every value any producer ever tried to send.
    pub attempted: BTreeSet<String>,
    /// (offset, value) observed by consumers during the run, in observation order.
    pub observed: Vec<(i64, String)>,
    /// High watermarks in the order one consumer observed them.
    pub high_watermarks: Vec<i64>,
    /// Batches consumers observed: base offset -> (next offset, max record timestamp).
    pub batches: BTreeMap<i64, (i64, i64)>,
    /// ListOffsets by timestamp answers: (timestamp asked, offset answered, timestamp answered).
    pub timestamp_lookups: Vec<(i64, i64, i64)>,
    /// The whole partition read after the run, in offset order.
    pub final_log: Vec<(i64, String)>,
    /// Producers that did not finish their work.
    pub unfinished: Vec<String>,
    /// A consumer or the final read hit an error that should not happen after healing.
    pub read_errors: Vec<String>,
    /// Topics whose deletion was acknowledged.
    pub deleted_topics: Vec<String>,
    /// Every topic listed by Metadata after the run.
    pub final_topics: Vec<String>,
    /// Values sent by idempotent producers.
    pub idempotent_values: BTreeSet<String>,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER / INVALID_PRODUCER_EPOCH answers to idempotent producers.
    pub idempotent_errors: Vec<String>,
    /// The broker started a partition with empty producer state (its last segments could not
    /// be read back), so a retry across that restart may be stored twice.
    pub producer_state_lost: bool,
    /// The group workload ran.
    pub group_enabled: bool,
    /// Successful SyncGroup results: (generation, member id, partitions).
    pub group_syncs: Vec<(i32, String, Vec<i32>)>,
    /// Every (partition, offset) a member tried to commit.
    pub group_commit_attempts: BTreeSet<(i32, i64)>,
    /// Acknowledged commits: (partition, offset).
    pub group_commit_acked: Vec<(i32, i64)>,
    /// Committed offsets as one monitor saw them, in observation order: (partition, offset).
    pub group_committed_seen: Vec<(i32, i64)>,
    /// OffsetFetch answers below a commit acknowledged before the fetch was sent.
    pub group_lost_commits: Vec<String>,
    /// After the run: committed offset and log end per partition of the group's topic.
    pub group_final_committed: BTreeMap<i32, i64>,
    pub group_final_log_end: BTreeMap<i32, i64>,
    /// The DeleteRecords workload (`trim.rs`) ran.
    pub trim_enabled: bool,
    /// Its acknowledged batches: (base offset, values).
    pub trim_acked: Vec<(i64, Vec<String>)>,
    /// Every offset it asked DeleteRecords to delete before.
    pub trim_delete_attempts: Vec<i64>,
    /// Acknowledged DeleteRecords: (offset asked, low watermark answered).
    pub trim_deletes_acked: Vec<(i64, i64)>,
    /// Log starts it saw (DeleteRecords answers, ListOffsets earliest), in order.
    pub trim_starts_seen: Vec<i64>,
    /// (offset, value) its fetches returned.
    pub trim_observed: Vec<(i64, String)>,
    /// Fetches below an acknowledged start that were served.
    pub trim_violations: Vec<String>,
    /// After the run: the log start and the records from it.
    pub trim_final: Option<(i64, Vec<(i64, String)>)>,
}

/// Every record acknowledged with acks=all is readable at its acknowledged offset.
pub fn acknowledged_records_survive(h: &History) -> Vec<String> {
    let log: BTreeMap<i64, &String> = h.final_log.iter().map(|(o, v)| (*o, v)).collect();
    let mut out = Vec::new();
    for (base, values) in &h.acked {
        for (i, v) in values.iter().enumerate() {
            let offset = base + i as i64;
            match log.get(&offset) {
                Some(found) if *found == v => {}
                Some(found) => out.push(format!("acknowledged '{v}' at offset {offset}, but the log holds '{found}' there")),
                None => out.push(format!("acknowledged '{v}' at offset {offset}, but the log has no record there")),
            }
        }
    }
    out
}

/// One value per offset, ever, across everything any client read.
pub fn one_value_per_offset(h: &History) -> Vec<String> {
    let mut seen: BTreeMap<i64, &String> = BTreeMap::new();
    let mut out = Vec::new();
    for (o, v) in h.observed.iter().chain(h.final_log.iter()) {
        match seen.get(o) {
            Some(prev) if *prev != v => out.push(format!("offset {o} was read as '{prev}' and as '{v}'")),
            Some(_) => {}
            None => {
                seen.insert(*o, v);
            }
        }
    }
    out
}

/// Offsets in the log are dense from 0 and increasing.
pub fn offsets_dense(h: &History) -> Vec<String> {
    h.final_log
        .iter()
        .enumerate()
        .filter(|(i, (o, _))| *o != *i as i64)
        .take(1)
        .map(|(i, (o, _))| format!("position {i} of the log holds offset {o}"))
        .collect()
}

/// No read returns a record that was never produced.
pub fn no_phantom_records(h: &History) -> Vec<String> {
    h.observed
        .iter()
        .chain(h.final_log.iter())
        .filter(|(_, v)| !h.attempted.contains(v))
        .take(3)
        .map(|(o, v)| format!("offset {o} holds '{v}', which no producer sent"))
        .collect()
}

/// The high watermark a consumer sees never goes backwards, across restarts too.
pub fn high_watermark_monotonic(h: &History) -> Vec<String> {
    h.high_watermarks
        .windows(2)
        .filter(|w| w[1] < w[0])
        .take(1)
        .map(|w| format!("high watermark went back from {} to {}", w[0], w[1]))
        .collect()
}

/// ListOffsets by timestamp T answers the first batch, in offset order, whose max timestamp is
/// at least T (strand answers batches; it never decompresses one to find the record): so the
/// offset answered starts a batch, that batch's max timestamp is the one answered and >= T,
/// and no batch before it reaches T. Checked against the batches consumers observed, for
/// answers below the end of what they observed. (The log start never moves in the simulator.)
pub fn timestamp_lookups_answer_batch_starts(h: &History) -> Vec<String> {
    let known_end = h.batches.values().map(|(next, _)| *next).max().unwrap_or(0);
    let mut out = Vec::new();
    for &(t, offset, ts) in &h.timestamp_lookups {
        if offset < 0 || offset >= known_end {
            continue;
        }
        match h.batches.get(&offset) {
            None => out.push(format!("ListOffsets(timestamp {t}) answered offset {offset}, which starts no batch consumers saw")),
            Some(&(_, max_ts)) if max_ts < t || max_ts != ts => {
                out.push(format!("ListOffsets(timestamp {t}) answered offset {offset} with timestamp {ts}; that batch's max timestamp is {max_ts}"))
            }
            Some(_) => {
                if let Some((base, (_, max_ts))) = h.batches.range(..offset).find(|(_, (_, m))| *m >= t) {
                    out.push(format!("ListOffsets(timestamp {t}) answered offset {offset}, but the batch at {base} comes first with max timestamp {max_ts}"));
                }
            }
        }
    }
    out.truncate(3);
    out
}

/// A topic whose deletion was acknowledged never comes back (e.g. after a crash).
pub fn deleted_topics_stay_deleted(h: &History) -> Vec<String> {
    h.deleted_topics
        .iter()
        .filter(|t| h.final_topics.contains(t))
        .map(|t| format!("topic '{t}' was deleted (acknowledged) but exists after the run"))
        .collect()
}

/// After the faults stop, every client finishes and reads succeed.
pub fn liveness(h: &History) -> Vec<String> {
    let mut out: Vec<String> = h.unfinished.iter().map(|p| format!("{p} did not finish after healing")).collect();
    out.extend(h.read_errors.iter().cloned());
    out
}

/// No partition is given to two members in one generation.
pub fn group_single_ownership(h: &History) -> Vec<String> {
    let mut owner: BTreeMap<(i32, i32), &str> = BTreeMap::new();
    let mut out = Vec::new();
    for (generation, member, parts) in &h.group_syncs {
        for p in parts {
            match owner.get(&(*generation, *p)) {
                Some(other) if *other != member.as_str() => {
                    out.push(format!("generation {generation}: partition {p} owned by both {other} and {member}"))
                }
                _ => {
                    owner.insert((*generation, *p), member);
                }
            }
        }
    }
    out
}

/// Committed offsets never go backwards (there are no resets in this workload).
pub fn group_committed_monotone(h: &History) -> Vec<String> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for (p, o) in &h.group_committed_seen {
        if let Some(prev) = last.get(p) {
            if o < prev {
                out.push(format!("partition {p}: committed offset went back from {prev} to {o}"));
            }
        }
        last.insert(*p, *o);
    }
    out.truncate(3);
    out
}

/// After crashes, OffsetFetch returns at least the last acknowledged commit, and only offsets
/// someone committed.
pub fn group_commits_survive(h: &History) -> Vec<String> {
    let mut out: Vec<String> = h.group_lost_commits.iter().take(3).cloned().collect();
    let mut max_acked: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in &h.group_commit_acked {
        let e = max_acked.entry(*p).or_insert(*o);
        *e = (*e).max(*o);
    }
    for (p, acked) in &max_acked {
        match h.group_final_committed.get(p) {
            Some(c) if c >= acked => {}
            Some(c) => out.push(format!("partition {p}: commit of {acked} was acknowledged, but the committed offset is {c}")),
            None => out.push(format!("partition {p}: commit of {acked} was acknowledged, but nothing is committed")),
        }
    }
    for (p, o) in &h.group_final_committed {
        if !h.group_commit_attempts.contains(&(*p, *o)) {
            out.push(format!("partition {p}: committed offset {o} was never committed by a member"));
        }
    }
    out
}

/// After the faults stop, the group settles and commits everything.
pub fn group_liveness(h: &History) -> Vec<String> {
    if !h.group_enabled {
        return Vec::new();
    }
    h.group_final_log_end
        .iter()
        .filter(|(p, end)| h.group_final_committed.get(p).copied().unwrap_or(0) != **end)
        .map(|(p, end)| format!("partition {p}: log ends at {end}, committed {:?} after healing", h.group_final_committed.get(p)))
        .collect()
}

/// Idempotent producers' batches are stored once: a retry (after a lost answer, a timeout or
/// a crash) is recognised; and a correct producer is never told its sequence is out of order.
pub fn idempotent_exactly_once(h: &History) -> Vec<String> {
    let mut out: Vec<String> = h.idempotent_errors.iter().take(3).cloned().collect();
    if h.producer_state_lost {
        return out;
    }
    let mut count: BTreeMap<&String, usize> = BTreeMap::new();
    for (_, v) in &h.final_log {
        if h.idempotent_values.contains(v) {
            *count.entry(v).or_default() += 1;
        }
    }
    out.extend(count.iter().filter(|(_, n)| **n > 1).take(3).map(|(v, n)| format!("'{v}' from an idempotent producer is stored {n} times")));
    out
}

/// DeleteRecords (KIP-107): the log start never moves back (across crashes too), never past
/// what some DeleteRecords asked for, and is at least every acknowledged one; nothing below an
/// acknowledged start is served; every acknowledged record at or past the final start is still
/// there, at its offset; one value per offset in everything read.
pub fn deleted_records_stay_deleted(h: &History) -> Vec<String> {
    if !h.trim_enabled {
        return Vec::new();
    }
    let mut out: Vec<String> = h.trim_violations.iter().take(3).cloned().collect();
    if let Some(w) = h.trim_starts_seen.windows(2).find(|w| w[1] < w[0]) {
        out.push(format!("the log start went back from {} to {}", w[0], w[1]));
    }
    for (asked, low) in &h.trim_deletes_acked {
        if low < asked {
            out.push(format!("DeleteRecords before {asked} was acknowledged with low watermark {low}"));
        }
    }
    let Some((start, log)) = &h.trim_final else {
        return out; // the final read failed: `liveness` reports it
    };
    let max_acked = h.trim_deletes_acked.iter().map(|(o, _)| *o).max().unwrap_or(0);
    let max_asked = h.trim_delete_attempts.iter().copied().max().unwrap_or(0);
    if *start < max_acked {
        out.push(format!("DeleteRecords before {max_acked} was acknowledged, but the log starts at {start} after the run"));
    }
    if *start > max_asked {
        out.push(format!("the log starts at {start} after the run, past every DeleteRecords offset (at most {max_asked})"));
    }
    let final_log: BTreeMap<i64, &String> = log.iter().map(|(o, v)| (*o, v)).collect();
    for (base, values) in &h.trim_acked {
        for (i, v) in values.iter().enumerate() {
            let offset = base + i as i64;
            if offset < *start {
                continue;
            }
            match final_log.get(&offset) {
                Some(found) if *found == v => {}
                found => out.push(format!("'{v}' was acknowledged at offset {offset} (log start {start}), but the log holds {found:?} there")),
            }
        }
    }
    let mut seen: BTreeMap<i64, &String> = BTreeMap::new();
    for (o, v) in h.trim_observed.iter().chain(log.iter()) {
        if let Some(prev) = seen.insert(*o, v) {
            if prev != v {
                out.push(format!("offset {o} of '{}' was read as '{prev}' and as '{v}'", "trim"));
            }
        }
    }
    out.truncate(5);
    out
}

/// All checkers, by name.
pub fn all(h: &History) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("acknowledged-records-survive", acknowledged_records_survive(h)),
        ("one-value-per-offset", one_value_per_offset(h)),
        ("offsets-dense", offsets_dense(h)),
        ("no-phantom-records", no_phantom_records(h)),
        ("high-watermark-monotonic", high_watermark_monotonic(h)),
        ("timestamp-lookups-answer-batch-starts", timestamp_lookups_answer_batch_starts(h)),
        ("deleted-topics-stay-deleted", deleted_topics_stay_deleted(h)),
        ("deleted-records-stay-deleted", deleted_records_stay_deleted(h)),
        ("liveness", liveness(h)),
        ("idempotent-exactly-once", idempotent_exactly_once(h)),
        ("group-single-ownership", group_single_ownership(h)),
        ("group-committed-monotone", group_committed_monotone(h)),
        ("group-commits-survive", group_commits_survive(h)),
        ("group-liveness", group_liveness(h)),
    ]
}
