//! The simulated world: devices with skewable clocks, the server's sync logic over its own
//! SQLite file, and a network that drops, delays, duplicates and cuts.
//!
//! Everything random comes from one [`SplitMix`] seeded by the run's seed, and nothing reads the
//! real clock, so a seed replays exactly.

use crate::{Broken, Config, Stats};
use feltbog_core::crypto::{KdfParams, Passphrase};
use feltbog_core::dataset::SplitMix;
use feltbog_core::hlc::{DEFAULT_MAX_DRIFT_MS, DeviceId, WallClock};
use feltbog_core::keystore::NoPlatformSecret;
use feltbog_core::protocol::{EnrolRequest, EnrolResponse, SyncRequest, SyncResponse};
use feltbog_core::sim::FailPoint;
use feltbog_core::store::{CreateOptions, Store, StoreError};
use feltbog_core::sync::{self, Retry, SyncError, Transport, TransportError, WireBytes};
use feltbog_server::{admin, identity};
use rusqlite::Connection;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Fault-free sync rounds after healing, half a minute apart, before liveness fails.
const HEAL_ROUNDS: u32 = 30;

/// How many recent responses a device may be handed again.
const RECENT_RESPONSES: usize = 3;

/// Simulated time starts here (2026-09-21), so records' dates look like real ones.
pub(crate) const START_MS: u64 = 1_790_000_000_000;
const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// `(team index, device name)`: two devices share team 0 with one worker each, a third is a
/// second worker of team 0, a fourth is in team 1 (and must never see team 0's records).
const DEVICES: [(usize, &str); 4] = [(0, "a"), (0, "b"), (0, "c"), (1, "x")];

/// A device's clock: simulated time plus the device's own (changing) error.
pub(crate) struct SimClock {
    global: Arc<AtomicU64>,
    offset_ms: AtomicI64,
}

impl WallClock for SimClock {
    fn now_ms(&self) -> u64 {
        (self.global.load(Ordering::Relaxed) as i64 + self.offset_ms.load(Ordering::Relaxed)).max(0)
            as u64
    }
}

/// One tablet. `store` is `None` while the device is crashed.
pub(crate) struct Device {
    pub name: &'static str,
    pub team: usize,
    pub worker: Uuid,
    pub path: PathBuf,
    pub store: Option<Store>,
    pub clock: Arc<SimClock>,
    /// The highest cursor seen, to check cursors never move back.
    pub last_cursor: u64,
}

/// What the simulation decides at the code's fail points.
#[derive(Default)]
pub(crate) struct FailPlan {
    /// Fail the server's next commit.
    server_crash: Cell<bool>,
    /// Fail the device's n-th response application from now (1 = the next).
    device_apply_countdown: Cell<Option<u32>>,
    /// Fail the device's next save before it commits.
    pub device_save_crash: Cell<bool>,
    /// Fail the device's next re-stamping before it commits.
    device_restamp_crash: Cell<bool>,
}

/// Everything the network touches: shared by the world and the transport through a `RefCell`.
pub(crate) struct Env {
    pub rng: SplitMix,
    pub global: Arc<AtomicU64>,
    pub server: Connection,
    pub server_dir: PathBuf,
    pub server_offset_ms: i64,
    pub tokens: Vec<String>,
    pub teams: Vec<Uuid>,
    pub partitioned_until: Vec<u64>,
    /// Requests held back by the network, delivered later (or never).
    pub inflight: Vec<(usize, SyncRequest)>,
    /// Every request the server answered, for the idempotence check.
    pub delivered: Vec<(usize, SyncRequest)>,
    /// The last few responses each device received that carried something (acks or changes),
    /// to deliver again, late and out of order.
    pub recent_responses: Vec<Vec<SyncResponse>>,
    /// `(device, seq)` the server has applied, as far as the simulation saw.
    pub applied: BTreeSet<(DeviceId, u64)>,
    pub trace: Option<Vec<String>>,
    pub stats: Stats,
    /// A property broken inside a round trip (scope, skew bound), reported after the step.
    pub broken: Option<(&'static str, String)>,
    /// Each device's team now (index into `teams`): a worker may be moved to the other team.
    pub device_team: Vec<usize>,
    pub plan: Rc<FailPlan>,
}

impl Env {
    pub fn server_now(&self) -> u64 {
        (self.global.load(Ordering::Relaxed) as i64 + self.server_offset_ms).max(0) as u64
    }

