//! Tests of the pure controller: topic admin, producer ids, membership, placement.
use super::*;

fn controller(brokers: Vec<i32>) -> Controller {
    let mut image = MetadataImage::default();
    image
        .apply(
            1,
            &MetadataRecord::Cluster {
                cluster_id: "c".into(),
            },
        )
        .unwrap();
    let config = ControllerConfig {
        default_partitions: 2,
        default_replication_factor: 1,
        brokers,
        min_insync_replicas: 1,
    };
    Controller::new(config, image)
}

fn run(c: &mut Controller, cmd: Command) -> OpResult<()> {
    let records = c.propose(&cmd)?;
    let first = c.image().epoch + 1;
    c.replay(first, &records).unwrap();
    Ok(())
}

fn new_topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
    NewTopic {
        assignment: None,
        name: name.into(),
        partitions,
        replication_factor: rf,
        configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
    }
}

#[test]
fn creates_grows_reconfigures_and_deletes_topics() {
    let mut c = controller(vec![0]);
    let create = |name: &str, p, rf, id| Command::CreateTopic {
        topic: new_topic(name, p, rf),
        id: [id; 16],
    };
    run(&mut c, create("t", -1, -1, 1)).unwrap();
    let t = c.image().topic("t").unwrap().clone();
    assert_eq!(t.partition_count(), 2, "num.partitions");
    assert_eq!(t.partitions[1].replicas, vec![0]);
    assert_eq!(
        (t.partitions[1].leader, t.partitions[1].isr.clone()),
        (0, vec![0])
    );
    assert_eq!(t.configs["retention.ms"], "5");
    assert!(!t.internal);

    let err = run(&mut c, create("t", 1, 1, 2)).unwrap_err();
    assert!(matches!(err.error, ResponseError::TopicAlreadyExists));
    let err = run(&mut c, create("u", 1, 2, 2)).unwrap_err();
    assert!(matches!(err.error, ResponseError::InvalidReplicationFactor));
    let err = run(&mut c, create("u", 0, 1, 2)).unwrap_err();
    assert!(matches!(err.error, ResponseError::InvalidPartitions));
    let err = run(&mut c, create("a/b", 1, 1, 2)).unwrap_err();
    assert!(matches!(err.error, ResponseError::InvalidTopicException));

    let grow = |count| Command::CreatePartitions {
        name: "t".into(),
        count,
        assignment: None,
    };
    assert!(run(&mut c, grow(2)).is_err());
    run(&mut c, grow(5)).unwrap();
    assert_eq!(c.image().topic("t").unwrap().partition_count(), 5);

    let alter = |ops, replace| Command::AlterConfigs {
        name: "t".into(),
        ops,
        replace,
    };
    let set = ConfigOp::Set("segment.bytes".into(), "1048576".into());
    run(&mut c, alter(vec![set.clone()], false)).unwrap();
    let configs = c.image().topic("t").unwrap().configs.clone();
    assert_eq!(configs.len(), 2);
    run(&mut c, alter(vec![set], true)).unwrap();
    let configs = c.image().topic("t").unwrap().configs.clone();
    assert_eq!(configs.keys().collect::<Vec<_>>(), ["segment.bytes"]);
    let bad = ConfigOp::Set("retention.ms".into(), "soon".into());
    assert!(run(&mut c, alter(vec![bad], false)).is_err());

    run(&mut c, create("__internal", 1, 1, 3)).unwrap();
    let err = run(&mut c, Command::DeleteTopic("__internal".into())).unwrap_err();
    assert!(matches!(err.error, ResponseError::InvalidTopicException));
    run(&mut c, Command::DeleteTopic("t".into())).unwrap();
    assert!(c.image().topic("t").is_none());
    let err = run(&mut c, Command::DeleteTopic("t".into())).unwrap_err();
    assert!(matches!(err.error, ResponseError::UnknownTopicOrPartition));
}

/// Reserves a block as the driver does: propose, replay, claim.
fn reserve(c: &mut Controller) {
    run(c, Command::ReserveProducerIds).unwrap();
    let end = c.image().producer_id_block_end;
    c.claim_producer_ids(end);
}

