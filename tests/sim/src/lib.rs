//! # feltbog-sim: the deterministic simulation of sync (DESIGN §8)
//!
//! One seed drives everything: several devices (real encrypted [`Store`]s in SQLite files) and
//! the server's real sync logic ([`feltbog_server::sync`] over its real SQLite database) run in
//! one thread, over a simulated network and simulated clocks. The seed chooses the workload —
//! creates, field edits on shared citizens and visits, set additions and removals, archive,
//! conflict resolutions — the sync schedule, and the faults: requests dropped, duplicated,
//! delayed and delivered out of order, responses lost after the server committed, stale
//! responses applied again, partitions, device crashes (in the middle of applying a response,
//! too) that lose everything not committed, server crashes before commit and restarts, clock
//! skew and jumps on devices and server.
//!
//! After the run the network heals and every device syncs until nothing moves; then
//! `checks` verifies the properties of DESIGN §5 (convergence, no lost saved edit,
//! idempotence, monotonic cursors, causality beats clocks, the skew bound, the outbox drained,
//! scope). Nothing in a run reads the real clock or depends on thread timing, so a failing seed
//! fails again the same way: [`Failure`] prints the one command that replays it.
//!
//! [`feltbog_core::sim`] can plant known bugs in the real code; `tests/planted.rs` shows every
//! one is caught.
//!
//! [`Store`]: feltbog_core::store::Store

mod checks;
mod workload;
mod world;

pub use feltbog_core::sim::PlantedBug;

use std::fmt;

/// What one run does.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Workload and fault steps before the network heals.
    pub steps: u32,
    /// A known bug to plant in the real code for this run.
    pub bug: Option<PlantedBug>,
    /// Keep a line per event (printed with a failure, or by the replay command).
    pub trace: bool,
}

impl Config {
    /// The configuration CI runs for `seed`.
    pub fn new(seed: u64) -> Config {
        Config {
            seed,
            steps: DEFAULT_STEPS,
            bug: None,
            trace: false,
        }
    }
}

/// Steps per seed in CI: enough for a few hundred edits, syncs and faults across four devices.
pub const DEFAULT_STEPS: u32 = 120;

/// Counts from one run, to see that seeds exercise what they should.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub edits: u64,
    pub syncs: u64,
    pub round_trips: u64,
    pub faults: u64,
    pub device_crashes: u64,
    pub server_restarts: u64,
    /// Conflict records the server raised (concurrent edits of one field).
    pub conflicts_raised: u64,
    /// Conflicts a device resolved or dismissed.
    pub conflicts_settled: u64,
    pub restamped: u64,
    /// Replays that differed from the applied version (re-stamped after an old copy got
    /// through), answered by re-sending the applied version.
    pub replays_resent: u64,
    /// Tablets revoked (each erased itself and was replaced by a new one).
    pub devices_revoked: u64,
    /// Closed cases the retention rules took off the devices, and purged from the server.
    pub cases_off_devices: u64,
    pub cases_purged: u64,
}

impl Stats {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &Stats) {
        self.edits += other.edits;
        self.syncs += other.syncs;
        self.round_trips += other.round_trips;
        self.faults += other.faults;
        self.device_crashes += other.device_crashes;
        self.server_restarts += other.server_restarts;
        self.conflicts_raised += other.conflicts_raised;
        self.conflicts_settled += other.conflicts_settled;
        self.restamped += other.restamped;
        self.replays_resent += other.replays_resent;
        self.devices_revoked += other.devices_revoked;
        self.cases_off_devices += other.cases_off_devices;
        self.cases_purged += other.cases_purged;
    }
}

/// A property that did not hold, with what is needed to replay it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub bug: Option<PlantedBug>,
    pub steps: u32,
    /// The property of DESIGN §5 that failed.
    pub property: &'static str,
    pub detail: String,
    /// The run's events, when the run kept a trace.
    pub trace: Vec<String>,
}

impl Failure {
    /// The one command that replays this run with its trace.
    pub fn replay_command(&self) -> String {
        replay_command(self.seed, self.steps, self.bug)
    }
}

