//! What the tablet app does, independent of its shell: the Tauri commands and the UI are thin
//! over this. [`App`] owns the store file in the app's data directory and knows the app's
//! phases (first run → locked ⇄ unlocked), the idle lock, the background sync loop with its
//! back-off, and the settings. Screens read [`views`] and send [`forms`]; every failure reaches
//! them as an [`AppError`] with a stable code.
//!
//! Threads: the store sits behind a mutex. Screens hold it for one read or save; the sync loop
//! holds it only between round trips ([`crate::sync::sync_with`]), so a save never waits on
//! the network.

#[cfg(feature = "ts")]
pub mod bindings;
pub mod error;
pub mod forms;
pub mod views;

pub use error::{AppError, ErrorCode};

use crate::crypto::{KdfParams, Passphrase};
use crate::domain::{Citizen, EntityKind, Task, TaskStatus, Validate};
use crate::keystore::NoPlatformSecret;
use crate::store::{CreateOptions, Store, StoreError};
use crate::sync::{self, Progress, Retry, StoreAccess, SyncError, http::HttpTransport};
use chrono::{NaiveDate, Utc};
use forms::Author;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[cfg(feature = "ts")]
use ts_rs::TS;

/// The store's file name inside the app data directory.
pub const STORE_FILE: &str = "feltbog.store";
const SETTINGS_FILE: &str = "settings.json";

/// Where the app is: which screen the UI must show.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No store yet: enrol and choose a PIN.
    FirstRun,
    Locked,
    Unlocked,
}

/// The UI language.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    Da,
    En,
}

/// Device settings: no personal data, kept in a plain JSON file beside the store.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct Settings {
    pub language: Language,
    /// Lock after this long without a touch.
    pub lock_timeout_secs: u32,
}

impl Settings {
    /// The default idle lock: 5 minutes.
    pub const DEFAULT_LOCK_SECS: u32 = 300;
    /// Shortest and longest idle lock a user may choose.
    pub const LOCK_RANGE: std::ops::RangeInclusive<u32> = 60..=3600;
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            language: Language::Da,
            lock_timeout_secs: Self::DEFAULT_LOCK_SECS,
        }
    }
}

/// What the sync bar says.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Default)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Not tried since the app started.
    #[default]
    Unknown,
    Online,
    Syncing,
    Offline,
    /// The server revoked this device or its worker.
    Revoked,
    UpdateRequired,
    /// The last sync failed for another reason (see the server or the log).
    Failed,
}

/// Progress of a long sync.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct SyncProgress {
    pub pulled: u32,
    pub pending: u32,
    pub more: bool,
}

/// The sync bar: always visible, readable while locked (counts carry no personal data).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct SyncBar {
    pub state: SyncState,
    /// Saved here and not yet on the server.
    pub unsynced: u32,
    /// Refused by the server and kept aside (never dropped).
    pub set_aside: u32,
    /// Work that exists only on this tablet: unsynced and refused edits together. Signing out
    /// loses exactly this much, so the wipe dialog shows it.
    pub only_here: u32,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub last_success_ms: Option<u64>,
    pub progress: Option<SyncProgress>,
    /// Open conflicts waiting in the inbox (0 while locked).
    pub open_conflicts: u32,
    /// The worker's access changed (role, team, sites, supervised teams): the tablet is sending
    /// what it had pending and fetching its data again (`store::Rescope`). Screens may be
    /// incomplete until the next sync finishes it.
    pub rescoping: bool,
    /// Counts the syncs that changed what screens show (records pulled or erased, edits
    /// acknowledged or set aside, a new profile): an open page reloads when it moves.
    pub changes: u32,
    /// Moves with every change of `state` or `progress`: a bar read before the latest event
    /// (a refresh after a save, answered late) is older and must not overwrite it, or the bar
    /// would say "syncing" after the sync ended.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub version: u64,
}

/// Everything the UI needs to pick a screen.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct AppState {
    pub phase: Phase,
    pub settings: Settings,
    pub sync: SyncBar,
    /// The signed-in worker (when unlocked).
    pub worker_id: Option<Uuid>,
    pub server_url: Option<String>,
    /// Who that is, by name, role and team (when unlocked, once the server has said).
    pub me: Option<views::Me>,
    /// The screens and actions for that worker's role (`core::access`). Before the server has
    /// named the role (a server that predates it), a field worker's, as before roles reached
    /// the device.
    pub offer: crate::access::Offer,
}

/// How the app is set up by its shell.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The app's private data directory (created 0700).
    pub data_dir: PathBuf,
    /// Argon2 cost target per unlock, calibrated on the device at first run.
    pub kdf_target: Duration,
    /// Overrides the idle lock chosen in settings (kiosk set-ups and the end-to-end tests).
    pub idle_lock_override: Option<Duration>,
}

impl AppConfig {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: PathBuf) -> AppConfig {
        AppConfig {
            data_dir,
            kdf_target: KdfParams::DEFAULT_TARGET,
            idle_lock_override: None,
        }
    }
}

