//! The encrypted device store, through its public API, on real SQLite files.

use feltbog_core::crypto::{CryptoError, KdfParams, Passphrase};
use feltbog_core::domain::{
    Citizen, Cpr, EntityKind, Site, SiteId, SiteKind, SiteLogEntry, SiteLogEntryId, SiteLogKind,
    Task, TaskId, TaskStatus, Theme, ValidationError, Visit, VisitKind, WorkerId,
};
use feltbog_core::keystore::{NoPlatformSecret, SuppliedSecret};
use feltbog_core::protocol::FieldChange;
use feltbog_core::store::{
    CreateOptions, ListQuery, LockoutPolicy, Saved, Store, StoreError, schema,
};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s).unwrap()
}

fn options() -> CreateOptions {
    CreateOptions::with_kdf(KdfParams::MINIMUM)
}

fn new_store(dir: &Path) -> (PathBuf, Store) {
    let path = dir.join("device.feltbog");
    let store = Store::create(&path, &pass("korrekt hest"), &options()).unwrap();
    (path, store)
}

fn reopen(path: &Path) -> Store {
    let mut s = Store::open(path, Arc::new(NoPlatformSecret)).unwrap();
    s.unlock(&pass("korrekt hest")).unwrap();
    s
}

/// Mirror of the store's private cell layout, so tests can tamper with stored bytes.
#[derive(Serialize, Deserialize, Clone)]
struct Cell {
    field: String,
    hlc: u64,
    device: [u8; 16],
    sealed: Vec<u8>,
}

fn raw_cells(path: &Path, entity: &str, id: uuid::Uuid) -> Vec<Cell> {
    let conn = Connection::open(path).unwrap();
    let blob: Vec<u8> = conn
        .query_row(
            "SELECT cells FROM records WHERE entity = ?1 AND id = ?2",
            (entity, &id.as_bytes()[..]),
            |r| r.get(0),
        )
        .unwrap();
    postcard::from_bytes(&blob).unwrap()
}

fn write_raw_cells(path: &Path, entity: &str, id: uuid::Uuid, cells: &[Cell]) {
    let conn = Connection::open(path).unwrap();
    let blob = postcard::to_allocvec(cells).unwrap();
    conn.execute(
        "UPDATE records SET cells = ?1 WHERE entity = ?2 AND id = ?3",
        (blob, entity, &id.as_bytes()[..]),
    )
    .unwrap();
}

fn visit_for(citizen: &Citizen, note: &str) -> Visit {
    let mut v = Visit::with_citizen(citizen.id, WorkerId::new(), VisitKind::HomeVisit);
    v.note = note.into();
    v.place = Some("Opgang 4".into());
    v.themes = BTreeSet::from([Theme::Housing, Theme::EconomyAndDebt]);
    v
}