/// The command that replays `seed` (with a trace of every event).
pub fn replay_command(seed: u64, steps: u32, bug: Option<PlantedBug>) -> String {
    let mut cmd = format!("cargo run -p feltbog-sim -- --seed {seed} --trace");
    if steps != DEFAULT_STEPS {
        cmd.push_str(&format!(" --steps {steps}"));
    }
    if let Some(bug) = bug {
        cmd.push_str(&format!(" --plant {}", bug_name(bug)));
    }
    cmd
}

/// The command-line name of a planted bug.
pub fn bug_name(bug: PlantedBug) -> &'static str {
    match bug {
        PlantedBug::CursorBeforeApply => "cursor-before-apply",
        PlantedBug::ConflictLoserDropped => "conflict-loser-dropped",
        PlantedBug::PushNotIdempotent => "push-not-idempotent",
        PlantedBug::WallClockStamps => "wall-clock-stamps",
        PlantedBug::SkewUnchecked => "skew-unchecked",
        PlantedBug::CursorRewind => "cursor-rewind",
        PlantedBug::ScopeLeak => "scope-leak",
        PlantedBug::AuthorNotSet => "author-not-set",
        PlantedBug::FieldsUnchecked => "fields-unchecked",
        PlantedBug::ReferencesUnscoped => "references-unscoped",
        PlantedBug::SetRemoveDropsConcurrentAdd => "set-remove-drops-concurrent-add",
        PlantedBug::PullSkipsPageAfterCrash => "pull-skips-page-after-crash",
        PlantedBug::EraseDropsOthersPending => "erase-drops-others-pending",
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} failed: {}: {}",
            self.seed, self.property, self.detail
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: {}", self.replay_command())
    }
}

/// A run in which every property held.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    /// The run's events, when the run kept a trace.
    pub trace: Vec<String>,
    /// Every row of every table of the server's database at the end, as text, table by table:
    /// the same seed gives the same database (ids and secrets are drawn from the seed too).
    pub server_rows: Vec<String>,
}

/// Runs one seed to the end and checks every property. The planted bug (if any) is switched on
/// for this thread only, and off again afterwards.
pub fn run(config: &Config) -> Result<Outcome, Box<Failure>> {
    feltbog_core::sim::plant(config.bug);
    // The server's ids and secrets from the seed too: a replay is the same run, byte for byte.
    feltbog_core::sim::seed_random(Some(config.seed ^ 0x0001_D50F_5EED));
    let result = world::World::new(config).and_then(|mut world| {
        world.play(config.steps)?;
        world.heal()?;
        checks::all(&mut world)?;
        let mut env = world.env.borrow_mut();
        let server_rows = dump(&env.server).map_err(|e| world::broken("server", e))?;
        Ok(Outcome {
            stats: env.stats.clone(),
            trace: env.trace.take().unwrap_or_default(),
            server_rows,
        })
    });
    feltbog_core::sim::plant(None);
    feltbog_core::sim::set_fail_points(None);
    feltbog_core::sim::seed_random(None);
    result.map_err(|failure| {
        Box::new(Failure {
            seed: config.seed,
            bug: config.bug,
            steps: config.steps,
            property: failure.property,
            detail: failure.detail,
            trace: failure.trace,
        })
    })
}

/// Every row of every table, in a fixed order, as text. Not refinery's migration history: it
/// records when each migration ran, by the wall clock, which no seed decides.
fn dump(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
               AND name <> 'refinery_schema_history' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\""))?;
        let columns = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                (0..columns)
                    .map(|i| r.get_ref(i).map(|v| format!("{v:?}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|values| format!("{table}: {}", values.join(" | ")))
            })?
            .collect::<Result<_, _>>()?;
        rows.sort();
        out.extend(rows);
    }
    Ok(out)
}

/// Runs `seeds` (with the CI configuration otherwise); returns the summed stats or the first
/// failure.
pub fn run_range(seeds: std::ops::Range<u64>) -> Result<Stats, Box<Failure>> {
    let mut total = Stats::default();
    for seed in seeds {
        total.add(&run(&Config::new(seed))?.stats);
    }
    Ok(total)
}

/// A failed property inside a run (the run adds seed and replay information).
#[derive(Debug)]
pub(crate) struct Broken {
    pub property: &'static str,
    pub detail: String,
    pub trace: Vec<String>,
}
