//! The adversarial push property (issue 13, DESIGN §8): an enrolled device that speaks the
//! protocol directly pushes arbitrary mutations — random kinds, fields, ops, ids (its team's,
//! another team's, nil, unknown), stamps, sizes and orders, and honest records broken in one
//! place — into the server library over a real SQLite database. After every push:
//!
//! 1. every stored record is a valid record of its kind (no unknown field, parses, validates);
//! 2. every reference a stored record holds points into the record's own team;
//! 3. every honest device of every team syncs and lists every kind of record without error;
//! 4. nothing a device holds or pulled is outside its worker's scope (no other team's data);
//! 5. the audit trail files the attacker's writes and reads only under citizens of its team;
//! 6. the hash chain verifies.
//!
//! `FELTBOG_ADVERSARIAL_CASES` sets the number of cases (CI: the default below); each planted
//! server bug of `PlantedBug::SERVER_CHECKS` must be caught within a bounded number of cases.

use feltbog_core::crypto::{KdfParams, Passphrase};
use feltbog_core::domain::schema::{self, Target};
use feltbog_core::domain::{
    Citizen, ConflictRecord, EntityKind, Site, SiteId, SiteKind, SiteLogEntry, SiteLogEntryId,
    SiteLogKind, Task, TaskId, Visit, VisitKind, WorkerId,
};
use feltbog_core::hlc::{Hlc, system_time_ms};
use feltbog_core::protocol::{
    EnrolRequest, EnrolResponse, FieldChange, FieldOp, Mutation, SyncRequest, SyncResponse,
};
use feltbog_core::store::{CreateOptions, ListQuery, Store};
use feltbog_core::sync::{Retry, Transport, TransportError, WireBytes};
use feltbog_server::identity::{self, Caller};
use feltbog_server::{audit, db, scope, sync};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::BTreeSet;
use uuid::Uuid;

const DEFAULT_CASES: u32 = 128;
/// The seed CI runs with (see `run`).
const DEFAULT_SEED: u64 = 14;
const DRIFT: u64 = feltbog_core::hlc::DEFAULT_MAX_DRIFT_MS;

/// The server library behind the device's transport: no HTTP, the same sync transaction.
struct Local<'a>(&'a RefCell<Connection>);

impl Transport for Local<'_> {
    fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, TransportError> {
        let mut conn = self.0.borrow_mut();
        let (caller, token) = identity::enrol(
            &mut *conn,
            &request.code,
            request.device_id,
            system_time_ms(),
        )
        .map_err(|e| TransportError::Decode(e.to_string()))?;
        let reach = scope::reach(&*conn, &caller).unwrap();
        let profile = identity::profile(&*conn, &caller, &reach).ok();
        Ok(EnrolResponse {
            worker_id: caller.worker_id,
            team_id: caller.team_id,
            token,
            profile,
            standing_token: None,
        })
    }

    fn sync(
        &self,
        token: &str,
        request: &SyncRequest,
    ) -> Result<(SyncResponse, WireBytes), TransportError> {
        let mut conn = self.0.borrow_mut();
        let caller = identity::authenticate(&*conn, token)
            .map_err(|e| TransportError::Decode(e.to_string()))?
            .ok_or_else(|| TransportError::Decode("unknown token".into()))?;
        let response = sync::sync(&mut *conn, &caller, request, system_time_ms(), DRIFT)
            .map_err(|e| TransportError::Decode(e.to_string()))?;
        Ok((response, WireBytes::default()))
    }
}

/// An honest device: a real store, enrolled through the library.
struct Honest {
    caller: Caller,
    store: Store,
}

/// Two teams. Nord: the attacker (outreach), an honest colleague and a caretaker of Nord's
/// site. Syd: one honest outreach worker.
struct World {
    _dir: tempfile::TempDir,
    conn: RefCell<Connection>,
    attacker: Caller,
    honest: Vec<Honest>,
    /// Ids the generator draws from: Nord's records, Syd's records, workers of both.
    nord: Vec<(EntityKind, Uuid)>,
    syd: Vec<(EntityKind, Uuid)>,
    workers: Vec<Uuid>,
    seq: u64,
}

