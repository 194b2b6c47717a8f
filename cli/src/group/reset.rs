//! `sluice group reset-offsets`: plan the new offsets of a group without members, print the
//! plan, and commit it with `--execute`.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Earliest,
    Latest,
    Offset(i64),
}

/// `TOPIC` or `TOPIC:0,1,2`.
pub(super) fn parse_topic_scope(s: &str) -> Result<(String, Option<Vec<i32>>), AdminError> {
    let Some((topic, parts)) = s.rsplit_once(':') else {
        return Ok((s.to_owned(), None));
    };
    let parts = parts
        .split(',')
        .map(|p| p.trim().parse::<i32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| AdminError::Usage(format!("expected TOPIC or TOPIC:P,P,..., got {s:?}")))?;
    if topic.is_empty() {
        return Err(AdminError::Usage(format!("no topic in {s:?}")));
    }
    Ok((topic.to_owned(), Some(parts)))
}

#[derive(Serialize)]
struct PlanRow {
    topic: String,
    partition: i32,
    current_offset: Option<i64>,
    new_offset: i64,
}

#[derive(Serialize)]
struct Plan {
    group: String,
    executed: bool,
    partitions: Vec<PlanRow>,
}

pub(super) fn reset_offsets(
    c: &ClientArgs,
    group: &str,
    scope: Option<Vec<(String, Option<Vec<i32>>)>>,
    target: Target,
    execute: bool,
) -> Result<(), AdminError> {
    let mut s = c.session()?;
    let g = describe_group(&mut s, group)?;
    if !g.members.is_empty() || !matches!(g.state.as_str(), "Empty" | "Dead") {
        return Err(AdminError::Refused(format!(
            "group {group:?} is not empty (state {}, {} members); stop its consumers first",
            g.state,
            g.members.len()
        )));
    }
    let committed = committed(&mut s, group)?;
    let tps = scope_partitions(&mut s, group, scope, &committed)?;
    let earliest = s.list_offsets(&tps, EARLIEST)?;
    let latest = s.list_offsets(&tps, LATEST)?;
    let mut rows = Vec::with_capacity(tps.len());
    for tp in &tps {
        let lo = earliest.get(tp).copied().unwrap_or(0);
        let hi = latest.get(tp).copied().unwrap_or(lo).max(lo);
        let new_offset = match target {
            Target::Earliest => lo,
            Target::Latest => hi,
            Target::Offset(o) => o.clamp(lo, hi),
        };
        rows.push(PlanRow {
            topic: tp.0.clone(),
            partition: tp.1,
            current_offset: committed.get(tp).copied(),
            new_offset,
        });
    }
    if execute {
        commit(&mut s, group, &rows)?;
    }
    let plan = Plan {
        group: group.to_owned(),
        executed: execute,
        partitions: rows,
    };
    emit(c.format, &plan, || {
        let mut t = Table::new(&[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "NEW-OFFSET",
        ]);
        for r in &plan.partitions {
            t.row(vec![
                plan.group.clone(),
                r.topic.clone(),
                r.partition.to_string(),
                opt(&r.current_offset),
                r.new_offset.to_string(),
            ]);
        }
        let mut text = t.render();
        text.push_str(if execute {
            "Committed the new offsets.\n"
        } else {
            "Dry run: nothing committed; add --execute to apply.\n"
        });
        text
    })
}

/// The partitions a reset applies to, sorted.
fn scope_partitions(
    s: &mut Session,
    group: &str,
    scope: Option<Vec<(String, Option<Vec<i32>>)>>,
    committed: &BTreeMap<TopicPartition, i64>,
) -> Result<Vec<TopicPartition>, AdminError> {
    let Some(scope) = scope else {
        if committed.is_empty() {
            return Err(AdminError::NotFound(format!(
                "group {group:?} has no committed offsets; name topics with --topic"
            )));
        }
        return Ok(committed.keys().cloned().collect());
    };
    let topics: Vec<String> = scope.iter().map(|(t, _)| t.clone()).collect();
    let leaders = s.leaders(&topics)?;
    let mut out = BTreeSet::new();
    for (topic, parts) in scope {
        let all: Vec<i32> = leaders
            .keys()
            .filter(|(t, _)| *t == topic)
            .map(|(_, p)| *p)
            .collect();
        match parts {
            None => out.extend(all.into_iter().map(|p| (topic.clone(), p))),
            Some(parts) => {
                for p in parts {
                    if !all.contains(&p) {
                        return Err(AdminError::NotFound(format!(
                            "topic {topic:?} has no partition {p}"
                        )));
                    }
                    out.insert((topic.clone(), p));
                }
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Commits `rows` as an admin (generation -1, no member), which Kafka allows on empty groups.
fn commit(s: &mut Session, group: &str, rows: &[PlanRow]) -> Result<(), AdminError> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for r in rows {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(r.partition)
            .with_committed_offset(r.new_offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(sb("")));
        match topics.iter_mut().find(|t| t.name.0.as_str() == r.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(sb(r.topic.as_str())))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(sb(""))
        .with_group_instance_id(None)
        .with_topics(topics);
    let resp: OffsetCommitResponse =
        s.coordinator(group)?
            .call(ApiKey::OffsetCommit, versions::OFFSET_COMMIT, &req)?;
    for t in resp.topics {
        for p in t.partitions {
            AdminError::check(
                p.error_code,
                None,
                format!("commit {group:?} {}-{}", t.name.0, p.partition_index),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_scopes() {
        assert_eq!(parse_topic_scope("t").unwrap(), ("t".to_owned(), None));
        assert_eq!(
            parse_topic_scope("t:0,2").unwrap(),
            ("t".to_owned(), Some(vec![0, 2]))
        );
        assert!(parse_topic_scope("t:x").is_err());
        assert!(parse_topic_scope(":1").is_err());
    }
}