#[test]
fn producer_ids_come_from_reserved_blocks_and_never_repeat() {
    let mut c = controller(vec![0]);
    assert_eq!(c.next_producer_id(), None);
    reserve(&mut c);
    let ids: Vec<i64> = std::iter::from_fn(|| c.next_producer_id()).collect();
    assert_eq!(ids, (0..PRODUCER_ID_BLOCK).collect::<Vec<_>>());
    reserve(&mut c);
    assert_eq!(c.next_producer_id(), Some(PRODUCER_ID_BLOCK));
    // A restarted controller starts after everything reserved.
    let mut again = Controller::new(c.config.clone(), c.image().clone());
    assert_eq!(again.next_producer_id(), None);
    reserve(&mut again);
    assert_eq!(again.next_producer_id(), Some(2 * PRODUCER_ID_BLOCK));
}

#[test]
fn places_replicas_round_robin() {
    assert_eq!(
        place(&[1, 2, 3], 0, 4, 2),
        vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
    );
    let mut c = controller(vec![0, 1, 2]);
    let cmd = Command::CreateTopic {
        topic: new_topic("t", 3, 3),
        id: [1; 16],
    };
    run(&mut c, cmd).unwrap();
    let t = c.image().topic("t").unwrap();
    assert_eq!(t.partitions[2].replicas, vec![2, 0, 1]);
    assert_eq!(t.partitions[2].leader, 2);
}

fn broker(id: i32, rack: &str, incarnation: u8) -> BrokerRecord {
    BrokerRecord {
        id,
        incarnation: [incarnation; 16],
        host: "127.0.0.1".into(),
        port: 9092 + id,
        rack: Some(rack.into()),
        listeners: Vec::new(),
    }
}

/// A controller whose image has brokers 0..n registered and unfenced, racks a/b/a/b…
fn cluster(n: i32) -> Controller {
    let mut c = controller(vec![]);
    for id in 0..n {
        let rack = if id % 2 == 0 { "a" } else { "b" };
        run(&mut c, Command::RegisterBroker(broker(id, rack, 1))).unwrap();
        run(&mut c, Command::UnfenceBroker { id }).unwrap();
    }
    c
}

#[test]
fn registered_brokers_are_fenced_until_unfenced_and_placement_uses_live_ones() {
    let mut c = controller(vec![]);
    run(&mut c, Command::RegisterBroker(broker(0, "a", 1))).unwrap();
    assert!(c.image().brokers[&0].fenced, "a registration starts fenced");
    assert!(c.placement_brokers().is_empty());
    let err = run(
        &mut c,
        Command::CreateTopic {
            topic: new_topic("t", 1, 1),
            id: [1; 16],
        },
    )
    .unwrap_err();
    assert!(matches!(err.error, ResponseError::InvalidReplicationFactor));
    run(&mut c, Command::UnfenceBroker { id: 0 }).unwrap();
    assert_eq!(c.placement_brokers(), [0]);
    // The same incarnation registering again changes nothing.
    assert!(c
        .propose(&Command::RegisterBroker(broker(0, "a", 1)))
        .unwrap()
        .is_empty());
}

#[test]
fn placement_alternates_racks() {
    let c = cluster(4);
    assert_eq!(c.placement_brokers(), [0, 1, 2, 3], "a b a b");
    let mut c = controller(vec![]);
    for (id, rack) in [(0, "a"), (1, "a"), (2, "b"), (3, "b")] {
        run(&mut c, Command::RegisterBroker(broker(id, rack, 1))).unwrap();
        run(&mut c, Command::UnfenceBroker { id }).unwrap();
    }
    let order = c.placement_brokers();
    let racks: Vec<&str> = order
        .iter()
        .map(|id| if *id < 2 { "a" } else { "b" })
        .collect();
    assert_eq!(racks, ["a", "b", "a", "b"], "{order:?}");
    let placed = place(&order, 0, 4, 2);
    for replicas in placed {
        let (x, y) = (replicas[0] < 2, replicas[1] < 2);
        assert_ne!(x, y, "replicas {replicas:?} share a rack");
    }
}