/// Back-off of the background sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSchedule {
    /// After a good sync: pull again this often.
    pub every: Duration,
    /// First wait after a failure; doubles up to `max_wait`.
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Default for SyncSchedule {
    fn default() -> Self {
        SyncSchedule {
            every: Duration::from_secs(60),
            first_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl SyncSchedule {
    /// The wait before the next attempt after `failures` failures in a row (0 = last one good).
    pub fn wait_after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return self.every;
        }
        let factor = 1u32 << (failures - 1).min(16);
        self.first_wait.saturating_mul(factor).min(self.max_wait)
    }
}

#[derive(Default)]
struct SyncRuntime {
    state: SyncState,
    progress: Option<SyncProgress>,
    kicked: bool,
    failures: u32,
    changes: u32,
    /// [`SyncBar::version`]: never goes back, not even when the runtime is reset.
    version: u64,
}

/// The app: one per process.
pub struct App {
    config: AppConfig,
    /// Why the store could not be opened at start (newer schema, not a store, disk error):
    /// every screen shows it instead of offering to start over on top of it.
    startup_error: Option<AppError>,
    store: Mutex<Option<Store>>,
    settings: Mutex<Settings>,
    last_touch: Mutex<Instant>,
    sync: Mutex<SyncRuntime>,
    wake: Condvar,
    stopping: AtomicBool,
    /// The `feltbog-enrol:` link the app was opened with (the platform's deep link), until
    /// first run reads it.
    opened_link: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves data that is still consistent (every store write is
    // one transaction), so carry on rather than poison the app.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::new(ErrorCode::Internal, e.to_string())
}

struct Shared<'a>(&'a Mutex<Option<Store>>);

impl StoreAccess for Shared<'_> {
    fn with_store<R>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<R, SyncError>,
    ) -> Result<R, SyncError> {
        let mut guard = lock(self.0);
        match guard.as_mut() {
            Some(store) if store.is_unlocked() => f(store),
            _ => Err(SyncError::Store(StoreError::Locked)),
        }
    }
}

impl App {
    /// Opens the app's data directory (creating it) and the store in it, locked, if any.
    /// A failure is kept and reported by [`App::checked_state`], so the UI can say what is
    /// wrong instead of the app dying without a window.
    pub fn new(config: AppConfig) -> App {
        let settings: Settings = std::fs::read(config.data_dir.join(SETTINGS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // A hand-edited settings file must not switch the idle lock off.
        let settings = Settings {
            lock_timeout_secs: settings
                .lock_timeout_secs
                .clamp(*Settings::LOCK_RANGE.start(), *Settings::LOCK_RANGE.end()),
            ..settings
        };
        let (store, startup_error) = match open_store(&config.data_dir) {
            Ok(store) => (store, None),
            Err(e) => (None, Some(e)),
        };
        App {
            config,
            startup_error,
            store: Mutex::new(store),
            settings: Mutex::new(settings),
            last_touch: Mutex::new(Instant::now()),
            sync: Mutex::new(SyncRuntime::default()),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            opened_link: Mutex::new(None),
        }
    }

    /// The platform opened the app with a link (the shell's deep-link handler): kept for the
    /// first-run screen, which fills its fields from it. Any text may arrive here; it is read
    /// only by [`App::enrolment_link`].
    pub fn opened_with(&self, link: &str) {
        *lock(&self.opened_link) = Some(link.to_owned());
    }

    /// Reads an enrolment: `text` as scanned from a QR code, or, without text, the link the app
    /// was opened with (`None` when there is none, or the tablet is enrolled already: a link
    /// cannot re-enrol a tablet). A foreign or damaged code is an error that says which.
    pub fn enrolment_link(
        &self,
        text: Option<&str>,
    ) -> Result<Option<crate::protocol::EnrolmentLink>, AppError> {
        let opened;
        let text = match text {
            Some(t) => t,
            None if self.state().phase != Phase::FirstRun => return Ok(None),
            None => match lock(&self.opened_link).clone() {
                Some(t) => {
                    opened = t;
                    &opened
                }
                None => return Ok(None),
            },
        };
        crate::protocol::EnrolmentLink::parse(text)
            .map(Some)
            .map_err(|e| match e {
                crate::protocol::EnrolmentLinkError::Foreign => {
                    AppError::new(ErrorCode::ForeignCode, e.to_string())
                }
                crate::protocol::EnrolmentLinkError::Damaged => {
                    AppError::new(ErrorCode::DamagedCode, e.to_string())
                }
            })
    }

    /// [`App::state`], or the reason the app could not start.
    pub fn checked_state(&self) -> Result<AppState, AppError> {
        match &self.startup_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.state()),
        }
    }

    fn store_path(&self) -> PathBuf {
        self.config.data_dir.join(STORE_FILE)
    }

    /// The phase, settings and sync bar.
    pub fn state(&self) -> AppState {
        let (phase, worker_id, server_url, me) = {
            let mut guard = lock(&self.store);
            match guard.as_mut() {
                None => (Phase::FirstRun, None, None, None),
                Some(s) if !s.is_unlocked() => (Phase::Locked, None, None, None),
                Some(s) => {
                    let me = s.profile().ok().flatten().map(|p| views::Me::of(&p));
                    match s.enrolment() {
                        Ok(Some(e)) => (Phase::Unlocked, Some(e.worker_id), Some(e.server_url), me),
                        _ => (Phase::Unlocked, None, None, me),
                    }
                }
            }
        };
        AppState {
            phase,
            settings: *lock(&self.settings),
            sync: self.sync_bar(),
            worker_id,
            server_url,
            offer: crate::access::Offer::of(
                me.as_ref()
                    .map_or(crate::access::Role::Outreach, |m| m.role),
            ),
            me,
        }
    }

    /// First run: creates the store protected by the PIN, enrols it with the server, and leaves
    /// it unlocked. If enrolment fails, nothing is left behind and the worker can try again.
    pub fn first_run(&self, input: &forms::FirstRunInput) -> Result<AppState, AppError> {
        if let Some(e) = &self.startup_error {
            return Err(e.clone());
        }
        let url = input.server_url.trim().trim_end_matches('/');
        if !server_address_ok(url) {
            return Err(AppError {
                field: Some("server_url".into()),
                ..AppError::new(
                    ErrorCode::BadServerAddress,
                    "the server address must start with https:// (http:// only on this machine)",
                )
            });
        }
        let code = input.code.trim();
        if code.is_empty() || code.len() > 200 {
            return Err(AppError::invalid("code", "the enrolment code is required"));
        }
        let pin = Passphrase::new(input.pin.clone())?;
        let mut guard = lock(&self.store);
        if guard.is_some() {
            return Err(AppError::new(
                ErrorCode::AlreadySetUp,
                "this device is already set up",
            ));
        }
        let (kdf, _) = KdfParams::calibrate(self.config.kdf_target).map_err(internal)?;
        let path = self.store_path();
        let mut store = Store::create(&path, &pin, &CreateOptions::with_kdf(kdf))?;
        let enrolled = HttpTransport::new(url)
            .map_err(SyncError::from)
            .and_then(|t| sync::enrol(&mut store, &t, url, code));
        if let Err(e) = enrolled {
            drop(store);
            remove_store_files(&path)?;
            return Err(e.into());
        }
        *guard = Some(store);
        // The link's code is spent: a later first run (after a wipe) does not offer it again.
        lock(&self.opened_link).take();
        self.touch();
        drop(guard);
        self.kick_sync();
        Ok(self.state())
    }

