//! Tests of [`super`]: filters, states, replay and discard plans.

use super::*;

fn letter(p: i32, o: i64, id: &str, ty: &str, dead_at: i64, status: i32) -> Candidate {
    Candidate {
        partition: p,
        offset: o,
        event_id: id.into(),
        event_type: Some(ty.into()),
        reason: if status >= 500 {
            "exhausted"
        } else {
            "permanent"
        }
        .into(),
        dead_at,
        last_error_class: Some(format!("http-{}xx", status / 100)),
        last_status: Some(status),
        poison: false,
    }
}

fn action(kind: ActionKind, dest: &str, p: i32, o: i64, at: i64) -> DlqAction {
    DlqAction {
        action: kind,
        destination: dest.into(),
        event_id: "x".into(),
        dlq_partition: p,
        dlq_offset: o,
        at,
        by: "ana".into(),
        reason: None,
        to_topic: None,
    }
}

fn cands() -> Vec<Candidate> {
    vec![
        letter(0, 0, "a", "order.paid", 1_000, 400),
        letter(1, 0, "b", "order.paid", 2_000, 503),
        letter(0, 1, "c", "user.created", 3_000, 400),
        letter(2, 0, "d", "user.created", 4_000, 503),
    ]
}

fn ids(c: &[Candidate], idx: &[usize]) -> Vec<String> {
    idx.iter().map(|i| c[*i].event_id.clone()).collect()
}

#[test]
fn filters_combine() {
    let c = cands();
    let sel = |f: Filter| -> Vec<String> {
        c.iter()
            .filter(|x| f.matches(x))
            .map(|x| x.event_id.clone())
            .collect()
    };
    assert_eq!(sel(Filter::default()), ["a", "b", "c", "d"]);
    let by_type = Filter {
        event_type: Some("user.created".into()),
        ..Filter::default()
    };
    assert_eq!(sel(by_type.clone()), ["c", "d"]);
    assert_eq!(
        sel(Filter {
            status: Some(503),
            ..by_type.clone()
        }),
        ["d"]
    );
    assert_eq!(
        sel(Filter {
            error_class: Some("http-4xx".into()),
            ..Filter::default()
        }),
        ["a", "c"]
    );
    assert_eq!(
        sel(Filter {
            since: Some(2_000),
            until: Some(3_000),
            ..Filter::default()
        }),
        ["b", "c"]
    );
    assert_eq!(
        sel(Filter {
            reason: Some("exhausted".into()),
            ids: vec!["a".into(), "b".into()],
            ..Filter::default()
        }),
        ["b"]
    );
    let f = Filter {
        ids: vec!["a".into(), "zz".into(), "zz".into()],
        ..Filter::default()
    };
    assert_eq!(f.unknown_ids(&c), ["zz"]);
}

#[test]
fn replay_skips_replayed_and_discarded_letters_unless_forced() {
    let c = cands();
    let acts = Actions::new(
        "crm",
        [
            action(ActionKind::Replay, "crm", 0, 0, 5),
            action(ActionKind::Discard, "crm", 1, 0, 6),
            // Another destination's letter at the same place.
            action(ActionKind::Discard, "other", 0, 1, 7),
        ],
    );
    assert_eq!(acts.state(0, 0), State::Replayed);
    assert_eq!(acts.state(1, 0), State::Discarded);
    assert_eq!(acts.state(0, 1), State::Dead);
    let p = plan_replay(&c, &Filter::default(), &acts, false);
    assert_eq!(ids(&c, &p.chosen), ["c", "d"]);
    assert_eq!(p.matched, 4);
    assert_eq!(
        p.skipped,
        [(0, Skip::AlreadyReplayed, None), (1, Skip::Discarded, None)]
    );
    // --force replays a replayed letter again, never a discarded one.
    let p = plan_replay(&c, &Filter::default(), &acts, true);
    assert_eq!(ids(&c, &p.chosen), ["a", "c", "d"]);
    assert_eq!(p.skipped, [(1, Skip::Discarded, None)]);
    // A replayed-then-discarded letter is discarded.
    let acts = Actions::new(
        "crm",
        [
            action(ActionKind::Discard, "crm", 0, 0, 9),
            action(ActionKind::Replay, "crm", 0, 0, 5),
        ],
    );
    assert_eq!(acts.state(0, 0), State::Discarded);
    assert_eq!(acts.of(0, 0)[0].at, 5, "in time order");
}

#[test]
fn an_event_is_replayed_once_per_run() {
    let mut c = cands();
    // "a" dead-lettered twice (newest last), listed twice with --id.
    c.push(letter(1, 1, "a", "order.paid", 5_000, 400));
    let f = Filter {
        ids: vec!["a".into(), "a".into(), "b".into()],
        ..Filter::default()
    };
    let p = plan_replay(&c, &f, &Actions::default(), false);
    assert_eq!(p.chosen, [1, 4]);
    assert_eq!(p.skipped, [(0, Skip::Duplicate, Some(4))]);
    assert_eq!(p.matched, 3);
    // The older letter was replayed before: only the newer one is due.
    let acts = Actions::new("crm", [action(ActionKind::Replay, "crm", 0, 0, 1)]);
    let p = plan_replay(&c, &f, &acts, false);
    assert_eq!(p.chosen, [1, 4]);
    assert_eq!(p.skipped, [(0, Skip::AlreadyReplayed, None)]);
}

#[test]
fn poison_is_never_replayed_but_can_be_discarded() {
    let mut c = cands();
    c[3].poison = true;
    c[3].event_type = None;
    let p = plan_replay(&c, &Filter::default(), &Actions::default(), true);
    assert_eq!(p.skipped_as(Skip::Poison).collect::<Vec<_>>(), [3]);
    let p = plan_discard(&c, &Filter::default(), &Actions::default());
    assert_eq!(p.chosen, [0, 1, 2, 3]);
}

#[test]
fn discard_skips_discarded_letters_only() {
    let c = cands();
    let acts = Actions::new(
        "crm",
        [
            action(ActionKind::Replay, "crm", 0, 0, 5),
            action(ActionKind::Discard, "crm", 1, 0, 6),
        ],
    );
    let f = Filter {
        event_type: Some("order.paid".into()),
        ..Filter::default()
    };
    let p = plan_discard(&c, &f, &acts);
    assert_eq!(p.chosen, [0]);
    assert_eq!(p.skipped, [(1, Skip::AlreadyDiscarded, None)]);
}
