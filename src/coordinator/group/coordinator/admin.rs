//! Group administration: DescribeGroups, ListGroups, DeleteGroups.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::state::PendingWrite;
use super::{
    code, Action, Coordinator, DescribedMember, GroupDescription, GroupState, ListedGroup, Reply,
    ReqId, NONE,
};
use crate::coordinator::group::records::StoredRecord;

impl Coordinator {
    pub(super) fn describe(&mut self, req: ReqId, group_id: &str, partition: i32) {
        let mut d = GroupDescription {
            error: NONE,
            group_id: group_id.to_owned(),
            state: GroupState::Dead.name().to_owned(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        if let Some(e) = self.partition_error(partition) {
            d.error = code(e);
            return self.reply(req, Reply::Describe(d));
        }
        if let Some(g) = self.groups.get(group_id) {
            let stable = g.state == GroupState::Stable;
            d.state = g.state.name().to_owned();
            d.protocol_type = g.protocol_type.clone().unwrap_or_default();
            if stable {
                d.protocol = g.protocol.clone().unwrap_or_default();
            }
            d.members = g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&d.protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect();
        }
        self.reply(req, Reply::Describe(d));
    }

    pub(super) fn list(&mut self, req: ReqId) {
        let mut groups: Vec<ListedGroup> = self
            .groups
            .values()
            .filter(|g| self.is_loaded(g.partition) && g.state != GroupState::Dead)
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name().to_owned(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        self.reply(req, Reply::List(groups));
    }

    pub(super) fn delete(&mut self, now_ms: i64, req: ReqId, group_id: &str, partition: i32) {
        if let Some(e) = self.partition_error(partition) {
            return self.reply(req, Reply::Delete(code(e)));
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            return self.reply(req, Reply::Delete(code(ResponseError::GroupIdNotFound)));
        };
        if g.state == GroupState::Dead {
            return self.reply(req, Reply::Delete(code(ResponseError::GroupIdNotFound)));
        }
        if !g.members.is_empty() || g.state != GroupState::Empty {
            return self.reply(req, Reply::Delete(code(ResponseError::NonEmptyGroup)));
        }
        let mut records: Vec<StoredRecord> = g
            .offsets
            .keys()
            .map(|(t, p)| StoredRecord::Offset {
                group: group_id.to_owned(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect();
        records.push(StoredRecord::Group {
            group: group_id.to_owned(),
            value: None,
        });
        let partition = g.partition;
        // Gone at once: OffsetFetch after DeleteGroups must not see the offsets.
        self.groups.remove(group_id);
        let _ = now_ms;
        let token = self.next_token();
        self.pending.insert(token, PendingWrite::Delete { req });
        self.out.push(Action::Persist {
            partition,
            records,
            token: Some(token),
            txn: None,
        });
    }
}