    pub fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            let t = self.global.load(Ordering::Relaxed) - START_MS;
            trace.push(format!("t+{t:>8} ms  {}", line()));
        }
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    /// Drops the server's connection and opens the file again: nothing survives but what was
    /// committed (the server keeps no other state).
    pub fn restart_server(&mut self) -> Result<(), Broken> {
        let conn = feltbog_server::db::open(&self.server_dir).map_err(|e| broken("server", e))?;
        self.server = conn;
        self.stats.server_restarts += 1;
        self.log(|| "server restarts".into());
        Ok(())
    }

    /// One request through the server's real authentication and sync logic. `crash` fails the
    /// commit (the server then restarts). Checks scope and the skew bound on the way.
    fn serve(
        &mut self,
        device: usize,
        request: &SyncRequest,
        crash: bool,
    ) -> Result<SyncResponse, TransportError> {
        let now = self.server_now();
        let caller = match identity::check_token(&self.server, &self.tokens[device]) {
            Ok(Ok(caller)) => caller,
            // As the HTTP layer answers a revoked device: erase your data.
            Ok(Err(identity::Denied::Revoked)) => {
                return Err(TransportError::Refused {
                    status: 401,
                    code: Some(feltbog_core::protocol::ErrorCode::Unauthorized),
                    message: "revoked".into(),
                    wipe: true,
                    retry_after_ms: None,
                });
            }
            _ => return Err(refused(401, "unknown token")),
        };
        self.plan.server_crash.set(crash);
        let result = feltbog_server::sync::sync(
            &mut self.server,
            &caller,
            request,
            now,
            DEFAULT_MAX_DRIFT_MS,
        );
        self.plan.server_crash.set(false);
        let response = match result {
            Ok(response) => response,
            Err(e) if crash => {
                self.log(|| format!("server fails before commit ({e})"));
                self.restart_server().map_err(|b| refused(500, &b.detail))?;
                return Err(refused(500, "internal error"));
            }
            Err(e) => {
                // A real server error: a bug, not a simulated fault.
                if self.broken.is_none() {
                    self.broken = Some(("server", e.to_string()));
                }
                return Err(refused(500, "internal error"));
            }
        };
        self.delivered.push((device, request.clone()));
        for m in &request.mutations {
            if !response.acked.contains(&m.device_seq)
                || !self.applied.insert((m.device_id, m.device_seq))
            {
                continue;
            }
            for op in &m.ops {
                let ahead = op.hlc.wall_ms().saturating_sub(now);
                if ahead > DEFAULT_MAX_DRIFT_MS && self.broken.is_none() {
                    self.broken = Some((
                        "skew bound",
                        format!(
                            "the server accepted {} seq {} stamped {ahead} ms ahead of its clock",
                            DEVICES[device].1, m.device_seq
                        ),
                    ));
                }
            }
        }
        for (seq, m) in &response.pull.changes {
            let Some(op) = m.ops.first() else { continue };
            let team: Option<Vec<u8>> = self
                .server
                .query_row(
                    "SELECT team_id FROM records WHERE entity = ?1 AND record_id = ?2",
                    rusqlite::params![op.entity.as_str(), &op.id.as_bytes()[..]],
                    |r| r.get(0),
                )
                .ok();
            let team_of_device = self.teams[self.device_team[device]];
            if team.as_deref() != Some(&team_of_device.as_bytes()[..]) && self.broken.is_none() {
                self.broken = Some((
                    "scope",
                    format!(
                        "device {} pulled change {seq} ({} {}) of another team",
                        DEVICES[device].1, op.entity, op.id
                    ),
                ));
            }
        }
        Ok(response)
    }
}

fn refused(status: u16, message: &str) -> TransportError {
    TransportError::Refused {
        status,
        code: None,
        message: message.to_owned(),
        wipe: false,
        retry_after_ms: None,
    }
}

pub(crate) fn broken(property: &'static str, detail: impl std::fmt::Display) -> Broken {
    Broken {
        property,
        detail: detail.to_string(),
        trace: Vec::new(),
    }
}

/// A device's connection to the simulated network.
struct Port<'a> {
    env: &'a RefCell<Env>,
    device: usize,
    faulty: bool,
}