fn enrol_store(world_dir: &std::path::Path, conn: &RefCell<Connection>, worker: Uuid) -> Honest {
    let code = identity::issue_enrolment_code(&*conn.borrow(), worker, system_time_ms()).unwrap();
    let path = world_dir.join(format!("{worker}.feltbog"));
    let pass = Passphrase::new("device-pin-123").unwrap();
    let mut store =
        Store::create(&path, &pass, &CreateOptions::with_kdf(KdfParams::MINIMUM)).expect("store");
    feltbog_core::sync::enrol(&mut store, &Local(conn), "local", &code).unwrap();
    let token = store.enrolment().unwrap().unwrap().token.expose().clone();
    let caller = identity::authenticate(&*conn.borrow(), &token)
        .unwrap()
        .unwrap();
    Honest { caller, store }
}

fn sync_store(conn: &RefCell<Connection>, store: &mut Store) -> Result<(), String> {
    feltbog_core::sync::sync_now(
        store,
        &Local(conn),
        Retry {
            attempts: 1,
            first_delay: std::time::Duration::ZERO,
        },
        &mut |_| {},
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Honest records of one team, saved and synced by `device`: a site, a resident there, a
/// citizen, a visit, a task and a log entry naming the resident.
fn seed(conn: &RefCell<Connection>, device: &mut Honest, label: &str) -> Vec<(EntityKind, Uuid)> {
    let now = chrono::Utc::now();
    let site = Site {
        id: SiteId::new(),
        kind: SiteKind::AlternativeHousing,
        name: format!("Hus {label}").into(),
        address: "Vej 1".into(),
        archived: false,
        created_at: now,
    };
    let mut resident = Citizen::with_alias(&format!("Beboer {label}"));
    resident.site_id = Some(site.id);
    let citizen = Citizen::with_alias(&format!("Borger {label}"));
    let me = WorkerId(device.caller.worker_id);
    let visit = Visit::with_citizen(citizen.id, me, VisitKind::HomeVisit);
    let task = Task {
        id: TaskId::new(),
        citizen_id: citizen.id,
        title: "Ring".into(),
        created_at: now,
        due: now.date_naive(),
        assignee: Some(me),
        status: Default::default(),
        archived: false,
    };
    let entry = SiteLogEntry {
        id: SiteLogEntryId::new(),
        site_id: site.id,
        at: now,
        kind: SiteLogKind::Repair,
        note: "Dør".into(),
        residents: BTreeSet::from([resident.id]),
        author: me,
        archived: false,
    };
    let s = &mut device.store;
    s.save(&site).unwrap();
    s.save(&resident).unwrap();
    s.save(&citizen).unwrap();
    s.save(&task).unwrap();
    s.save(&visit).unwrap();
    s.save(&entry).unwrap();
    sync_store(conn, s).unwrap();
    vec![
        (EntityKind::Site, site.id.0),
        (EntityKind::Citizen, resident.id.0),
        (EntityKind::Citizen, citizen.id.0),
        (EntityKind::Visit, visit.id.0),
        (EntityKind::Task, task.id.0),
        (EntityKind::SiteLogEntry, entry.id.0),
    ]
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let conn = RefCell::new(db::open(&dir.path().join("server")).unwrap());
    let now = system_time_ms();
    let (nord, syd, workers) = {
        let c = conn.borrow();
        let nord = identity::create_team(&*c, "Nord", now).unwrap();
        let syd = identity::create_team(&*c, "Syd", now).unwrap();
        let workers = [
            (nord, "outreach"),
            (nord, "outreach"),
            (nord, "caretaker"),
            (syd, "outreach"),
        ]
        .map(|(team, role)| identity::create_worker(&*c, team, "W", role).unwrap());
        (nord, syd, workers)
    };
    let _ = (nord, syd);
    let mut attacker = enrol_store(dir.path(), &conn, workers[0]);
    let mut colleague = enrol_store(dir.path(), &conn, workers[1]);
    let caretaker = enrol_store(dir.path(), &conn, workers[2]);
    let mut syd_device = enrol_store(dir.path(), &conn, workers[3]);
    let nord_ids = seed(&conn, &mut colleague, "nord");
    let syd_ids = seed(&conn, &mut syd_device, "syd");
    sync::assign_site(
        &mut *conn.borrow_mut(),
        workers[2],
        nord_ids[0].1,
        system_time_ms(),
        DRIFT,
    )
    .unwrap();
    sync_store(&conn, &mut attacker.store).unwrap();
    World {
        _dir: dir,
        conn,
        attacker: attacker.caller,
        honest: vec![colleague, caretaker, syd_device],
        nord: nord_ids,
        syd: syd_ids,
        workers: workers.to_vec(),
        seq: 1_000,
    }
}

/// Where an id in a generated push comes from.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Nord(usize),
    Syd(usize),
    Worker(usize),
    Nil,
    Fresh,
}

/// One thing wrong with an otherwise honest record.
#[derive(Clone, Debug)]
enum Break {
    None,
    Drop(usize),
    UnknownField(String),
    NestedKey,
    Reference(Pick),
    WrongType(usize),
    NilId,
}

/// One generated mutation.
#[derive(Clone, Debug)]
enum Gen {
    /// An honest new record of one kind (index into `KINDS`), broken in one place.
    Record(usize, Break),
    /// A random edit: target, kind (index into EntityKind::ALL), field, change, value.
    Edit {
        target: Pick,
        kind: usize,
        field: FieldPick,
        op: u8,
        value: ValuePick,
    },
    /// A mutation under another device's id.
    Forged,
}

#[derive(Clone, Debug)]
enum FieldPick {
    Known(usize),
    MadeUp(String),
}

#[derive(Clone, Debug)]
enum ValuePick {
    Id(Pick),
    Text(String),
    Number(i64),
    Null,
    Object,
    Big(usize),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        (0..6usize).prop_map(Pick::Nord),
        (0..6usize).prop_map(Pick::Syd),
        (0..4usize).prop_map(Pick::Worker),
        Just(Pick::Nil),
        Just(Pick::Fresh),
    ]
}