#[test]
fn saves_reads_lists_and_queues_every_kind_of_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = new_store(dir.path());
    let mut citizen = Citizen::with_alias("Fisk");
    citizen.cpr = Some(Cpr::parse("010190-1234").unwrap());
    assert_eq!(
        store.save(&citizen).unwrap(),
        Saved::Written { device_seq: 1 }
    );
    let visit = visit_for(&citizen, "Talte om huslejen");
    store.save(&visit).unwrap();
    let task = Task {
        id: TaskId::new(),
        citizen_id: citizen.id,
        title: "Ring til gældsrådgivning".into(),
        created_at: chrono::Utc::now(),
        due: chrono::Utc::now().date_naive(),
        assignee: None,
        status: TaskStatus::Open,
        archived: false,
    };
    store.save(&task).unwrap();
    let site = Site {
        id: SiteId::new(),
        kind: SiteKind::AlternativeHousing,
        name: "Skæve boliger Nord".into(),
        address: "Vej 1".into(),
        archived: false,
        created_at: chrono::Utc::now(),
    };
    store.save(&site).unwrap();
    let entry = SiteLogEntry {
        id: SiteLogEntryId::new(),
        site_id: site.id,
        at: chrono::Utc::now(),
        kind: SiteLogKind::NeighbourDialogue,
        note: "Snak med naboen om støj".into(),
        residents: BTreeSet::from([citizen.id]),
        author: WorkerId::new(),
        archived: false,
    };
    store.save(&entry).unwrap();
    let anon = Visit::anonymous(3, "Tre unge ved stationen", WorkerId::new());
    store.save(&anon).unwrap();
    drop(store);

    let mut store = reopen(&path);
    assert_eq!(
        store.get::<Citizen>(citizen.id.0).unwrap(),
        Some(citizen.clone())
    );
    assert_eq!(store.get::<Visit>(visit.id.0).unwrap(), Some(visit.clone()));
    assert_eq!(store.get::<Task>(task.id.0).unwrap(), Some(task));
    assert_eq!(store.get::<Site>(site.id.0).unwrap(), Some(site.clone()));
    assert_eq!(store.get::<SiteLogEntry>(entry.id.0).unwrap(), Some(entry));
    let visits = store
        .list::<Visit>(&ListQuery {
            citizen: Some(citizen.id),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(visits, vec![visit]);
    assert_eq!(store.list::<Visit>(&ListQuery::default()).unwrap().len(), 2);
    assert_eq!(
        store
            .list::<SiteLogEntry>(&ListQuery {
                site: Some(site.id),
                ..Default::default()
            })
            .unwrap()
            .len(),
        1
    );

    let outbox = store.outbox().unwrap();
    assert_eq!(
        outbox.iter().map(|m| m.device_seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert!(outbox.iter().all(|m| m.device_id == store.device_id()));
    // A new record sends every field; set fields as one add per element.
    let visit_ops = &outbox[1].ops;
    assert!(
        visit_ops
            .iter()
            .all(|op| op.entity == EntityKind::Visit && op.base.is_none())
    );
    let theme_adds: Vec<_> = visit_ops
        .iter()
        .filter(|op| op.field == "themes")
        .map(|op| &op.change)
        .collect();
    assert_eq!(theme_adds.len(), 2);
    assert!(
        theme_adds
            .iter()
            .all(|c| matches!(c, FieldChange::Add { .. }))
    );
    // Stamps increase with every save.
    let hlcs: Vec<_> = outbox.iter().map(|m| m.ops[0].hlc).collect();
    assert!(hlcs.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn an_edit_queues_only_changed_fields_with_their_base() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    let citizen = Citizen::with_alias("Fisk");
    store.save(&citizen).unwrap();
    let mut visit = visit_for(&citizen, "første udkast");
    store.save(&visit).unwrap();
    assert_eq!(store.save(&visit).unwrap(), Saved::Unchanged);

    visit.note = "rettet note".into();
    visit.themes.remove(&Theme::Housing);
    visit.themes.insert(Theme::MentalHealth);
    assert_eq!(
        store.save(&visit).unwrap(),
        Saved::Written { device_seq: 3 }
    );
    let outbox = store.outbox().unwrap();
    let first = &outbox[1];
    let edit = &outbox[2];
    let fields: BTreeSet<_> = edit.ops.iter().map(|op| op.field.as_str()).collect();
    assert_eq!(fields, BTreeSet::from(["note", "themes"]));
    let note_op = edit.ops.iter().find(|op| op.field == "note").unwrap();
    assert_eq!(
        note_op.change,
        FieldChange::Assign {
            value: "rettet note".into()
        }
    );
    assert_eq!(note_op.base, Some(first.stamp_of(&first.ops[0])));
    let mut theme_changes: Vec<_> = edit
        .ops
        .iter()
        .filter(|op| op.field == "themes")
        .map(|op| op.change.clone())
        .collect();
    theme_changes.sort_by_key(|c| serde_json::to_string(c).unwrap());
    // The remove carries the tag of the add it saw: the creating save's stamp.
    let created = first.stamp_of(&first.ops[0]);
    assert_eq!(
        theme_changes,
        vec![
            FieldChange::Add {
                value: "mental_health".into()
            },
            FieldChange::Remove {
                value: "housing".into(),
                observed: vec![created]
            }
        ]
    );
    // A later save still sees the add state: removing "economy_and_debt" observes its tag too.
    visit.themes.remove(&Theme::EconomyAndDebt);
    store.save(&visit).unwrap();
    let last = store.outbox().unwrap().pop().unwrap();
    assert_eq!(
        last.ops
            .iter()
            .map(|op| op.change.clone())
            .collect::<Vec<_>>(),
        vec![FieldChange::Remove {
            value: "economy_and_debt".into(),
            observed: vec![created]
        }]
    );
    assert_eq!(store.get::<Visit>(visit.id.0).unwrap(), Some(visit));
}

#[test]
fn invalid_records_are_refused_with_a_typed_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    let mut visit = Visit::anonymous(2, "", WorkerId::new());
    visit.anonymous = None;
    let err = store.save(&visit).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Validation(ValidationError::VisitNeedsCitizenOrAnonymous)
        ),
        "{err}"
    );
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert_eq!(store.count(EntityKind::Visit).unwrap(), 0);
}

#[test]
fn ciphertext_moved_to_another_field_or_row_or_flipped_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = new_store(dir.path());
    let citizen = Citizen::with_alias("Fisk");
    store.save(&citizen).unwrap();
    let a = visit_for(&citizen, "note A");
    let b = visit_for(&citizen, "note B");
    store.save(&a).unwrap();
    store.save(&b).unwrap();
    drop(store);
    let original = raw_cells(&path, "visit", a.id.0);
    let expect_open_error = |path: &Path, id: uuid::Uuid| {
        let mut s = reopen(path);
        let err = s.get::<Visit>(id).unwrap_err();
        assert!(
            matches!(err, StoreError::Crypto(CryptoError::Open)),
            "{err:?}"
        );
    };

    // Moved to another field of the same row: the note's ciphertext put in place of `place`.
    let mut moved = original.clone();
    let note = moved
        .iter()
        .find(|c| c.field == "note")
        .unwrap()
        .sealed
        .clone();
    moved
        .iter_mut()
        .find(|c| c.field == "place")
        .unwrap()
        .sealed = note;
    write_raw_cells(&path, "visit", a.id.0, &moved);
    expect_open_error(&path, a.id.0);

    // Moved to another row: B's note put into A.
    let mut other_row = original.clone();
    let b_note = raw_cells(&path, "visit", b.id.0)
        .into_iter()
        .find(|c| c.field == "note")
        .unwrap()
        .sealed;
    other_row
        .iter_mut()
        .find(|c| c.field == "note")
        .unwrap()
        .sealed = b_note;
    write_raw_cells(&path, "visit", a.id.0, &other_row);
    expect_open_error(&path, a.id.0);

    // One bit flipped in the middle of the ciphertext.
    let mut flipped = original.clone();
    let cell = flipped.iter_mut().find(|c| c.field == "note").unwrap();
    let mid = cell.sealed.len() / 2;
    cell.sealed[mid] ^= 0x01;
    write_raw_cells(&path, "visit", a.id.0, &flipped);
    expect_open_error(&path, a.id.0);

    // Restored, it opens again: the failures were the tampering, not the store.
    write_raw_cells(&path, "visit", a.id.0, &original);
    assert_eq!(reopen(&path).get::<Visit>(a.id.0).unwrap(), Some(a));
}

