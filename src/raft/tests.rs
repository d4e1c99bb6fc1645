//! Exact-output tests of one [`RaftCore`]: each drives a single core by hand and checks the
//! whole [`Output`] a call leaves (what the shell must persist, write, send and ship), as
//! openraft's engine tests do. Cluster scenarios live in `proptests/tests/raft_scenarios.rs`.

use super::*;
use bytes::Bytes;

fn opts() -> Options {
    Options { election_timeout_ticks: 10, heartbeat_interval_ticks: 1, pre_vote: false, ..Options::default() }
}

fn id(i: u32) -> NodeId {
    NodeId(i)
}

fn hs(term: u64, vote: Option<u32>) -> HardState {
    HardState { term: Term(term), voted_for: vote.map(NodeId) }
}

fn data(term: u64) -> Entry {
    Entry { term: Term(term), payload: Payload::Data(Bytes::from_static(b"x")) }
}

/// Node `me` of voters {1, 2, 3}, its durable log holding entries of `terms`.
fn core(me: u32, opts: Options, hard: HardState, terms: &[u64]) -> RaftCore {
    let entries: Vec<Entry> = terms.iter().map(|&t| data(t)).collect();
    let start = SnapshotMeta { membership: Membership::voters(1..=3), ..SnapshotMeta::default() };
    RaftCore::new(id(me), opts, hard, LogState::from_entries(start, &entries), LogIndex(0))
}

/// Tick until the core campaigns (pre-vote or vote); that tick's output.
fn tick_until_campaign(c: &mut RaftCore) -> Output {
    for _ in 0..40 {
        let mut out = Output::default();
        c.tick(&mut out);
        if c.role() != Role::Follower {
            return out;
        }
    }
    panic!("node {} never campaigns", c.id());
}

/// Node 1, elected by node 2's vote; the output of the vote that elected it.
fn leader(opts: Options, hard: HardState, terms: &[u64]) -> (RaftCore, Output) {
    let mut c = core(1, opts, hard, terms);
    tick_until_campaign(&mut c);
    assert_eq!(c.role(), Role::Candidate);
    let mut out = Output::default();
    c.step(id(2), Msg::VoteResponse { term: c.term(), granted: true }, &mut out);
    assert_eq!(c.role(), Role::Leader);
    (c, out)
}

fn step(c: &mut RaftCore, from: u32, msg: Msg) -> Output {
    let mut out = Output::default();
    c.step(id(from), msg, &mut out);
    out
}

fn ok(term: u64, m: u64) -> Msg {
    Msg::AppendResponse { term: Term(term), result: AppendResult::Ok { match_index: LogIndex(m) } }
}

fn entries_to(to: u32, term: u64, prev: (u64, u64), commit: u64, range: std::ops::Range<u64>) -> Replicate {
    Replicate::Entries {
        to: id(to),
        term: Term(term),
        prev_index: LogIndex(prev.0),
        prev_term: Term(prev.1),
        commit: LogIndex(commit),
        range: LogIndex(range.start)..LogIndex(range.end),
    }
}

// ---- votes and hard state ----------------------------------------------------------------------

#[test]
fn vote_for_higher_term_emits_new_term_and_vote_with_the_answer() {
    let mut c = core(2, opts(), hs(1, Some(3)), &[1]);
    let out = step(&mut c, 1, Msg::Vote { term: Term(3), last_index: LogIndex(1), last_term: Term(1), transfer: false });
    // The shell makes hard_state durable before it sends anything of the same output.
    assert_eq!(out.hard_state, Some(hs(3, Some(1))));
    assert_eq!(out.send, vec![(id(1), Msg::VoteResponse { term: Term(3), granted: true })]);
    assert!(out.writes.is_empty() && out.replicate.is_empty() && out.commit_index.is_none());
    assert_eq!(c.hard_state(), hs(3, Some(1)));
    // A second candidate of the same term is refused, and nothing is to persist.
    let out = step(&mut c, 3, Msg::Vote { term: Term(3), last_index: LogIndex(1), last_term: Term(1), transfer: false });
    assert_eq!(out.hard_state, None);
    assert_eq!(out.send, vec![(id(3), Msg::VoteResponse { term: Term(3), granted: false })]);
}

