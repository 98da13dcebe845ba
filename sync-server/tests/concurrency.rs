//! Issue 18, point 2: on PostgreSQL the change log's numbers come from a sequence, and a
//! sequence hands out numbers in the order transactions ask, not the order they commit. A
//! reader whose cursor passed number 11 while number 10 was still being written would never
//! see 10. Every writing transaction therefore takes the writers' advisory lock first
//! (`storage::Transact for postgres::Client`), so numbers are committed in order. Here several
//! devices push at once, each through its own connection, while a reader pulls all the time:
//! it must see every change the log ends with, each once, in order. And the rate limits hold
//! across instances (point 3): they live in the database every instance shares.

mod common;

use common::pg::Scratch;
use feltbog_core::crypto::KdfParams;
use feltbog_core::domain::{Citizen, Visit, VisitKind, WorkerId};
use feltbog_core::hlc::{DeviceId, system_time_ms};
use feltbog_core::protocol::{EnrolRequest, EnrolResponse, SyncRequest, SyncResponse};
use feltbog_core::store::{CreateOptions, Store};
use feltbog_core::sync::{self, Retry, Transport, TransportError, WireBytes};
use feltbog_server::identity;
use feltbog_server::pool::Location;
use feltbog_server::storage::{Database, DbExt, Transact};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

const DRIFT: u64 = feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS;
const WRITERS: usize = 4;
const ROUNDS: usize = 15;

/// The server library behind a device's transport, on a connection of its own: no HTTP, the
/// same transactions as a request.
struct Local(Mutex<Database>);

impl Transport for Local {
    fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, TransportError> {
        let mut db = self.0.lock().unwrap();
        let fail = |e: Error| TransportError::Decode(e.to_string());
        let (caller, token) =
            identity::enrol(&mut *db, &request.code, request.device_id, system_time_ms())
                .map_err(|e| fail(e.into()))?;
        let profile = db
            .read(|tx| {
                let reach = feltbog_server::scope::reach(tx, &caller)?;
                Ok::<_, Error>(identity::profile(tx, &caller, &reach)?)
            })
            .map_err(fail)?;
        Ok(EnrolResponse {
            worker_id: caller.worker_id,
            team_id: caller.team_id,
            token,
            profile: Some(profile),
            standing_token: None,
        })
    }

    fn sync(
        &self,
        token: &str,
        request: &SyncRequest,
    ) -> Result<(SyncResponse, WireBytes), TransportError> {
        let mut db = self.0.lock().unwrap();
        let fail = |e: Error| TransportError::Decode(e.to_string());
        let caller = db
            .write(|tx| Ok::<_, Error>(identity::authenticate(tx, token)?))
            .map_err(fail)?
            .ok_or_else(|| TransportError::Decode("unknown token".into()))?;
        let response =
            feltbog_server::sync::sync(&mut *db, &caller, request, system_time_ms(), DRIFT)
                .map_err(|e| fail(e.into()))?;
        Ok((response, WireBytes::default()))
    }
}

fn open(url: &str) -> Database {
    Location::parse(Some(url), std::path::Path::new("."))
        .unwrap()
        .open()
        .unwrap()
}