#[test]
fn wrong_passphrase_fails_without_revealing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = new_store(dir.path());
    drop(store);
    let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    let err = s.unlock(&pass("forkert hest")).unwrap_err();
    assert!(
        matches!(err, StoreError::WrongPassphrase { attempts_left: 9 }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(!msg.contains("hest") && !msg.contains("korrekt"), "{msg}");
    assert!(matches!(
        s.list::<Citizen>(&ListQuery::default()),
        Err(StoreError::Locked)
    ));
    // A right passphrase afterwards works and resets the count.
    s.unlock(&pass("korrekt hest")).unwrap();
    s.lock();
    assert!(matches!(
        s.unlock(&pass("forkert hest")),
        Err(StoreError::WrongPassphrase { attempts_left: 9 })
    ));
}

#[test]
fn after_the_attempt_limit_no_passphrase_opens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.feltbog");
    let opts = CreateOptions {
        lockout: LockoutPolicy {
            max_attempts: 3,
            free_attempts: 3,
            base_delay_ms: 0,
            max_delay_ms: 0,
        },
        ..options()
    };
    let mut store = Store::create(&path, &pass("korrekt hest"), &opts).unwrap();
    store.save(&Citizen::with_alias("Fisk")).unwrap();
    drop(store);
    let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    assert!(matches!(
        s.unlock(&pass("gæt nummer 1")),
        Err(StoreError::WrongPassphrase { attempts_left: 2 })
    ));
    assert!(matches!(
        s.unlock(&pass("gæt nummer 2")),
        Err(StoreError::WrongPassphrase { attempts_left: 1 })
    ));
    assert!(matches!(
        s.unlock(&pass("gæt nummer 3")),
        Err(StoreError::Destroyed)
    ));
    let err = s.unlock(&pass("korrekt hest")).unwrap_err();
    assert!(matches!(err, StoreError::Destroyed));
    assert!(
        err.to_string().contains("can never be opened again"),
        "{err}"
    );
    drop(s);
    let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    assert!(matches!(
        s.unlock(&pass("korrekt hest")),
        Err(StoreError::Destroyed)
    ));
    // Nothing sealed is left behind either.
    let conn = Connection::open(&path).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM data_keys) + (SELECT count(*) FROM records) + (SELECT count(*) FROM outbox)
                  + (SELECT count(*) FROM header WHERE master_wrapped IS NOT NULL)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn wrong_attempts_past_the_free_ones_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.feltbog");
    let opts = CreateOptions {
        lockout: LockoutPolicy {
            max_attempts: 10,
            free_attempts: 1,
            base_delay_ms: 60_000,
            max_delay_ms: 600_000,
        },
        ..options()
    };
    drop(Store::create(&path, &pass("korrekt hest"), &opts).unwrap());
    let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    assert!(matches!(
        s.unlock(&pass("forkert hest")),
        Err(StoreError::WrongPassphrase { .. })
    ));
    // Even the right passphrase is not tried during the back-off.
    match s.unlock(&pass("korrekt hest")) {
        Err(StoreError::BackOff { retry_after_ms }) => {
            assert!(retry_after_ms > 50_000 && retry_after_ms <= 60_000)
        }
        other => panic!("expected back-off, got {other:?}"),
    }
    assert_eq!(LockoutPolicy::default().delay_after(2), 0);
    assert_eq!(LockoutPolicy::default().delay_after(3), 1_000);
    assert_eq!(LockoutPolicy::default().delay_after(5), 4_000);
    assert_eq!(LockoutPolicy::default().delay_after(40), 900_000);
}

