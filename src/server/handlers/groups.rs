//! Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete, ConsumerGroupHeartbeat,
//! ConsumerGroupDescribe. Each converts the wire types to the core's and back; the core lives
//! in `crate::group`, its shell in `server::groups`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::consumer_group_describe_response::{self as cgd, ConsumerGroupDescribeResponse};
use kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as cgh, ConsumerGroupHeartbeatResponse};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as FoundCoordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseKind, SyncGroupRequest, SyncGroupResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::str_bytes;
use crate::group::assignor::TopicPartitions;
use crate::group::classic::{JoinRequest, SyncRequest};
use crate::group::{consumer, validate_group_id, CommitPartition, CommitRequest, Reply as GroupReply};
use crate::protocol::acl::{authorized_operations, ResourceType};
use crate::protocol::errors::ErrorCode;
use crate::server::dispatch::Reply;
use crate::server::groups::{topic_view, OFFSETS_TOPIC};
use crate::server::Broker;

/// Slack on top of a join's rebalance timeout before the broker gives up waiting for the core.
const PARKED_SLACK: Duration = Duration::from_secs(30);

fn s(v: &StrBytes) -> String {
    v.as_str().to_string()
}

fn opt(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(s).filter(|x| !x.is_empty())
}

fn client_id(header: &RequestHeader) -> String {
    header.client_id.as_ref().map(s).unwrap_or_default()
}

fn client_host(peer: SocketAddr) -> String {
    format!("/{}", peer.ip())
}

// ---- FindCoordinator ----

pub async fn find_coordinator(broker: &Arc<Broker>, version: i16, req: FindCoordinatorRequest) -> Reply {
    tracing::trace!(version, key = %req.key, keys = req.coordinator_keys.len(), "FindCoordinator");
    let keys: Vec<StrBytes> = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        let mut coordinator = None;
        let error = if req.key_type != 0 {
            // Transactions (key type 1) and share groups are not supported. Not
            // COORDINATOR_NOT_AVAILABLE: clients retry that (kafka-python's
            // init_transactions() spun for its whole 60 s timeout); INVALID_REQUEST, as a
            // transactional Produce gets, fails them at once.
            ErrorCode::INVALID_REQUEST
        } else if validate_group_id(key.as_str()) != ErrorCode::NONE {
            ErrorCode::INVALID_GROUP_ID
        } else {
            // The coordinator is the leader of the group's `__consumer_offsets` partition.
            match broker.groups.ensure_offsets_topic(&broker.topics).await {
                Ok(topic) => {
                    let p = crate::group::partition_for(key.as_str(), topic.partition_count());
                    coordinator = broker.partition_view(OFFSETS_TOPIC, p).and_then(|v| v.leader).and_then(|l| broker.broker_endpoint(l));
                    if coordinator.is_some() { ErrorCode::NONE } else { ErrorCode::COORDINATOR_NOT_AVAILABLE }
                }
                Err(e) => e,
            }
        };
        found.push((key, error, coordinator));
    }
    let message = (req.key_type != 0).then(|| str_bytes(&format!("strand has no coordinator for key type {} (transactions are not supported yet)", req.key_type)));
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = found
            .into_iter()
            .map(|(key, e, coordinator)| {
                let c = FoundCoordinator::default().with_key(key).with_error_code(e.code()).with_error_message(message.clone());
                if let (ErrorCode::NONE, Some(b)) = (e, coordinator) {
                    c.with_node_id(BrokerId(b.id)).with_host(str_bytes(&b.host)).with_port(b.port)
                } else {
                    c.with_node_id(BrokerId(-1)).with_port(-1)
                }
            })
            .collect();
    } else {
        let (_, e, coordinator) = found.into_iter().next().unwrap_or((StrBytes::default(), ErrorCode::INVALID_REQUEST, None));
        response.error_code = e.code();
        if version >= 1 {
            response.error_message = message;
        }
        if let (ErrorCode::NONE, Some(b)) = (e, coordinator) {
            response = response.with_node_id(BrokerId(b.id)).with_host(str_bytes(&b.host)).with_port(b.port);
        } else {
            response = response.with_node_id(BrokerId(-1)).with_port(-1);
        }
    }
    Reply::Now(ResponseKind::FindCoordinator(response))
}

// ---- classic protocol ----

