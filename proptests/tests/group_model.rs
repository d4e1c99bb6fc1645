//! Model-based property tests of the group coordinator core (`strand::group`), which is sans-IO:
//! the tests step it with requests and ticks and read its replies and records.
//!
//! 1. Classic protocol: simulated consumers (MEMBER_ID_REQUIRED, leader assigns partitions in
//!    SyncGroup, heartbeats, leaves, crashes, rejoins, and some misbehaviour). Per generation the
//!    delivered assignments are disjoint and go only to members the leader of that generation
//!    was told about; every reply token is answered at most once, and every JoinGroup/SyncGroup
//!    is answered in the end.
//! 2. Offsets: committed offsets change only by accepted commits, never go backwards for
//!    monotone committers (only an admin reset of an empty group moves them anywhere), and the
//!    records written to `__consumer_offsets`, replayed into a fresh coordinator, give the same
//!    offsets (and generation) as the live one.
//! 3. KIP-848: no partition is owned by two live clients at once (as the clients see it: the
//!    last assignment each received), and once operations stop and the live clients keep
//!    heartbeating, every subscribed partition is owned by exactly one live client.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use strand::group::classic::{JoinRequest, SyncRequest};
use strand::group::consumer::HeartbeatRequest;
use strand::group::records::{self, GroupRecord};
use strand::group::{CommitPartition, CommitRequest, Coordinator, GroupConfig, Now, Reply, Token};
use strand::protocol::errors::ErrorCode;

const GROUP: &str = "g";
const TOPIC: &str = "t";
const WALL0: i64 = 1_700_000_000_000;

fn config() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

fn at(ms: u64) -> Now {
    Now { mono_ms: ms, wall_ms: WALL0 + ms as i64 }
}

fn no_topics() -> BTreeMap<String, i32> {
    BTreeMap::new()
}

// ------------------------------------------------------------------------------------------
// Classic protocol (properties 1 and 2)
// ------------------------------------------------------------------------------------------

/// Assignment bytes: the generation (so a stale assignment is recognisable), then partitions.
fn encode_assignment(generation: i32, parts: &[i32]) -> Bytes {
    let mut b = generation.to_be_bytes().to_vec();
    for p in parts {
        b.extend_from_slice(&p.to_be_bytes());
    }
    Bytes::from(b)
}

fn decode_assignment(b: &[u8]) -> (i32, Vec<i32>) {
    if b.is_empty() {
        return (-1, Vec::new());
    }
    assert!(b.len() >= 4 && b.len().is_multiple_of(4), "assignment bytes of odd length: {b:?}");
    let word = |i: usize| i32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (word(0), (4..b.len()).step_by(4).map(word).collect())
}

#[derive(Debug, Clone)]
struct CClient {
    /// The process runs. A dead client keeps its last state (a zombie can still commit).
    alive: bool,
    member_id: String,
    generation: i32,
    join_token: Option<Token>,
    sync_token: Option<Token>,
    /// Partitions owned after the last successful SyncGroup (cleared on rejoin: eager).
    owned: Vec<i32>,
    /// Consumed position per owned partition (starts at the committed offset).
    position: BTreeMap<i32, i64>,
    meta: u8,
    session_ms: i32,
    rebalance_ms: i32,
}

impl CClient {
    fn new(session_ms: i32, rebalance_ms: i32) -> CClient {
        CClient {
            alive: true,
            member_id: String::new(),
            generation: -1,
            join_token: None,
            sync_token: None,
            owned: Vec::new(),
            position: BTreeMap::new(),
            meta: 0,
            session_ms,
            rebalance_ms,
        }
    }
}

#[derive(Debug, Clone)]
enum COp {
    /// Start (or restart, if dead) and join with an empty member id; if running, heartbeat.
    Join(usize),
    Heartbeat(usize),
    /// Rejoin with the current member id (e.g. a poll timeout), maybe with new metadata.
    Rejoin(usize, bool),
    Leave(usize),
    /// Stop: no more heartbeats or replies handled.
    Crash(usize),
    Advance(u32),
    // Misbehaviour.
    StaleSync(usize),
    UnknownJoin,
    UnknownSync,
    DuplicateJoin(usize),
    StaleHeartbeat(usize),
    // Offsets (property 2).
    Commit(usize, u8),
    StaleCommit(usize, u8),
    ZombieCommit(usize, u8),
    AdminCommit(Vec<(u8, u16)>),
}

