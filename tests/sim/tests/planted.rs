//! The simulation's checks can fail: each known bug, planted in the real code, is caught within
//! a bounded number of seeds — and the run that catches it names the broken property.

use feltbog_sim::{Config, PlantedBug, bug_name, run};

/// Every planted bug must be caught within this many seeds (they are caught within the first
/// few; the bound leaves room for workload changes without hiding a blind spot).
const BOUND: u64 = 100;

fn caught_within_bound(bug: PlantedBug) {
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
            return;
        }
    }
    panic!("{} was not caught within {BOUND} seeds", bug_name(bug));
}

#[test]
fn cursor_advanced_before_the_page_is_applied_is_caught() {
    caught_within_bound(PlantedBug::CursorBeforeApply);
}

#[test]
fn a_dropped_conflict_loser_is_caught() {
    caught_within_bound(PlantedBug::ConflictLoserDropped);
}

#[test]
fn a_push_that_is_not_idempotent_is_caught() {
    caught_within_bound(PlantedBug::PushNotIdempotent);
}

#[test]
fn wall_clock_stamps_instead_of_hlc_are_caught() {
    caught_within_bound(PlantedBug::WallClockStamps);
}

#[test]
fn a_server_that_accepts_any_clock_is_caught() {
    caught_within_bound(PlantedBug::SkewUnchecked);
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