fn join_response(r: crate::group::classic::JoinResponse) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(r.error.code())
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(r.protocol_name.as_deref().map(str_bytes))
        .with_leader(str_bytes(&r.leader))
        .with_skip_assignment(r.skip_assignment)
        .with_member_id(str_bytes(&r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

fn sync_response(r: crate::group::classic::SyncResponse) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(r.error.code())
        .with_protocol_type(r.protocol_type.as_deref().map(str_bytes))
        .with_protocol_name(r.protocol_name.as_deref().map(str_bytes))
        .with_assignment(r.assignment)
}

pub async fn join_group(broker: &Arc<Broker>, version: i16, header: &RequestHeader, peer: SocketAddr, req: JoinGroupRequest) -> Reply {
    let member_id = s(&req.member_id);
    let rebalance_timeout_ms = if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms };
    let core_req = JoinRequest {
        group_id: s(&req.group_id.0),
        member_id: member_id.clone(),
        instance_id: opt(&req.group_instance_id),
        client_id: client_id(header),
        client_host: client_host(peer),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: s(&req.protocol_type),
        protocols: req.protocols.iter().map(|p| (s(&p.name), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
    };
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let (token, rx) = broker.groups.park();
        let wait = Duration::from_millis(rebalance_timeout_ms.max(0) as u64) + PARKED_SLACK;
        let response = match broker.groups.step(&broker.topics, move |c, now| c.join(now, token, core_req)).await {
            Err(e) => {
                broker.groups.unpark(token);
                crate::group::classic::JoinResponse::error(e, &member_id)
            }
            Ok(()) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(GroupReply::Join(r))) => r,
                Ok(_) => crate::group::classic::JoinResponse::error(ErrorCode::COORDINATOR_NOT_AVAILABLE, &member_id),
                Err(_) => {
                    broker.groups.unpark(token);
                    crate::group::classic::JoinResponse::error(ErrorCode::REBALANCE_IN_PROGRESS, &member_id)
                }
            },
        };
        let mut response = join_response(response);
        // skip_assignment exists from v9 on; an older leader just reassigns the same way.
        response.skip_assignment &= version >= 9;
        ResponseKind::JoinGroup(response)
    }))
}

pub async fn sync_group(broker: &Arc<Broker>, _version: i16, req: SyncGroupRequest) -> Reply {
    let core_req = SyncRequest {
        group_id: s(&req.group_id.0),
        member_id: s(&req.member_id),
        instance_id: opt(&req.group_instance_id),
        generation: req.generation_id,
        protocol_type: opt(&req.protocol_type),
        protocol_name: opt(&req.protocol_name),
        assignments: req.assignments.iter().map(|a| (s(&a.member_id), a.assignment.clone())).collect(),
    };
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let (token, rx) = broker.groups.park();
        // A follower waits for the leader, who has at most the rebalance timeout.
        let wait = Duration::from_millis(broker.config.group_max_session_timeout_ms.max(0) as u64) + PARKED_SLACK;
        let response = match broker.groups.step(&broker.topics, move |c, now| c.sync(now, token, core_req)).await {
            Err(e) => {
                broker.groups.unpark(token);
                crate::group::classic::SyncResponse::error(e)
            }
            Ok(()) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(GroupReply::Sync(r))) => r,
                Ok(_) => crate::group::classic::SyncResponse::error(ErrorCode::COORDINATOR_NOT_AVAILABLE),
                Err(_) => {
                    broker.groups.unpark(token);
                    crate::group::classic::SyncResponse::error(ErrorCode::REBALANCE_IN_PROGRESS)
                }
            },
        };
        ResponseKind::SyncGroup(sync_response(response))
    }))
}

pub async fn heartbeat(broker: &Arc<Broker>, _version: i16, req: HeartbeatRequest) -> Reply {
    let (group, member, instance) = (s(&req.group_id.0), s(&req.member_id), opt(&req.group_instance_id));
    let generation = req.generation_id;
    let e = broker
        .groups
        .step(&broker.topics, move |c, now| c.heartbeat(now, &group, &member, instance.as_deref(), generation))
        .await
        .unwrap_or_else(|e| e);
    Reply::Now(ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(e.code())))
}