#[test]
fn concurrent_pushers_on_postgres_and_a_reader_that_never_skips_a_change() {
    let scratch = Scratch::new();
    let url = scratch.url();
    let dir = tempfile::tempdir().unwrap();
    let mut admin = open(&url);
    let now = system_time_ms();
    let (team, workers, reader) = admin
        .write(|tx| {
            let team = identity::create_team(tx, "Nord", now)?;
            let workers: Vec<Uuid> = (0..WRITERS)
                .map(|i| identity::create_worker(tx, team, &format!("W{i}"), "outreach"))
                .collect::<Result<_, _>>()?;
            let reader = identity::create_worker(tx, team, "Læser", "outreach")?;
            Ok::<_, identity::IdentityError>((team, workers, reader))
        })
        .unwrap();
    let mut code = |worker| {
        admin
            .write(|tx| identity::issue_enrolment_code(tx, worker, now))
            .unwrap()
    };
    let codes: Vec<String> = workers.iter().map(|w| code(*w)).collect();
    let reader_code = code(reader);
    let (reader, _) =
        identity::enrol(&mut admin, &reader_code, DeviceId(Uuid::now_v7()), now).unwrap();

    let done = Arc::new(AtomicUsize::new(0));
    let pushers: Vec<_> = codes
        .into_iter()
        .enumerate()
        .map(|(i, code)| {
            let (url, path, done) = (url.clone(), dir.path().join(format!("{i}")), done.clone());
            std::thread::spawn(move || {
                let transport = Local(Mutex::new(open(&url)));
                let options = CreateOptions::with_kdf(KdfParams::MINIMUM);
                let mut store = Store::create(&path, &common::pass(), &options).unwrap();
                sync::enrol(&mut store, &transport, "local", &code).unwrap();
                let me = WorkerId(store.enrolment().unwrap().unwrap().worker_id);
                for round in 0..ROUNDS {
                    let citizen = Citizen::with_alias(&format!("C{i}-{round}"));
                    store.save(&citizen).unwrap();
                    store
                        .save(&Visit::with_citizen(
                            citizen.id,
                            me,
                            VisitKind::StreetContact,
                        ))
                        .unwrap();
                    sync::sync_now(&mut store, &transport, Retry::default(), &mut |_| {}).unwrap();
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();

    // The reader pulls from its cursor all the while, and once more after the last push.
    let mut db = open(&url);
    let (mut cursor, mut seen, mut pages) = (0u64, Vec::new(), 0usize);
    loop {
        let finished = done.load(Ordering::SeqCst) == WRITERS;
        let page = db
            .read(|tx| feltbog_server::sync::pull_page(tx, &reader, cursor, false))
            .unwrap();
        pages += 1;
        seen.extend(page.changes.iter().map(|(seq, _)| *seq));
        cursor = page.next_cursor;
        if finished && !page.more && page.changes.is_empty() {
            break;
        }
    }
    for p in pushers {
        p.join().unwrap();
    }
    let logged: Vec<i64> = db
        .read(|tx| {
            tx.all(
                "SELECT seq FROM changes WHERE team_id = ?1 ORDER BY seq",
                feltbog_server::args![team],
            )
        })
        .unwrap();
    let logged: Vec<u64> = logged.into_iter().map(|s| s as u64).collect();
    assert_eq!(
        logged.len(),
        WRITERS * ROUNDS * 2,
        "one change per citizen and visit"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the reader got changes in order, each once"
    );
    let missed: BTreeSet<u64> = logged
        .iter()
        .copied()
        .filter(|s| !seen.contains(s))
        .collect();
    assert!(missed.is_empty(), "the reader skipped {missed:?}");
    assert_eq!(seen, logged);
    println!(
        "{WRITERS} pushers, {} changes, read in {pages} pulls",
        logged.len()
    );
}

/// Guessing tokens against two instances on one PostgreSQL, alternately: the address's
/// allowance (3 a minute here) is spent once, whichever instance answers. Limits kept per
/// instance would have let all six guesses through.
#[test]
fn two_instances_share_one_allowance_for_guesses() {
    use common::Server;
    use feltbog_core::sync::http::HttpTransport;
    let scratch = Scratch::new();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--enrol-rate-per-minute", "3"];
    let servers = [
        Server::start_shared_with(&dir.path().join("a"), &scratch.url(), "127.0.0.1:0", &flags),
        Server::start_shared_with(&dir.path().join("b"), &scratch.url(), "127.0.0.1:0", &flags),
    ];
    let statuses: Vec<u16> = (0..6)
        .map(|i| {
            let transport = HttpTransport::new(&servers[i % 2].url).unwrap();
            match transport.sync(&format!("guess-{i}"), &SyncRequest::default()) {
                Err(TransportError::Refused { status, .. }) => status,
                other => panic!("expected a refusal, got {other:?}"),
            }
        })
        .collect();
    assert_eq!(statuses, vec![401, 401, 401, 429, 429, 429]);
}
