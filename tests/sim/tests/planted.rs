//! The simulation's checks can fail: each known bug, planted in the real code, is caught within
//! a bounded number of seeds — and the run that catches it names the broken property.

use feltbog_sim::{Config, PlantedBug, bug_name, run};

/// Every planted bug must be caught within this many seeds (they are caught within the first
/// few; the bound leaves room for workload changes without hiding a blind spot).
const BOUND: u64 = 100;

/// Runs seeds until `bug` is caught; the failure must name one of `expected` properties (the
/// one the bug breaks, or the first symptom it must show).
fn caught_within_bound(bug: PlantedBug, expected: &[&str]) {
    for seed in 0..BOUND {
        let config = Config {
            bug: Some(bug),
            ..Config::new(seed)
        };
        if let Err(failure) = run(&config) {
            println!(
                "{}: caught at seed {seed} (after {} seeds) by \"{}\"",
                bug_name(bug),
                seed + 1,
                failure.property
            );
            assert!(
                expected.contains(&failure.property),
                "{} was caught, but by an unexpected check: {failure}",
                bug_name(bug)
            );
            return;
        }
    }
    panic!("{} was not caught within {BOUND} seeds", bug_name(bug));
}

#[test]
fn cursor_advanced_before_the_page_is_applied_is_caught() {
    // The page is lost: the device misses records (convergence), holds a change to a record
    // whose creation it never got and cannot read it (store), or a citizen moved away whose
    // erasure was on the lost page (scope).
    caught_within_bound(
        PlantedBug::CursorBeforeApply,
        &["convergence", "store", "scope"],
    );
}

#[test]
fn a_dropped_conflict_loser_is_caught() {
    caught_within_bound(PlantedBug::ConflictLoserDropped, &["no lost saved edit"]);
}

#[test]
fn a_push_that_is_not_idempotent_is_caught() {
    caught_within_bound(PlantedBug::PushNotIdempotent, &["idempotence"]);
}

#[test]
fn wall_clock_stamps_instead_of_hlc_are_caught() {
    // An edit made after seeing another orders before it; devices that saw different orders
    // disagree, or an edit is lost.
    caught_within_bound(
        PlantedBug::WallClockStamps,
        &[
            "causality beats clocks",
            "convergence",
            "no lost saved edit",
        ],
    );
}

#[test]
fn a_server_that_accepts_any_clock_is_caught() {
    caught_within_bound(PlantedBug::SkewUnchecked, &["skew bound"]);
}

#[test]
fn a_cursor_that_moves_back_is_caught() {
    caught_within_bound(PlantedBug::CursorRewind, &["monotonic cursor"]);
}

#[test]
fn a_pull_that_leaks_another_team_is_caught() {
    caught_within_bound(PlantedBug::ScopeLeak, &["scope"]);
}

#[test]
fn a_set_remove_that_drops_a_concurrent_add_is_caught() {
    // The add is gone though no remove had seen it (the reference model), or the device that
    // made the add and the server disagree about the set.
    caught_within_bound(
        PlantedBug::SetRemoveDropsConcurrentAdd,
        &["no lost saved edit", "convergence"],
    );
}

#[test]
fn a_pull_that_skips_a_page_after_a_crash_is_caught() {
    caught_within_bound(
        PlantedBug::PullSkipsPageAfterCrash,
        &["convergence", "store"],
    );
}

#[test]
fn an_erase_that_drops_other_citizens_pending_edits_is_caught() {
    // The device's own record of what it saved: those edits never reached the server and
    // were not set aside.
    caught_within_bound(PlantedBug::EraseDropsOthersPending, &["no lost saved edit"]);
}

/// The same seed gives the same run, event for event: a failing seed replays exactly.
#[test]
fn a_seed_replays_exactly() {
    let config = Config {
        trace: true,
        ..Config::new(7)
    };
    let first = run(&config).expect("seed 7 passes");
    let second = run(&config).expect("seed 7 passes");
    assert!(first.trace.len() > 50, "the run did things");
    assert_eq!(first.trace, second.trace);
    // Byte for byte on the server: every row of every table, tokens' hashes and the audit
    // chain included (ids and secrets come from the seed). Devices' files differ: their keys
    // and nonces come from the operating system, as they must.
    assert!(first.server_rows.len() > 100, "the server holds the run");
    assert!(first.server_rows.iter().any(|r| r.starts_with("audit: ")));
    assert_eq!(first.server_rows, second.server_rows);
    let other = run(&Config {
        trace: true,
        ..Config::new(8)
    })
    .expect("seed 8 passes");
    assert_ne!(
        first.server_rows, other.server_rows,
        "another seed, another run"
    );
}

/// The checks really look: a planted bug's failure carries the replay command with the bug.
#[test]
fn a_failure_prints_the_command_that_replays_it() {
    let config = Config {
        bug: Some(PlantedBug::PushNotIdempotent),
        ..Config::new(0)
    };
    let failure = run(&config).expect_err("the planted bug is caught at seed 0");
    let text = failure.to_string();
    assert!(
        text.ends_with(
            "replay: cargo run -p feltbog-sim -- --seed 0 --trace --plant push-not-idempotent"
        ),
        "{text}"
    );
}
