//! The cluster tests' nemesis: rounds of one fault each, drawn from the seed: a node killed
//! with power loss (its SimDisk loses what was not synced) and restarted, a node clogged
//! (cut off both ways), one link clogged (one way), or a node paused (its tasks and timers stop,
//! as a long GC or SIGSTOP, and go on where they were); each held for a while, then healed.

use std::ops::Range;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::Rng;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::sleep;

use crate::disk::SimDisk;

/// `rounds` faults on the nodes `ids` (with their disks), each held for a time drawn from
/// `hold_ms` and followed by a pause drawn from `gap_ms`. Every fault is healed before the
/// next, and nothing is restarted but the killed node.
pub async fn kills_and_clogs(ids: &[NodeId], disks: &[SimDisk], rounds: usize, hold_ms: Range<u64>, gap_ms: Range<u64>) {
    let handle = Handle::current();
    let net = NetSim::current();
    for _ in 0..rounds {
        let (fault, victim, other) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(0..4), rng.gen_range(0..ids.len()), rng.gen_range(0..ids.len()))
        };
        let hold = Duration::from_millis(madsim::rand::thread_rng().gen_range(hold_ms.clone()));
        match fault {
            0 => {
                handle.kill(ids[victim]);
                disks[victim].crash();
                sleep(hold).await;
                handle.restart(ids[victim]);
            }
            1 => {
                net.clog_node(ids[victim]);
                sleep(hold).await;
                net.unclog_node(ids[victim]);
            }
            2 => {
                handle.pause(ids[victim]);
                sleep(hold).await;
                handle.resume(ids[victim]);
            }
            _ => {
                if victim != other {
                    net.clog_link(ids[victim], ids[other]);
                    sleep(hold).await;
                    net.unclog_link(ids[victim], ids[other]);
                }
            }
        }
        sleep(Duration::from_millis(madsim::rand::thread_rng().gen_range(gap_ms.clone()))).await;
    }
}