#[test]
fn vote_refused_to_stale_log_still_persists_the_new_term() {
    let mut c = core(2, opts(), hs(1, None), &[1, 2]);
    // Lower last term (and longer), then same last term but shorter.
    let out = step(&mut c, 1, Msg::Vote { term: Term(3), last_index: LogIndex(5), last_term: Term(1), transfer: false });
    assert_eq!(out.hard_state, Some(hs(3, None)));
    assert_eq!(out.send, vec![(id(1), Msg::VoteResponse { term: Term(3), granted: false })]);
    let out = step(&mut c, 3, Msg::Vote { term: Term(4), last_index: LogIndex(1), last_term: Term(2), transfer: false });
    assert_eq!(out.hard_state, Some(hs(4, None)));
    assert_eq!(out.send, vec![(id(3), Msg::VoteResponse { term: Term(4), granted: false })]);
    assert_eq!(c.hard_state(), hs(4, None));
}

#[test]
fn campaign_persists_term_and_self_vote_with_its_requests() {
    let mut c = core(1, opts(), hs(4, Some(2)), &[1, 4]);
    let out = tick_until_campaign(&mut c);
    assert_eq!(c.role(), Role::Candidate);
    assert_eq!(out.hard_state, Some(hs(5, Some(1))));
    let vote = Msg::Vote { term: Term(5), last_index: LogIndex(2), last_term: Term(4), transfer: false };
    assert_eq!(out.send, vec![(id(2), vote.clone()), (id(3), vote)]);
    assert!(out.writes.is_empty() && out.replicate.is_empty());
}

#[test]
fn pre_vote_changes_no_state() {
    // The pre-candidate: asks for term + 1 without taking it.
    let mut c = core(1, Options { pre_vote: true, ..opts() }, hs(4, Some(2)), &[1, 4]);
    let out = tick_until_campaign(&mut c);
    assert_eq!(c.role(), Role::PreCandidate);
    assert_eq!(out.hard_state, None);
    assert_eq!(c.hard_state(), hs(4, Some(2)));
    let pre = Msg::PreVote { term: Term(5), last_index: LogIndex(2), last_term: Term(4) };
    assert_eq!(out.send, vec![(id(2), pre.clone()), (id(3), pre)]);
    // A voter with no leader grants it, and stays as it was.
    let mut v = core(2, opts(), hs(4, Some(3)), &[1, 4]);
    let out = step(&mut v, 1, Msg::PreVote { term: Term(5), last_index: LogIndex(2), last_term: Term(4) });
    assert_eq!(out.hard_state, None);
    assert!(out.writes.is_empty());
    assert_eq!(out.send, vec![(id(1), Msg::PreVoteResponse { term: Term(5), granted: true })]);
    assert_eq!((v.hard_state(), v.role(), v.leader()), (hs(4, Some(3)), Role::Follower, None));
    // A voter that hears from a leader (check-quorum's lease) refuses it, still changing nothing.
    let out = step(&mut v, 3, Msg::Heartbeat { term: Term(4), commit: LogIndex(0), round: 0 });
    assert_eq!(out.send, vec![(id(3), Msg::HeartbeatResponse { term: Term(4), round: 0 })]);
    let out = step(&mut v, 1, Msg::PreVote { term: Term(5), last_index: LogIndex(2), last_term: Term(4) });
    assert_eq!(out.hard_state, None);
    assert_eq!(out.send, vec![(id(1), Msg::PreVoteResponse { term: Term(4), granted: false })]);
    assert_eq!((v.hard_state(), v.leader()), (hs(4, Some(3)), Some(id(3))));
}

// ---- replication -------------------------------------------------------------------------------