/// Every file the store wrote in its directory (database, WAL, shared memory, anything else).
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn seeded_personal_data_never_appears_in_any_file_the_store_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = new_store(dir.path());
    let name = "Zacharias Markørnavn Qwyxz";
    let cpr = "231185-4917";
    let note = "MARKØR-NOTE: hemmelig tekst om misbrug og psykiatri 7c1f";
    let mut citizen = Citizen::with_alias("Qwyxz-alias");
    citizen.full_name = Some(name.into());
    citizen.cpr = Some(Cpr::parse(cpr).unwrap());
    citizen.phone = Some("+45 99 88 77 66".into());
    citizen.tags.insert("tag-markør-misbrug".into());
    citizen.goals.push(feltbog_core::domain::Goal {
        id: feltbog_core::domain::GoalId::new(),
        text: "mål-markør: egen bolig til sommer".into(),
        status: feltbog_core::domain::GoalStatus::Active,
        created: chrono::Utc::now().date_naive(),
    });
    let today = chrono::Utc::now().date_naive();
    {
        use feltbog_core::domain::*;
        citizen.consents.push(PurposeConsent {
            id: ConsentId::new(),
            purpose: ConsentPurpose::SharingWithAgencies,
            status: ConsentStatus::Given,
            date: today,
            scope: "samtykke-markør: deling med jobcenter".into(),
            method: ConsentMethod::Verbal,
            recorded_by: WorkerId::new(),
        });
        // Every sensitive field of the pathway (issue 17) carries a marker of its own.
        citizen.resources = Some("ressource-markør: tegner og fisker".into());
        let course = CourseId::new();
        citizen.courses.push(Course {
            id: course,
            kind: CourseKind::Cti,
            started: today,
            planned_end: None,
            ended: None,
            ending: None,
            goals: citizen.goals.iter().map(|g| g.id).collect(),
            note: "forløb-markør: stabilisering".into(),
        });
        citizen.course_reviews.push(CourseReview {
            id: CourseReviewId::new(),
            course_id: course,
            date: today,
            text: "opfølgning-markør: godt i gang".into(),
        });
        citizen.referrals.push(ReferralCase {
            id: ReferralCaseId::new(),
            target: Referral::Psychiatry,
            made: today,
            visit_id: None,
            outcome: ReferralOutcome::Waiting,
            outcome_date: None,
            follow_up: None,
            note: "henvisning-markør: distriktspsykiatri".into(),
        });
        citizen.network.push(NetworkPerson {
            id: NetworkPersonId::new(),
            name: "netværk-markør Søsteren".into(),
            relation: Relation::Sibling,
            contact: Some("kontakt-markør 12 34 56 78".into()),
            may_involve: true,
        });
    }
    store.save(&citizen).unwrap();
    let mut visit = visit_for(&citizen, note);
    store.save(&visit).unwrap();
    visit.note = format!("{note} (rettet)").into();
    store.save(&visit).unwrap();
    // Inspect the files while the store is open (WAL not yet checkpointed) and after closing.
    let markers: [&[u8]; 18] = [
        "ressource-markør".as_bytes(),
        "forløb-markør".as_bytes(),
        "opfølgning-markør".as_bytes(),
        "henvisning-markør".as_bytes(),
        "netværk-markør".as_bytes(),
        "kontakt-markør".as_bytes(),
        b"+45 99 88 77 66",
        b"99 88 77 66",
        "tag-markør".as_bytes(),
        "mål-markør".as_bytes(),
        "samtykke-markør".as_bytes(),
        name.as_bytes(),
        "Markørnavn".as_bytes(),
        cpr.as_bytes(),
        b"2311854917",
        note.as_bytes(),
        b"hemmelig tekst",
        b"Qwyxz-alias",
    ];
    let check = |when: &str| {
        let files = all_bytes(dir.path());
        // Positive control: the scan does see the schema text, so a plaintext marker would show.
        assert!(
            files
                .iter()
                .any(|(_, b)| contains(b, b"CREATE TABLE records")),
            "scan saw no database bytes"
        );
        assert!(
            files.iter().any(|(f, _)| f.ends_with("-wal")) || when == "closed",
            "no WAL seen {when}"
        );
        for (file, bytes) in &files {
            for m in markers {
                assert!(
                    !contains(bytes, m),
                    "{when}: marker {:?} found in {file}",
                    String::from_utf8_lossy(m)
                );
            }
        }
    };
    check("open");
    store.lock();
    drop(store);
    check("closed");
    let _ = path;
}