pub async fn leave_group(broker: &Arc<Broker>, version: i16, req: LeaveGroupRequest) -> Reply {
    let group = s(&req.group_id.0);
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members.iter().map(|m| (s(&m.member_id), opt(&m.group_instance_id))).collect()
    } else {
        vec![(s(&req.member_id), None)]
    };
    let list = members.clone();
    let result = broker.groups.step(&broker.topics, move |c, now| c.leave(now, &group, &list)).await;
    let mut response = LeaveGroupResponse::default();
    match result {
        Err(e) => response.error_code = e.code(),
        Ok(errors) if version >= 3 => {
            response.members = members
                .iter()
                .zip(errors)
                .map(|((m, i), e)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(m))
                        .with_group_instance_id(i.as_deref().map(str_bytes))
                        .with_error_code(e.code())
                })
                .collect();
        }
        Ok(errors) => response.error_code = errors.first().copied().unwrap_or(ErrorCode::NONE).code(),
    }
    Reply::Now(ResponseKind::LeaveGroup(response))
}

// ---- offsets ----

pub async fn offset_commit(broker: &Arc<Broker>, version: i16, req: OffsetCommitRequest) -> Reply {
    let mut partitions = Vec::new();
    for t in &req.topics {
        let topic = s(&t.name.0);
        let known = broker.topics.get(&topic);
        for p in &t.partitions {
            let exists = known.as_ref().is_some_and(|k| (0..k.partition_count()).contains(&p.partition_index));
            partitions.push(CommitPartition {
                topic: topic.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: opt(&p.committed_metadata),
                error: if exists { ErrorCode::NONE } else { ErrorCode::UNKNOWN_TOPIC_OR_PARTITION },
            });
        }
    }
    let layout: Vec<(String, Vec<i32>)> =
        req.topics.iter().map(|t| (s(&t.name.0), t.partitions.iter().map(|p| p.partition_index).collect())).collect();
    let n = partitions.len();
    let core_req = CommitRequest {
        group_id: s(&req.group_id.0),
        member_id: s(&req.member_id),
        instance_id: opt(&req.group_instance_id),
        generation: req.generation_id_or_member_epoch,
        partitions,
        group_id_not_found: version >= 9,
    };
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let errors = broker.groups.step(&broker.topics, move |c, now| c.commit(now, core_req)).await.unwrap_or_else(|e| vec![e; n]);
        let mut errors = errors.into_iter();
        let topics = layout
            .into_iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default().with_name(TopicName(str_bytes(&name))).with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(errors.next().unwrap_or(ErrorCode::NONE).code())
                        })
                        .collect(),
                )
            })
            .collect();
        ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
    }))
}

type FetchedOffsets = Result<Vec<(String, i32, Option<crate::group::records::OffsetValue>)>, ErrorCode>;

pub async fn offset_fetch(broker: &Arc<Broker>, version: i16, req: OffsetFetchRequest) -> Reply {
    // (group, requested partitions or all, member for v9)
    type Ask = (String, Option<Vec<(String, i32)>>, Option<(String, i32)>);
    let asks: Vec<Ask> = if version >= 8 {
        req.groups
            .iter()
            .map(|g| {
                let parts = g.topics.as_ref().map(|ts| {
                    ts.iter().flat_map(|t| t.partition_indexes.iter().map(move |p| (s(&t.name.0), *p))).collect()
                });
                let member = g.member_id.as_ref().map(|m| (s(m), g.member_epoch));
                (s(&g.group_id.0), parts, member)
            })
            .collect()
    } else {
        let parts = req.topics.as_ref().map(|ts| ts.iter().flat_map(|t| t.partition_indexes.iter().map(move |p| (s(&t.name.0), *p))).collect());
        vec![(s(&req.group_id.0), parts, None)]
    };
    let query = asks.clone();
    tracing::trace!(version, groups = ?asks.iter().map(|a| &a.0).collect::<Vec<_>>(), "OffsetFetch");
    let results: Result<Vec<FetchedOffsets>, ErrorCode> = broker
        .groups
        .step(&broker.topics, move |c, _now| {
            query
                .iter()
                .map(|(g, parts, member)| c.fetch_offsets(g, parts.as_deref(), member.as_ref().map(|(m, e)| (m.as_str(), *e))))
                .collect()
        })
        .await;
    tracing::trace!(ok = results.is_ok(), "OffsetFetch answered");
    let results: Vec<FetchedOffsets> = match results {
        Ok(r) => r,
        Err(e) => asks.iter().map(|_| Err(e)).collect(),
    };
    let group_topics = |found: &[(String, i32, Option<crate::group::records::OffsetValue>)]| -> BTreeMap<String, Vec<(i32, i64, i32, String)>> {
        let mut by_topic: BTreeMap<String, Vec<(i32, i64, i32, String)>> = BTreeMap::new();
        for (t, p, v) in found {
            let (o, e, m) = match v {
                Some(v) => (v.offset, v.leader_epoch, v.metadata.clone()),
                None => (-1, -1, String::new()),
            };
            by_topic.entry(t.clone()).or_default().push((*p, o, e, m));
        }
        by_topic
    };
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = asks
            .iter()
            .zip(results)
            .map(|((g, _, _), r)| {
                let (error, found) = match r {
                    Ok(f) => (ErrorCode::NONE, f),
                    Err(e) => (e, Vec::new()),
                };
                OffsetFetchResponseGroup::default().with_group_id(GroupId(str_bytes(g))).with_error_code(error.code()).with_topics(
                    group_topics(&found)
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetFetchResponseTopics::default().with_name(TopicName(str_bytes(&t))).with_partitions(
                                ps.into_iter()
                                    .map(|(p, o, e, m)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(e)
                                            .with_metadata(Some(str_bytes(&m)))
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
    } else {
        let r = results.into_iter().next().unwrap_or(Ok(Vec::new()));
        let (error, found) = match r {
            Ok(f) => (ErrorCode::NONE, f),
            Err(e) => (e, Vec::new()),
        };
        if version >= 2 {
            response.error_code = error.code();
        }
        response.topics = group_topics(&found)
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(&t))).with_partitions(
                    ps.into_iter()
                        .map(|(p, o, e, m)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(e)
                                .with_metadata(Some(str_bytes(&m)))
                                .with_error_code(if version < 2 { error.code() } else { 0 })
                        })
                        .collect(),
                )
            })
            .collect();
    }
    Reply::Now(ResponseKind::OffsetFetch(response))
}