#[test]
fn new_leader_appends_its_entry_and_probes_every_follower() {
    let (c, out) = leader(opts(), hs(0, None), &[]);
    assert_eq!(c.term(), Term(1));
    assert_eq!(out.hard_state, None, "the term and vote were persisted when it campaigned");
    assert_eq!(
        out.writes,
        vec![LogWrite::Append {
            id: 1,
            truncate_from: None,
            first_index: LogIndex(1),
            entries: vec![Entry { term: Term(1), payload: Payload::LeaderChange }],
        }]
    );
    assert_eq!(out.replicate, vec![entries_to(2, 1, (0, 0), 0, 1..2), entries_to(3, 1, (0, 0), 0, 1..2)]);
    assert!(out.send.is_empty());
    assert_eq!(c.durable_index(), LogIndex(0), "its own entry is not durable yet");
}

#[test]
fn propose_ships_ranges_bounded_by_max_entries_and_max_inflight() {
    let o = Options { max_entries_per_msg: 3, max_inflight_msgs: 2, ..opts() };
    let (mut c, _) = leader(o, hs(0, None), &[]);
    // Both followers acknowledge the leader's entry: they move to pipelined replication.
    for f in [2, 3] {
        let out = step(&mut c, f, ok(1, 1));
        assert!(out.replicate.is_empty() && out.send.is_empty(), "nothing more to send: {out:?}");
    }
    let mut out = Output::default();
    let range = c.propose((0..10).map(|i| Bytes::from(vec![i])).collect(), &mut out).unwrap();
    assert_eq!(range, LogIndex(2)..LogIndex(12));
    let entries: Vec<Entry> = (0..10).map(|i| Entry { term: Term(1), payload: Payload::Data(Bytes::from(vec![i])) }).collect();
    assert_eq!(out.writes, vec![LogWrite::Append { id: 2, truncate_from: None, first_index: LogIndex(2), entries }]);
    // Two appends of at most three entries per follower, no more.
    assert_eq!(
        out.replicate,
        vec![
            entries_to(2, 1, (1, 1), 1, 2..5),
            entries_to(2, 1, (4, 1), 1, 5..8),
            entries_to(3, 1, (1, 1), 1, 2..5),
            entries_to(3, 1, (4, 1), 1, 5..8),
        ]
    );
    assert!(out.send.is_empty() && out.hard_state.is_none());
    // An acknowledgement of the first frees one slot: exactly one more append to that follower.
    let out = step(&mut c, 2, ok(1, 4));
    assert_eq!(out.replicate, vec![entries_to(2, 1, (7, 1), 1, 8..11)]);
}

#[test]
fn rejected_append_carries_the_term_hint() {
    let mut c = core(2, opts(), hs(3, None), &[1, 1, 2, 2, 2]);
    // Mismatch at 5: the follower has term 2 there, which starts at index 3.
    let out = step(&mut c, 1, Msg::Append { term: Term(3), prev_index: LogIndex(5), prev_term: Term(3), commit: LogIndex(0), entries: vec![] });
    let reject = AppendResult::Reject { rejected: LogIndex(5), hint_index: LogIndex(3), hint_term: Some(Term(2)) };
    assert_eq!(out.send, vec![(id(1), Msg::AppendResponse { term: Term(3), result: reject })]);
    assert!(out.writes.is_empty() && out.hard_state.is_none());
    // Past its end: no term there, and its log end + 1.
    let out = step(&mut c, 1, Msg::Append { term: Term(3), prev_index: LogIndex(8), prev_term: Term(3), commit: LogIndex(0), entries: vec![] });
    let reject = AppendResult::Reject { rejected: LogIndex(8), hint_index: LogIndex(6), hint_term: None };
    assert_eq!(out.send, vec![(id(1), Msg::AppendResponse { term: Term(3), result: reject })]);
    assert_eq!(c.last_index(), LogIndex(5));
}