fn classic_op(clients: usize, offsets: bool) -> impl Strategy<Value = COp> {
    let c = 0..clients;
    let mut arms: Vec<(u32, BoxedStrategy<COp>)> = vec![
        (5, c.clone().prop_map(COp::Join).boxed()),
        (8, c.clone().prop_map(COp::Heartbeat).boxed()),
        (2, (c.clone(), any::<bool>()).prop_map(|(i, m)| COp::Rejoin(i, m)).boxed()),
        (2, c.clone().prop_map(COp::Leave).boxed()),
        (2, c.clone().prop_map(COp::Crash).boxed()),
        (6, (0u32..3_000u32).prop_map(COp::Advance).boxed()),
        (2, (5_000u32..40_000u32).prop_map(COp::Advance).boxed()),
        (1, c.clone().prop_map(COp::StaleSync).boxed()),
        (1, Just(COp::UnknownJoin).boxed()),
        (1, Just(COp::UnknownSync).boxed()),
        (1, c.clone().prop_map(COp::DuplicateJoin).boxed()),
        (1, c.clone().prop_map(COp::StaleHeartbeat).boxed()),
    ];
    if offsets {
        arms.push((6, (c.clone(), any::<u8>()).prop_map(|(i, d)| COp::Commit(i, d)).boxed()));
        arms.push((1, (c.clone(), any::<u8>()).prop_map(|(i, d)| COp::StaleCommit(i, d)).boxed()));
        arms.push((1, (c.clone(), any::<u8>()).prop_map(|(i, d)| COp::ZombieCommit(i, d)).boxed()));
        arms.push((1, prop::collection::vec((any::<u8>(), any::<u16>()), 1..4).prop_map(COp::AdminCommit).boxed()));
    }
    prop::strategy::Union::new_weighted(arms)
}

/// (group incarnation, generation).
type Gen = (u32, i32);

#[derive(Debug, Clone)]
enum Followup {
    Join(usize),
    Sync(usize, Vec<(String, Bytes)>),
}

struct ClassicSim {
    c: Coordinator,
    now: u64,
    next_token: Token,
    partitions: i32,
    clients: Vec<CClient>,
    /// Issued JoinGroup/SyncGroup tokens not answered yet.
    outstanding: BTreeSet<Token>,
    answered: BTreeSet<Token>,
    /// The group is removed once empty and idle, and starts again at generation 0, so
    /// generations are numbered per incarnation of the group.
    incarnation: u32,
    present: bool,
    /// SyncGroup token -> (member id, (incarnation, generation)) of the request.
    sync_meta: BTreeMap<Token, (String, Gen)>,
    /// Generation -> the member ids in its leader's JoinGroup response.
    leader_lists: BTreeMap<Gen, Vec<String>>,
    /// Generation -> what its leader sent in SyncGroup.
    leader_assign: BTreeMap<Gen, BTreeMap<String, Bytes>>,
    /// Every successful SyncGroup: (generation, member id, assignment).
    sync_ok: Vec<(Gen, String, Bytes)>,
    followups: Vec<Followup>,
    records: Vec<GroupRecord>,
    /// The offsets model: partition -> committed offset.
    committed: BTreeMap<i32, i64>,
    bogus: u64,
}

impl ClassicSim {
    fn new(partitions: i32, timeouts: Vec<(i32, i32)>) -> ClassicSim {
        ClassicSim {
            c: Coordinator::new(config(), 7),
            now: 0,
            next_token: 1,
            partitions,
            clients: timeouts.into_iter().map(|(s, r)| CClient::new(s, r)).collect(),
            outstanding: BTreeSet::new(),
            answered: BTreeSet::new(),
            incarnation: 0,
            present: false,
            sync_meta: BTreeMap::new(),
            leader_lists: BTreeMap::new(),
            leader_assign: BTreeMap::new(),
            sync_ok: Vec::new(),
            followups: Vec::new(),
            records: Vec::new(),
            committed: BTreeMap::new(),
            bogus: 0,
        }
    }

    fn token(&mut self) -> Token {
        let t = self.next_token;
        self.next_token += 1;
        self.outstanding.insert(t);
        t
    }

