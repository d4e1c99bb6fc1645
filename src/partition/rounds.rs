//! Aligned group commits across partitions.
//!
//! Every partition has its own flusher, but they share one disk and, on ext4, one journal: an
//! `fdatasync` that starts while another's journal commit is running must wait for that commit
//! and then for its own, so unaligned flushers make each other's syncs up to twice as long.
//! `SyncRounds` lines them up: a flusher with data to sync *enters* a round; if none is running
//! it starts one at once, otherwise it waits until the running round ends and then starts the
//! next one together with everyone else who waited, so their inodes go into one journal commit.
//! Measured with four files on the development VM: fdatasync p99 0.96-1.04 ms aligned against
//! 1.24-1.62 ms free-running, p999 1.5-2.0 ms against 2.3-12.7 ms.
//!
//! Only small syncs are aligned (the flusher decides, `partition::ALIGNED_SYNC_BYTES_MAX`): when
//! a sync carries a lot of data the transfer dominates, and waiting for the slowest partition of
//! a round cost about a sixth of the benchmark's throughput; small syncs are where the journal
//! commit dominates and alignment takes the tail off (`strand bench`, 8 alternating runs: produce
//! p99 at half load 2.4-14.3 x the fsync p99 free-running, 2.6-4.2 x aligned).
//!
//! Only the start of syncs is coordinated; each partition publishes its own durable offset as
//! soon as its own sync returns, and a failed sync stays that partition's failure.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub struct SyncRounds {
    /// Flushers inside the running round (0: no round is running).
    in_flight: Mutex<usize>,
    /// The number of rounds ended, for flushers waiting to start the next one.
    ended_tx: watch::Sender<u64>,
}

impl Default for SyncRounds {
    fn default() -> Self {
        SyncRounds { in_flight: Mutex::new(0), ended_tx: watch::channel(0).0 }
    }
}

/// Being inside a round; dropping it leaves the round (the last one out ends it).
pub struct RoundTicket {
    rounds: Arc<SyncRounds>,
}

impl SyncRounds {
    /// Wait until this flusher may start its sync: at once if no round is running; else when
    /// the running one has ended. A flusher that has waited for an end joins whatever round is
    /// running then (the one its fellow waiters started) instead of waiting again.
    pub async fn enter(self: &Arc<Self>) -> RoundTicket {
        let mut ended_rx = self.ended_tx.subscribe();
        let mut waited = false;
        loop {
            {
                let mut in_flight = self.in_flight.lock().expect("sync rounds lock");
                if *in_flight == 0 || waited {
                    *in_flight += 1;
                    return RoundTicket { rounds: self.clone() };
                }
                // A round is running: wait for an end later than the ones already seen.
                ended_rx.borrow_and_update();
            }
            // The sender lives in `self`, which we hold, so this cannot fail.
            let _ = ended_rx.changed().await;
            waited = true;
        }
    }
}

impl Drop for RoundTicket {
    fn drop(&mut self) {
        let mut in_flight = self.rounds.in_flight.lock().expect("sync rounds lock");
        assert!(*in_flight > 0, "left a sync round nobody was in");
        *in_flight -= 1;
        if *in_flight == 0 {
            // Sent under the lock, so an enter() that saw this round running (and marked the
            // count seen under the same lock) is woken by this end.
            self.rounds.ended_tx.send_modify(|ended| *ended += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newcomer_waits_for_the_running_round_then_starts_with_the_other_waiters() {
        let rounds = Arc::new(SyncRounds::default());
        let first = rounds.enter().await; // no round running: in at once
        let (r1, r2) = (rounds.clone(), rounds.clone());
        let a = tokio::spawn(async move { r1.enter().await });
        let b = tokio::spawn(async move { r2.enter().await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!a.is_finished() && !b.is_finished(), "newcomers wait while a round runs");
        drop(first);
        let (ta, tb) = (a.await.unwrap(), b.await.unwrap());
        assert_eq!(*rounds.in_flight.lock().unwrap(), 2, "both waiters are in the next round");
        drop((ta, tb));
        assert_eq!((*rounds.in_flight.lock().unwrap(), *rounds.ended_tx.borrow()), (0, 2));
    }
}