// ---- admin ----

pub async fn describe_groups(broker: &Arc<Broker>, version: i16, req: DescribeGroupsRequest) -> Reply {
    // KIP-430 (v3+), as Kafka: groups answered without an error get the group operations.
    let operations = authorized_operations(ResourceType::Group, version >= 3 && req.include_authorized_operations);
    let ids: Vec<String> = req.groups.iter().map(|g| s(&g.0)).collect();
    let query = ids.clone();
    let found = broker.groups.step(&broker.topics, move |c, _| query.iter().map(|g| c.describe(g)).collect::<Vec<_>>()).await;
    let groups = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let g = DescribedGroup::default().with_group_id(GroupId(str_bytes(id)));
            match &found {
                Err(e) => g.with_error_code(e.code()),
                Ok(_) if validate_group_id(id) != ErrorCode::NONE => g.with_error_code(ErrorCode::INVALID_GROUP_ID.code()),
                Ok(list) => match &list[i] {
                    // Kafka: an unknown group is described as Dead.
                    None => g.with_group_state(str_bytes("Dead")),
                    Some(d) => g
                        .with_group_state(str_bytes(&d.state))
                        .with_protocol_type(str_bytes(&d.protocol_type))
                        .with_protocol_data(str_bytes(&d.protocol))
                        .with_members(
                            d.members
                                .iter()
                                .map(|m| {
                                    DescribedGroupMember::default()
                                        .with_member_id(str_bytes(&m.member_id))
                                        .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                                        .with_client_id(str_bytes(&m.client_id))
                                        .with_client_host(str_bytes(&m.client_host))
                                        .with_member_metadata(m.metadata.clone())
                                        .with_member_assignment(m.assignment.clone())
                                })
                                .collect(),
                        ),
                },
            }
        })
        .map(|g: DescribedGroup| if g.error_code == ErrorCode::NONE.code() { g.with_authorized_operations(operations) } else { g })
        .collect();
    Reply::Now(ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups)))
}

