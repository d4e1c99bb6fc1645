//! Planted bugs: deliberate defects compiled in only with the test-only `planted-bugs` cargo
//! feature and switched on by name at run time, to prove the property tests, the simulator and
//! the Jepsen checks can see real bugs. Never in a release build.
//!
//! Names: `ack-before-fsync` (the group-commit flusher publishes the high watermark, and so
//! answers acks, before it syncs), `skip-recovery-crc` (recovery trusts batches without
//! checking their CRC), `torn-tail-off-by-one` (recovery cuts a torn tail one byte into the
//! last valid batch), `high-watermark-back` (after a restart the partition publishes a high
//! watermark one below what was already visible, until the next append),
//! `group-generation-reset` (the group coordinator forgets group generations on restart, so a
//! generation number is handed out twice), `group-ack-before-durable` (the coordinator answers
//! commits and joins before their `__consumer_offsets` records are durable),
//! `producer-dedup-off` (idempotent producers' retries are stored again), `skip-dir-sync`
//! (metadata files and checkpoints are renamed into place without syncing the directory),
//! `log-start-in-memory` (a log start moved inside the first segment, by DeleteRecords, is not
//! persisted, as if the checkpoint mattered only when segment files go). The Raft core's
//! (`src/raft/`): `raft-vote-without-persist` (a vote, and the term it bumps to, are not made
//! durable before the answer leaves), `raft-commit-previous-term` (the leader commits an entry
//! of an earlier term by counting replicas, the paper's Figure 8), `raft-accept-stale-append`
//! (a follower takes appends from a leader of a lower term), `raft-keep-conflicting-suffix` (a
//! follower keeps its entries that conflict with the leader's and acknowledges anyway),
//! `raft-vote-for-stale-log` (a vote is granted to a candidate whose log is behind),
//! `raft-read-without-quorum` (read-index answers at once, without confirming leadership: a
//! deposed leader serves stale reads). The metadata quorum's shell (`src/controller/`):
//! `raft-forward-ack-before-commit` (the leader answers a proposal forwarded by a follower as
//! soon as it is appended, before it commits; caught by `sim/tests/quorum.rs`), and the
//! replica manager's (`server/topics.rs`): `raft-meta-skip-catch-up` (an admin change is checked
//! against this broker's possibly lagging image instead of first catching up with the
//! quorum; caught by `sim/tests/cluster_metadata.rs`). A replica's log (`src/log/truncate.rs`):
//! `raft-batch-counted-as-one` (a follower acknowledges a record batch as if it took one index,
//! not one per record; caught by `proptests/tests/raft_safety.rs`), `raft-commit-on-one-ack`
//! (the leader commits on its own copy alone; caught by the Raft harness),
//! `replica-stale-sync-counts` (a sync that a truncation overtook still marks the log durable,
//! so bytes written after the cut count as synced; caught by `proptests/tests/log_model.rs`).
//! `replica-ack-before-fsync` (a replica's store reports its writes durable without syncing,
//! so its core acknowledges entries a power loss takes back; caught by `sim/tests/replicas.rs`).
//! Every `raft-` and `replica-` bug is proven by the Raft, cluster and log harnesses (the
//! single-node broker never truncates), so the single-node simulator's planted sweep skips them.
//!
//! Switch on with `set_planted(&["name"])`, or the environment variable
//! `STRAND_PLANTED_BUGS=name,name` read at first use.

use std::sync::RwLock;

pub const PLANTED_BUGS: &[&str] = &[
    "ack-before-fsync",
    "skip-recovery-crc",
    "torn-tail-off-by-one",
    "high-watermark-back",
    "group-generation-reset",
    "group-ack-before-durable",
    "producer-dedup-off",
    "skip-dir-sync",
    "log-start-in-memory",
    "raft-vote-without-persist",
    "raft-commit-previous-term",
    "raft-accept-stale-append",
    "raft-keep-conflicting-suffix",
    "raft-vote-for-stale-log",
    "raft-read-without-quorum",
    "raft-forward-ack-before-commit",
    "raft-meta-skip-catch-up",
    "raft-batch-counted-as-one",
    "raft-commit-on-one-ack",
    "replica-stale-sync-counts",
    "replica-ack-before-fsync",
];

/// Whether `name` is a planted bug of the Raft core (proven by proptests/'s Raft harness).
pub fn is_raft_bug(name: &str) -> bool {
    name.starts_with("raft-")
}

/// Whether `name` is a planted bug on a path the single-node simulator never takes (the Raft
/// core and its shells, a replica's truncation): proven by the other harnesses instead.
pub fn is_cluster_bug(name: &str) -> bool {
    is_raft_bug(name) || name.starts_with("replica-")
}

static ACTIVE: RwLock<Option<Vec<String>>> = RwLock::new(None);

/// Switch on exactly these planted bugs (an empty list switches all off). Unknown names are an
/// error naming the bad one.
pub fn set_planted(names: &[&str]) -> Result<(), String> {
    if let Some(bad) = names.iter().find(|n| !PLANTED_BUGS.contains(n)) {
        return Err(format!("unknown planted bug '{bad}' (known: {})", PLANTED_BUGS.join(", ")));
    }
    *ACTIVE.write().expect("planted lock") = Some(names.iter().map(|s| s.to_string()).collect());
    Ok(())
}

/// Whether the planted bug `name` is on.
pub fn planted(name: &str) -> bool {
    debug_assert!(PLANTED_BUGS.contains(&name), "unknown planted bug {name}");
    if let Some(active) = ACTIVE.read().expect("planted lock").as_ref() {
        return active.iter().any(|a| a == name);
    }
    let from_env: Vec<String> = std::env::var("STRAND_PLANTED_BUGS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let on = from_env.iter().any(|a| a == name);
    *ACTIVE.write().expect("planted lock") = Some(from_env);
    on
}
