use super::*;

fn reg(isr: &[i32], partition_epoch: i32) -> PartitionRegistration {
    PartitionRegistration {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        leader: 1,
        leader_epoch: 4,
        partition_epoch,
        ..PartitionRegistration::default()
    }
}

fn live() -> BTreeMap<i32, u64> {
    [(1, 10), (2, 20), (3, 30)].into_iter().collect()
}

const POLICY: ReplicaPolicy = ReplicaPolicy {
    lag_max_ms: 1_000,
    min_isr: 2,
};

#[test]
fn high_watermark_is_the_least_isr_position_and_waits_for_unknown_followers() {
    let mut s = LeaderState::new(1, reg(&[1, 2, 3], 0), live(), POLICY, 10, 0, 100);
    assert_eq!(s.high_watermark(), 0, "followers' positions unknown yet");
    assert_eq!(s.on_fetch(110, 2, 10, 10), None);
    assert_eq!(s.high_watermark(), 0, "replica 3 has not fetched");
    s.on_fetch(120, 3, 7, 10);
    assert_eq!(s.high_watermark(), 7);
    assert!(!s.on_local_end(130, 15));
    s.on_fetch(140, 3, 15, 15);
    assert_eq!(s.high_watermark(), 10, "replica 2 is at 10");
    s.on_fetch(150, 2, 15, 15);
    assert_eq!(s.high_watermark(), 15);
}

#[test]
fn a_lagging_follower_leaves_and_a_caught_up_one_rejoins() {
    let mut s = LeaderState::new(1, reg(&[1, 2, 3], 0), live(), POLICY, 0, 0, 0);
    s.on_fetch(10, 2, 0, 0);
    s.on_fetch(10, 3, 0, 0);
    s.on_local_end(20, 50);
    s.on_fetch(500, 2, 50, 50);
    assert_eq!(s.high_watermark(), 0, "3 still in the ISR holds it");
    let change = s.on_tick(1_500, 50).expect("3 lagged past lag_max");
    assert_eq!(change.isr, vec![1, 2]);
    assert_eq!(
        s.high_watermark(),
        0,
        "never advance on an unconfirmed shrink"
    );
    s.on_fetch(1_550, 2, 50, 50);
    // The controller commits it.
    assert_eq!(
        s.on_registration(1_600, reg(&[1, 2], 1), live(), POLICY, 50),
        None
    );
    assert_eq!(s.high_watermark(), 50);
    // 3 catches up: it joins, and the HW counts it while the change is pending.
    s.on_local_end(1_700, 60);
    assert_eq!(s.on_fetch(1_800, 3, 45, 60), None, "below the HW");
    let change = s.on_fetch(1_900, 3, 55, 60);
    assert_eq!(
        change.map(|c| c.isr),
        Some(vec![1, 2, 3]),
        "at or past the HW"
    );
    s.on_fetch(1_950, 2, 60, 60);
    assert_eq!(s.high_watermark(), 55, "the joining member counts at once");
}

#[test]
fn below_min_isr_the_high_watermark_stays() {
    let mut s = LeaderState::new(1, reg(&[1], 3), live(), POLICY, 5, 5, 0);
    assert!(!s.isr_allows_writes());
    assert!(!s.on_local_end(10, 20));
    assert_eq!(s.high_watermark(), 5);
}

#[test]
fn one_change_in_flight_and_retried_after_silence() {
    let mut s = LeaderState::new(1, reg(&[1, 2, 3], 0), live(), POLICY, 0, 0, 0);
    assert!(s.on_tick(1_001, 0).is_some());
    assert_eq!(s.on_tick(1_002, 0), None, "pending");
    assert!(s.on_tick(1_001 + ISR_CHANGE_RETRY_MS, 0).is_some());
}

#[test]
fn divergence_and_truncation_follow_kafka() {
    // Follower fetched epoch 3 up to 12; the leader's epoch 3 ended at 10.
    assert_eq!(divergence(3, 12, (3, 10)), Some((3, 10)));
    assert_eq!(divergence(3, 10, (3, 10)), None);
    assert_eq!(divergence(-1, 10, (3, 10)), None);
    // The leader never had epoch 3: its largest earlier one is 2, ending at 8.
    assert_eq!(divergence(3, 12, (2, 8)), Some((2, 8)));
    // Same epoch on both sides: the lower end.
    assert_eq!(truncation_offset((3, 10), (3, 12), 12, 0), 10);
    // The follower lacks the leader's epoch: to the end of its own earlier one.
    assert_eq!(truncation_offset((2, 8), (1, 6), 12, 0), 6);
    // No epochs at all locally.
    assert_eq!(truncation_offset((2, 8), (-1, -1), 12, 0), 8);
    assert_eq!(truncation_offset((-1, -1), (-1, -1), 12, 4), 4);
}