/// What happens to a message, as the wire would carry it: JSON both ways.
fn over_the_wire<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &T,
) -> Result<T, TransportError> {
    let bytes = serde_json::to_vec(value).map_err(|e| TransportError::Decode(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| TransportError::Decode(e.to_string()))
}

impl Transport for Port<'_> {
    fn enrol(&self, _request: &EnrolRequest) -> Result<EnrolResponse, TransportError> {
        Err(TransportError::Unreachable(
            "devices are enrolled at set-up".into(),
        ))
    }

    fn sync(
        &self,
        _token: &str,
        request: &SyncRequest,
    ) -> Result<(SyncResponse, WireBytes), TransportError> {
        let mut env = self.env.borrow_mut();
        let env = &mut *env;
        env.stats.round_trips += 1;
        let request = over_the_wire(request)?;
        let name = DEVICES[self.device].1;
        let unreachable = || TransportError::Unreachable("simulated network".into());
        let mut crash = false;
        if self.faulty {
            if env.partitioned_until[self.device] > env.global.load(Ordering::Relaxed) {
                env.log(|| format!("{name}: partitioned, no route to server"));
                return Err(unreachable());
            }
            match env.rng.below(100) {
                0..5 => {
                    env.stats.faults += 1;
                    env.log(|| format!("{name}: request dropped"));
                    return Err(unreachable());
                }
                5..9 => {
                    env.stats.faults += 1;
                    env.log(|| format!("{name}: request delayed in the network"));
                    env.inflight.push((self.device, request));
                    return Err(unreachable());
                }
                9..12 => {
                    env.stats.faults += 1;
                    crash = true;
                }
                _ => {}
            }
        }
        let mut response = env.serve(self.device, &request, crash)?;
        env.log(|| {
            format!(
                "{name}: push {} mutations from cursor {} -> acked {}, rejected {}, pulled {} to {}",
                request.mutations.len(),
                request.cursor,
                response.acked.len(),
                response.rejected.len(),
                response.pull.changes.len(),
                response.pull.next_cursor
            ) + &response
                .rejected
                .iter()
                .map(|r| format!("; seq {} refused ({:?}): {}", r.device_seq, r.reason, r.detail))
                .collect::<String>()
        });
        if self.faulty {
            match env.rng.below(100) {
                0..4 => {
                    env.stats.faults += 1;
                    env.log(|| format!("{name}: request duplicated by the network"));
                    let second = env.serve(self.device, &request, false)?;
                    if env.chance(50) {
                        response = second;
                    }
                }
                4..8 => {
                    env.stats.faults += 1;
                    env.log(|| format!("{name}: a copy of the request will arrive again later"));
                    env.inflight.push((self.device, request.clone()));
                }
                8..13 => {
                    env.stats.faults += 1;
                    env.log(|| format!("{name}: response lost after the server committed"));
                    return Err(unreachable());
                }
                _ => {}
            }
        }
        if !response.acked.is_empty() || !response.pull.changes.is_empty() {
            let recent = &mut env.recent_responses[self.device];
            recent.push(response.clone());
            if recent.len() > RECENT_RESPONSES {
                recent.remove(0);
            }
        }
        Ok((over_the_wire(&response)?, WireBytes::default()))
    }
}

/// The whole simulation state of one run.
pub(crate) struct World {
    pub env: RefCell<Env>,
    pub devices: Vec<Device>,
    /// Keeps the files until the run ends.
    dir: tempfile::TempDir,
    counter: u64,
    seed: u64,
    /// Tablets enrolled so far (new ones replace revoked ones).
    enrolled: u64,
    /// The reference model's ground truth: every edit a device reported saved, as it was saved
    /// (device index, mutation), in the order they were saved.
    pub saved: Vec<(usize, feltbog_core::protocol::Mutation)>,
}

fn passphrase() -> Passphrase {
    Passphrase::new("sim-pin-2468").expect("valid passphrase")
}

/// Scratch space in memory when the machine has it: thousands of small SQLite files per run.
fn scratch_dir() -> Result<tempfile::TempDir, Broken> {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("feltbog-sim-")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("feltbog-sim-").tempdir()
    };
    dir.map_err(|e| broken("set-up", e))
}