fn value() -> impl Strategy<Value = ValuePick> {
    prop_oneof![
        pick().prop_map(ValuePick::Id),
        "[a-z ]{0,12}".prop_map(ValuePick::Text),
        any::<i64>().prop_map(ValuePick::Number),
        Just(ValuePick::Null),
        Just(ValuePick::Object),
        (1usize..200_000).prop_map(ValuePick::Big),
    ]
}

fn gen_mutation() -> impl Strategy<Value = Gen> {
    let broken = prop_oneof![
        Just(Break::None),
        (0..16usize).prop_map(Break::Drop),
        "[a-z]{1,8}".prop_map(Break::UnknownField),
        Just(Break::NestedKey),
        pick().prop_map(Break::Reference),
        (0..16usize).prop_map(Break::WrongType),
        Just(Break::NilId),
    ];
    let field = prop_oneof![
        (0..16usize).prop_map(FieldPick::Known),
        "[a-z_]{1,10}".prop_map(FieldPick::MadeUp),
    ];
    prop_oneof![
        4 => ((0..KINDS.len()), broken).prop_map(|(k, b)| Gen::Record(k, b)),
        4 => (pick(), 0..6usize, field, 0..3u8, value()).prop_map(
            |(target, kind, field, op, value)| Gen::Edit { target, kind, field, op, value }
        ),
        1 => Just(Gen::Forged),
    ]
}

/// The honest record kinds the generator breaks.
const KINDS: [&str; 6] = ["citizen", "resident", "visit", "anon", "task", "log"];