pub async fn list_groups(broker: &Arc<Broker>, version: i16, req: ListGroupsRequest) -> Reply {
    let states: BTreeSet<String> = req.states_filter.iter().map(|x| s(x).to_ascii_lowercase()).collect();
    let types: BTreeSet<String> = req.types_filter.iter().map(|x| s(x).to_ascii_lowercase()).collect();
    let listed = broker
        .groups
        .step(&broker.topics, move |c, _| {
            c.groups()
                .filter(|g| states.is_empty() || states.contains(&g.state().to_ascii_lowercase()))
                .filter(|g| types.is_empty() || types.contains(g.type_name()))
                .map(|g| (g.id.clone(), g.protocol_type(), g.state().to_string(), g.type_name().to_string()))
                .collect::<Vec<_>>()
        })
        .await;
    let mut response = ListGroupsResponse::default();
    match listed {
        Err(e) => response.error_code = e.code(),
        Ok(list) => {
            response.groups = list
                .into_iter()
                .map(|(id, pt, state, ty)| {
                    let mut g = ListedGroup::default().with_group_id(GroupId(str_bytes(&id))).with_protocol_type(str_bytes(&pt));
                    if version >= 4 {
                        g.group_state = str_bytes(&state);
                    }
                    if version >= 5 {
                        g.group_type = str_bytes(&ty);
                    }
                    g
                })
                .collect()
        }
    }
    Reply::Now(ResponseKind::ListGroups(response))
}

pub async fn delete_groups(broker: &Arc<Broker>, _version: i16, req: DeleteGroupsRequest) -> Reply {
    let ids: Vec<String> = req.groups_names.iter().map(|g| s(&g.0)).collect();
    let query = ids.clone();
    let result = broker
        .groups
        .step(&broker.topics, move |c, _| {
            query.iter().map(|g| if validate_group_id(g) != ErrorCode::NONE { ErrorCode::INVALID_GROUP_ID } else { c.delete(g) }).collect::<Vec<_>>()
        })
        .await;
    let results = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let e = match &result {
                Ok(list) => list[i],
                Err(e) => *e,
            };
            DeletableGroupResult::default().with_group_id(GroupId(str_bytes(id))).with_error_code(e.code())
        })
        .collect();
    Reply::Now(ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results)))
}

pub async fn offset_delete(broker: &Arc<Broker>, _version: i16, req: OffsetDeleteRequest) -> Reply {
    let group = s(&req.group_id.0);
    let parts: Vec<(String, i32)> =
        req.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (s(&t.name.0), p.partition_index))).collect();
    let query = parts.clone();
    let result = broker.groups.step(&broker.topics, move |c, _| c.offset_delete(&group, &query)).await;
    let mut response = OffsetDeleteResponse::default();
    match result.and_then(|r| r) {
        Err(e) => response.error_code = e.code(),
        Ok(errors) => {
            let mut by_topic: BTreeMap<String, Vec<OffsetDeleteResponsePartition>> = BTreeMap::new();
            for ((t, p), e) in parts.iter().zip(errors) {
                let e = if broker.topics.get(t).is_some_and(|k| (0..k.partition_count()).contains(p)) { e } else { ErrorCode::UNKNOWN_TOPIC_OR_PARTITION };
                by_topic.entry(t.clone()).or_default().push(OffsetDeleteResponsePartition::default().with_partition_index(*p).with_error_code(e.code()));
            }
            response.topics =
                by_topic.into_iter().map(|(t, ps)| OffsetDeleteResponseTopic::default().with_name(TopicName(str_bytes(&t))).with_partitions(ps)).collect();
        }
    }
    Reply::Now(ResponseKind::OffsetDelete(response))
}

// ---- KIP-848 ----

fn to_wire_assignment(broker: &Broker, tp: &TopicPartitions) -> Vec<cgh::TopicPartitions> {
    tp.iter()
        .filter_map(|(t, ps)| {
            broker.topics.get(t).map(|topic| cgh::TopicPartitions::default().with_topic_id(topic.id).with_partitions(ps.iter().copied().collect()))
        })
        .collect()
}

