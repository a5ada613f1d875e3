use super::*;

fn tp(t: &str, p: i32) -> Tp {
    (t.to_string(), p)
}

fn q(t: &str, p: i32, offset: i64) -> Queued<i64> {
    Queued {
        tp: tp(t, p),
        item: offset,
    }
}

/// Assigns and restores `tps`, as if each had delivered a record already.
fn flowing(s: &mut Scheduler<i64>, tps: &[Tp]) {
    s.assign(tps.iter().cloned());
    for tp in tps {
        s.received(tp);
    }
    assert!(s.restored(tps).is_empty());
    s.pause_changes();
}

#[test]
fn nothing_is_paused_or_resumed_before_a_partition_delivers_a_record() {
    let mut s: Scheduler<i64> = Scheduler::new(10);
    s.assign([tp("d", 0), tp("d", 1)]);
    assert!(
        s.pause_changes().is_empty(),
        "restoring, but the fetcher may not have started: left alone"
    );
    assert!(s.is_restoring(&tp("d", 0)));
    // A record arrives while the ledger is read: parked, and the partition
    // (whose fetcher now demonstrably runs) is paused.
    s.received(&tp("d", 0));
    s.park(tp("d", 0), 7);
    s.park(tp("d", 0), 8);
    assert_eq!(s.pause_changes(), [(tp("d", 0), true)]);
    assert_eq!(s.restored(&[tp("d", 0)]), [7, 8], "handed back in order");
    assert_eq!(s.pause_changes(), [(tp("d", 0), false)]);
    assert!(s.is_flowing(&tp("d", 0)));
    // The other partition never delivered a record: never touched.
    assert!(s.restored(&[tp("d", 1)]).is_empty());
    assert!(s.pause_changes().is_empty());
    assert!(s.is_flowing(&tp("d", 1)));
}

#[test]
fn reassignment_starts_from_a_clean_slate() {
    let mut s: Scheduler<i64> = Scheduler::new(10);
    flowing(&mut s, &[tp("r", 0)]);
    s.push(q("r", 0, 1), Some(1_000), false, 0);
    assert_eq!(s.pause_changes(), [(tp("r", 0), true)]);
    s.park(tp("r", 0), 9); // (only while restoring in practice)
    assert_eq!(
        s.revoke(&[tp("r", 0)]),
        2,
        "held and parked records dropped"
    );
    // The revoke callback resumed it inside librdkafka; assigned again, it
    // is left alone until it delivers a record.
    s.assign([tp("r", 0)]);
    assert!(s.restored(&[tp("r", 0)]).is_empty());
    assert!(s.pause_changes().is_empty());
    assert_eq!(s.held_len(), 0);
    assert!(s.is_flowing(&tp("r", 0)));
}

#[test]
fn tier_records_wait_in_order_until_due() {
    let mut s: Scheduler<i64> = Scheduler::new(10);
    flowing(&mut s, &[tp("r", 0)]);
    s.push(q("r", 0, 1), Some(1_000), false, 0);
    s.push(q("r", 0, 2), Some(10), false, 0); // due, but behind a held one
    assert_eq!(s.reasons(&tp("r", 0)), Some(HELD));
    assert_eq!(s.pause_changes(), [(tp("r", 0), true)]);
    assert_eq!(s.next_due(), Some(1_000));
    assert_eq!(s.release_due(999), 0);
    assert_eq!(s.release_due(1_000), 2);
    assert_eq!(s.pause_changes(), [(tp("r", 0), false)]);
    assert_eq!(s.pop_ready().map(|q| q.item), Some(1));
    assert_eq!(s.pop_ready().map(|q| q.item), Some(2));
    assert!(s.pop_ready().is_none());
}

#[test]
fn circuit_pauses_everything_but_expiring_partitions_drain() {
    let mut s: Scheduler<i64> = Scheduler::new(10);
    flowing(&mut s, &[tp("d", 0), tp("d", 1)]);
    s.set_circuit(true);
    assert_eq!(s.pause_changes(), [(tp("d", 0), true), (tp("d", 1), true)]);
    s.drain_for_expiry(&tp("d", 1));
    assert_eq!(s.pause_changes(), [(tp("d", 1), false)]);
    s.push(q("d", 1, 5), None, true, 0);
    assert_eq!(s.reasons(&tp("d", 1)), Some(0), "still draining");
    s.push(q("d", 1, 6), None, false, 0);
    assert_eq!(s.reasons(&tp("d", 1)), Some(CIRCUIT), "drained");
    assert_eq!(s.pause_changes(), [(tp("d", 1), true)]);
    let expired = s.take_ready_where(|o| *o == 5);
    assert_eq!(expired.len(), 1);
    assert_eq!(s.ready_len(), 1);
    // Settling expired records relieves back-pressure too (the circuit
    // is open: nothing is popped).
    s.pause_changes();
    for o in 10..20 {
        s.drain_for_expiry(&tp("d", 1));
        s.push(q("d", 1, o), None, true, 0);
    }
    assert_eq!(
        s.reasons(&tp("d", 1)).map(|r| r & BACKPRESSURE),
        Some(BACKPRESSURE)
    );
    assert_eq!(s.take_ready_where(|o| *o >= 10).len(), 10);
    assert_eq!(s.reasons(&tp("d", 1)).map(|r| r & BACKPRESSURE), Some(0));
    // Newly assigned partitions follow the open circuit.
    s.pause_changes();
    s.assign([tp("d", 2)]);
    assert!(s.restored(&[tp("d", 2)]).is_empty());
    assert_eq!(s.reasons(&tp("d", 2)), Some(CIRCUIT));
    assert!(
        s.pause_changes().is_empty(),
        "not paused before its first record"
    );
    s.received(&tp("d", 2));
    assert_eq!(s.pause_changes(), [(tp("d", 2), true)]);
    s.set_circuit(false);
    // (d/1 was still draining, so flowing already.)
    assert_eq!(
        s.pause_changes(),
        [(tp("d", 0), false), (tp("d", 2), false)]
    );
}

#[test]
fn a_full_ready_queue_pauses_intake_until_half_empty() {
    let mut s: Scheduler<i64> = Scheduler::new(4);
    flowing(&mut s, &[tp("d", 0)]);
    for o in 0..4 {
        s.push(q("d", 0, o), None, false, 0);
    }
    assert_eq!(s.pause_changes(), [(tp("d", 0), true)]);
    s.pop_ready();
    assert!(s.pause_changes().is_empty(), "3 left, above half");
    s.pop_ready();
    assert_eq!(s.pause_changes(), [(tp("d", 0), false)]);
}

#[test]
fn revoke_drops_queued_work_of_those_partitions_only() {
    let mut s: Scheduler<i64> = Scheduler::new(10);
    flowing(&mut s, &[tp("d", 0), tp("r", 0)]);
    s.push(q("d", 0, 1), None, false, 0);
    s.push(q("r", 0, 1), Some(100), false, 0);
    s.push(q("d", 1, 1), None, false, 0); // partition not tracked: kept
    assert_eq!(s.revoke(&[tp("d", 0), tp("r", 0)]), 2);
    assert_eq!(s.ready_len(), 1);
    assert_eq!(s.held_len(), 0);
    assert!(!s.is_assigned(&tp("d", 0)));
}