#[test]
fn leader_skips_a_whole_divergent_term_on_the_hint() {
    // The leader (term 3) holds 1 1 2 2 2 2 and its entry at 7; the follower holds 1 1 1 1 1.
    let (mut c, _) = leader(opts(), hs(2, None), &[1, 1, 2, 2, 2, 2]);
    assert_eq!(c.term(), Term(3));
    let reject = AppendResult::Reject { rejected: LogIndex(6), hint_index: LogIndex(1), hint_term: Some(Term(1)) };
    let out = step(&mut c, 2, Msg::AppendResponse { term: Term(3), result: reject });
    // Term 1 ends at 2 in the leader's log: the next probe is right after it, not at 5.
    assert_eq!(out.replicate, vec![entries_to(2, 3, (2, 1), 0, 3..8)]);
}

#[test]
fn leader_skips_a_divergent_term_it_never_had() {
    // The leader (term 4) holds 1 1 3 3 3 3 and its entry at 7; the follower holds 1 1 2 2 2 2,
    // term 2 from a leader whose entries this one never saw.
    let (mut c, _) = leader(opts(), hs(3, None), &[1, 1, 3, 3, 3, 3]);
    assert_eq!(c.term(), Term(4));
    let reject = AppendResult::Reject { rejected: LogIndex(6), hint_index: LogIndex(3), hint_term: Some(Term(2)) };
    let out = step(&mut c, 2, Msg::AppendResponse { term: Term(4), result: reject });
    assert_eq!(out.replicate, vec![entries_to(2, 4, (2, 1), 0, 3..8)]);
}

#[test]
fn follower_acknowledges_only_once_persisted() {
    let mut c = core(2, opts(), hs(1, None), &[]);
    let entries = vec![Entry { term: Term(1), payload: Payload::LeaderChange }, data(1)];
    let append = Msg::Append { term: Term(1), prev_index: LogIndex(0), prev_term: Term(0), commit: LogIndex(0), entries: entries.clone() };
    let out = step(&mut c, 1, append.clone());
    assert_eq!(out.writes, vec![LogWrite::Append { id: 1, truncate_from: None, first_index: LogIndex(1), entries }]);
    assert!(out.send.is_empty(), "acknowledged before the write is durable: {:?}", out.send);
    // The same append again (a retry): nothing new to write, still nothing to say.
    let out = step(&mut c, 1, append);
    assert!(out.writes.is_empty() && out.send.is_empty(), "{out:?}");
    let mut out = Output::default();
    c.persisted(1, &mut out);
    assert_eq!(out.send, vec![(id(1), ok(1, 2))]);
    assert_eq!(c.durable_index(), LogIndex(2));
}

#[test]
fn follower_truncates_a_conflicting_suffix() {
    let mut c = core(2, opts(), hs(3, None), &[1, 1, 2, 2]);
    let out = step(&mut c, 1, Msg::Append { term: Term(3), prev_index: LogIndex(2), prev_term: Term(1), commit: LogIndex(0), entries: vec![data(3), data(3)] });
    assert_eq!(
        out.writes,
        vec![LogWrite::Append { id: 1, truncate_from: Some(LogIndex(3)), first_index: LogIndex(3), entries: vec![data(3), data(3)] }]
    );
    assert!(out.send.is_empty());
    assert_eq!((c.log().term_at(LogIndex(3)), c.log().term_at(LogIndex(4))), (Some(Term(3)), Some(Term(3))));
    assert_eq!(c.durable_index(), LogIndex(2), "the cut entries are no longer durable");
}

#[test]
fn append_of_a_stale_term_is_answered_with_the_term_and_ignored() {
    let mut c = core(2, opts(), hs(3, None), &[1]);
    let out = step(&mut c, 1, Msg::Append { term: Term(2), prev_index: LogIndex(1), prev_term: Term(1), commit: LogIndex(1), entries: vec![data(2)] });
    assert_eq!(out.send, vec![(id(1), Msg::HeartbeatResponse { term: Term(3), round: 0 })]);
    assert!(out.writes.is_empty() && out.hard_state.is_none() && out.commit_index.is_none());
    assert_eq!((c.leader(), c.last_index(), c.commit_index()), (None, LogIndex(1), LogIndex(0)));
}