    /// Unlocks with the PIN; starts a sync.
    pub fn unlock(&self, pin: &str) -> Result<AppState, AppError> {
        let pin = Passphrase::new(pin).map_err(|_| {
            // A short PIN is simply wrong here; do not tell the rule to a guesser.
            AppError::new(ErrorCode::WrongPin, "wrong passphrase or PIN")
        })?;
        {
            let mut guard = lock(&self.store);
            let store = guard
                .as_mut()
                .ok_or_else(|| AppError::new(ErrorCode::NotSetUp, "no store"))?;
            // Checked (and counted) even when already unlocked: a second attempt racing the
            // first must not get in with a wrong PIN.
            store.unlock(&pin)?;
            // Still holding the store: an idle lock that was waiting for it must see this
            // unlock as activity, or it would lock again the moment the worker got in.
            self.touch();
        }
        self.kick_sync();
        Ok(self.state())
    }

    /// Drops the keys from memory. Returns whether the store was unlocked.
    pub fn lock(&self) -> bool {
        let mut guard = lock(&self.store);
        match guard.as_mut() {
            Some(s) if s.is_unlocked() => {
                s.lock();
                true
            }
            _ => false,
        }
    }

    /// Notes user activity (the UI calls it on touches and key presses): postpones the idle
    /// lock.
    pub fn touch(&self) {
        *lock(&self.last_touch) = Instant::now();
    }

    /// The idle lock in force.
    pub fn idle_limit(&self) -> Duration {
        self.config.idle_lock_override.unwrap_or_else(|| {
            Duration::from_secs(u64::from(lock(&self.settings).lock_timeout_secs))
        })
    }

    /// Locks if nothing touched the app for the idle limit; returns whether it locked now.
    pub fn lock_if_idle(&self, now: Instant) -> bool {
        // Take the store first and read the last touch under it: an unlock in progress holds
        // the store and touches before letting go.
        let mut guard = lock(&self.store);
        let idle = now.saturating_duration_since(*lock(&self.last_touch));
        match guard.as_mut() {
            Some(s) if s.is_unlocked() && idle >= self.idle_limit() => {
                s.lock();
                true
            }
            _ => false,
        }
    }

    /// Runs `f` on the unlocked store as the signed-in worker. Not counted as activity: the
    /// UI refreshes screens by itself (after a sync, say), and that must not keep the app open.
    fn with_unlocked<R>(
        &self,
        f: impl FnOnce(&mut Store, Author) -> Result<R, AppError>,
    ) -> Result<R, AppError> {
        let mut guard = lock(&self.store);
        let store = guard
            .as_mut()
            .ok_or_else(|| AppError::new(ErrorCode::NotSetUp, "no store"))?;
        let enrolment = store
            .enrolment()?
            .ok_or_else(|| AppError::new(ErrorCode::NotSetUp, "not enrolled"))?;
        let author = Author {
            worker: crate::domain::WorkerId(enrolment.worker_id),
            team: crate::domain::TeamId(enrolment.team_id),
        };
        f(store, author)
    }

    /// A save happened: wakes the sync loop. (Activity is the UI's `touch`.)
    fn saved<R>(&self, r: Result<R, AppError>) -> Result<R, AppError> {
        if r.is_ok() {
            self.kick_sync();
        }
        r
    }

    fn today_date() -> NaiveDate {
        chrono::Local::now().date_naive()
    }

    /// The today screen.
    pub fn today(&self) -> Result<views::Today, AppError> {
        self.with_unlocked(|s, a| {
            let today = views::today(s, a.worker.0, Self::today_date())?;
            s.record_access(
                (today.due_tasks.iter().map(|t| (EntityKind::Task, t.id)))
                    .chain(today.recent.iter().map(|v| (EntityKind::Visit, v.id))),
            )?;
            Ok(today)
        })
    }

    /// The caseload, filtered by `search` (alias, name, CPR digits, phone, tags).
    pub fn caseload(&self, search: &str) -> Result<Vec<views::CitizenSummary>, AppError> {
        if search.len() > 200 {
            return Err(AppError::invalid("search", "search text is too long"));
        }
        self.with_unlocked(|s, _| {
            let list = views::caseload(s, search)?;
            s.record_access(list.iter().map(|c| (EntityKind::Citizen, c.id)))?;
            Ok(list)
        })
    }

    /// A citizen's page. Opening it is logged in the device's access log, which syncs up to
    /// the server's audit trail (who saw which citizen, when).
    pub fn citizen(&self, id: Uuid) -> Result<views::CitizenDetail, AppError> {
        self.with_unlocked(|s, a| {
            let detail = views::citizen(s, id, a.worker.0, Self::today_date())?;
            s.record_access(
                std::iter::once((EntityKind::Citizen, id)).chain(
                    detail
                        .site_log
                        .iter()
                        .map(|e| (EntityKind::SiteLogEntry, e.id)),
                ),
            )?;
            Ok(detail)
        })
    }

