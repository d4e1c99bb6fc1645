//! Random schedules against the Raft core (`strand::raft`): 3-5 voters and spare nodes over a
//! bus that drops, duplicates, reorders and delays; one-way cuts, isolated nodes and halves;
//! crashes that lose unpersisted writes; snapshots, membership changes, leadership transfers.
//! Every schedule checks election safety, log matching, leader completeness, state-machine
//! safety and an honest durable index as it runs, and liveness after heal (see
//! `strand_proptests::raft_harness`).
//!
//! `RAFT_SCHEDULES=N` sets how many schedules run (CI: 10,000, the default); `RAFT_SEED=S`
//! replays one schedule with its event trace.

use strand_proptests::raft_harness::run_schedule;

const EVENTS: u32 = 2000;

#[test]
fn random_schedules_keep_raft_safe_and_live() {
    if let Ok(seed) = std::env::var("RAFT_SEED") {
        let seed: u64 = seed.parse().expect("RAFT_SEED is a number");
        if let Err(e) = run_schedule(seed, EVENTS, true) {
            panic!("{e}");
        }
        return;
    }
    let schedules: u64 = std::env::var("RAFT_SCHEDULES").ok().map(|s| s.parse().expect("RAFT_SCHEDULES is a number")).unwrap_or(10_000);
    let first: u64 = std::env::var("RAFT_FIRST_SEED").ok().map(|s| s.parse().expect("RAFT_FIRST_SEED is a number")).unwrap_or(0);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    if std::env::var("RAFT_COUNT_FAILURES").is_ok() {
        // Survey mode (for tuning the harness): how many schedules fail, and the first few.
        let failed: Vec<u64> = (first..first + schedules).filter(|&s| run_schedule(s, EVENTS, false).is_err()).collect();
        std::panic::set_hook(quiet);
        eprintln!("{} of {schedules} schedules failed; first: {:?}", failed.len(), &failed[..failed.len().min(10)]);
        return;
    }
    let mut failure = None;
    for seed in first..first + schedules {
        if let Err(e) = run_schedule(seed, EVENTS, false) {
            failure = Some(seed);
            let _ = e;
            break;
        }
    }
    std::panic::set_hook(quiet);
    if let Some(seed) = failure {
        // Replay with the trace for the report.
        let e = run_schedule(seed, EVENTS, true).expect_err("a failing seed fails again");
        panic!("raft schedule failed (replay: RAFT_SEED={seed} cargo test -p strand-proptests --test raft_safety)\n{e}");
    }
}