#[test]
fn fencing_takes_leadership_away_and_unfencing_gives_it_back() {
    let mut c = cluster(3);
    run(
        &mut c,
        Command::CreateTopic {
            topic: new_topic("t", 3, 1),
            id: [7; 16],
        },
    )
    .unwrap();
    let t = c.image().topic("t").unwrap().clone();
    let on_1: Vec<usize> = (0..3).filter(|p| t.partitions[*p].leader == 1).collect();
    assert_eq!(on_1.len(), 1, "one partition per broker");
    let p = on_1[0];
    let epoch = t.partitions[p].leader_epoch;

    // A fence for an older registration of the broker changes nothing.
    let stale = Command::FenceBroker {
        id: 1,
        epoch: Some(0),
    };
    assert!(c.propose(&stale).unwrap().is_empty());
    run(&mut c, Command::FenceBroker { id: 1, epoch: None }).unwrap();
    let reg = &c.image().topic("t").unwrap().partitions[p];
    assert_eq!(reg.leader, -1, "RF 1: no other replica may lead");
    assert_eq!(reg.isr, [1], "the last in-sync replica is kept");
    assert_eq!(reg.leader_epoch, epoch + 1);
    assert!(!c.placement_brokers().contains(&1));

    run(&mut c, Command::UnfenceBroker { id: 1 }).unwrap();
    let reg = &c.image().topic("t").unwrap().partitions[p];
    assert_eq!((reg.leader, reg.leader_epoch), (1, epoch + 2));

    // A new incarnation of a live broker: it restarted, so it is fenced and leads nothing
    // until unfenced again.
    run(&mut c, Command::RegisterBroker(broker(1, "b", 2))).unwrap();
    assert!(c.image().brokers[&1].fenced);
    assert_eq!(c.image().topic("t").unwrap().partitions[p].leader, -1);
}

#[test]
fn a_new_active_controller_never_repeats_producer_ids() {
    let mut first = cluster(1);
    reserve(&mut first);
    let id = first.next_producer_id().unwrap();
    // Another voter replayed the same log (its own block: none); it becomes active and
    // must reserve past the first one's block, which the first may still be using.
    let mut second = Controller::new(first.config.clone(), MetadataImage::default());
    second.reset_image(first.image().clone());
    assert_eq!(
        second.next_producer_id(),
        None,
        "must reserve a block of its own first"
    );
    reserve(&mut second);
    let theirs = second.next_producer_id().unwrap();
    assert!(theirs >= PRODUCER_ID_BLOCK && theirs > id);
    // The first, active again later, goes on with its own block: no overlap.
    first.reset_image(second.image().clone());
    assert_eq!(first.next_producer_id(), Some(id + 1));
}

#[test]
fn manual_replica_assignments_are_honoured_and_checked() {
    let mut c = cluster(3);
    let manual = |name: &str, a: Vec<Vec<i32>>| Command::CreateTopic {
        topic: NewTopic {
            assignment: Some(a),
            ..new_topic(name, -1, -1)
        },
        id: [name.len() as u8; 16],
    };
    run(&mut c, manual("m", vec![vec![2, 0], vec![1, 2]])).unwrap();
    let t = c.image().topic("m").unwrap().clone();
    assert_eq!(t.partitions[0].replicas, [2, 0]);
    assert_eq!(
        (t.partitions[1].leader, t.partitions[1].isr.clone()),
        (1, vec![1, 2]),
        "every live replica starts in sync"
    );
    for (bad, why) in [
        (vec![vec![0, 0]], "a broker twice"),
        (vec![vec![0, 1], vec![2]], "uneven"),
        (vec![vec![7]], "unregistered"),
        (vec![vec![]], "empty"),
    ] {
        let err = run(&mut c, manual("bad", bad)).unwrap_err();
        assert!(
            matches!(err.error, ResponseError::InvalidReplicaAssignment),
            "{why}: {err:?}"
        );
    }
    let with_count = Command::CreateTopic {
        topic: NewTopic {
            assignment: Some(vec![vec![0]]),
            ..new_topic("x", 1, -1)
        },
        id: [9; 16],
    };
    assert!(matches!(
        run(&mut c, with_count).unwrap_err().error,
        ResponseError::InvalidRequest
    ));
    // A fenced replica does not lead a new partition while a live one can.
    run(&mut c, Command::FenceBroker { id: 0, epoch: None }).unwrap();
    let grow = Command::CreatePartitions {
        name: "m".into(),
        count: 3,
        assignment: Some(vec![vec![0, 1]]),
    };
    run(&mut c, grow).unwrap();
    assert_eq!(c.image().topic("m").unwrap().partitions[2].leader, 1);
    let wrong_rf = Command::CreatePartitions {
        name: "m".into(),
        count: 4,
        assignment: Some(vec![vec![1]]),
    };
    assert!(run(&mut c, wrong_rf).is_err());
}