    /// Creates or edits a citizen; returns the id. For an edit, `started_from` is the form as
    /// it was opened: only what the worker changed since is written (see
    /// [`forms::apply_citizen_edit`]).
    pub fn save_citizen(
        &self,
        input: &forms::CitizenInput,
        started_from: Option<&forms::CitizenInput>,
    ) -> Result<Uuid, AppError> {
        self.saved(self.with_unlocked(|s, a| {
            let now = Utc::now();
            let citizen = match input.id {
                None => forms::citizen_from(input, None, a, now)?,
                Some(id) => {
                    let current = s
                        .get::<Citizen>(id)?
                        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "citizen not found"))?;
                    let edited = forms::citizen_from(input, Some(current.clone()), a, now)?;
                    match started_from {
                        None => edited,
                        Some(base) => {
                            let base = forms::citizen_from(base, Some(current.clone()), a, now)?;
                            forms::apply_citizen_edit(current, &base, &edited)
                        }
                    }
                }
            };
            s.save(&citizen)?;
            Ok(citizen.id.0)
        }))
    }

    /// Saves one edit of a citizen's pathway (an item, a removal, the circumstances) on the
    /// citizen as stored now, and a referral's follow-up task with it in one transaction.
    pub fn save_pathway(&self, citizen: Uuid, edit: &forms::PathwayEdit) -> Result<(), AppError> {
        self.saved(self.with_unlocked(|s, a| {
            let current = s
                .get::<Citizen>(citizen)?
                .ok_or_else(|| AppError::new(ErrorCode::NotFound, "citizen not found"))?;
            let (edited, task) = forms::apply_pathway_edit(current, edit, a, Utc::now())?;
            match &task {
                // The task first: the referral refers to it (see `save_visit`).
                Some(task) => {
                    s.save_pair(task, &edited)?;
                }
                None => {
                    s.save(&edited)?;
                }
            }
            Ok(())
        }))
    }

    /// Logs a visit or quick contact and its follow-up task: both in one transaction, or
    /// neither (a refused visit must not leave its task behind to be saved twice).
    pub fn save_visit(&self, input: &forms::VisitInput) -> Result<Uuid, AppError> {
        self.saved(self.with_unlocked(|s, a| {
            let (visit, task) = forms::visit_from(input, a, Utc::now())?;
            let citizen = match visit.citizen_id {
                Some(c) => Some(
                    s.get::<Citizen>(c.0)?
                        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "citizen not found"))?,
                ),
                None => None,
            };
            // The referrals the visit made, followed on the citizen's record.
            let followed = citizen.and_then(|c| forms::follow_visit_referrals(c, &visit));
            if let Some(task) = &task {
                task.validate().map_err(|e| {
                    let mut e = AppError::from(e);
                    e.field = e.field.map(|f| format!("follow_up.{f}"));
                    e
                })?;
            }
            // The task first, then the visit, then the citizen: each refers to the one before,
            // and the server resolves every reference when it applies a mutation.
            match (&task, &followed) {
                (Some(task), Some(citizen)) => {
                    s.save_trio(task, &visit, citizen)?;
                }
                (Some(task), None) => {
                    s.save_pair(task, &visit)?;
                }
                (None, Some(citizen)) => {
                    s.save_pair(&visit, citizen)?;
                }
                (None, None) => {
                    s.save(&visit)?;
                }
            }
            Ok(visit.id.0)
        }))
    }

    /// Adds a task about a citizen.
    pub fn save_task(&self, input: &forms::TaskInput) -> Result<Uuid, AppError> {
        self.saved(self.with_unlocked(|s, a| {
            if s.get::<Citizen>(input.citizen_id)?.is_none() {
                return Err(AppError::new(ErrorCode::NotFound, "citizen not found"));
            }
            let task = forms::task_from(input, a, Utc::now())?;
            s.save(&task)?;
            Ok(task.id.0)
        }))
    }

    /// Marks a task done, cancelled or open again.
    pub fn set_task_status(&self, id: Uuid, status: TaskStatus) -> Result<(), AppError> {
        self.saved(self.with_unlocked(|s, _| {
            let mut task: Task = s
                .get(id)?
                .ok_or_else(|| AppError::new(ErrorCode::NotFound, "task not found"))?;
            task.status = status;
            s.save(&task)?;
            Ok(())
        }))
    }

    /// Changes a task's title, due date or assignee: only what the worker changed since the
    /// form opened (`started_from`).
    pub fn edit_task(
        &self,
        id: Uuid,
        edited: &forms::TaskEdit,
        started_from: &forms::TaskEdit,
    ) -> Result<(), AppError> {
        self.saved(self.with_unlocked(|s, _| {
            if !offer_of(s).log_visits {
                return Err(AppError::new(
                    ErrorCode::NotAllowed,
                    "this worker's role does not edit tasks",
                ));
            }
            let current: Task = s
                .get(id)?
                .ok_or_else(|| AppError::new(ErrorCode::NotFound, "task not found"))?;
            if let Some(to) = edited.assignee
                && edited.assignee != started_from.assignee
                && !views::colleagues(s.profile()?.as_ref())
                    .iter()
                    .any(|c| c.id == to)
                && Some(to) != s.profile()?.map(|p| p.worker_id)
            {
                return Err(AppError::invalid(
                    "assignee",
                    "the assignee must be a worker of the team who carries cases",
                ));
            }
            let task = forms::apply_task_edit(current, started_from, edited)?;
            s.save(&task)?;
            Ok(())
        }))
    }

    /// Corrects a visit: only its author may (the app offers it to them alone), and only what
    /// they changed since the form opened (`started_from`) is written.
    pub fn edit_visit(
        &self,
        id: Uuid,
        edited: &forms::VisitEdit,
        started_from: &forms::VisitEdit,
    ) -> Result<(), AppError> {
        self.saved(self.with_unlocked(|s, a| {
            let current = own_visit(s, a, id)?;
            let visit = forms::apply_visit_edit(current, started_from, edited, Utc::now())?;
            s.save(&visit)?;
            Ok(())
        }))
    }

    /// Links the author's anonymous contact to a citizen on this device (see
    /// [`forms::link_visit`]); returns the new visit's id.
    pub fn link_visit(&self, id: Uuid, citizen: Uuid) -> Result<Uuid, AppError> {
        self.saved(self.with_unlocked(|s, a| {
            let current = own_visit(s, a, id)?;
            if s.get::<Citizen>(citizen)?.is_none() {
                return Err(AppError::new(ErrorCode::NotFound, "citizen not found"));
            }
            let (linked, archived) = forms::link_visit(&current, citizen)?;
            s.save_all(&[linked.clone(), archived])?;
            Ok(linked.id.0)
        }))
    }

    /// Workers of the team a case or task can go to.
    pub fn colleagues(&self) -> Result<Vec<views::Colleague>, AppError> {
        self.with_unlocked(|s, _| Ok(views::colleagues(s.profile()?.as_ref())))
    }

    /// Hands a citizen to another worker of the team: they become the primary worker, and a
    /// task due today, assigned to them and carrying the note, puts the hand-over on their
    /// today screen. Both in one transaction. The citizen's history stays with the citizen.
    pub fn hand_over(&self, input: &forms::HandoverInput) -> Result<(), AppError> {
        self.saved(self.with_unlocked(|s, _| {
            if !offer_of(s).edit_citizens {
                return Err(AppError::new(
                    ErrorCode::NotAllowed,
                    "this worker's role does not hand over cases",
                ));
            }
            if !views::colleagues(s.profile()?.as_ref())
                .iter()
                .any(|c| c.id == input.to)
            {
                return Err(AppError::invalid(
                    "to",
                    "hand over to a worker of the team who carries cases",
                ));
            }
            let mut citizen: Citizen = s
                .get(input.citizen_id)?
                .ok_or_else(|| AppError::new(ErrorCode::NotFound, "citizen not found"))?;
            citizen.primary_worker = Some(crate::domain::WorkerId(input.to));
            let task = forms::handover_task(input, Utc::now());
            task.validate()?;
            s.save_pair(&citizen, &task)?;
            Ok(())
        }))
    }

    /// All tasks (open only unless `include_closed`).
    pub fn tasks(&self, include_closed: bool) -> Result<Vec<views::TaskView>, AppError> {
        self.with_unlocked(|s, a| {
            let tasks = views::tasks(s, include_closed, Self::today_date(), a.worker.0)?;
            s.record_access(tasks.iter().map(|t| (EntityKind::Task, t.id)))?;
            Ok(tasks)
        })
    }

    /// The sites on this device.
    pub fn sites(&self) -> Result<Vec<views::SiteView>, AppError> {
        self.with_unlocked(|s, _| Ok(views::sites(s)?))
    }

    /// Adds a site.
    pub fn save_site(&self, input: &forms::SiteInput) -> Result<Uuid, AppError> {
        self.saved(self.with_unlocked(|s, _| {
            let site = forms::site_from(input, Utc::now());
            s.save(&site)?;
            Ok(site.id.0)
        }))
    }

    /// One site's log.
    pub fn site_log(&self, site: Uuid) -> Result<Vec<views::SiteLogView>, AppError> {
        self.with_unlocked(|s, a| {
            let log = views::site_log(s, site, a.worker.0)?;
            s.record_access(log.iter().flat_map(|e| {
                std::iter::once((EntityKind::SiteLogEntry, e.id))
                    .chain(e.residents.iter().map(|r| (EntityKind::Citizen, *r)))
            }))?;
            Ok(log)
        })
    }

    /// Adds an entry to a site's log.
    pub fn save_site_log(&self, input: &forms::SiteLogInput) -> Result<Uuid, AppError> {
        self.saved(self.with_unlocked(|s, a| {
            if s.get::<crate::domain::Site>(input.site_id)?.is_none() {
                return Err(AppError::new(ErrorCode::NotFound, "site not found"));
            }
            let entry = forms::site_log_from(input, a, Utc::now());
            s.save(&entry)?;
            Ok(entry.id.0)
        }))
    }

    /// The conflict inbox.
    pub fn conflicts(&self) -> Result<Vec<views::ConflictView>, AppError> {
        self.with_unlocked(|s, _| {
            let offer = offer_of(s);
            let conflicts = views::conflicts(s, &offer)?;
            s.record_access(conflicts.iter().map(|c| (EntityKind::Conflict, c.id)))?;
            Ok(conflicts)
        })
    }

    /// Settles one conflict.
    pub fn resolve_conflict(
        &self,
        id: Uuid,
        choice: &forms::ConflictChoice,
    ) -> Result<(), AppError> {
        self.saved(self.with_unlocked(|s, _| {
            let offer = offer_of(s);
            let conflict: Option<crate::domain::ConflictRecord> = s.get(id)?;
            // A reviewer keeps a version or writes them together; dismissing is the writers'.
            let allowed = conflict.is_some_and(|c| offer.can_settle(c.kind))
                && (offer.resolve_conflicts || !matches!(choice, forms::ConflictChoice::Dismiss));
            if !allowed {
                return Err(AppError::new(
                    ErrorCode::NotAllowed,
                    "this worker's role does not settle this conflict",
                ));
            }
            Ok(forms::settle_conflict(s, id, choice)?)
        }))
    }

    /// Edits the server refused, with what the worker can do with each (DESIGN §5 property 7).
    pub fn set_aside(&self) -> Result<Vec<views::SetAsideView>, AppError> {
        self.with_unlocked(|s, _| {
            let offer = offer_of(s);
            let list = views::set_aside(s, &offer)?;
            s.record_access(
                list.iter()
                    .filter(|e| e.on_device)
                    .map(|e| (e.entity, e.record_id)),
            )?;
            Ok(list)
        })
    }

    /// Sends a refused edit again as a new edit of the record as it is now; only where the
    /// worker's role writes such records (else the server would refuse it again).
    pub fn resend_set_aside(&self, seq: u64) -> Result<(), AppError> {
        self.saved(self.with_unlocked(|s, _| {
            let edit = s.set_aside_edit(seq)?;
            if !offer_of(s).can_edit(edit.entity) {
                return Err(AppError::new(
                    ErrorCode::NotAllowed,
                    "this worker's role does not write such records",
                ));
            }
            s.resend_set_aside(seq)?;
            Ok(())
        }))
    }

    /// Puts a refused visit's values into a new contact by the signed-in worker, about
    /// `citizen` (one on this device) or anonymous, and removes the refused edit: both or
    /// neither.
    pub fn copy_set_aside(&self, seq: u64, citizen: Option<Uuid>) -> Result<Uuid, AppError> {
        self.saved(self.with_unlocked(|s, a| {
            if !offer_of(s).log_visits {
                return Err(AppError::new(
                    ErrorCode::NotAllowed,
                    "this worker's role does not log contacts",
                ));
            }
            let edit = s.set_aside_edit(seq)?;
            if edit.entity != EntityKind::Visit {
                return Err(AppError::invalid("set_aside", "only a visit can be copied"));
            }
            if let Some(c) = citizen
                && s.get::<Citizen>(c)?.is_none()
            {
                return Err(AppError::new(ErrorCode::NotFound, "citizen not found"));
            }
            let visit = forms::visit_from_refused(&edit, citizen, a)?;
            s.replace_set_aside(seq, &visit)?;
            Ok(visit.id.0)
        }))
    }

    /// Deletes a refused edit for good (the screen has asked the worker and named what is lost).
    pub fn discard_set_aside(&self, seq: u64) -> Result<(), AppError> {
        self.with_unlocked(|s, _| Ok(s.discard_set_aside(seq)?))
    }

    /// Keeps a half-typed form (`form` names it, e.g. `visit:new:<citizen>`), sealed under the
    /// citizen's key when it is about one. Not a save: nothing is sent.
    pub fn save_draft(
        &self,
        form: &str,
        citizen: Option<Uuid>,
        content: &serde_json::Value,
    ) -> Result<(), AppError> {
        let bytes = serde_json::to_vec(content).map_err(internal)?;
        if bytes.len() > crate::store::MAX_DRAFT_BYTES {
            return Err(AppError::invalid("draft", "the draft is too large to keep"));
        }
        self.with_unlocked(|s, _| {
            let citizen = match citizen {
                Some(c) if s.get::<Citizen>(c)?.is_some() => Some(crate::domain::CitizenId(c)),
                Some(_) => return Err(AppError::new(ErrorCode::NotFound, "citizen not found")),
                None => None,
            };
            Ok(s.save_draft(form, citizen, &bytes)?)
        })
    }

    /// The kept draft of `form`, if any: its content and when it was written.
    pub fn draft(&self, form: &str) -> Result<Option<views::DraftView>, AppError> {
        self.with_unlocked(|s, _| {
            Ok(match s.draft(form)? {
                None => None,
                Some(d) => Some(views::DraftView {
                    content: serde_json::from_slice(&d.content).map_err(internal)?,
                    at_ms: d.at_ms as i64,
                }),
            })
        })
    }

    /// Forgets the draft of `form` (saved, or discarded by the worker).
    pub fn discard_draft(&self, form: &str) -> Result<(), AppError> {
        self.with_unlocked(|s, _| Ok(s.discard_draft(form)?))
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        *lock(&self.settings)
    }

    /// Changes the settings (kept beside the store).
    pub fn set_settings(&self, settings: Settings) -> Result<Settings, AppError> {
        if !Settings::LOCK_RANGE.contains(&settings.lock_timeout_secs) {
            return Err(AppError::invalid(
                "lock_timeout_secs",
                "lock timeout must be between 1 and 60 minutes",
            ));
        }
        let json = serde_json::to_vec_pretty(&settings).map_err(internal)?;
        write_atomically(&self.config.data_dir.join(SETTINGS_FILE), &json)?;
        *lock(&self.settings) = settings;
        self.touch();
        Ok(settings)
    }

    /// Signs out and wipes: the store (records, keys, outbox) is deleted from the device.
    /// Unsynced and refused edits are lost, so the UI asks first and says how many
    /// ([`SyncBar::only_here`]); `unsynced_shown` is that number, and the wipe is refused if more changes are waiting now. Only an unlocked
    /// store, or one whose keys were destroyed, may be wiped: a locked tablet cannot be
    /// emptied by whoever holds it.
    pub fn wipe(&self, unsynced_shown: u32) -> Result<AppState, AppError> {
        let mut guard = lock(&self.store);
        if let Some(store) = guard.as_ref() {
            if !store.is_unlocked() && !store.keys_destroyed()? {
                return Err(AppError::new(ErrorCode::Locked, "unlock before wiping"));
            }
            // Refused edits are lost with the store too: they count as unsynced work.
            let status = store.sync_status()?;
            if clamp(status.pending.saturating_add(status.set_aside)) > unsynced_shown {
                return Err(AppError::invalid(
                    "unsynced",
                    "more changes exist only on this tablet than were shown; look again",
                ));
            }
        }
        // Keys and content are overwritten first: unlinking alone leaves them in freed blocks.
        let destroyed = guard.take().map_or(Ok(()), Store::destroy);
        remove_store_files(&self.store_path())?;
        drop(guard);
        destroyed?;
        let mut rt = lock(&self.sync);
        *rt = SyncRuntime {
            version: rt.version + 1,
            ..SyncRuntime::default()
        };
        drop(rt);
        Ok(self.state())
    }

    /// The sync bar now.
    pub fn sync_bar(&self) -> SyncBar {
        let (state, progress, changes, version) = {
            let rt = lock(&self.sync);
            (rt.state, rt.progress, rt.changes, rt.version)
        };
        let mut bar = SyncBar {
            state,
            progress,
            changes,
            version,
            ..SyncBar::default()
        };
        let mut guard = lock(&self.store);
        if let Some(store) = guard.as_mut() {
            bar.rescoping = store
                .rescope_state()
                .is_ok_and(|r| r != crate::store::Rescope::Idle);
            if let Ok(status) = store.sync_status() {
                bar.unsynced = clamp(status.pending);
                bar.set_aside = clamp(status.set_aside);
                bar.only_here = clamp(status.pending.saturating_add(status.set_aside));
                bar.last_success_ms = status.last_success_ms;
            }
            if store.is_unlocked() {
                bar.open_conflicts = store.conflicts(false).map_or(0, |c| clamp(c.len() as u64));
            }
        }
        bar
    }

    /// Asks the sync loop to sync now (after a save, on unlock, or from the sync button).
    pub fn kick_sync(&self) {
        lock(&self.sync).kicked = true;
        self.wake.notify_all();
    }

    fn can_sync(&self) -> bool {
        lock(&self.store).as_ref().is_some_and(Store::is_unlocked)
    }

    /// One sync, reporting the bar to `notify` as it goes. Only the sync loop calls this.
    pub fn sync_once(&self, notify: &dyn Fn(&SyncBar)) -> Result<sync::SyncReport, AppError> {
        let url = {
            let mut guard = lock(&self.store);
            let store = guard
                .as_mut()
                .ok_or_else(|| AppError::new(ErrorCode::NotSetUp, "no store"))?;
            store
                .enrolment()?
                .ok_or_else(|| AppError::new(ErrorCode::NotSetUp, "not enrolled"))?
                .server_url
        };
        {
            let mut rt = lock(&self.sync);
            rt.state = SyncState::Syncing;
            rt.progress = None;
            rt.version += 1;
        }
        notify(&self.sync_bar());
        let transport = HttpTransport::new(&url).map_err(SyncError::from);
        let retry = Retry {
            attempts: 1,
            ..Retry::default()
        };
        let result = transport.and_then(|t| {
            sync::sync_with(&mut Shared(&self.store), &t, retry, &mut |p: Progress| {
                let mut rt = lock(&self.sync);
                rt.progress = Some(SyncProgress {
                    pulled: clamp(p.pulled as u64),
                    pending: clamp(p.pending),
                    more: p.more,
                });
                rt.version += 1;
                drop(rt);
                notify(&self.sync_bar());
            })
        });
        if matches!(result, Err(SyncError::Revoked)) {
            self.erase_revoked(notify)?;
            return result.map_err(AppError::from);
        }
        {
            let mut rt = lock(&self.sync);
            rt.progress = None;
            rt.version += 1;
            rt.state = match &result {
                Ok(_) => SyncState::Online,
                // Unreachable, or something in between answered instead (a captive portal).
                Err(SyncError::Transport(
                    sync::TransportError::Unreachable(_) | sync::TransportError::Decode(_),
                )) => SyncState::Offline,
                Err(SyncError::Unauthorized | SyncError::Revoked) => SyncState::Revoked,
                Err(SyncError::UpdateRequired) => SyncState::UpdateRequired,
                // Locked mid-sync: nothing is wrong with the server.
                Err(SyncError::Store(StoreError::Locked)) => rt.state_before_sync(),
                Err(_) => SyncState::Failed,
            };
            rt.failures = if result.is_ok() { 0 } else { rt.failures + 1 };
            if result.as_ref().is_ok_and(sync::SyncReport::changed_screens) {
                rt.changes = rt.changes.wrapping_add(1);
            }
        }
        notify(&self.sync_bar());
        result.map_err(AppError::from)
    }

    /// The server revoked this tablet or its worker: erase every local copy now. What was
    /// unsynced is lost by design — the worker no longer has the right to send it.
    fn erase_revoked(&self, notify: &dyn Fn(&SyncBar)) -> Result<(), AppError> {
        let mut guard = lock(&self.store);
        let destroyed = guard.take().map_or(Ok(()), Store::destroy);
        let removed = remove_store_files(&self.store_path());
        drop(guard);
        let mut rt = lock(&self.sync);
        *rt = SyncRuntime {
            state: SyncState::Revoked,
            version: rt.version + 1,
            ..SyncRuntime::default()
        };
        drop(rt);
        notify(&self.sync_bar());
        removed?;
        destroyed?;
        Ok(())
    }

    /// While locked: asks the server whether this tablet still stands, with its lock-state
    /// credential (it can learn "revoked" and nothing else; it opens no data), and on a
    /// revocation erases the store as the unlocked path does. So a lost tablet wipes itself
    /// when it next reaches the server even if nobody unlocks it. Returns whether it wiped.
    /// Does nothing while unlocked (the sync does it then) or without a credential.
    pub fn check_standing(&self, notify: &dyn Fn(&SyncBar)) -> Result<bool, AppError> {
        let standing = {
            let guard = lock(&self.store);
            match guard.as_ref() {
                Some(store) if !store.is_unlocked() => store.standing()?,
                _ => None,
            }
        };
        let Some((url, token)) = standing else {
            return Ok(false);
        };
        // The store is not held across the request: an unlock must not wait on the network.
        let transport = HttpTransport::new(&url).map_err(SyncError::from)?;
        match sync::check_standing(&token, &transport) {
            Err(SyncError::Revoked) => {
                self.erase_revoked(notify)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The background sync: syncs when kicked or when the schedule says, while unlocked;
    /// backs off while the server is unreachable. While locked, it checks the tablet's
    /// standing instead ([`App::check_standing`]). Returns after [`App::stop`].
    pub fn run_sync_loop(&self, schedule: SyncSchedule, notify: &dyn Fn(&SyncBar)) {
        while !self.stopping.load(Ordering::SeqCst) {
            let wait = schedule.wait_after(lock(&self.sync).failures);
            let deadline = Instant::now() + wait;
            {
                let mut rt = lock(&self.sync);
                while !rt.kicked && !self.stopping.load(Ordering::SeqCst) {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    rt = self
                        .wake
                        .wait_timeout(rt, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                rt.kicked = false;
            }
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            if self.can_sync() {
                let _ = self.sync_once(notify);
            } else {
                let _ = self.check_standing(notify);
            }
        }
    }

    /// The idle lock: checks every `tick` and calls `on_lock` when it locked the store.
    /// Returns after [`App::stop`].
    pub fn run_lock_loop(&self, tick: Duration, on_lock: &dyn Fn()) {
        while !self.stopping.load(Ordering::SeqCst) {
            {
                let rt = lock(&self.sync);
                let _ = self
                    .wake
                    .wait_timeout(rt, tick)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if self.lock_if_idle(Instant::now()) {
                on_lock();
            }
        }
    }

    /// Ends both loops (on exit, and in tests).
    pub fn stop(&self) {
        // Under the loops' mutex, so the flag cannot land between a loop's check and its wait.
        let _rt = lock(&self.sync);
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }
}

impl SyncRuntime {
    fn state_before_sync(&self) -> SyncState {
        if self.failures == 0 {
            SyncState::Online
        } else {
            SyncState::Offline
        }
    }
}

/// A visit the signed-in worker wrote and may still change (correct it, link it): a worker who
/// logs visits, and its author.
fn own_visit(
    store: &mut Store,
    author: Author,
    id: Uuid,
) -> Result<crate::domain::Visit, AppError> {
    let visit: crate::domain::Visit = store
        .get(id)?
        .ok_or_else(|| AppError::new(ErrorCode::NotFound, "visit not found"))?;
    if !offer_of(store).log_visits || visit.author != author.worker {
        return Err(AppError::new(
            ErrorCode::NotAllowed,
            "only the visit's author changes it",
        ));
    }
    Ok(visit)
}

/// What the app offers the worker the store serves: by their role, once the server has said
/// it (a field worker's offer before).
fn offer_of(store: &mut Store) -> crate::access::Offer {
    let role = store
        .profile()
        .ok()
        .flatten()
        .map_or(crate::access::Role::Outreach, |p| p.role);
    crate::access::Offer::of(role)
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn create_private_dir(dir: &Path) -> Result<(), AppError> {
    std::fs::create_dir_all(dir).map_err(internal)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(internal)?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(internal)?;
    std::fs::rename(&tmp, path).map_err(internal)
}

/// HTTPS, or plain HTTP to this machine only (a test or demo server): an enrolment code or a
/// device token must never cross a network in clear text.
fn server_address_ok(url: &str) -> bool {
    if url.contains(char::is_whitespace) {
        return false;
    }
    // No `user@` part: `https://kommune.dk@elsewhere` goes to elsewhere.
    if url.contains(['@', '?', '#']) {
        return false;
    }
    if url.starts_with("https://") && url.len() > "https://".len() {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Opens the store in `dir`, if there is one. A store that was created but never enrolled
/// (the app died during first run) holds nothing a worker saved — every save needs an
/// enrolment — so it is removed and first run starts again.
fn open_store(dir: &Path) -> Result<Option<Store>, AppError> {
    create_private_dir(dir)?;
    let path = dir.join(STORE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let store = Store::open(&path, Arc::new(NoPlatformSecret))?;
    let status = store.sync_status()?;
    let mut records = 0;
    for kind in crate::domain::EntityKind::ALL {
        records += store.count(kind)?;
    }
    if !status.enrolled && records == 0 && status.pending == 0 {
        drop(store);
        remove_store_files(&path)?;
        return Ok(None);
    }
    Ok(Some(store))
}

/// Deletes the store's files, the WAL first (an old WAL beside a new store could be replayed).
fn remove_store_files(path: &Path) -> Result<(), AppError> {
    crate::store::remove_files(path).map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_back_off_doubles_to_its_cap_and_resets_after_success() {
        let s = SyncSchedule::default();
        let waits: Vec<u64> = (0..7).map(|f| s.wait_after(f).as_secs()).collect();
        assert_eq!(waits, [60, 5, 10, 20, 40, 60, 60]);
        assert_eq!(s.wait_after(u32::MAX), s.max_wait);
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in [
            "https://feltbog.kommune.dk",
            "https://10.0.0.5:8443/api",
            "http://127.0.0.1:8787",
            "http://localhost",
            "http://[::1]:8787",
        ] {
            assert!(server_address_ok(ok), "{ok}");
        }
        for bad in [
            "http://feltbog.kommune.dk",
            "http://127.0.0.1.evil.dk",
            "http://10.0.0.5:8787",
            "https://",
            "ftp://x",
            "https://a b",
            "https://feltbog.kommune.dk@evil.example",
            "http://127.0.0.1@evil.example",
        ] {
            assert!(!server_address_ok(bad), "{bad}");
        }
    }

    #[test]
    fn a_settings_file_cannot_switch_the_idle_lock_off() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            r#"{"language":"en","lock_timeout_secs":4294967295}"#,
        )
        .unwrap();
        let app = App::new(AppConfig::new(dir.path().to_path_buf()));
        assert_eq!(app.settings().language, Language::En);
        assert_eq!(app.idle_limit(), Duration::from_secs(3600));
        assert!(
            app.set_settings(Settings {
                language: Language::Da,
                lock_timeout_secs: 0
            })
            .is_err()
        );
    }

    #[test]
    fn first_run_reads_the_link_the_app_was_opened_with_and_names_a_foreign_code() {
        let dir = tempfile::tempdir().unwrap();
        let app = App::new(AppConfig::new(dir.path().to_path_buf()));
        assert_eq!(
            app.enrolment_link(None).unwrap(),
            None,
            "opened without a link"
        );
        app.opened_with("feltbog-enrol:https://feltbog.kommune.dk/#K7QP-2MXW");
        let link = app.enrolment_link(None).unwrap().unwrap();
        assert_eq!(
            (link.server_url.as_str(), link.code.as_str()),
            ("https://feltbog.kommune.dk", "K7QP-2MXW")
        );
        let code = |text: &str| app.enrolment_link(Some(text)).unwrap_err().code;
        assert_eq!(code("https://example.com/menu"), ErrorCode::ForeignCode);
        assert_eq!(code("feltbog-enrol:https://x#"), ErrorCode::DamagedCode);
        app.opened_with("WIFI:S:kantine;;");
        assert_eq!(
            app.enrolment_link(None).unwrap_err().code,
            ErrorCode::ForeignCode
        );
    }
}