impl World {
    fn id(&self, p: Pick) -> Uuid {
        match p {
            Pick::Nord(i) => self.nord[i % self.nord.len()].1,
            Pick::Syd(i) => self.syd[i % self.syd.len()].1,
            Pick::Worker(i) => self.workers[i % self.workers.len()],
            Pick::Nil => Uuid::nil(),
            Pick::Fresh => Uuid::now_v7(),
        }
    }

    fn value(&self, v: &ValuePick) -> Value {
        match v {
            ValuePick::Id(p) => json!(self.id(*p)),
            ValuePick::Text(t) => json!(t),
            ValuePick::Number(n) => json!(n),
            ValuePick::Null => Value::Null,
            ValuePick::Object => json!({"x": 1, "recorded_by": self.workers[3]}),
            ValuePick::Big(n) => json!("å".repeat(*n)),
        }
    }

    /// An honest new record of kind `k` in Nord, as (entity, id, fields).
    fn honest(&self, k: usize) -> (EntityKind, Uuid, serde_json::Map<String, Value>) {
        let now = chrono::Utc::now();
        let me = WorkerId(self.attacker.worker_id);
        let (site, resident, citizen, task) = (
            self.nord[0].1,
            self.nord[1].1,
            self.nord[2].1,
            self.nord[4].1,
        );
        let (entity, value) = match KINDS[k] {
            "citizen" => (
                EntityKind::Citizen,
                serde_json::to_value(Citizen {
                    primary_worker: Some(me),
                    ..Citizen::with_alias("Ny")
                }),
            ),
            "resident" => {
                let mut c = Citizen::with_alias("Ny beboer");
                c.site_id = Some(SiteId(site));
                (EntityKind::Citizen, serde_json::to_value(c))
            }
            "visit" => {
                let mut v = Visit::with_citizen(
                    feltbog_core::domain::CitizenId(citizen),
                    me,
                    VisitKind::Phone,
                );
                v.follow_up = Some(TaskId(task));
                (EntityKind::Visit, serde_json::to_value(v))
            }
            "anon" => (
                EntityKind::Visit,
                serde_json::to_value(Visit::anonymous(2, "To", me)),
            ),
            "task" => (
                EntityKind::Task,
                serde_json::to_value(Task {
                    id: TaskId::new(),
                    citizen_id: feltbog_core::domain::CitizenId(citizen),
                    title: "Opfølgning".into(),
                    created_at: now,
                    due: now.date_naive(),
                    assignee: Some(me),
                    status: Default::default(),
                    archived: false,
                }),
            ),
            _ => (
                EntityKind::SiteLogEntry,
                serde_json::to_value(SiteLogEntry {
                    id: SiteLogEntryId::new(),
                    site_id: SiteId(site),
                    at: now,
                    kind: SiteLogKind::Incident,
                    note: "Uro".into(),
                    residents: BTreeSet::from([feltbog_core::domain::CitizenId(resident)]),
                    author: me,
                    archived: false,
                }),
            ),
        };
        let Value::Object(fields) = value.unwrap() else {
            unreachable!()
        };
        let id = serde_json::from_value(fields["id"].clone()).unwrap();
        (entity, id, fields)
    }

    fn ops(
        &self,
        entity: EntityKind,
        id: Uuid,
        fields: serde_json::Map<String, Value>,
    ) -> Vec<FieldOp> {
        let hlc = Hlc::new(system_time_ms(), 0).unwrap();
        let mut ops = Vec::new();
        for (field, value) in fields {
            match (entity.set_fields().contains(&field.as_str()), value) {
                (true, Value::Array(items)) => {
                    for item in items {
                        ops.push(op(
                            entity,
                            id,
                            &field,
                            FieldChange::Add { value: item },
                            hlc,
                        ));
                    }
                }
                (_, value) => ops.push(op(entity, id, &field, FieldChange::Assign { value }, hlc)),
            }
        }
        ops
    }