/// A new tablet for `worker`: a store at `path`, enrolled with the server as the HTTP layer
/// does it (a code, then the token and the worker's profile).
fn enrol_store(
    env: &mut Env,
    path: &std::path::Path,
    worker: Uuid,
    device_id: DeviceId,
    clock: Arc<SimClock>,
    now: u64,
) -> Result<(Store, String), Broken> {
    let setup = |e: identity::IdentityError| broken("set-up", e);
    let code = identity::issue_enrolment_code(&env.server, worker, now).map_err(setup)?;
    let (caller, token) = identity::enrol(&mut env.server, &code, device_id, now).map_err(setup)?;
    let options = CreateOptions {
        device_id: Some(device_id),
        ..CreateOptions::with_kdf(KdfParams::SIMULATION)
    };
    let mut store =
        Store::create(path, &passphrase(), &options).map_err(|e| broken("set-up", e))?;
    store.set_wall_clock(clock);
    // As the real server answers an enrolment: with the profile (and so the scope epoch) the
    // device starts from.
    let reach =
        feltbog_server::scope::reach(&env.server, &caller).map_err(|e| broken("set-up", e))?;
    let profile = identity::profile(&env.server, &caller, &reach).map_err(setup)?;
    let enrolment = EnrolResponse {
        worker_id: caller.worker_id,
        team_id: caller.team_id,
        token: token.clone(),
        profile: Some(profile),
        standing_token: None,
    };
    store
        .set_enrolment("sim://server", &enrolment)
        .map_err(|e| broken("set-up", e))?;
    Ok((store, token))
}

impl World {
    /// Server with two teams, four enrolled devices, and the fail-point plan installed.
    pub fn new(config: &Config) -> Result<World, Broken> {
        let dir = scratch_dir()?;
        let global = Arc::new(AtomicU64::new(START_MS));
        let server_dir = dir.path().join("server");
        let server = feltbog_server::db::open(&server_dir).map_err(|e| broken("set-up", e))?;
        let setup = |e: identity::IdentityError| broken("set-up", e);
        let teams = vec![
            identity::create_team(&server, "Team Nord", START_MS).map_err(setup)?,
            identity::create_team(&server, "Team Syd", START_MS).map_err(setup)?,
        ];
        let plan = Rc::new(FailPlan::default());
        let decider = plan.clone();
        feltbog_core::sim::set_fail_points(Some(Box::new(move |point| match point {
            FailPoint::ServerSyncBeforeCommit => decider.server_crash.get(),
            FailPoint::DeviceSaveBeforeCommit => decider.device_save_crash.replace(false),
            FailPoint::DeviceRestampBeforeCommit => decider.device_restamp_crash.replace(false),
            FailPoint::DeviceApplyBeforeCommit => match decider.device_apply_countdown.get() {
                Some(1) => {
                    decider.device_apply_countdown.set(None);
                    true
                }
                Some(n) => {
                    decider.device_apply_countdown.set(Some(n - 1));
                    false
                }
                None => false,
            },
        })));
        let mut env = Env {
            rng: SplitMix(config.seed ^ 0x5EED_F317_B06D_0001),
            global: global.clone(),
            server,
            server_dir,
            server_offset_ms: 0,
            tokens: Vec::new(),
            teams: teams.clone(),
            partitioned_until: vec![0; DEVICES.len()],
            inflight: Vec::new(),
            delivered: Vec::new(),
            recent_responses: vec![Vec::new(); DEVICES.len()],
            applied: BTreeSet::new(),
            trace: config.trace.then(Vec::new),
            stats: Stats::default(),
            broken: None,
            device_team: DEVICES.iter().map(|(team, _)| *team).collect(),
            plan,
        };
        let mut devices = Vec::new();
        for (i, (team, name)) in DEVICES.into_iter().enumerate() {
            let worker = identity::create_worker(&env.server, teams[team], name, "outreach")
                .map_err(setup)?;
            // Device ids from the seed: they break HLC ties, so they must replay too.
            let device_id = DeviceId(Uuid::from_u64_pair(config.seed, i as u64 + 1));
            let path = dir.path().join(format!("{name}.feltbog"));
            let clock = Arc::new(SimClock {
                global: global.clone(),
                offset_ms: AtomicI64::new(0),
            });
            let (store, token) =
                enrol_store(&mut env, &path, worker, device_id, clock.clone(), START_MS)?;
            env.tokens.push(token);
            devices.push(Device {
                name,
                team,
                worker,
                path,
                store: Some(store),
                clock,
                last_cursor: 0,
            });
        }
        Ok(World {
            env: RefCell::new(env),
            devices,
            dir,
            counter: 0,
            seed: config.seed,
            enrolled: DEVICES.len() as u64,
            saved: Vec::new(),
        })
    }