/// The leader of partition 0 of topic `topic_id`, at registration `r`, asks for ISR `isr`.
fn alter_isr(
    topic_id: [u8; 16],
    r: &crate::cluster::image::PartitionRegistration,
    isr: Vec<i32>,
) -> Command {
    Command::AlterPartition(AlterPartition {
        topic_id,
        partition: 0,
        leader: r.leader,
        leader_epoch: r.leader_epoch,
        partition_epoch: r.partition_epoch,
        isr,
    })
}

#[test]
fn isr_changes_are_checked_against_the_leader_and_partition_epoch() {
    let mut c = cluster(3);
    run(
        &mut c,
        Command::CreateTopic {
            topic: new_topic("r", 1, 3),
            id: [9; 16],
        },
    )
    .unwrap();
    let reg = c.image().topic("r").unwrap().partitions[0].clone();
    assert_eq!(reg.isr.len(), 3);
    let follower = reg
        .replicas
        .iter()
        .copied()
        .find(|r| *r != reg.leader)
        .unwrap();
    let alter = |isr: Vec<i32>, leader: i32, leader_epoch: i32, partition_epoch: i32| {
        Command::AlterPartition(AlterPartition {
            topic_id: [9; 16],
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        })
    };
    let shrunk: Vec<i32> = reg.isr.iter().copied().filter(|r| *r != follower).collect();
    let code = |r: OpResult<()>| r.unwrap_err().error;
    assert_eq!(
        code(run(
            &mut c,
            alter(
                shrunk.clone(),
                follower,
                reg.leader_epoch,
                reg.partition_epoch
            )
        )),
        ResponseError::NotLeaderOrFollower
    );
    assert_eq!(
        code(run(
            &mut c,
            alter(
                shrunk.clone(),
                reg.leader,
                reg.leader_epoch + 1,
                reg.partition_epoch
            )
        )),
        ResponseError::FencedLeaderEpoch
    );
    assert_eq!(
        code(run(
            &mut c,
            alter(
                shrunk.clone(),
                reg.leader,
                reg.leader_epoch,
                reg.partition_epoch + 1
            )
        )),
        ResponseError::InvalidUpdateVersion
    );
    run(
        &mut c,
        alter(
            shrunk.clone(),
            reg.leader,
            reg.leader_epoch,
            reg.partition_epoch,
        ),
    )
    .unwrap();
    let now = c.image().topic("r").unwrap().partitions[0].clone();
    assert_eq!(now.isr, shrunk);
    assert_eq!(now.partition_epoch, reg.partition_epoch + 1);
    assert_eq!(
        now.leader_epoch, reg.leader_epoch,
        "an ISR change keeps the leader epoch"
    );
    // A fenced broker may not join.
    run(
        &mut c,
        Command::FenceBroker {
            id: follower,
            epoch: None,
        },
    )
    .unwrap();
    let now = c.image().topic("r").unwrap().partitions[0].clone();
    let mut grown = now.isr.clone();
    grown.push(follower);
    assert_eq!(
        code(run(
            &mut c,
            alter(grown, now.leader, now.leader_epoch, now.partition_epoch)
        )),
        ResponseError::IneligibleReplica
    );
}