#[test]
fn erasing_a_citizen_destroys_their_key_records_and_pending_mutations_only() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = new_store(dir.path());
    let gone = Citizen::with_alias("Går ud af scope");
    let stays = Citizen::with_alias("Bliver");
    store.save(&gone).unwrap();
    store.save(&stays).unwrap();
    let v_gone = visit_for(&gone, "slettes");
    let v_stays = visit_for(&stays, "bliver");
    store.save(&v_gone).unwrap();
    store.save(&v_stays).unwrap();
    assert_eq!(store.erase_citizen(gone.id).unwrap(), 2);
    assert_eq!(store.get::<Citizen>(gone.id.0).unwrap(), None);
    assert_eq!(store.get::<Visit>(v_gone.id.0).unwrap(), None);
    assert_eq!(store.get::<Visit>(v_stays.id.0).unwrap(), Some(v_stays));
    let outbox = store.outbox().unwrap();
    assert_eq!(
        outbox.len(),
        2,
        "only the remaining citizen's mutations are pending"
    );
    assert!(
        outbox
            .iter()
            .flat_map(|m| &m.ops)
            .all(|op| op.id != gone.id.0 && op.id != v_gone.id.0)
    );
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let keys: i64 = conn
        .query_row(
            "SELECT count(*) FROM data_keys WHERE scope = ?1",
            [format!("citizen:{}", gone.id)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keys, 0);
}

#[test]
fn lock_drops_keys_and_unlock_restores_access() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    let c = Citizen::with_alias("Fisk");
    store.save(&c).unwrap();
    store.lock();
    assert!(!store.is_unlocked());
    assert!(matches!(
        store.get::<Citizen>(c.id.0),
        Err(StoreError::Locked)
    ));
    assert!(matches!(store.save(&c), Err(StoreError::Locked)));
    assert_eq!(
        store.outbox_len().unwrap(),
        1,
        "counts stay visible while locked"
    );
    store.unlock(&pass("korrekt hest")).unwrap();
    assert_eq!(store.get::<Citizen>(c.id.0).unwrap(), Some(c));
}