    fn join_request(&self, i: usize, member_id: &str) -> JoinRequest {
        let cl = &self.clients[i];
        JoinRequest {
            group_id: GROUP.into(),
            member_id: member_id.into(),
            instance_id: None,
            client_id: format!("client{i}"),
            client_host: "/10.0.0.1".into(),
            session_timeout_ms: cl.session_ms,
            rebalance_timeout_ms: cl.rebalance_ms,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from(vec![b'm', cl.meta]))],
            require_known_member_id: true,
        }
    }

    /// A well-behaved (re)join: eager, so it gives up what it owns first.
    fn do_join(&mut self, i: usize) {
        if !self.clients[i].alive || self.clients[i].join_token.is_some() {
            return;
        }
        let tok = self.token();
        let cl = &mut self.clients[i];
        cl.owned.clear();
        cl.position.clear();
        cl.join_token = Some(tok);
        let req = self.join_request(i, &self.clients[i].member_id.clone());
        self.c.join(at(self.now), tok, req);
    }

    fn do_sync(&mut self, i: usize, assignments: Vec<(String, Bytes)>) {
        let cl = &self.clients[i];
        if !cl.alive || cl.sync_token.is_some() || cl.join_token.is_some() {
            return;
        }
        let (member, generation) = (cl.member_id.clone(), cl.generation);
        let tok = self.token();
        self.clients[i].sync_token = Some(tok);
        self.sync_meta.insert(tok, (member.clone(), (self.incarnation, generation)));
        let req = SyncRequest {
            group_id: GROUP.into(),
            member_id: member,
            instance_id: None,
            generation,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments,
        };
        self.c.sync(at(self.now), tok, req);
    }

    fn heartbeat(&mut self, i: usize) {
        let cl = &self.clients[i];
        if !cl.alive || cl.join_token.is_some() {
            return;
        }
        if cl.member_id.is_empty() || cl.generation < 0 {
            return self.do_join(i);
        }
        let e = self.c.heartbeat(at(self.now), GROUP, &cl.member_id.clone(), None, cl.generation);
        match e {
            ErrorCode::NONE => {}
            ErrorCode::REBALANCE_IN_PROGRESS | ErrorCode::ILLEGAL_GENERATION => self.do_join(i),
            ErrorCode::UNKNOWN_MEMBER_ID => {
                self.clients[i].member_id.clear();
                self.clients[i].generation = -1;
                self.do_join(i);
            }
            e => panic!("unexpected heartbeat error {e:?}"),
        }
    }

    fn client_of(&self, tok: Token) -> Option<usize> {
        self.clients.iter().position(|c| c.alive && (c.join_token == Some(tok) || c.sync_token == Some(tok)))
    }

    /// Handle every reply until nothing more happens (replies trigger follow-up requests).
    fn drain(&mut self) {
        for _round in 0..10_000 {
            let present = self.c.group(GROUP).is_some();
            if self.present && !present {
                self.incarnation += 1;
            }
            self.present = present;
            let out = self.c.take_output();
            self.records.extend(out.records);
            for (tok, reply) in out.replies {
                self.on_reply(tok, reply);
            }
            match self.followups.pop() {
                None => return,
                Some(Followup::Join(i)) => self.do_join(i),
                Some(Followup::Sync(i, a)) => self.do_sync(i, a),
            }
        }
        panic!("replies and follow-ups never settle");
    }

    fn on_reply(&mut self, tok: Token, reply: Reply) {
        assert!(!self.answered.contains(&tok), "token {tok} answered twice (second: {reply:?})");
        assert!(self.outstanding.remove(&tok), "reply to a token never issued: {tok}");
        self.answered.insert(tok);
        let client = self.client_of(tok);
        match reply {
            Reply::Join(r) => {
                if r.error == ErrorCode::NONE && !r.members.is_empty() {
                    assert_eq!(r.leader, r.member_id, "members list sent to a non-leader");
                    let ids: Vec<String> = r.members.iter().map(|m| m.member_id.clone()).collect();
                    let set: BTreeSet<&String> = ids.iter().collect();
                    assert_eq!(set.len(), ids.len(), "duplicate member in the leader's list: {ids:?}");
                    let g = (self.incarnation, r.generation);
                    if let Some(prev) = self.leader_lists.get(&g) {
                        assert_eq!(prev, &ids, "generation {g:?} announced with two member lists");
                    }
                    self.leader_lists.insert(g, ids);
                }
                let Some(i) = client else { return };
                if self.clients[i].join_token != Some(tok) {
                    return;
                }
                self.clients[i].join_token = None;
                match r.error {
                    ErrorCode::NONE => {
                        let cl = &mut self.clients[i];
                        assert!(cl.member_id.is_empty() || cl.member_id == r.member_id, "member id changed under a known member");
                        cl.member_id = r.member_id.clone();
                        cl.generation = r.generation;
                        let assignments = if r.leader == r.member_id && !r.members.is_empty() {
                            let n = r.members.len();
                            let mut per: Vec<Vec<i32>> = vec![Vec::new(); n];
                            for p in 0..self.partitions {
                                per[(p as usize + r.generation as usize) % n].push(p);
                            }
                            let a: Vec<(String, Bytes)> = r
                                .members
                                .iter()
                                .zip(per)
                                .map(|(m, ps)| (m.member_id.clone(), encode_assignment(r.generation, &ps)))
                                .collect();
                            let map: BTreeMap<String, Bytes> = a.iter().cloned().collect();
                            let g = (self.incarnation, r.generation);
                            if let Some(prev) = self.leader_assign.get(&g) {
                                assert_eq!(prev, &map);
                            }
                            self.leader_assign.insert(g, map);
                            a
                        } else {
                            Vec::new()
                        };
                        self.followups.push(Followup::Sync(i, assignments));
                    }
                    ErrorCode::MEMBER_ID_REQUIRED => {
                        assert!(!r.member_id.is_empty());
                        self.clients[i].member_id = r.member_id;
                        self.followups.push(Followup::Join(i));
                    }
                    ErrorCode::UNKNOWN_MEMBER_ID => {
                        self.clients[i].member_id.clear();
                        self.clients[i].generation = -1;
                        self.followups.push(Followup::Join(i));
                    }
                    e => panic!("unexpected JoinGroup error {e:?}"),
                }
            }
            Reply::Sync(r) => {
                let (member, generation) = self.sync_meta.get(&tok).cloned().expect("sync token");
                if r.error == ErrorCode::NONE {
                    self.sync_ok.push((generation, member.clone(), r.assignment.clone()));
                }
                let Some(i) = client else { return };
                if self.clients[i].sync_token != Some(tok) {
                    return;
                }
                self.clients[i].sync_token = None;
                match r.error {
                    ErrorCode::NONE => {
                        let (g, parts) = decode_assignment(&r.assignment);
                        assert!(g == generation.1 || parts.is_empty(), "generation {generation:?} got generation {g}'s assignment");
                        let fetched = self.c.fetch_offsets(GROUP, Some(&parts.iter().map(|p| (TOPIC.to_string(), *p)).collect::<Vec<_>>()), None).expect("fetch");
                        let cl = &mut self.clients[i];
                        cl.owned = parts;
                        cl.position = fetched.into_iter().map(|(_, p, v)| (p, v.map_or(0, |v| v.offset))).collect();
                    }
                    ErrorCode::REBALANCE_IN_PROGRESS | ErrorCode::ILLEGAL_GENERATION => self.followups.push(Followup::Join(i)),
                    ErrorCode::UNKNOWN_MEMBER_ID => {
                        self.clients[i].member_id.clear();
                        self.clients[i].generation = -1;
                        self.followups.push(Followup::Join(i));
                    }
                    e => panic!("unexpected SyncGroup error {e:?}"),
                }
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.c.tick(at(self.now), &no_topics());
        self.drain();
    }

    fn commit(&mut self, member_id: String, generation: i32, parts: Vec<(i32, i64)>) -> Vec<ErrorCode> {
        let req = CommitRequest {
            group_id: GROUP.into(),
            member_id,
            instance_id: None,
            generation,
            group_id_not_found: false,
            partitions: parts
                .iter()
                .map(|(p, o)| CommitPartition { topic: TOPIC.into(), partition: *p, offset: *o, leader_epoch: -1, metadata: Some(format!("m{o}")), error: ErrorCode::NONE })
                .collect(),
        };
        let errors = self.c.commit(at(self.now), req);
        assert_eq!(errors.len(), parts.len());
        self.drain();
        errors
    }

    /// A member's commit: every accepted offset must not be below the committed one.
    fn member_commit(&mut self, i: usize, generation: i32, parts: Vec<(i32, i64)>, what: &str) {
        let member = self.clients[i].member_id.clone();
        let errors = self.commit(member, generation, parts.clone());
        for ((p, o), e) in parts.into_iter().zip(errors) {
            if e == ErrorCode::NONE {
                let old = self.committed.get(&p).copied().unwrap_or(0);
                assert!(o >= old, "{what} commit moved partition {p} back from {old} to {o}");
                self.committed.insert(p, o);
            }
        }
    }

    fn step(&mut self, op: &COp) {
        self.step_inner(op);
        self.drain();
    }

    fn step_inner(&mut self, op: &COp) {
        match *op {
            COp::Join(i) => {
                if !self.clients[i].alive {
                    let (s, r) = (self.clients[i].session_ms, self.clients[i].rebalance_ms);
                    self.clients[i] = CClient::new(s, r);
                    self.do_join(i);
                } else {
                    self.heartbeat(i);
                }
            }
            COp::Heartbeat(i) => self.heartbeat(i),
            COp::Rejoin(i, change) => {
                if self.clients[i].alive && !self.clients[i].member_id.is_empty() {
                    if change {
                        self.clients[i].meta ^= 1;
                    }
                    self.do_join(i);
                }
            }
            COp::Leave(i) => {
                if self.clients[i].alive && !self.clients[i].member_id.is_empty() {
                    let id = self.clients[i].member_id.clone();
                    let (s, r) = (self.clients[i].session_ms, self.clients[i].rebalance_ms);
                    self.clients[i] = CClient::new(s, r);
                    let e = self.c.leave(at(self.now), GROUP, &[(id, None)]);
                    assert_eq!(e.len(), 1);
                    self.drain();
                }
            }
            COp::Crash(i) => self.clients[i].alive = false,
            COp::Advance(ms) => self.advance(ms as u64),
            COp::StaleSync(i) => {
                let tok = self.token();
                let cl = &self.clients[i];
                self.sync_meta.insert(tok, (cl.member_id.clone(), (self.incarnation, cl.generation - 1)));
                let req = SyncRequest {
                    group_id: GROUP.into(),
                    member_id: cl.member_id.clone(),
                    instance_id: None,
                    generation: cl.generation - 1,
                    protocol_type: None,
                    protocol_name: None,
                    assignments: vec![(cl.member_id.clone(), encode_assignment(cl.generation - 1, &[0]))],
                };
                self.c.sync(at(self.now), tok, req);
                self.drain();
            }
            COp::UnknownJoin => {
                self.bogus += 1;
                let tok = self.token();
                let req = self.join_request(0, &format!("nobody-{}", self.bogus));
                self.c.join(at(self.now), tok, req);
                self.drain();
            }
            COp::UnknownSync => {
                self.bogus += 1;
                let tok = self.token();
                let gen = self.clients.iter().map(|c| c.generation).max().unwrap_or(0);
                let m = format!("nobody-{}", self.bogus);
                self.sync_meta.insert(tok, (m.clone(), (self.incarnation, gen)));
                let req = SyncRequest {
                    group_id: GROUP.into(),
                    member_id: m.clone(),
                    instance_id: None,
                    generation: gen,
                    protocol_type: None,
                    protocol_name: None,
                    assignments: vec![(m, encode_assignment(gen, &[0]))],
                };
                self.c.sync(at(self.now), tok, req);
                self.drain();
            }
            COp::DuplicateJoin(i) => {
                // A second JoinGroup while one may be parked; the client follows the newest.
                if self.clients[i].alive && !self.clients[i].member_id.is_empty() {
                    self.clients[i].join_token = None;
                    self.do_join(i);
                }
            }
            COp::StaleHeartbeat(i) => {
                let cl = &self.clients[i];
                let _ = self.c.heartbeat(at(self.now), GROUP, &cl.member_id.clone(), None, cl.generation - 1);
            }
            COp::Commit(i, d) => {
                let cl = &mut self.clients[i];
                if !cl.alive || cl.owned.is_empty() {
                    return;
                }
                let parts: Vec<(i32, i64)> = cl
                    .owned
                    .iter()
                    .map(|p| {
                        let pos = cl.position.entry(*p).or_insert(0);
                        *pos += (d % 50) as i64;
                        (*p, *pos)
                    })
                    .collect();
                let g = cl.generation;
                self.member_commit(i, g, parts, "member");
            }
            COp::StaleCommit(i, d) => {
                // An older generation, with lower offsets: must never be accepted.
                let cl = &self.clients[i];
                if cl.member_id.is_empty() {
                    return;
                }
                let parts: Vec<(i32, i64)> = (0..self.partitions).map(|p| (p, cl.position.get(&p).copied().unwrap_or(0) - 1 - (d % 20) as i64)).collect();
                let g = cl.generation - 1 - (d % 2) as i32;
                if g < 0 {
                    // Generation -1 is the admin path (Kafka accepts it for an empty group
                    // whatever the member id), not a stale generation.
                    return;
                }
                let errors = self.commit(cl.member_id.clone(), g, parts);
                assert!(errors.iter().all(|e| *e != ErrorCode::NONE), "stale generation {g} commit accepted: {errors:?}");
            }
            COp::ZombieCommit(i, d) => {
                // A stopped client that still processes and commits what it owned.
                let cl = &mut self.clients[i];
                if cl.alive || cl.owned.is_empty() {
                    return;
                }
                let parts: Vec<(i32, i64)> = cl
                    .owned
                    .iter()
                    .map(|p| {
                        let pos = cl.position.entry(*p).or_insert(0);
                        *pos += (d % 50) as i64;
                        (*p, *pos)
                    })
                    .collect();
                let g = cl.generation;
                self.member_commit(i, g, parts, "zombie");
            }
            COp::AdminCommit(ref offsets) => {
                let empty = self.c.group(GROUP).is_none_or(|g| g.state() == "Empty");
                let parts: Vec<(i32, i64)> = offsets.iter().map(|(p, o)| ((*p as i32) % self.partitions, *o as i64)).collect();
                let errors = self.commit(String::new(), -1, parts.clone());
                for ((p, o), e) in parts.into_iter().zip(errors) {
                    assert_eq!(e == ErrorCode::NONE, empty, "admin commit verdict {e:?} with the group empty={empty}");
                    if e == ErrorCode::NONE {
                        self.committed.insert(p, o);
                    }
                }
            }
        }
    }

    fn live_offsets(&self, c: &Coordinator) -> Vec<(String, i32, Option<records::OffsetValue>)> {
        c.fetch_offsets(GROUP, None, None).expect("fetch")
    }

    fn check_offsets(&self) {
        let got: BTreeMap<i32, i64> = self.live_offsets(&self.c).into_iter().map(|(t, p, v)| {
            assert_eq!(t, TOPIC);
            (p, v.expect("listed offsets have values").offset)
        }).collect();
        assert_eq!(got, self.committed, "fetched offsets differ from the accepted commits");
    }

    /// Replay every record written so far into a fresh coordinator: same offsets, same generation.
    fn check_replay(&self) {
        let mut d = Coordinator::new(config(), 99);
        for r in &self.records {
            let key = records::decode_key(&records::encode_key(&r.key)).expect("key round trip");
            let value = r.value.as_ref().map(|v| records::decode_value(&key, &records::encode_value(v)).expect("value round trip"));
            d.replay(r.partition, &key, value.as_ref(), WALL0 + self.now as i64);
        }
        assert_eq!(self.live_offsets(&d), self.live_offsets(&self.c), "replayed offsets differ from the live ones");
        let live_gen = self.c.group(GROUP).and_then(|g| match &g.kind {
            strand::group::Kind::Classic(c) => Some(c.generation),
            _ => None,
        });
        let replayed_gen = d.group(GROUP).and_then(|g| match &g.kind {
            strand::group::Kind::Classic(c) => Some(c.generation),
            _ => None,
        });
        if let Some(g) = live_gen.filter(|g| *g > 0) {
            assert_eq!(replayed_gen, Some(g), "the durable generation is not the live one");
        }
    }

    /// Property 1's end-of-run checks.
    fn check_ownership(&self) {
        let mut by_gen: BTreeMap<Gen, BTreeMap<&str, &Bytes>> = BTreeMap::new();
        for (g, m, a) in &self.sync_ok {
            let list = self.leader_lists.get(g).unwrap_or_else(|| panic!("sync success for generation {g:?} which no leader was announced"));
            assert!(list.contains(m), "member {m} got generation {g:?} assignment but was not in its leader's list {list:?}");
            let sent = self.leader_assign.get(g).and_then(|x| x.get(m));
            assert_eq!(Some(a), sent, "member {m} in generation {g:?} got an assignment its leader did not send");
            if let Some(prev) = by_gen.entry(*g).or_default().insert(m, a) {
                assert_eq!(prev, a, "member {m} got two assignments in generation {g:?}");
            }
        }
        for (g, members) in by_gen {
            let mut seen: BTreeMap<i32, &str> = BTreeMap::new();
            for (m, a) in members {
                let (ag, parts) = decode_assignment(a);
                assert!(ag == g.1 || parts.is_empty());
                for p in parts {
                    if let Some(other) = seen.insert(p, m) {
                        panic!("generation {g:?}: partition {p} delivered to both {other} and {m}");
                    }
                }
            }
        }
    }

    /// Operations stop; live clients keep heartbeating, then every client stops and time runs
    /// past every timeout: all JoinGroup/SyncGroup requests must have been answered.
    fn finish(&mut self, offsets: bool) {
        for _ in 0..200 {
            self.advance(1_000);
            for i in 0..self.clients.len() {
                self.heartbeat(i);
                self.drain();
            }
        }
        // Everyone alive settled into one stable generation that covers every partition.
        let live: Vec<usize> = (0..self.clients.len()).filter(|&i| self.clients[i].alive).collect();
        if !live.is_empty() {
            let gens: BTreeSet<i32> = live.iter().map(|&i| self.clients[i].generation).collect();
            assert_eq!(gens.len(), 1, "live clients in different generations after settling: {:?}", self.clients);
            assert_eq!(self.c.group(GROUP).map(|g| g.state()), Some("Stable"));
            let mut all: Vec<i32> = live.iter().flat_map(|&i| self.clients[i].owned.clone()).collect();
            all.sort();
            assert_eq!(all, (0..self.partitions).collect::<Vec<_>>(), "partitions not covered exactly once after settling");
        }
        if offsets {
            for &i in &live {
                self.step(&COp::Commit(i, 7));
            }
            self.check_offsets();
            self.check_replay();
        }
        for cl in &mut self.clients {
            cl.alive = false;
        }
        for _ in 0..10 {
            self.advance(60_000);
        }
        assert!(self.outstanding.is_empty(), "requests never answered: {:?}; group {:?}", self.outstanding, self.c.group(GROUP));
        if offsets {
            self.check_offsets();
            self.check_replay();
        }
    }
}

fn classic_case(offsets: bool) -> impl Strategy<Value = (i32, Vec<(i32, i32)>, Vec<COp>)> {
    (2usize..=5).prop_flat_map(move |n| {
        (
            1i32..=8,
            prop::collection::vec((prop::sample::select(vec![6_000, 10_000, 30_000]), prop::sample::select(vec![10_000, 20_000, 60_000])), n),
            prop::collection::vec(classic_op(n, offsets), 20..200),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn classic_single_ownership_per_generation((partitions, timeouts, ops) in classic_case(false)) {
        let mut h = ClassicSim::new(partitions, timeouts);
        for op in &ops {
            h.step(op);
        }
        h.finish(false);
        h.check_ownership();
    }

    #[test]
    fn committed_offsets_only_move_by_accepted_commits_and_replay((partitions, timeouts, ops) in classic_case(true)) {
        let mut h = ClassicSim::new(partitions, timeouts);
        for (n, op) in ops.iter().enumerate() {
            h.step(op);
            h.check_offsets();
            if n % 25 == 0 {
                h.check_replay();
            }
        }
        h.finish(true);
        h.check_ownership();
    }
}

// ------------------------------------------------------------------------------------------
// KIP-848 consumer protocol (property 3)
// ------------------------------------------------------------------------------------------

type TopicPartitions = BTreeMap<String, BTreeSet<i32>>;

const TOPICS: [&str; 3] = ["a", "b", "c"];
const REBALANCE_TIMEOUT_MS: i32 = 60_000;

#[derive(Debug, Clone)]
struct KClient {
    alive: bool,
    member_id: String,
    /// 0: not in the group (joins at the next heartbeat).
    epoch: i32,
    /// The last assignment received: what the client owns.
    owned: TopicPartitions,
    subscribed: Vec<String>,
    /// The subscription changed and goes with the next heartbeat.
    send_subscription: bool,
    /// When the last heartbeat succeeded: a session timeout later the client knows it is out.
    last_ok_ms: u64,
}

impl KClient {
    fn new(subscribed: Vec<String>) -> KClient {
        KClient { alive: true, member_id: String::new(), epoch: 0, owned: TopicPartitions::new(), subscribed, send_subscription: false, last_ok_ms: 0 }
    }

    fn lose_partitions(&mut self) {
        self.owned.clear();
        self.epoch = 0;
    }
}

#[derive(Debug, Clone)]
enum KOp {
    /// Start (a dead client restarts as a new member); a running one heartbeats.
    Join(usize),
    Heartbeat(usize),
    HeartbeatAll,
    Leave(usize),
    Crash(usize),
    Advance(u32),
    Resubscribe(usize, u8),
    /// A topic gains partitions.
    Grow(usize, u8),
}

fn subscription(mask: u8) -> Vec<String> {
    let mask = if mask.is_multiple_of(8) { 1 } else { mask % 8 };
    TOPICS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| t.to_string()).collect()
}

struct KSim {
    c: Coordinator,
    now: u64,
    topics: BTreeMap<String, i32>,
    clients: Vec<KClient>,
    session_ms: u64,
}

impl KSim {
    fn heartbeat(&mut self, i: usize) {
        let cl = &self.clients[i];
        if !cl.alive {
            return;
        }
        let joining = cl.epoch == 0;
        let req = HeartbeatRequest {
            group_id: GROUP.into(),
            member_id: cl.member_id.clone(),
            member_epoch: cl.epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: if joining { REBALANCE_TIMEOUT_MS } else { -1 },
            subscribed: (joining || cl.send_subscription).then(|| cl.subscribed.clone()),
            subscribed_regex: None,
            server_assignor: None,
            owned: Some(cl.owned.clone()),
            client_id: format!("client{i}"),
            client_host: "/10.0.0.1".into(),
        };
        let r = self.c.consumer_heartbeat(at(self.now), req, &self.topics);
        let cl = &mut self.clients[i];
        match r.error {
            ErrorCode::NONE => {
                assert!(r.member_epoch > 0, "a member in the group with epoch {}", r.member_epoch);
                assert!(!r.member_id.is_empty());
                cl.member_id = r.member_id;
                cl.epoch = r.member_epoch;
                if let Some(a) = r.assignment {
                    cl.owned = a;
                }
                cl.send_subscription = false;
                cl.last_ok_ms = self.now;
            }
            ErrorCode::FENCED_MEMBER_EPOCH => cl.lose_partitions(),
            ErrorCode::UNKNOWN_MEMBER_ID => {
                cl.lose_partitions();
                cl.member_id.clear();
            }
            e => panic!("unexpected ConsumerGroupHeartbeat error {e:?}: {:?}", r.message),
        }
    }

    fn leave(&mut self, i: usize) {
        let cl = &self.clients[i];
        if !cl.alive || cl.epoch == 0 {
            return;
        }
        let req = HeartbeatRequest {
            group_id: GROUP.into(),
            member_id: cl.member_id.clone(),
            member_epoch: -1,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: -1,
            subscribed: None,
            subscribed_regex: None,
            server_assignor: None,
            owned: None,
            client_id: format!("client{i}"),
            client_host: "/10.0.0.1".into(),
        };
        // The client gives up its partitions before it leaves, whatever the answer.
        let cl = &mut self.clients[i];
        cl.lose_partitions();
        cl.member_id.clear();
        let _ = self.c.consumer_heartbeat(at(self.now), req, &self.topics);
    }

    /// Time passes: a client that has not heard from the coordinator for a session timeout
    /// knows it is out and gives its partitions up; then the coordinator expires members.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        for cl in &mut self.clients {
            if cl.alive && cl.epoch != 0 && cl.last_ok_ms + self.session_ms <= self.now {
                cl.lose_partitions();
            }
        }
        self.c.tick(at(self.now), &self.topics);
    }

    fn step(&mut self, op: &KOp) {
        match *op {
            KOp::Join(i) => {
                if !self.clients[i].alive {
                    let s = self.clients[i].subscribed.clone();
                    self.clients[i] = KClient::new(s);
                }
                self.heartbeat(i);
            }
            KOp::Heartbeat(i) => self.heartbeat(i),
            KOp::HeartbeatAll => (0..self.clients.len()).for_each(|i| self.heartbeat(i)),
            KOp::Leave(i) => self.leave(i),
            KOp::Crash(i) => self.clients[i].alive = false,
            KOp::Advance(ms) => self.advance(ms as u64),
            KOp::Resubscribe(i, mask) => {
                let cl = &mut self.clients[i];
                cl.subscribed = subscription(mask);
                cl.send_subscription = true;
            }
            KOp::Grow(t, n) => *self.topics.get_mut(TOPICS[t % TOPICS.len()]).expect("topic") += 1 + (n % 3) as i32,
        }
    }

    /// No partition is owned by two live clients.
    fn check_exclusive(&self) {
        let mut holder: BTreeMap<(&str, i32), usize> = BTreeMap::new();
        for (i, cl) in self.clients.iter().enumerate().filter(|(_, c)| c.alive) {
            for (t, ps) in &cl.owned {
                for &p in ps {
                    if let Some(j) = holder.insert((t.as_str(), p), i) {
                        panic!("{t}-{p} owned by clients {j} and {i} at {}: {:#?}\ngroup: {:#?}", self.now, self.clients, self.c.group(GROUP));
                    }
                }
            }
        }
    }

    /// Every partition of every topic a live client subscribes to is owned by exactly one
    /// live client, one that subscribes to its topic.
    fn check_converged(&self) {
        let live: Vec<&KClient> = self.clients.iter().filter(|c| c.alive).collect();
        let mut want: BTreeSet<(String, i32)> = BTreeSet::new();
        for cl in &live {
            for t in &cl.subscribed {
                want.extend((0..self.topics[t]).map(|p| (t.clone(), p)));
            }
        }
        let mut got: BTreeSet<(String, i32)> = BTreeSet::new();
        for cl in &live {
            assert!(cl.epoch > 0, "a live client is not in the group after settling: {cl:?}");
            for (t, ps) in &cl.owned {
                assert!(cl.subscribed.contains(t), "client owns {t} without subscribing to it: {cl:?}");
                for &p in ps {
                    assert!(got.insert((t.clone(), p)), "{t}-{p} owned twice");
                }
            }
        }
        assert_eq!(got, want, "live clients do not own every subscribed partition after settling:\n{:#?}\n{:#?}", live, self.c.group(GROUP));
        // With nobody left, the empty group may already have been removed.
        let state = self.c.group(GROUP).map(|g| g.state());
        let settled = if live.is_empty() { state.is_none_or(|s| s == "Empty") } else { state == Some("Stable") };
        assert!(settled, "group not settled: {state:?} with {} live clients", live.len());
    }
}

fn kop(clients: usize) -> impl Strategy<Value = KOp> {
    let c = 0..clients;
    prop_oneof![
        4 => c.clone().prop_map(KOp::Join),
        8 => c.clone().prop_map(KOp::Heartbeat),
        3 => Just(KOp::HeartbeatAll),
        1 => c.clone().prop_map(KOp::Leave),
        1 => c.clone().prop_map(KOp::Crash),
        5 => (0u32..5_000u32).prop_map(KOp::Advance),
        1 => (20_000u32..70_000u32).prop_map(KOp::Advance),
        1 => (c.clone(), any::<u8>()).prop_map(|(i, m)| KOp::Resubscribe(i, m)),
        1 => (0usize..3, any::<u8>()).prop_map(|(t, n)| KOp::Grow(t, n)),
    ]
}

fn consumer_case() -> impl Strategy<Value = (Vec<i32>, Vec<u8>, Vec<KOp>)> {
    (2usize..=5).prop_flat_map(|n| {
        (
            prop::collection::vec(1i32..=6, TOPICS.len()),
            prop::collection::vec(any::<u8>(), n),
            prop::collection::vec(kop(n), 20..200),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn consumer_protocol_exclusive_ownership_and_convergence((counts, subs, ops) in consumer_case()) {
        let config = config();
        let mut h = KSim {
            session_ms: config.consumer_session_timeout_ms,
            c: Coordinator::new(config, 7),
            now: 0,
            topics: TOPICS.iter().zip(counts).map(|(t, n)| (t.to_string(), n)).collect(),
            clients: subs.into_iter().map(|m| KClient::new(subscription(m))).collect(),
        };
        for op in &ops {
            h.step(op);
            h.check_exclusive();
        }
        // Operations stop; every live client keeps heartbeating (dead ones expire).
        for _ in 0..120 {
            h.advance(1_000);
            h.check_exclusive();
            for i in 0..h.clients.len() {
                h.heartbeat(i);
                h.check_exclusive();
            }
        }
        h.check_converged();
    }
}