#[test]
fn only_in_sync_replicas_lead_unless_unclean_election_is_enabled() {
    for unclean in [false, true] {
        let mut c = cluster(3);
        let mut topic = new_topic("u", 1, 3);
        topic
            .configs
            .insert("unclean.leader.election.enable".into(), unclean.to_string());
        run(&mut c, Command::CreateTopic { topic, id: [5; 16] }).unwrap();
        let reg = c.image().topic("u").unwrap().partitions[0].clone();
        let leader = reg.leader;
        // The followers fall out of sync; then the leader dies.
        run(&mut c, alter_isr([5; 16], &reg, vec![leader])).unwrap();
        run(
            &mut c,
            Command::FenceBroker {
                id: leader,
                epoch: None,
            },
        )
        .unwrap();
        let now = c.image().topic("u").unwrap().partitions[0].clone();
        if unclean {
            assert!(now.leader >= 0 && now.leader != leader, "{now:?}");
            assert_eq!(now.isr, vec![now.leader]);
        } else {
            assert_eq!(now.leader, -1, "no out-of-sync replica may lead: {now:?}");
            assert_eq!(now.isr, vec![leader], "the last in-sync replica is kept");
        }
        assert_eq!(now.leader_epoch, reg.leader_epoch + 1);
    }
}

#[test]
fn a_reassignment_adds_catches_up_then_drops_and_can_be_cancelled() {
    let mut c = cluster(3);
    run(
        &mut c,
        Command::CreateTopic {
            topic: NewTopic {
                assignment: Some(vec![vec![0]]),
                ..new_topic("m", -1, -1)
            },
            id: [3; 16],
        },
    )
    .unwrap();
    let reg = |c: &Controller| c.image().topic("m").unwrap().partitions[0].clone();
    let start = Command::AlterReassignments(vec![("m".into(), 0, Some(vec![1, 2]))]);
    run(&mut c, start).unwrap();
    let r = reg(&c);
    assert_eq!(
        r.replicas,
        [1, 2, 0],
        "target first, the old replica until it is done"
    );
    assert_eq!(
        (r.adding_replicas.clone(), r.removing_replicas.clone()),
        (vec![1, 2], vec![0])
    );
    assert_eq!(
        (r.leader, r.isr.clone()),
        (0, vec![0]),
        "the old leader leads meanwhile"
    );
    // The leader adds the new replicas to the ISR as they catch up; with both in, it is done
    // and leadership moves to the target's first replica.
    let alter = |r: &crate::cluster::image::PartitionRegistration, isr| alter_isr([3; 16], r, isr);
    run(&mut c, alter(&r, vec![0, 1])).unwrap();
    assert_eq!(reg(&c).replicas, [1, 2, 0], "2 has not caught up");
    let r = reg(&c);
    run(&mut c, alter(&r, vec![0, 1, 2])).unwrap();
    let done = reg(&c);
    assert_eq!(done.replicas, [1, 2]);
    assert_eq!(done.isr, [1, 2]);
    assert!(done.adding_replicas.is_empty() && done.removing_replicas.is_empty());
    assert_eq!((done.leader, done.leader_epoch), (1, r.leader_epoch + 1));

    // Cancelled before the new replica caught up: back to what it was.
    run(
        &mut c,
        Command::AlterReassignments(vec![("m".into(), 0, Some(vec![1, 0]))]),
    )
    .unwrap();
    assert_eq!(reg(&c).adding_replicas, [0]);
    run(
        &mut c,
        Command::AlterReassignments(vec![("m".into(), 0, None)]),
    )
    .unwrap();
    let back = reg(&c);
    assert_eq!((back.replicas.clone(), back.leader), (vec![1, 2], 1));
    assert!(back.adding_replicas.is_empty() && back.removing_replicas.is_empty());
    let refused = c.reassignments(&[("m".into(), 0, None)]);
    assert_eq!(
        refused[0].2.as_ref().unwrap_err().error,
        ResponseError::NoReassignmentInProgress
    );
}