#[test]
fn leader_commits_an_earlier_term_only_with_an_entry_of_its_own() {
    // Term 3's leader holds 1 2 (durable) and its entry at 3 (not yet).
    let (mut c, out) = leader(opts(), hs(2, None), &[1, 2]);
    let lc_write = out.writes[0].id();
    // Node 2 has index 2: two of three hold it, but it is of term 2.
    let out = step(&mut c, 2, ok(3, 2));
    assert_eq!(out.commit_index, None);
    assert_eq!(c.commit_index(), LogIndex(0));
    // Node 2 gets index 3 too, and the leader's own copy becomes durable: 3 commits, and 2 with it.
    let out = step(&mut c, 2, ok(3, 3));
    assert_eq!(out.commit_index, None, "the leader's own copy is not durable yet");
    let mut out = Output::default();
    c.persisted(lc_write, &mut out);
    assert_eq!(out.commit_index, Some(LogIndex(3)));
    assert!(c.leader_ready());
}

fn batch(term: u64, count: u32, tag: u8) -> Entry {
    Entry { term: Term(term), payload: Payload::Batch { count, bytes: Bytes::from(vec![tag]) } }
}

#[test]
fn a_batch_takes_one_index_per_record_on_leader_and_follower() {
    // The leader: its term's LeaderChange at 1, then batches of 3 and 2 records at 2..=4, 5..=6.
    let (mut c, _) = leader(opts(), hs(0, None), &[]);
    let mut out = Output::default();
    let range = c.propose_batches(vec![(3, Bytes::from_static(b"a")), (2, Bytes::from_static(b"b"))], &mut out).unwrap();
    assert_eq!(range, LogIndex(2)..LogIndex(7));
    assert_eq!((c.last_index(), c.log().term_at(LogIndex(4))), (LogIndex(6), Some(c.term())));

    // A follower holding a committed one-index entry and a stale batch of term 1 (2..=5) takes
    // the leader's: the stale batch is cut from its first index, the new ones counted whole.
    let mut f = core(2, opts(), hs(1, None), &[1]);
    let mut out = Output::default();
    f.step(id(1), Msg::Append { term: Term(1), prev_index: LogIndex(1), prev_term: Term(1), commit: LogIndex(1), entries: vec![batch(1, 4, 0)] }, &mut out);
    f.persisted(1, &mut Output::default());
    assert_eq!((f.last_index(), f.commit_index()), (LogIndex(5), LogIndex(1)));
    let entries = vec![batch(2, 3, 1), batch(2, 2, 2)];
    let out = step(&mut f, 1, Msg::Append { term: Term(2), prev_index: LogIndex(1), prev_term: Term(1), commit: LogIndex(4), entries: entries.clone() });
    assert_eq!(out.writes, vec![LogWrite::Append { id: 2, truncate_from: Some(LogIndex(2)), first_index: LogIndex(2), entries: entries.clone() }]);
    assert_eq!((f.last_index(), f.commit_index()), (LogIndex(6), LogIndex(4)), "the leader's commit 4 ends the first batch");
    let mut out = Output::default();
    f.persisted(2, &mut out);
    assert_eq!(out.send, vec![(id(1), ok(2, 6))]);
    // The same append again, as the shell resends it from the start of a batch: the committed
    // batch is skipped whole, the rest matches; nothing to write.
    let out = step(&mut f, 1, Msg::Append { term: Term(2), prev_index: LogIndex(1), prev_term: Term(1), commit: LogIndex(6), entries });
    assert!(out.writes.is_empty(), "{out:?}");
    assert_eq!(f.commit_index(), LogIndex(6));
}