pub async fn consumer_group_heartbeat(
    broker: &Arc<Broker>,
    _version: i16,
    header: &RequestHeader,
    peer: SocketAddr,
    req: ConsumerGroupHeartbeatRequest,
) -> Reply {
    let owned: Option<TopicPartitions> = req.topic_partitions.as_ref().map(|list| {
        let mut out = TopicPartitions::new();
        for tp in list {
            // Partitions of a topic that no longer exists are simply not owned any more.
            if let Some(t) = broker.topics.get_by_id(tp.topic_id) {
                out.entry(t.name.clone()).or_default().extend(tp.partitions.iter().copied());
            }
        }
        out
    });
    let core_req = consumer::HeartbeatRequest {
        group_id: s(&req.group_id.0),
        member_id: s(&req.member_id),
        member_epoch: req.member_epoch,
        instance_id: opt(&req.instance_id),
        rack_id: opt(&req.rack_id),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req.subscribed_topic_names.as_ref().map(|v| v.iter().map(|t| s(&t.0)).collect()),
        subscribed_regex: req.subscribed_topic_regex.as_ref().map(s),
        server_assignor: opt(&req.server_assignor),
        owned,
        client_id: client_id(header),
        client_host: client_host(peer),
    };
    let view = topic_view(&broker.topics);
    let member_id = s(&req.member_id);
    let epoch = req.member_epoch;
    let r = match broker.groups.step(&broker.topics, move |c, now| c.consumer_heartbeat(now, core_req, &view)).await {
        Ok(r) => r,
        Err(e) => consumer::HeartbeatResponse::error(e, "coordinator not available", &member_id, epoch),
    };
    let mut response = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(r.error.code())
        .with_error_message(r.message.as_deref().map(str_bytes))
        .with_member_id(Some(str_bytes(&r.member_id)))
        .with_member_epoch(r.member_epoch)
        .with_heartbeat_interval_ms(r.heartbeat_interval_ms);
    if let Some(a) = &r.assignment {
        response.assignment = Some(cgh::Assignment::default().with_topic_partitions(to_wire_assignment(broker, a)));
    }
    Reply::Now(ResponseKind::ConsumerGroupHeartbeat(response))
}

pub async fn consumer_group_describe(broker: &Arc<Broker>, _version: i16, req: ConsumerGroupDescribeRequest) -> Reply {
    let operations = authorized_operations(ResourceType::Group, req.include_authorized_operations);
    let ids: Vec<String> = req.group_ids.iter().map(|g| s(&g.0)).collect();
    let query = ids.clone();
    let found = broker
        .groups
        .step(&broker.topics, move |c, _| {
            query
                .iter()
                .map(|g| match c.group(g).map(|x| &x.kind) {
                    Some(crate::group::Kind::Consumer(cg)) => Ok(cg.clone()),
                    Some(_) => Err(ErrorCode::GROUP_ID_NOT_FOUND),
                    None => Err(ErrorCode::GROUP_ID_NOT_FOUND),
                })
                .collect::<Vec<_>>()
        })
        .await;
    let wire = |tp: &TopicPartitions| -> cgd::Assignment {
        cgd::Assignment::default().with_topic_partitions(
            tp.iter()
                .map(|(t, ps)| {
                    cgd::TopicPartitions::default()
                        .with_topic_id(broker.topics.get(t).map(|x| x.id).unwrap_or(Uuid::nil()))
                        .with_topic_name(TopicName(str_bytes(t)))
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect(),
        )
    };
    let groups = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let g = cgd::DescribedGroup::default().with_group_id(GroupId(str_bytes(id)));
            match &found {
                Err(e) => g.with_error_code(e.code()),
                Ok(list) => match &list[i] {
                    Err(e) => g.with_error_code(e.code()).with_error_message(Some(str_bytes(&format!("group {id} is not a consumer group")))),
                    Ok(cg) => g
                        .with_group_state(str_bytes(cg.state()))
                        .with_group_epoch(cg.epoch)
                        .with_assignment_epoch(cg.assignment_epoch)
                        .with_assignor_name(str_bytes(&broker.config.group_config().default_assignor))
                        .with_members(
                            cg.members
                                .values()
                                .map(|m| {
                                    cgd::Member::default()
                                        .with_member_id(str_bytes(&m.id))
                                        .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                        .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                        .with_member_epoch(m.epoch)
                                        .with_client_id(str_bytes(&m.client_id))
                                        .with_client_host(str_bytes(&m.client_host))
                                        .with_subscribed_topic_names(m.subscribed.iter().map(|t| TopicName(str_bytes(t))).collect())
                                        .with_subscribed_topic_regex(m.subscribed_regex.as_ref().map(|r| str_bytes(&r.source)))
                                        .with_assignment(wire(&m.assigned))
                                        .with_target_assignment(wire(cg.target.get(&m.id).unwrap_or(&TopicPartitions::new())))
                                })
                                .collect(),
                        ),
                },
            }
        })
        .map(|g: cgd::DescribedGroup| if g.error_code == ErrorCode::NONE.code() { g.with_authorized_operations(operations) } else { g })
        .collect();
    Reply::Now(ResponseKind::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default().with_groups(groups)))
}

/// Whether `name` is the coordinator's internal topic (clients may read it, not write it).
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC
}