#[test]
fn changing_the_passphrase_rewraps_without_touching_records() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = new_store(dir.path());
    let c = Citizen::with_alias("Fisk");
    store.save(&c).unwrap();
    let cells_before = raw_cells(&path, "citizen", c.id.0);
    assert!(matches!(
        store.change_passphrase(&pass("forkert hest"), &pass("ny lang frase")),
        Err(StoreError::WrongPassphrase { attempts_left: 9 })
    ));
    store
        .change_passphrase(&pass("korrekt hest"), &pass("ny lang frase"))
        .unwrap();
    drop(store);
    let cells_after = raw_cells(&path, "citizen", c.id.0);
    assert!(
        cells_before
            .iter()
            .zip(&cells_after)
            .all(|(a, b)| a.sealed == b.sealed),
        "records were re-encrypted"
    );
    let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    assert!(matches!(
        s.unlock(&pass("korrekt hest")),
        Err(StoreError::WrongPassphrase { .. })
    ));
    s.unlock(&pass("ny lang frase")).unwrap();
    assert_eq!(s.get::<Citizen>(c.id.0).unwrap(), Some(c));
}

#[test]
fn a_platform_secret_is_needed_when_one_was_mixed_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.feltbog");
    let secret = || Arc::new(SuppliedSecret::new(vec![7u8; 32]).unwrap());
    let opts = CreateOptions {
        platform: secret(),
        ..options()
    };
    drop(Store::create(&path, &pass("123456"), &opts).unwrap());
    let mut without = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    assert!(matches!(
        without.unlock(&pass("123456")),
        Err(StoreError::WrongPassphrase { .. })
    ));
    let mut with = Store::open(&path, secret()).unwrap();
    with.unlock(&pass("123456")).unwrap();
}

#[test]
fn a_store_made_by_the_first_schema_upgrades_under_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.feltbog");
    let mut old = Store::create_at_schema(&path, &pass("korrekt hest"), &options(), 1).unwrap();
    assert_eq!(old.schema_version().unwrap(), 1);
    let c = Citizen::with_alias("Fra version 1");
    old.save(&c).unwrap();
    let v = visit_for(&c, "gammel note");
    old.save(&v).unwrap();
    drop(old);

    let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::LATEST);
    const { assert!(schema::LATEST >= 2) };
    s.unlock(&pass("korrekt hest")).unwrap();
    assert_eq!(s.get::<Citizen>(c.id.0).unwrap(), Some(c));
    assert_eq!(s.get::<Visit>(v.id.0).unwrap(), Some(v));
    assert_eq!(s.outbox().unwrap().len(), 2);
    // The upgraded store has the guard of version 2 with the default policy.
    s.lock();
    assert!(matches!(
        s.unlock(&pass("forkert hest")),
        Err(StoreError::WrongPassphrase { attempts_left: 9 })
    ));
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn opening_refuses_missing_foreign_and_newer_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.feltbog");
    assert!(matches!(
        Store::open(&missing, Arc::new(NoPlatformSecret)),
        Err(StoreError::NotFound)
    ));
    let foreign = dir.path().join("foreign.sqlite");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(matches!(
        Store::open(&foreign, Arc::new(NoPlatformSecret)),
        Err(StoreError::NotAStore)
    ));
    let (path, store) = new_store(dir.path());
    drop(store);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        Store::open(&path, Arc::new(NoPlatformSecret)),
        Err(StoreError::NewerSchema { found: 99, .. })
    ));
    assert!(matches!(
        Store::create(&path, &pass("korrekt hest"), &options()),
        Err(StoreError::AlreadyExists)
    ));
}

#[test]
fn search_runs_over_decrypted_names_cpr_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    let mut a = Citizen::with_alias("Store Per");
    a.cpr = Some(Cpr::parse("010190-1234").unwrap());
    let mut b = Citizen::with_alias("Lille Ø");
    b.full_name = Some("Ørjan Hansen".into());
    b.tags.insert("Herberg".into());
    store.save(&a).unwrap();
    store.save(&b).unwrap();
    let ids = |v: Vec<Citizen>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.search_citizens("per", false).unwrap()),
        vec![a.id]
    );
    assert_eq!(
        ids(store.search_citizens("ØRJAN", false).unwrap()),
        vec![b.id]
    );
    assert_eq!(
        ids(store.search_citizens("0101", false).unwrap()),
        vec![a.id]
    );
    assert_eq!(
        ids(store.search_citizens("010190-1234", false).unwrap()),
        vec![a.id]
    );
    assert_eq!(
        ids(store.search_citizens("herb", false).unwrap()),
        vec![b.id]
    );
    assert!(store.search_citizens("", false).unwrap().is_empty());
}