    /// A fresh number for unique values and ids.
    pub fn next_number(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    pub fn rng_below(&self, n: u64) -> u64 {
        self.env.borrow_mut().rng.below(n)
    }

    pub fn chance(&self, percent: u64) -> bool {
        self.env.borrow_mut().chance(percent)
    }

    pub fn log(&self, line: impl FnOnce() -> String) {
        self.env.borrow_mut().log(line);
    }

    fn fail(&self, property: &'static str, detail: impl std::fmt::Display) -> Broken {
        let mut b = broken(property, detail);
        b.trace = self.env.borrow_mut().trace.take().unwrap_or_default();
        b
    }

    /// Attaches the trace so far to a failure found elsewhere.
    pub fn with_trace(&self, mut b: Broken) -> Broken {
        b.trace = self.env.borrow_mut().trace.take().unwrap_or_default();
        b
    }

    /// The random walk: edits, syncs and faults.
    pub fn play(&mut self, steps: u32) -> Result<(), Broken> {
        for _ in 0..steps {
            let advance = if self.chance(25) {
                0
            } else {
                self.rng_below(4_000)
            };
            self.env
                .borrow()
                .global
                .fetch_add(advance, Ordering::Relaxed);
            let device = self.rng_below(DEVICES.len() as u64) as usize;
            // A crashed tablet is switched on again when its worker next reaches for it.
            if self.devices[device].store.is_none() {
                self.restart_device(device)?;
                continue;
            }
            match self.rng_below(100) {
                0..42 => crate::workload::edit(self, device)?,
                42..66 => {
                    self.sync_device(device, true)?;
                }
                66..72 => self.deliver_one_delayed()?,
                72..76 => {
                    let until = self.now() + self.rng_below(90_000);
                    self.env.borrow_mut().partitioned_until[device] = until;
                    self.log(|| format!("{}: partitioned", DEVICES[device].1));
                }
                76..81 => self.crash_device(device),
                81..84 => self.env.borrow_mut().restart_server()?,
                84..90 => self.jump_device_clock(device),
                90..92 => {
                    // Steps back as far as the bound: the server's HLC may then run a whole
                    // bound ahead of its wall clock.
                    const STEPS: [i64; 5] = [-5 * MINUTE, -2 * MINUTE, -30_000, 0, 30_000];
                    let offset = STEPS[self.rng_below(STEPS.len() as u64) as usize];
                    self.env.borrow_mut().server_offset_ms = offset;
                    self.log(|| format!("server clock now off by {offset} ms"));
                }
                92..95 => self.apply_old_response_again(device)?,
                95..97 => self.move_a_citizen()?,
                97 if self.chance(40) => self.move_a_worker(device)?,
                98 if self.chance(25) => self.revoke(device)?,
                99 if self.chance(50) => self.run_retention()?,
                _ => crate::workload::edit(self, device)?,
            }
            let found = self.env.borrow_mut().broken.take();
            if let Some((property, detail)) = found {
                return Err(self.fail(property, detail));
            }
        }
        Ok(())
    }

    pub fn now(&self) -> u64 {
        self.env.borrow().global.load(Ordering::Relaxed)
    }

    fn jump_device_clock(&mut self, device: usize) {
        const JUMPS: [i64; 9] = [
            -3 * DAY,
            -20 * MINUTE,
            -2 * MINUTE,
            -3_000,
            0,
            3_000,
            2 * MINUTE,
            20 * MINUTE,
            3 * DAY,
        ];
        // Three jumps in ten land just past the skew bound, where a refused edit's old copy can
        // become acceptable again within seconds.
        let offset = if self.chance(30) {
            DEFAULT_MAX_DRIFT_MS as i64 + self.rng_below(10_000) as i64
        } else {
            JUMPS[self.rng_below(JUMPS.len() as u64) as usize]
        };
        self.devices[device]
            .clock
            .offset_ms
            .store(offset, Ordering::Relaxed);
        self.log(|| format!("{}: clock now off by {offset} ms", DEVICES[device].1));
    }

    /// The retention rules run with no grace (0 days): every closed case (an archived citizen)
    /// leaves the devices, and half the time is purged from the server too (its content
    /// deleted, only ids kept).
    fn run_retention(&mut self) -> Result<(), Broken> {
        let purge = self.chance(50);
        let mut env = self.env.borrow_mut();
        let now = env.server_now();
        let rules = feltbog_server::sync::Retention {
            device_days: Some(0),
            purge_days: purge.then_some(0),
        };
        let report = feltbog_server::sync::apply_retention(&mut env.server, rules, now)
            .map_err(|e| broken("server", e))?;
        env.stats.cases_off_devices += report.off_devices as u64;
        env.stats.cases_purged += report.purged as u64;
        env.log(|| {
            format!(
                "retention: {} case(s) off devices, {} purged",
                report.off_devices, report.purged
            )
        });
        Ok(())
    }

    /// An administrator revokes a device (lost or stolen): on its next request it is told to
    /// erase itself.
    fn revoke(&mut self, device: usize) -> Result<(), Broken> {
        let Some(store) = &self.devices[device].store else {
            return Ok(());
        };
        let id = store.device_id();
        let mut env = self.env.borrow_mut();
        let now = env.server_now();
        admin::revoke_device(&mut env.server, id, now).map_err(|e| broken("server", e))?;
        drop(env);
        self.log(|| format!("admin revokes {}'s tablet", DEVICES[device].1));
        Ok(())
    }

    /// The revoked device erased itself, as the app does (`Store::destroy`, files deleted):
    /// what it had not synced is gone by design — its worker no longer had the right to send
    /// it — and leaves the reference model. The worker gets a new tablet, enrolled afresh.
    fn replace_revoked(&mut self, device: usize, store: Store) -> Result<(), Broken> {
        let old = store.device_id();
        let path = self.devices[device].path.clone();
        store.destroy().map_err(|e| broken("store", e))?;
        feltbog_core::store::remove_files(&path).map_err(|e| broken("store", e))?;
        let applied: BTreeSet<u64> = {
            let env = self.env.borrow();
            feltbog_server::sync::change_log(&env.server)
                .map_err(|e| broken("server", e))?
                .into_iter()
                .filter(|c| c.mutation.device_id == old)
                .map(|c| c.mutation.device_seq)
                .collect()
        };
        let before = self.saved.len();
        self.saved
            .retain(|(_, m)| m.device_id != old || applied.contains(&m.device_seq));
        let unsynced = before - self.saved.len();
        self.enrolled += 1;
        let n = self.enrolled;
        let name = DEVICES[device].1;
        let path = self.dir.path().join(format!("{name}-{n}.feltbog"));
        let worker = self.devices[device].worker;
        let clock = self.devices[device].clock.clone();
        let device_id = DeviceId(Uuid::from_u64_pair(self.seed, n));
        let (store, token) = {
            let mut env = self.env.borrow_mut();
            let env = &mut *env;
            let now = env.server_now();
            enrol_store(env, &path, worker, device_id, clock, now)?
        };
        {
            let mut env = self.env.borrow_mut();
            env.tokens[device] = token;
            env.recent_responses[device].clear();
            env.stats.devices_revoked += 1;
        }
        let d = &mut self.devices[device];
        d.store = Some(store);
        d.path = path;
        d.last_cursor = 0;
        self.log(|| {
            format!("{name}: revoked, erased itself ({unsynced} unsynced edits gone by design); a new tablet is enrolled")
        });
        Ok(())
    }

    /// The device loses everything not committed: its open handle, keys and clock in memory.
    pub fn crash_device(&mut self, device: usize) {
        self.devices[device].store = None;
        self.env.borrow_mut().stats.device_crashes += 1;
        self.log(|| format!("{}: crashes", DEVICES[device].1));
    }

    /// Opens the device's file again and unlocks it, as the app does after a restart.
    pub fn restart_device(&mut self, device: usize) -> Result<(), Broken> {
        let d = &mut self.devices[device];
        let mut store = Store::open(&d.path, Arc::new(NoPlatformSecret))
            .map_err(|e| broken("device restart", e))?;
        store.set_wall_clock(d.clock.clone());
        store
            .unlock(&passphrase())
            .map_err(|e| broken("device restart", e))?;
        d.store = Some(store);
        self.log(|| format!("{}: restarts", DEVICES[device].1));
        self.check_cursor(device)
    }

    fn check_cursor(&mut self, device: usize) -> Result<(), Broken> {
        let d = &mut self.devices[device];
        let Some(store) = &d.store else { return Ok(()) };
        let cursor = store.sync_status().map_err(|e| broken("store", e))?.cursor;
        // Following a scope change, the device pulls its new scope from the start: the one
        // time its cursor goes back, by design (feltbog_core::store::Rescope).
        if store.rescope_state().map_err(|e| broken("store", e))?
            == feltbog_core::store::Rescope::Repulling
        {
            d.last_cursor = cursor;
            return Ok(());
        }
        if cursor < d.last_cursor {
            let detail = format!(
                "{}'s cursor moved back from {} to {cursor}",
                d.name, d.last_cursor
            );
            return Err(self.fail("monotonic cursor", detail));
        }
        d.last_cursor = cursor;
        Ok(())
    }

    /// One `sync_now` of a device. With `faulty`, the network may fail it at any point and the
    /// device may crash while applying a response.
    pub fn sync_device(&mut self, device: usize, faulty: bool) -> Result<sync::SyncReport, Broken> {
        let Some(mut store) = self.devices[device].store.take() else {
            return Ok(Default::default());
        };
        let name = DEVICES[device].1;
        if faulty && self.chance(8) {
            let n = 1 + self.rng_below(3) as u32;
            self.env.borrow().plan.device_apply_countdown.set(Some(n));
        }
        if faulty && self.chance(4) {
            self.env.borrow().plan.device_restamp_crash.set(true);
        }
        self.env.borrow_mut().stats.syncs += 1;
        let result = {
            let port = Port {
                env: &self.env,
                device,
                faulty,
            };
            let retry = Retry {
                attempts: 2,
                first_delay: Duration::ZERO,
            };
            sync::sync_now(&mut store, &port, retry, &mut |_| {})
        };
        self.env.borrow().plan.device_apply_countdown.set(None);
        self.env.borrow().plan.device_restamp_crash.set(false);
        match result {
            Ok(report) => {
                self.env.borrow_mut().stats.restamped += report.restamped as u64;
                if report.rescoped {
                    // A fresh pull of a new scope ends where that scope's last change is.
                    self.devices[device].last_cursor = 0;
                }
                self.devices[device].store = Some(store);
                self.check_cursor(device)?;
                Ok(report)
            }
            Err(SyncError::Revoked) => {
                self.replace_revoked(device, store)?;
                // The new tablet's first sync, as the app runs one after enrolling.
                self.sync_device(device, faulty)
            }
            Err(SyncError::Store(StoreError::Io(e))) if e.to_string() == "simulated crash" => {
                self.log(|| format!("{name}: crashes while applying a response or re-stamping"));
                // That response was never applied: it is not one to apply "again".
                self.env.borrow_mut().recent_responses[device].pop();
                drop(store);
                self.crash_device(device);
                Ok(Default::default())
            }
            Err(e) if faulty && matches!(e, SyncError::Transport(_)) => {
                self.log(|| format!("{name}: sync failed: {e}"));
                self.devices[device].store = Some(store);
                self.check_cursor(device)?;
                Ok(Default::default())
            }
            Err(e) => Err(self.fail("liveness", format!("{name}: sync failed: {e}"))),
        }
    }

    /// An administrator moves a citizen (with their history) to the other team: the old team's
    /// devices erase them, their pending edits of the citizen are refused and set aside, the
    /// new team's devices receive everything.
    fn move_a_citizen(&mut self) -> Result<(), Broken> {
        let mut env = self.env.borrow_mut();
        let citizens: Vec<(Vec<u8>, Vec<u8>)> = env
            .server
            .prepare("SELECT citizen_id, team_id FROM citizens WHERE purged_ms IS NULL ORDER BY citizen_id")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(|e| broken("server", e))?;
        if citizens.is_empty() {
            return Ok(());
        }
        let (citizen, team) = &citizens[env.rng.below(citizens.len() as u64) as usize];
        let citizen = Uuid::from_slice(citizen).map_err(|e| broken("server", e))?;
        let to = if team[..] == env.teams[0].as_bytes()[..] {
            env.teams[1]
        } else {
            env.teams[0]
        };
        let now = env.server_now();
        feltbog_server::sync::move_citizen(&mut env.server, citizen, to, now, DEFAULT_MAX_DRIFT_MS)
            .map_err(|e| broken("server", e))?;
        env.log(|| format!("admin moves citizen {citizen} to the other team"));
        Ok(())
    }

    /// An administrator moves a device's worker to the other team: a scope change the device
    /// follows on its next sync (its pending edits judged under the old scope, then a fresh
    /// pull of the new one).
    fn move_a_worker(&mut self, device: usize) -> Result<(), Broken> {
        let mut env = self.env.borrow_mut();
        let to = 1 - env.device_team[device];
        let now = env.server_now();
        let team = env.teams[to];
        let worker = self.devices[device].worker;
        admin::move_worker(&mut env.server, worker, team, now).map_err(|e| broken("server", e))?;
        env.device_team[device] = to;
        self.devices[device].team = to;
        env.log(|| {
            format!(
                "admin moves {}'s worker to the other team",
                DEVICES[device].1
            )
        });
        Ok(())
    }

    /// The network finally delivers a held-back request (the device stopped waiting long ago).
    fn deliver_one_delayed(&mut self) -> Result<(), Broken> {
        let mut env = self.env.borrow_mut();
        if env.inflight.is_empty() {
            return Ok(());
        }
        let len = env.inflight.len() as u64;
        let i = env.rng.below(len) as usize;
        let (device, request) = env.inflight.remove(i);
        env.log(|| format!("{}: a delayed request arrives", DEVICES[device].1));
        // The answer goes nowhere: the device's connection timed out.
        let _ = env.serve(device, &request, false);
        Ok(())
    }

    /// The device is handed one of its recent responses again — late, perhaps after newer
    /// ones (a duplicated or reordered delivery). Nothing may change: not its records, and its
    /// cursor may not move back.
    fn apply_old_response_again(&mut self, device: usize) -> Result<(), Broken> {
        let recent = self.env.borrow().recent_responses[device].clone();
        if recent.is_empty() || self.devices[device].store.is_none() {
            return Ok(());
        }
        let response = &recent[self.rng_below(recent.len() as u64) as usize];
        let name = DEVICES[device].1;
        let store = self.devices[device].store.as_mut().expect("checked above");
        let before = store.replica_state().map_err(|e| broken("store", e))?;
        store
            .apply_sync_response(response)
            .map_err(|e| broken("store", e))?;
        let after = store.replica_state().map_err(|e| broken("store", e))?;
        self.log(|| format!("{name}: applies an earlier response again"));
        if let Some(difference) = crate::checks::first_difference(&before, &after) {
            let detail =
                format!("{name} changed when an earlier response was applied again: {difference}");
            return Err(self.fail("idempotence", detail));
        }
        self.check_cursor(device)
    }

    /// The network heals: held-back requests arrive or are lost for good, crashed devices and
    /// the server restart, and every device syncs until a whole round moves nothing.
    pub fn heal(&mut self) -> Result<(), Broken> {
        self.log(|| "the network heals".into());
        {
            let mut env = self.env.borrow_mut();
            env.partitioned_until.iter_mut().for_each(|t| *t = 0);
            while !env.inflight.is_empty() {
                let (device, request) = env.inflight.remove(0);
                if env.chance(50) {
                    let _ = env.serve(device, &request, false);
                }
            }
            env.restart_server()?;
        }
        for device in 0..self.devices.len() {
            if self.devices[device].store.is_none() {
                self.restart_device(device)?;
            }
        }
        for _ in 0..HEAL_ROUNDS {
            // Devices sync every half minute: a server whose HLC ran a whole skew bound ahead of
            // its wall clock refuses fresh stamps until its clock catches up.
            self.env
                .borrow()
                .global
                .fetch_add(30_000, Ordering::Relaxed);
            let mut moved = false;
            for device in 0..self.devices.len() {
                let report = self.sync_device(device, false)?;
                moved |= report.pushed > 0 || report.pulled > 0;
            }
            if let Some((property, detail)) = self.env.borrow_mut().broken.take() {
                return Err(broken(property, detail));
            }
            if !moved {
                return Ok(());
            }
        }
        Err(self.fail(
            "liveness",
            format!("devices still push or pull after {HEAL_ROUNDS} fault-free rounds"),
        ))
    }
}