#[test]
fn replicas_leaving_an_isr_below_min_insync_are_eligible_leaders() {
    let mut c = cluster(3);
    let mut topic = new_topic("e", 1, 3);
    topic
        .configs
        .insert("min.insync.replicas".into(), "2".into());
    run(&mut c, Command::CreateTopic { topic, id: [4; 16] }).unwrap();
    let reg = |c: &Controller| c.image().topic("e").unwrap().partitions[0].clone();
    let r = reg(&c);
    let leader = r.leader;
    let others: Vec<i32> = r
        .replicas
        .iter()
        .copied()
        .filter(|x| *x != leader)
        .collect();
    let alter = |r: &crate::cluster::image::PartitionRegistration, isr| alter_isr([4; 16], r, isr);
    // Down to two: still min.insync.replicas, so the one that left is not eligible.
    run(&mut c, alter(&r, vec![leader, others[0]])).unwrap();
    assert!(reg(&c).elr.is_empty());
    // Down to one: the high watermark stops, and the one leaving holds all of it.
    let r = reg(&c);
    run(&mut c, alter(&r, vec![leader])).unwrap();
    assert_eq!(reg(&c).elr, vec![others[0]]);
    // The leader dies: the eligible replica leads (without ELR the partition would be offline,
    // its only in-sync replica gone), and the dead leader is eligible in turn.
    run(
        &mut c,
        Command::FenceBroker {
            id: leader,
            epoch: None,
        },
    )
    .unwrap();
    let after = reg(&c);
    assert_eq!(
        (after.leader, after.isr.clone()),
        (others[0], vec![others[0]])
    );
    assert_eq!(after.elr, vec![leader]);
    // Back above min.insync.replicas: no eligible replicas any more.
    run(&mut c, alter(&after, vec![others[0], others[1]])).unwrap();
    assert!(reg(&c).elr.is_empty());
}

#[test]
fn feature_levels_are_set_all_or_nothing_and_bootstrap_never_overrides() {
    use crate::cluster::features::{FeatureUpdate, UpgradeType, TRANSACTION_VERSION};
    let mut c = controller(vec![0]);
    let update = |name: &str, level, kind| FeatureUpdate {
        name: name.into(),
        level,
        kind,
    };
    let level = |c: &Controller| c.image().features.get(TRANSACTION_VERSION).copied();
    // A node's start finalizes its flag once; a later start with another flag changes nothing.
    let boot = |l| Command::UpdateFeatures {
        updates: vec![update(TRANSACTION_VERSION, l, UpgradeType::Upgrade)],
        bootstrap: true,
    };
    run(&mut c, boot(2)).unwrap();
    assert_eq!(level(&c), Some(2));
    assert!(c.propose(&boot(1)).unwrap().is_empty());
    // One bad update refuses the whole request.
    let err = run(
        &mut c,
        Command::UpdateFeatures {
            updates: vec![
                update(TRANSACTION_VERSION, 1, UpgradeType::SafeDowngrade),
                update("metadata.version", 1, UpgradeType::Upgrade),
            ],
            bootstrap: false,
        },
    )
    .unwrap_err();
    assert!(matches!(err.error, ResponseError::InvalidUpdateVersion));
    assert_eq!(level(&c), Some(2));
    // Down only with a downgrade type; the same level writes nothing.
    let set = |l, kind| Command::UpdateFeatures {
        updates: vec![update(TRANSACTION_VERSION, l, kind)],
        bootstrap: false,
    };
    assert!(run(&mut c, set(1, UpgradeType::Upgrade)).is_err());
    run(&mut c, set(0, UpgradeType::UnsafeDowngrade)).unwrap();
    assert_eq!(
        level(&c),
        Some(0),
        "level 0 is kept: the flag no longer applies"
    );
    assert!(c.propose(&set(0, UpgradeType::Upgrade)).unwrap().is_empty());
    // A snapshot of the image keeps the level.
    let image = c.image().clone();
    let back = MetadataImage::from_records(image.epoch, &image.records()).unwrap();
    assert_eq!(back.features, image.features);
}