#[test]
fn archive_is_an_ordinary_synced_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    let c = Citizen::with_alias("Fisk");
    store.save(&c).unwrap();
    store.set_archived::<Citizen>(c.id.0, true).unwrap();
    assert!(
        store
            .list::<Citizen>(&ListQuery::default())
            .unwrap()
            .is_empty()
    );
    let all = store
        .list::<Citizen>(&ListQuery {
            include_archived: true,
            ..Default::default()
        })
        .unwrap();
    assert!(all[0].archived);
    let last = store.outbox().unwrap().pop().unwrap();
    assert_eq!(last.ops.len(), 1);
    assert_eq!(
        (last.ops[0].field.as_str(), &last.ops[0].change),
        ("archived", &FieldChange::Assign { value: true.into() })
    );
    assert!(matches!(
        store.set_archived::<Citizen>(uuid::Uuid::now_v7(), true),
        Err(StoreError::RecordNotFound {
            entity: EntityKind::Citizen
        })
    ));
}

#[test]
fn a_visit_moved_to_another_citizen_is_resealed_under_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    let a = Citizen::with_alias("A");
    let b = Citizen::with_alias("B");
    store.save(&a).unwrap();
    store.save(&b).unwrap();
    let mut v = visit_for(&a, "forkert borger valgt");
    store.save(&v).unwrap();
    v.citizen_id = Some(b.id);
    store.save(&v).unwrap();
    store.erase_citizen(a.id).unwrap();
    assert_eq!(
        store.get::<Visit>(v.id.0).unwrap(),
        Some(v.clone()),
        "the visit now belongs to B's key"
    );
    // Its creation (note and all) is still queued for sync: erasing A must not drop B's visit.
    let outbox = store.outbox().unwrap();
    let visit_ops: Vec<_> = outbox
        .iter()
        .flat_map(|m| &m.ops)
        .filter(|op| op.id == v.id.0)
        .collect();
    assert!(
        visit_ops.iter().any(|op| op.field == "note"),
        "the visit's creation was dropped"
    );
    assert!(
        visit_ops
            .iter()
            .any(|op| op.field == "citizen_id" && op.base.is_some())
    );
}

#[test]
fn a_save_that_rolls_back_leaves_no_key_behind_in_memory() {
    // A trigger makes the outbox insert fail once the citizen's new key has been written in
    // the same transaction: the transaction rolls back, and the key must not survive in memory.
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = new_store(dir.path());
    let side = Connection::open(&path).unwrap();
    side.execute_batch(
        "CREATE TABLE fail_next (n INTEGER);
         INSERT INTO fail_next VALUES (1);
         CREATE TRIGGER inject BEFORE INSERT ON outbox WHEN (SELECT count(*) FROM fail_next) > 0
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();
    let c = Citizen::with_alias("Fisk");
    assert!(matches!(store.save(&c), Err(StoreError::Sqlite(_))));
    side.execute_batch("DELETE FROM fail_next").unwrap();
    store.save(&c).unwrap();
    store.lock();
    store.unlock(&pass("korrekt hest")).unwrap();
    assert_eq!(
        store.get::<Citizen>(c.id.0).unwrap(),
        Some(c),
        "sealed under a key that was never stored"
    );
    assert_eq!(store.outbox().unwrap().len(), 1);
}

#[test]
fn parallel_wrong_attempts_from_several_processes_each_count() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = new_store(dir.path());
    drop(store);
    let barrier = Arc::new(std::sync::Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
                barrier.wait();
                s.unlock(&pass(&format!("forkert {i}"))).unwrap_err()
            })
        })
        .collect();
    for h in handles {
        let err = h.join().unwrap();
        assert!(matches!(err, StoreError::WrongPassphrase { .. }), "{err:?}");
    }
    let mut s = Store::open(&path, Arc::new(NoPlatformSecret)).unwrap();
    // Three counted failures use up the free attempts, and the third sets a 1 s back-off;
    // had two attempts been counted as one, there would be no back-off yet.
    match s.unlock(&pass("korrekt hest")) {
        Err(StoreError::BackOff { retry_after_ms }) => assert!(retry_after_ms <= 1_000),
        other => panic!("expected the third failure's back-off, got {other:?}"),
    }
}

