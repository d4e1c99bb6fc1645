//! Server-side assignors for KIP-848 consumer groups: `uniform` (balanced and sticky) and
//! `range` (per topic, contiguous ranges over members sorted by id), as Kafka's
//! `UniformAssignor` and `RangeAssignor`. Pure functions of their inputs: same input, same
//! output (BTreeMap order only).

use std::collections::{BTreeMap, BTreeSet};

/// topic name -> partitions.
pub type TopicPartitions = BTreeMap<String, BTreeSet<i32>>;

/// One member as an assignor sees it.
pub struct AssignorMember<'a> {
    pub subscribed: &'a BTreeSet<String>,
    /// The member's current target assignment (for stickiness).
    pub current: &'a TopicPartitions,
}

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

pub fn known(name: &str) -> bool {
    name == UNIFORM || name == RANGE
}

/// Assign every partition of every subscribed topic (that exists in `topics`: name -> partition
/// count) to exactly one member subscribed to it.
pub fn assign(
    name: &str,
    members: &BTreeMap<String, AssignorMember<'_>>,
    topics: &BTreeMap<String, i32>,
) -> BTreeMap<String, TopicPartitions> {
    if name == RANGE {
        range(members, topics)
    } else {
        uniform(members, topics)
    }
}

fn range(members: &BTreeMap<String, AssignorMember<'_>>, topics: &BTreeMap<String, i32>) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = members.keys().map(|m| (m.clone(), TopicPartitions::new())).collect();
    for (topic, &count) in topics {
        let subscribers: Vec<&String> = members.iter().filter(|(_, m)| m.subscribed.contains(topic)).map(|(id, _)| id).collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if take > 0 {
                out.get_mut(*member).expect("member listed").entry(topic.clone()).or_default().extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

fn uniform(members: &BTreeMap<String, AssignorMember<'_>>, topics: &BTreeMap<String, i32>) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = members.keys().map(|m| (m.clone(), TopicPartitions::new())).collect();
    let mut load: BTreeMap<&String, usize> = members.keys().map(|m| (m, 0)).collect();
    // Every partition some member subscribes to.
    let mut all: Vec<(&String, i32)> = Vec::new();
    for (topic, &count) in topics {
        if members.values().any(|m| m.subscribed.contains(topic)) {
            all.extend((0..count.max(0)).map(|p| (topic, p)));
        }
    }
    let total = all.len();
    // Balanced: every member gets `base`, and `extra` of them one more.
    let (base, mut extra) = if members.is_empty() { (0, 0) } else { (total / members.len(), total % members.len()) };
    // Stickiness: keep what each member had, up to the quota, if it still subscribes.
    let mut taken: BTreeSet<(&String, i32)> = BTreeSet::new();
    for (id, m) in members {
        for (topic, parts) in m.current {
            if !m.subscribed.contains(topic) || !topics.contains_key(topic) {
                continue;
            }
            let (topic_ref, _) = topics.get_key_value(topic).expect("checked");
            for &p in parts {
                let room = load[id] < base || (load[id] == base && extra > 0);
                if p < topics[topic] && room && !taken.contains(&(topic_ref, p)) {
                    taken.insert((topic_ref, p));
                    if load[id] == base {
                        extra -= 1;
                    }
                    out.get_mut(id).expect("member").entry(topic.clone()).or_default().insert(p);
                    *load.get_mut(id).expect("member") += 1;
                }
            }
        }
    }
    // The rest to the least-loaded subscriber (ties by member id).
    for (topic, p) in all {
        if taken.contains(&(topic, p)) {
            continue;
        }
        let best = members
            .iter()
            .filter(|(_, m)| m.subscribed.contains(topic))
            .min_by_key(|(id, _)| (load[id], *id))
            .map(|(id, _)| id);
        if let Some(id) = best {
            out.get_mut(id).expect("member").entry(topic.clone()).or_default().insert(p);
            *load.get_mut(id).expect("member") += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn check_exact_cover(out: &BTreeMap<String, TopicPartitions>, topics: &BTreeMap<String, i32>) {
        let mut seen = BTreeSet::new();
        for parts in out.values() {
            for (t, ps) in parts {
                for p in ps {
                    assert!(seen.insert((t.clone(), *p)), "{t}-{p} assigned twice");
                }
            }
        }
        let want: usize = topics.values().map(|c| *c as usize).sum();
        assert_eq!(seen.len(), want);
    }

    #[test]
    fn both_assignors_cover_every_partition_once_and_balance() {
        let topics: BTreeMap<String, i32> = [("a".to_string(), 4), ("b".to_string(), 3)].into();
        let s = subs(&["a", "b"]);
        let empty = TopicPartitions::new();
        let members: BTreeMap<String, AssignorMember> =
            ["m1", "m2", "m3"].iter().map(|m| (m.to_string(), AssignorMember { subscribed: &s, current: &empty })).collect();
        for name in [UNIFORM, RANGE] {
            let out = assign(name, &members, &topics);
            check_exact_cover(&out, &topics);
            let loads: Vec<usize> = out.values().map(|t| t.values().map(BTreeSet::len).sum()).collect();
            assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= if name == UNIFORM { 1 } else { 2 }, "{name} {loads:?}");
        }
    }

    #[test]
    fn uniform_is_sticky() {
        let topics: BTreeMap<String, i32> = [("a".to_string(), 6)].into();
        let s = subs(&["a"]);
        let cur1: TopicPartitions = [("a".to_string(), BTreeSet::from([0, 2, 4]))].into();
        let cur2: TopicPartitions = [("a".to_string(), BTreeSet::from([1, 3, 5]))].into();
        let empty = TopicPartitions::new();
        let members: BTreeMap<String, AssignorMember> = [
            ("m1".to_string(), AssignorMember { subscribed: &s, current: &cur1 }),
            ("m2".to_string(), AssignorMember { subscribed: &s, current: &cur2 }),
            ("m3".to_string(), AssignorMember { subscribed: &s, current: &empty }),
        ]
        .into();
        let out = assign(UNIFORM, &members, &topics);
        check_exact_cover(&out, &topics);
        // Each old member keeps two of its three; the newcomer gets one from each.
        assert_eq!(out["m1"]["a"].intersection(&cur1["a"]).count(), 2);
        assert_eq!(out["m2"]["a"].intersection(&cur2["a"]).count(), 2);
        assert_eq!(out["m3"]["a"].len(), 2);
    }

    #[test]
    fn uniform_rebalances_a_newcomer_even_when_old_members_fit_the_ceiling() {
        let topics: BTreeMap<String, i32> = [("a".to_string(), 4)].into();
        let s = subs(&["a"]);
        let cur1: TopicPartitions = [("a".to_string(), BTreeSet::from([0, 1]))].into();
        let cur2: TopicPartitions = [("a".to_string(), BTreeSet::from([2, 3]))].into();
        let empty = TopicPartitions::new();
        let members: BTreeMap<String, AssignorMember> = [
            ("m1".to_string(), AssignorMember { subscribed: &s, current: &cur1 }),
            ("m2".to_string(), AssignorMember { subscribed: &s, current: &cur2 }),
            ("m3".to_string(), AssignorMember { subscribed: &s, current: &empty }),
        ]
        .into();
        let out = assign(UNIFORM, &members, &topics);
        check_exact_cover(&out, &topics);
        assert_eq!(out["m3"]["a"].len(), 1, "{out:?}");
    }

    #[test]
    fn only_subscribers_get_a_topic() {
        let topics: BTreeMap<String, i32> = [("a".to_string(), 2), ("b".to_string(), 2)].into();
        let sa = subs(&["a"]);
        let sb = subs(&["b"]);
        let empty = TopicPartitions::new();
        let members: BTreeMap<String, AssignorMember> = [
            ("m1".to_string(), AssignorMember { subscribed: &sa, current: &empty }),
            ("m2".to_string(), AssignorMember { subscribed: &sb, current: &empty }),
        ]
        .into();
        for name in [UNIFORM, RANGE] {
            let out = assign(name, &members, &topics);
            assert_eq!(out["m1"].keys().collect::<Vec<_>>(), vec!["a"]);
            assert_eq!(out["m2"].keys().collect::<Vec<_>>(), vec!["b"]);
        }
    }
}