    fn mutation(&mut self, g: &Gen) -> Mutation {
        self.seq += 1;
        let device = self.attacker.device_id;
        let ops = match g {
            Gen::Forged => {
                return Mutation {
                    device_id: self.honest[0].caller.device_id,
                    device_seq: self.seq,
                    ops: self.ops_of_record(0, &Break::None),
                };
            }
            Gen::Record(k, b) => self.ops_of_record(*k, b),
            Gen::Edit {
                target,
                kind,
                field,
                op: which,
                value,
            } => {
                let (entity, id) = match target {
                    Pick::Nord(i) => self.nord[i % self.nord.len()],
                    Pick::Syd(i) => self.syd[i % self.syd.len()],
                    other => (EntityKind::ALL[*kind], self.id(*other)),
                };
                let field = match field {
                    FieldPick::Known(i) => entity.fields()[i % entity.fields().len()].to_owned(),
                    FieldPick::MadeUp(f) => f.clone(),
                };
                let value = self.value(value);
                let change = match which {
                    0 => FieldChange::Assign { value },
                    1 => FieldChange::Add { value },
                    _ => FieldChange::Remove {
                        value,
                        observed: vec![],
                    },
                };
                vec![op(
                    entity,
                    id,
                    &field,
                    change,
                    Hlc::new(system_time_ms(), 0).unwrap(),
                )]
            }
        };
        Mutation {
            device_id: device,
            device_seq: self.seq,
            ops,
        }
    }

    fn ops_of_record(&self, k: usize, b: &Break) -> Vec<FieldOp> {
        let (entity, mut id, mut fields) = self.honest(k);
        let nth = |fields: &serde_json::Map<String, Value>, i: usize| {
            fields.keys().nth(i % fields.len()).cloned().unwrap()
        };
        match b {
            Break::None => {}
            Break::Drop(i) => {
                let f = nth(&fields, *i);
                if f != "id" {
                    fields.remove(&f);
                }
            }
            Break::UnknownField(f) => {
                fields.insert(format!("x_{f}"), json!(1));
            }
            Break::NestedKey => {
                let nested = json!({"count": 1, "description": "x", "smuggled": true});
                match entity {
                    EntityKind::Visit => {
                        fields.insert("citizen_id".into(), Value::Null);
                        fields.insert("anonymous".into(), nested);
                    }
                    _ => {
                        fields.insert(
                            "goals".into(),
                            json!([{"id": Uuid::now_v7(), "text": "t", "status": "active",
                                    "created": "2026-01-01", "smuggled": 1}]),
                        );
                    }
                }
            }
            Break::Reference(p) => {
                let refs: Vec<String> = fields
                    .keys()
                    .filter(|f| {
                        matches!(
                            (entity, f.as_str()),
                            (_, "citizen_id" | "site_id" | "follow_up" | "residents")
                                | (_, "assignee" | "primary_worker")
                        )
                    })
                    .cloned()
                    .collect();
                if let Some(f) = refs.first() {
                    let v = json!(self.id(*p));
                    let v = if f == "residents" { json!([v]) } else { v };
                    fields.insert(f.clone(), v);
                }
            }
            Break::WrongType(i) => {
                let f = nth(&fields, *i);
                if f != "id" {
                    fields.insert(f, json!({"not": "this"}));
                }
            }
            Break::NilId => {
                id = Uuid::nil();
                fields.insert("id".into(), json!(id));
            }
        }
        self.ops(entity, id, fields)
    }
}

fn op(entity: EntityKind, id: Uuid, field: &str, change: FieldChange, hlc: Hlc) -> FieldOp {
    FieldOp {
        entity,
        id,
        field: field.to_owned(),
        change,
        hlc,
        base: None,
    }
}

