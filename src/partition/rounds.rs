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
//! The one exception: the flusher whose sync ended a round (the slowest of it) comes back after
//! the others have started the next one; it joins that round rather than wait it out, or its
//! partition's requests would wait for three syncs instead of two (about 3 % of rounds in
//! `strand bench`'s latency phase, i.e. about 1 % of requests, which is where a p99 lives).
//!
//! Only small syncs are aligned (the flusher decides, `partition::ALIGNED_SYNC_BYTES_MAX`): when
//! a sync carries a lot of data the transfer dominates, and waiting for the slowest partition of
//! a round cost about a sixth of the benchmark's throughput; small syncs are where the journal
//! commit dominates and alignment takes the tail off (`strand bench`, 8 alternating runs: produce
//! p99 at half load 2.4-14.3 x the fsync p99 free-running, 2.6-4.2 x aligned).
//!
//! Only the start of syncs is coordinated; each partition publishes its own durable offset as
//! soon as its own sync returns, and a failed sync stays that partition's failure. A round is
//! waited for at most `ROUND_WAIT_MAX`: a sync that hangs (a failing disk, a stuck device) holds
//! up its own partition, not every partition on the data dir.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// Longest a flusher waits for the running round to end before it joins it anyway. Rounds
/// last one fdatasync (about 1-6 ms on the disks measured); this is only reached when a sync
/// hangs.
pub const ROUND_WAIT_MAX: Duration = Duration::from_millis(100);

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
    round: u64,
}

impl SyncRounds {
    /// Wait until this flusher may start its sync: at once if no round is running; else when
    /// the running one has ended. A flusher that has waited for an end joins whatever round is
    /// running then (the one its fellow waiters started) instead of waiting again. So does a
    /// flusher whose last round (`last`, from `RoundTicket::round`) is the one that ended just
    /// before the running one started: it is the round's latecomer by only its own publishing
    /// (typically the slowest sync of the last round, whose ending started this one), and
    /// making it wait a whole round more would put that partition's requests two rounds back.
    pub async fn enter(self: &Arc<Self>, last: Option<u64>) -> RoundTicket {
        let mut ended_rx = self.ended_tx.subscribe();
        let mut waited = false;
        loop {
            {
                let mut in_flight = self.in_flight.lock().expect("sync rounds lock");
                // Rounds are numbered by how many had ended when they started; the count only
                // changes under this lock, so it is the running (or next) round's number.
                let round = *ended_rx.borrow_and_update();
                if *in_flight == 0 || waited || last.map(|l| l + 1) == Some(round) {
                    *in_flight += 1;
                    return RoundTicket { rounds: self.clone(), round };
                }
            }
            // A round is running: wait for an end later than the one just seen (the sender
            // lives in `self`, which we hold, so this cannot fail), but not longer than
            // ROUND_WAIT_MAX: then join the running round.
            let _ = tokio::time::timeout(ROUND_WAIT_MAX, ended_rx.changed()).await;
            waited = true;
        }
    }
}

impl RoundTicket {
    /// The number of the round this ticket is in.
    pub fn round(&self) -> u64 {
        self.round
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
    async fn a_round_that_never_ends_holds_newcomers_only_for_the_wait_cap() {
        let rounds = Arc::new(SyncRounds::default());
        let hung = rounds.enter(None).await; // a sync that never returns
        let r = rounds.clone();
        let newcomer = tokio::spawn(async move { r.enter(None).await });
        let ticket = tokio::time::timeout(ROUND_WAIT_MAX * 10, newcomer)
            .await
            .expect("a newcomer joins after ROUND_WAIT_MAX instead of waiting for the hung round")
            .unwrap();
        assert_eq!(ticket.round(), hung.round(), "it joined the running round");
        drop((hung, ticket));
    }

    #[tokio::test]
    async fn a_newcomer_waits_for_the_running_round_then_starts_with_the_other_waiters() {
        let rounds = Arc::new(SyncRounds::default());
        let first = rounds.enter(None).await; // no round running: in at once
        let (r1, r2) = (rounds.clone(), rounds.clone());
        let a = tokio::spawn(async move { r1.enter(None).await });
        let b = tokio::spawn(async move { r2.enter(None).await });
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

    #[tokio::test]
    async fn the_last_one_out_of_a_round_joins_the_next_one_at_once() {
        let rounds = Arc::new(SyncRounds::default());
        let slow = rounds.enter(None).await; // the slowest sync of its round
        let slow_round = slow.round();
        let r = rounds.clone();
        let waiter = tokio::spawn(async move { r.enter(None).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        drop(slow); // ends the round: the waiter starts the next one
        let next = waiter.await.unwrap();
        assert_eq!(next.round(), slow_round + 1);
        // The slow one comes back while that round runs: it joins instead of waiting it out.
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), rounds.enter(Some(slow_round))).await.expect("the latecomer joins");
        assert_eq!(again.round(), slow_round + 1);
        // One that was not in the round before it waits as before.
        let r = rounds.clone();
        let other = tokio::spawn(async move { r.enter(None).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!other.is_finished(), "a flusher from no recent round waits for the running one");
        drop((next, again));
        assert_eq!(other.await.unwrap().round(), slow_round + 2);
    }
}
