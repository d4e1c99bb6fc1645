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

/// All checkers, by name.
pub fn all(h: &History) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("acknowledged-records-survive", acknowledged_records_survive(h)),
        ("one-value-per-offset", one_value_per_offset(h)),
        ("offsets-dense", offsets_dense(h)),
        ("no-phantom-records", no_phantom_records(h)),
        ("high-watermark-monotonic", high_watermark_monotonic(h)),
        ("deleted-topics-stay-deleted", deleted_topics_stay_deleted(h)),
        ("liveness", liveness(h)),
    ]
}