/// The team a reference's target belongs to now, if it exists.
fn team_of(conn: &Connection, target: Target, id: Uuid) -> Option<Uuid> {
    let entity = match target {
        Target::Citizen => EntityKind::Citizen,
        Target::Site => EntityKind::Site,
        Target::Task => EntityKind::Task,
        Target::Visit => EntityKind::Visit,
        Target::Worker => {
            return conn
                .query_row(
                    "SELECT team_id FROM workers WHERE id = ?1",
                    [&id.as_bytes()[..]],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .ok()
                .map(|b| Uuid::from_slice(&b).unwrap());
        }
    };
    scope::record_scope(conn, entity, id)
        .unwrap()
        .map(|s| s.team)
}

/// A stored field with its record: entity, record id, record team, field, value.
type FieldRow = (String, Vec<u8>, Vec<u8>, String, String);

/// Checks the six invariants of the module doc; the attacker's last answer included.
fn check(world: &mut World, answer: &SyncResponse) -> Result<(), TestCaseError> {
    let conn = world.conn.borrow();
    // 1. Every stored record is valid.
    let invalid = sync::invalid_records(&*conn).unwrap();
    prop_assert!(invalid.is_empty(), "invalid stored records: {invalid:?}");
    // 2. Every reference points into the record's own team.
    let mut stmt = conn
        .prepare("SELECT r.entity, r.record_id, r.team_id, f.field, f.value FROM records r JOIN fields f ON f.entity = r.entity AND f.record_id = r.record_id WHERE r.entity != 'conflict'")
        .unwrap();
    let rows: Vec<FieldRow> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (entity, id, team, field, value) in rows {
        let entity = EntityKind::parse(&entity).unwrap();
        let team = Uuid::from_slice(&team).unwrap();
        let value: Value = serde_json::from_str(&value).unwrap();
        let items = match (&value, entity.set_fields().contains(&field.as_str())) {
            (Value::Array(items), true) => items.clone(),
            _ => vec![value],
        };
        for item in items {
            let refs = schema::references(entity, &field, &item)
                .map_err(|e| TestCaseError::fail(format!("stored {entity}.{field}: {e}")))?;
            for r in refs {
                prop_assert_eq!(
                    team_of(&conn, r.target, r.id),
                    Some(team),
                    "{} {} {} refers outside its team",
                    entity,
                    Uuid::from_slice(&id).unwrap(),
                    field
                );
            }
        }
    }
    // 4 (the attacker's side): nothing it pulled is outside its scope.
    let reach = scope::reach(&*conn, &world.attacker).unwrap();
    for (_, m) in &answer.pull.changes {
        let op = &m.ops[0];
        let s = scope::record_scope(&*conn, op.entity, op.id).unwrap();
        prop_assert!(
            s.is_some_and(|s| scope::readable(&world.attacker, &reach, &s)),
            "the attacker pulled {} {} outside its scope",
            op.entity,
            op.id
        );
    }
    // 5. The attacker's writes and reads are filed only under its own team's citizens.
    let filed: Vec<Vec<u8>> = conn
        .prepare("SELECT citizen_id FROM audit WHERE device_id = ?1 AND citizen_id IS NOT NULL AND action IN ('write', 'read', 'device_read')")
        .unwrap()
        .query_map([&world.attacker.device_id.0.as_bytes()[..]], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for citizen in filed {
        let citizen = Uuid::from_slice(&citizen).unwrap();
        prop_assert_eq!(
            team_of(&conn, Target::Citizen, citizen),
            Some(world.attacker.team_id),
            "an audit row files the attacker's access under another team's citizen"
        );
    }
    // 6. The chain verifies.
    prop_assert!(
        audit::verify(&*conn).is_ok(),
        "the audit chain does not verify"
    );
    drop(stmt);
    drop(conn);
    // 3 and 4. Every honest device syncs and lists everything, and holds only its scope.
    for device in &mut world.honest {
        sync_store(&world.conn, &mut device.store)
            .map_err(|e| TestCaseError::fail(format!("an honest device cannot sync: {e}")))?;
        let q = ListQuery {
            include_archived: true,
            ..Default::default()
        };
        let s = &mut device.store;
        let held: Vec<(EntityKind, Uuid)> = [
            list::<Citizen>(s, &q)?,
            list::<Visit>(s, &q)?,
            list::<Task>(s, &q)?,
            list::<Site>(s, &q)?,
            list::<SiteLogEntry>(s, &q)?,
            list::<ConflictRecord>(s, &q)?,
        ]
        .concat();
        let conn = world.conn.borrow();
        let reach = scope::reach(&*conn, &device.caller).unwrap();
        for (entity, id) in held {
            let s = scope::record_scope(&*conn, entity, id).unwrap();
            prop_assert!(
                s.is_some_and(|s| scope::readable(&device.caller, &reach, &s)),
                "a {:?} device holds {} {} outside its scope",
                device.caller.role,
                entity,
                id
            );
        }
    }
    Ok(())
}

fn list<R: feltbog_core::domain::Record>(
    store: &mut Store,
    q: &ListQuery,
) -> Result<Vec<(EntityKind, Uuid)>, TestCaseError> {
    store
        .list::<R>(q)
        .map(|records| records.iter().map(|r| (R::KIND, r.record_id())).collect())
        .map_err(|e| TestCaseError::fail(format!("an honest device cannot list {}: {e}", R::KIND)))
}

/// Mutations pushed, acknowledged and refused over a run: a run that refuses everything would
/// prove nothing, so the test prints these and requires both kinds of answer.
#[derive(Default, Debug)]
struct Tally {
    pushed: usize,
    acked: usize,
    rejected: usize,
}

/// Runs the property for `cases` cases; `Err` names the first failure (after shrinking).
fn run(cases: u32) -> Result<Tally, String> {
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(Config {
        cases,
        // Each case builds a server and four devices; shrinking a failure stays bounded too.
        max_shrink_iters: 64,
        failure_persistence: None,
        // A fixed seed: CI runs the same cases every time (a random one made the planted-bug
        // check flaky). `FELTBOG_ADVERSARIAL_SEED` explores other cases by hand.
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed_from_env()),
        ..Config::default()
    });
    let pushes = prop::collection::vec(prop::collection::vec(gen_mutation(), 1..5), 1..6);
    runner
        .run(&pushes, |pushes| {
            let mut world = world();
            for push in &pushes {
                let mutations: Vec<Mutation> = push.iter().map(|g| world.mutation(g)).collect();
                let request = SyncRequest {
                    mutations,
                    cursor: 0,
                    access_log: vec![],
                    profile_digest: None,
                    ..Default::default()
                };
                let answer = sync::sync(
                    &mut *world.conn.borrow_mut(),
                    &world.attacker,
                    &request,
                    system_time_ms(),
                    DRIFT,
                )
                .map_err(|e| TestCaseError::fail(format!("the push failed the server: {e}")))?;
                let mut t = tally.borrow_mut();
                t.pushed += push.len();
                t.acked += answer.acked.len();
                t.rejected += answer.rejected.len();
                drop(t);
                check(&mut world, &answer)?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    Ok(tally.into_inner())
}

fn seed_from_env() -> u64 {
    std::env::var("FELTBOG_ADVERSARIAL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn cases() -> u32 {
    std::env::var("FELTBOG_ADVERSARIAL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

#[test]
fn arbitrary_pushes_from_an_enrolled_device_leave_every_team_valid_and_in_scope() {
    let started = std::time::Instant::now();
    let cases = cases();
    let tally = run(cases).unwrap_or_else(|failure| panic!("{failure}"));
    println!(
        "adversarial pushes: {cases} cases, {} mutations ({} accepted, {} refused) in {:.1} s",
        tally.pushed,
        tally.acked,
        tally.rejected,
        started.elapsed().as_secs_f64()
    );
    assert!(tally.acked > 0 && tally.rejected > 0, "{tally:?}");
}

#[cfg(feature = "sim")]
#[test]
fn each_planted_server_bug_is_caught() {
    use feltbog_core::sim::{PlantedBug, plant};
    for bug in PlantedBug::SERVER_CHECKS {
        plant(Some(bug));
        let caught = run(cases());
        plant(None);
        match caught {
            Err(failure) => println!("{bug:?} caught: {}", failure.lines().next().unwrap_or("")),
            Ok(_) => panic!("{bug:?} was not caught in {} cases", cases()),
        }
    }
}