#[test]
fn an_unlocked_store_still_checks_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    assert!(matches!(
        store.unlock(&pass("forkert hest")),
        Err(StoreError::WrongPassphrase { attempts_left: 9 })
    ));
    assert!(store.unlock(&pass("korrekt hest")).is_ok());
}

#[test]
fn a_mutation_the_server_refuses_for_good_is_set_aside_and_erasure_still_works() {
    use feltbog_core::hlc::Hlc;
    use feltbog_core::protocol::{PullPage, RejectReason, Rejection, SyncResponse};
    let dir = tempfile::tempdir().unwrap();
    let (_path, mut store) = new_store(dir.path());
    let c = Citizen::with_alias("Afvist");
    store.save(&c).unwrap();
    store.save(&visit_for(&c, "afvist note")).unwrap();
    let response = SyncResponse {
        acked: vec![1],
        rejected: vec![Rejection {
            device_seq: 2,
            reason: RejectReason::Invalid,
            detail: "test".into(),
        }],
        pull: PullPage {
            changes: vec![],
            next_cursor: 7,
            more: false,
            erase: vec![],
            resync: false,
        },
        server_hlc: Hlc::new(feltbog_core::hlc::system_time_ms(), 0).unwrap(),
        server_time_ms: feltbog_core::hlc::system_time_ms(),
        access_acked: 0,
        profile: None,
        standing_token: None,
        rescope: false,
    };
    let applied = store.apply_sync_response(&response).unwrap();
    assert_eq!((applied.acked, applied.set_aside), (1, 1));
    assert_eq!(
        store.outbox_len().unwrap(),
        0,
        "the refused mutation no longer blocks the queue"
    );
    assert_eq!(
        store.set_aside().unwrap().len(),
        1,
        "and it is kept, not dropped"
    );
    let status = store.sync_status().unwrap();
    assert_eq!((status.cursor, status.set_aside), (7, 1));
    // Erasing the citizen also erases what was set aside under their key.
    assert_eq!(store.erase_citizen(c.id).unwrap(), 2);
    assert!(store.set_aside().unwrap().is_empty());
}

#[test]
fn a_draft_is_sealed_offered_back_and_erased_with_its_citizen() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = new_store(dir.path());
    let jens = Citizen::with_alias("Jens");
    store.save(&jens).unwrap();
    let about_jens = br#"{"note":"UTKAST-MARKOR om Jens"}"#;
    let general = br#"{"note":"ANDEN-MARKOR uden borger"}"#;
    store
        .save_draft("visit:new:jens", Some(jens.id), about_jens)
        .unwrap();
    store.save_draft("quick-contact", None, general).unwrap();
    // A second save of the same form replaces the first.
    store.save_draft("quick-contact", None, general).unwrap();
    drop(store);
    let mut store = reopen(&path);
    assert_eq!(
        store.draft("visit:new:jens").unwrap().unwrap().content,
        about_jens.to_vec()
    );
    assert_eq!(
        store.draft("quick-contact").unwrap().unwrap().content,
        general.to_vec()
    );
    store.lock();
    assert!(
        store.draft("quick-contact").is_err(),
        "no draft while locked"
    );
    store.unlock(&pass("korrekt hest")).unwrap();
    for (name, bytes) in all_bytes(dir.path()) {
        assert!(
            !contains(&bytes, b"UTKAST-MARKOR"),
            "{name} holds a draft in clear"
        );
        assert!(
            !contains(&bytes, b"ANDEN-MARKOR"),
            "{name} holds a draft in clear"
        );
    }
    // Erasing the citizen takes their draft with them; the other stays.
    store.erase_citizen(jens.id).unwrap();
    assert_eq!(store.draft("visit:new:jens").unwrap(), None);
    assert!(store.draft("quick-contact").unwrap().is_some());
    store.discard_draft("quick-contact").unwrap();
    assert_eq!(store.draft("quick-contact").unwrap(), None);
    let too_big = vec![b'x'; feltbog_core::store::MAX_DRAFT_BYTES + 1];
    assert!(store.save_draft("big", None, &too_big).is_err());
}
