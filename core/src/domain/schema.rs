//! The wire shape of every record kind, written once for the device and the server.
//!
//! A device builds its mutations from its domain types, so it cannot send a field that does not
//! exist. A client that speaks the protocol directly can, and the server must refuse it without a
//! second copy of these rules. This module says, per [`EntityKind`]:
//!
//! - which top-level fields exist ([`EntityKind::fields`], taken from each record's
//!   [`Record::FIELDS`], which a unit test holds equal to the type's serde form);
//! - which fields the server owns and sets itself, whatever a device sends
//!   ([`EntityKind::server_fields`]: the author of a visit or a site-log entry, the team of a
//!   citizen or a visit);
//! - which fields a device may write at all ([`EntityKind::device_writable`]: of a conflict, only
//!   its status);
//! - which other records a field's value refers to ([`references`]): a citizen, a site, a task,
//!   a worker. The server resolves every one against the writer's scope in the sync transaction.
//!
//! Nested values (consent, goals, an anonymous contact) refuse unknown keys in their serde form
//! (`deny_unknown_fields`), so parsing a record as its domain type is the nested half of the
//! field check.
//!
//! **Item lists** ([`EntityKind::item_fields`]: a citizen's goals) do not travel as one value.
//! Each item is its own register named [`item_field`] (`goals__<id>`), so two workers editing
//! different goals offline both keep their edit, and the same goal edited twice is a conflict
//! about that one goal. A removed item is the value `null`. [`split_items`] turns a record's
//! JSON form into these fields and [`join_items`] back, on the device and the server alike.

use super::{Citizen, ConflictRecord, EntityKind, Record, Site, SiteLogEntry, Task, Visit};
use serde_json::Value;
use uuid::Uuid;

/// The kind of record a reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Citizen,
    Site,
    Task,
    Visit,
    Worker,
}

/// One reference held by a field value: "this visit's follow-up is task X".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub target: Target,
    pub id: Uuid,
}

/// A field op that breaks the wire shape. Names the field, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("{entity} has no field {field}")]
    UnknownField { entity: EntityKind, field: String },
    #[error("the server sets {field} of a {entity}; devices cannot write it")]
    NotWritable { entity: EntityKind, field: String },
    #[error("{field} must hold an id")]
    NotAnId { field: String },
    #[error("{field} holds the nil id")]
    NilId { field: String },
    #[error("{field} is written item by item, never as a whole list")]
    WholeList { field: String },
    #[error("an item of {field} is not stored under its own id")]
    ItemMisplaced { field: String },
}

impl EntityKind {
    /// Every top-level field of this kind's records, as they travel in field ops.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            EntityKind::Citizen => Citizen::FIELDS,
            EntityKind::Visit => Visit::FIELDS,
            EntityKind::Task => Task::FIELDS,
            EntityKind::Site => Site::FIELDS,
            EntityKind::SiteLogEntry => SiteLogEntry::FIELDS,
            EntityKind::Conflict => ConflictRecord::FIELDS,
        }
    }

    /// Fields the server sets itself on creation and keeps ever after: the author comes from
    /// authentication, a team from the writer (and later only from an administrator's move).
    /// A device may send them (its own copy of the record has them); the server replaces the
    /// value and stores what it set.
    pub fn server_fields(self) -> &'static [&'static str] {
        match self {
            EntityKind::Visit => &["author", "team_id"],
            EntityKind::SiteLogEntry => &["author"],
            EntityKind::Citizen => &["team_id"],
            EntityKind::Task | EntityKind::Site | EntityKind::Conflict => &[],
        }
    }

    /// Fields holding a list of items with their own `id` that merge item by item (see the
    /// module comment): two workers' edits of different goals never conflict.
    pub fn item_fields(self) -> &'static [&'static str] {
        match self {
            EntityKind::Citizen => &[
                "goals",
                "consents",
                "housing_history",
                "courses",
                "course_reviews",
                "referrals",
                "network",
            ],
            _ => &[],
        }
    }

    /// Whether a device may write `field` of an existing or new record of this kind. Conflicts
    /// are the server's records: a device only resolves or dismisses one (its status).
    pub fn device_writable(self, field: &str) -> bool {
        match self {
            EntityKind::Conflict => field == "status",
            _ => self.fields().contains(&field),
        }
    }
}

/// Checks that a device may write `field` of `entity` at all (it exists and is not the
/// server's own), before any value is looked at.
pub fn check_field(entity: EntityKind, field: &str) -> Result<(), SchemaError> {
    if entity.item_fields().contains(&field) {
        return Err(SchemaError::WholeList {
            field: field.to_owned(),
        });
    }
    let field = rule_field(entity, field);
    if !entity.fields().contains(&field) {
        return Err(SchemaError::UnknownField {
            entity,
            field: field.to_owned(),
        });
    }
    if !entity.device_writable(field) {
        return Err(SchemaError::NotWritable {
            entity,
            field: field.to_owned(),
        });
    }
    Ok(())
}

/// The records that one value of `entity`'s `field` refers to (for a set field, one element).
/// `null` refers to nothing. An id that is malformed or nil is an error: no record has it.
///
/// Server-owned fields (the author, a team) are not listed: the server sets them itself.
pub fn references(
    entity: EntityKind,
    field: &str,
    value: &Value,
) -> Result<Vec<Reference>, SchemaError> {
    let one = |target: Target| -> Result<Vec<Reference>, SchemaError> {
        Ok(id_of(field, value)?
            .map(|id| vec![Reference { target, id }])
            .unwrap_or_default())
    };
    let named = |key: &str, target: Target| -> Result<Vec<Reference>, SchemaError> {
        // A structured value without the key is malformed; the record's parse refuses it.
        match value.get(key) {
            Some(v) => Ok(id_of(&format!("{field}.{key}"), v)?
                .map(|id| vec![Reference { target, id }])
                .unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    };
    match (entity, rule_field(entity, field)) {
        (EntityKind::Visit | EntityKind::Task, "citizen_id") => one(Target::Citizen),
        (EntityKind::SiteLogEntry, "residents") => one(Target::Citizen),
        (EntityKind::Citizen | EntityKind::SiteLogEntry, "site_id") => one(Target::Site),
        (EntityKind::Visit, "follow_up") => one(Target::Task),
        (EntityKind::Citizen, "primary_worker") | (EntityKind::Task, "assignee") => {
            one(Target::Worker)
        }
        (EntityKind::Citizen, "consents") if !value.is_null() => {
            named("recorded_by", Target::Worker)
        }
        (EntityKind::Citizen, "referrals") if !value.is_null() => {
            let mut out = named("follow_up", Target::Task)?;
            out.extend(named("visit_id", Target::Visit)?);
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

/// The field name one item of the list `list` travels and is stored under: `goals__<32 hex>`.
pub fn item_field(list: &str, id: Uuid) -> String {
    format!("{list}__{}", id.simple())
}

/// The list field and item id that a field name stands for, if it names one item.
pub fn item_of(entity: EntityKind, name: &str) -> Option<(&'static str, Uuid)> {
    let (list, hex) = name.split_once("__")?;
    let list = entity.item_fields().iter().find(|f| **f == list)?;
    if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((list, Uuid::try_parse(hex).ok().filter(|id| !id.is_nil())?))
}

/// The field whose rules (merge kind, who may read it, references) a stored field follows: its
/// list for an item, else itself.
pub fn rule_field(entity: EntityKind, name: &str) -> &str {
    item_of(entity, name).map_or(name, |(list, _)| list)
}

/// Whether `name` is a field records of `entity` may hold in storage and on the wire: one of
/// its fields, or one item of an item list.
pub fn is_stored_field(entity: EntityKind, name: &str) -> bool {
    item_of(entity, name).is_some() || entity.fields().contains(&name)
}

/// The words a person writes inside a structured free-text field: a goal's text, a consent's
/// scope, an anonymous contact's description. A conflict on such a field is written together
/// in this part; the rest of the value (a status, a date) is kept from the current version.
pub fn text_part(entity: EntityKind, field: &str) -> Option<&'static str> {
    match (entity, rule_field(entity, field)) {
        (EntityKind::Citizen, "goals") => Some("text"),
        (EntityKind::Citizen, "consents") => Some("scope"),
        (EntityKind::Citizen, "courses" | "referrals") => Some("note"),
        (EntityKind::Citizen, "course_reviews") => Some("text"),
        (EntityKind::Citizen, "network") => Some("name"),
        (EntityKind::Visit, "anonymous") => Some("description"),
        _ => None,
    }
}

/// Whether `name` is a field records of `entity` held before a change of shape and are read as
/// something else now ([`upcast_legacy`]): a citizen's single `consent`.
pub fn is_legacy_field(entity: EntityKind, name: &str) -> bool {
    entity == EntityKind::Citizen && name == "consent"
}

/// What a field from before a change of shape is read as: the item field and value it became.
/// A citizen's single consent is the consent for one purpose, under the citizen's own id
/// ([`crate::domain::pathway::legacy_consent`]), so every device and the server's migration 12
/// derive the same item with the same stamp. `None` when it became nothing (a `null`, or a
/// value that does not parse).
pub fn upcast_legacy(
    entity: EntityKind,
    record_id: Uuid,
    field: &str,
    value: &Value,
) -> Option<(String, Value)> {
    if !is_legacy_field(entity, field) || value.is_null() || record_id.is_nil() {
        return None;
    }
    let consent: crate::domain::Consent = serde_json::from_value(value.clone()).ok()?;
    let item =
        crate::domain::pathway::legacy_consent(crate::domain::CitizenId(record_id), &consent);
    Some((
        item_field("consents", record_id),
        serde_json::to_value(item).ok()?,
    ))
}

/// A record's JSON form → its stored form: every item of an item list becomes its own field
/// (see the module comment). An item without a well-formed id is an error.
pub fn split_items(
    entity: EntityKind,
    record: &mut serde_json::Map<String, Value>,
) -> Result<(), SchemaError> {
    for list in entity.item_fields() {
        let Some(value) = record.remove(*list) else {
            continue;
        };
        let misplaced = || SchemaError::ItemMisplaced {
            field: (*list).to_owned(),
        };
        let Value::Array(items) = value else {
            return Err(misplaced());
        };
        for item in items {
            let id = item
                .get("id")
                .and_then(|v| id_of(list, v).ok().flatten())
                .ok_or_else(misplaced)?;
            record.insert(item_field(list, id), item);
        }
    }
    Ok(())
}

/// Writes a whole list into a record's stored form (see [`split_items`]): each of its items
/// into its own field, and `null` into the field of every item held now that the list no
/// longer has. Returns the fields written. For a whole list from before lists travelled item
/// by item: a conflict's version kept, or a refused write sent again.
pub fn replace_list(
    entity: EntityKind,
    record: &mut serde_json::Map<String, Value>,
    list: &str,
    value: Value,
) -> Result<Vec<String>, SchemaError> {
    let mut items = serde_json::Map::new();
    items.insert(list.to_owned(), value);
    split_items(entity, &mut items)?;
    let removed: Vec<String> = record
        .keys()
        .filter(|k| item_of(entity, k).is_some_and(|(l, _)| l == list) && !items.contains_key(*k))
        .cloned()
        .collect();
    let mut written = Vec::with_capacity(removed.len() + items.len());
    for name in removed {
        record.insert(name.clone(), Value::Null);
        written.push(name);
    }
    for (name, item) in items {
        record.insert(name.clone(), item);
        written.push(name);
    }
    Ok(written)
}

/// A record's stored form → its JSON form: the items of each item list gathered back in id
/// order (UUIDv7, so the order they were made in); removed items (`null`) are left out. An item
/// whose `id` is not the one its field is named by is an error. A whole list stored before
/// lists travelled item by item is read as items under the items written since.
pub fn join_items(
    entity: EntityKind,
    record: &mut serde_json::Map<String, Value>,
) -> Result<(), SchemaError> {
    // A legacy field is read as the item it became, unless that item was written since.
    let legacy: Vec<String> = record
        .keys()
        .filter(|k| is_legacy_field(entity, k))
        .cloned()
        .collect();
    let record_id = record
        .get("id")
        .and_then(|v| id_of("id", v).ok().flatten())
        .unwrap_or_default();
    for name in legacy {
        let value = record.remove(&name).unwrap_or_default();
        if let Some((item, value)) = upcast_legacy(entity, record_id, &name, &value) {
            record.entry(item).or_insert(value);
        }
    }
    for list in entity.item_fields() {
        let mut items: std::collections::BTreeMap<Uuid, Value> = Default::default();
        if let Some(Value::Array(whole)) = record.remove(*list) {
            for item in whole {
                if let Some(id) = item.get("id").and_then(|v| id_of(list, v).ok().flatten()) {
                    items.insert(id, item);
                }
            }
        }
        let names: Vec<String> = record
            .keys()
            .filter(|name| item_of(entity, name).is_some_and(|(l, _)| l == *list))
            .cloned()
            .collect();
        for name in names {
            let (_, id) = item_of(entity, &name).expect("filtered on item_of");
            let item = record.remove(&name).unwrap_or_default();
            if item.is_null() {
                items.remove(&id);
                continue;
            }
            if item.get("id").and_then(|v| id_of(list, v).ok().flatten()) != Some(id) {
                return Err(SchemaError::ItemMisplaced {
                    field: (*list).to_owned(),
                });
            }
            items.insert(id, item);
        }
        record.insert(
            (*list).to_owned(),
            Value::Array(items.into_values().collect()),
        );
    }
    Ok(())
}

/// The id a reference value holds: `None` for `null`, an error for anything else that is not a
/// non-nil UUID.
fn id_of(field: &str, value: &Value) -> Result<Option<Uuid>, SchemaError> {
    if value.is_null() {
        return Ok(None);
    }
    // Only the canonical spelling (hyphenated, lower case), as serde writes an id: braced,
    // URN or bare-hex spellings would let one resident sit in a set twice.
    let id = value
        .as_str()
        .and_then(|s| {
            Uuid::try_parse(s)
                .ok()
                .filter(|id| id.hyphenated().to_string() == s)
        })
        .ok_or_else(|| SchemaError::NotAnId {
            field: field.to_owned(),
        })?;
    if id.is_nil() {
        return Err(SchemaError::NilId {
            field: field.to_owned(),
        });
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AnonymousContact, Consent, Goal, GoalId, GoalStatus, SiteId, SiteKind, SiteLogEntryId,
        SiteLogKind, TaskId, TeamId, VisitKind, WorkerId,
    };
    use crate::hlc::{DeviceId, Hlc, Stamp};
    use std::collections::BTreeSet;

    fn keys_of<R: Record>(record: &R) -> BTreeSet<String> {
        serde_json::to_value(record)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn listed<R: Record>() -> BTreeSet<String> {
        R::FIELDS.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn every_records_field_list_is_its_serde_form() {
        let now = chrono::Utc::now();
        let mut citizen = Citizen::with_alias("Fisk");
        citizen.resources = Some("tegner".into());
        assert_eq!(keys_of(&citizen), listed::<Citizen>());
        let visit = Visit::anonymous(2, "ved stationen", WorkerId::new());
        assert_eq!(keys_of(&visit), listed::<Visit>());
        let task = Task {
            id: TaskId::new(),
            citizen_id: citizen.id,
            title: "ring".into(),
            created_at: now,
            due: now.date_naive(),
            assignee: None,
            status: Default::default(),
            archived: false,
        };
        assert_eq!(keys_of(&task), listed::<Task>());
        let site = Site {
            id: SiteId::new(),
            kind: SiteKind::AlternativeHousing,
            name: "Hus".into(),
            address: "Vej 1".into(),
            archived: false,
            created_at: now,
        };
        assert_eq!(keys_of(&site), listed::<Site>());
        let entry = SiteLogEntry {
            id: SiteLogEntryId::new(),
            site_id: site.id,
            at: now,
            kind: SiteLogKind::Repair,
            note: "dør".into(),
            residents: BTreeSet::new(),
            author: WorkerId::new(),
            archived: false,
        };
        assert_eq!(keys_of(&entry), listed::<SiteLogEntry>());
        let stamp = Stamp {
            hlc: Hlc::new(1, 0).unwrap(),
            device: DeviceId(Uuid::from_u128(1)),
        };
        let conflict = ConflictRecord {
            id: crate::domain::ConflictId(Uuid::from_u128(2)),
            citizen_id: None,
            entity: EntityKind::Visit,
            record_id: visit.id.0,
            field: "note".into(),
            kind: crate::merge::ConflictKind::Open,
            winner: "a".into(),
            winner_stamp: stamp,
            loser: "b".into(),
            loser_stamp: stamp,
            winner_author: None,
            loser_author: Some(WorkerId::new()),
            status: crate::domain::ConflictStatus::Open,
            created_at: now,
        };
        assert_eq!(keys_of(&conflict), listed::<ConflictRecord>());
        // Server-owned and set fields are fields of their kind.
        for kind in EntityKind::ALL {
            for f in kind.server_fields().iter().chain(kind.set_fields()) {
                assert!(kind.fields().contains(f), "{kind} {f}");
            }
        }
    }

    #[test]
    fn nested_values_refuse_unknown_keys() {
        let goal = serde_json::json!({"id": GoalId::new(), "text": "bolig", "status": "active",
            "created": "2026-12-06", "extra": 1});
        assert!(serde_json::from_value::<Goal>(goal).is_err());
        let anon = serde_json::json!({"count": 2, "description": "to", "x": true});
        assert!(serde_json::from_value::<AnonymousContact>(anon).is_err());
        let consent = serde_json::json!({"status": "given", "date": "2026-12-06", "scope": "alt",
            "method": "verbal", "recorded_by": WorkerId::new(), "by_whom": "x"});
        assert!(serde_json::from_value::<Consent>(consent).is_err());
        let _ = (GoalStatus::Active, TeamId::new(), VisitKind::Phone);
    }

    #[test]
    fn unknown_and_server_owned_fields_are_named() {
        assert!(check_field(EntityKind::Visit, "note").is_ok());
        assert!(matches!(
            check_field(EntityKind::Visit, "made_up"),
            Err(SchemaError::UnknownField { .. })
        ));
        assert!(check_field(EntityKind::Conflict, "status").is_ok());
        assert!(matches!(
            check_field(EntityKind::Conflict, "winner"),
            Err(SchemaError::NotWritable { .. })
        ));
    }

    #[test]
    fn references_name_their_targets_and_refuse_nil_or_malformed_ids() {
        let id = Uuid::now_v7();
        let v = Value::String(id.to_string());
        let r = |entity, field, value: &Value| references(entity, field, value).unwrap();
        let one = |target| vec![Reference { target, id }];
        assert_eq!(r(EntityKind::Visit, "citizen_id", &v), one(Target::Citizen));
        assert_eq!(r(EntityKind::Task, "citizen_id", &v), one(Target::Citizen));
        assert_eq!(
            r(EntityKind::SiteLogEntry, "residents", &v),
            one(Target::Citizen)
        );
        assert_eq!(r(EntityKind::Citizen, "site_id", &v), one(Target::Site));
        assert_eq!(
            r(EntityKind::SiteLogEntry, "site_id", &v),
            one(Target::Site)
        );
        assert_eq!(r(EntityKind::Visit, "follow_up", &v), one(Target::Task));
        assert_eq!(r(EntityKind::Task, "assignee", &v), one(Target::Worker));
        assert_eq!(
            r(EntityKind::Citizen, "primary_worker", &v),
            one(Target::Worker)
        );
        // Items of a list are referred to by their list's rules.
        let consent = serde_json::json!({"recorded_by": id});
        let consents = item_field("consents", Uuid::now_v7());
        let referrals = item_field("referrals", Uuid::now_v7());
        assert_eq!(
            r(EntityKind::Citizen, consents.as_str(), &consent),
            one(Target::Worker)
        );
        let (task, visit) = (Uuid::now_v7(), Uuid::now_v7());
        let referral = serde_json::json!({"follow_up": task, "visit_id": visit});
        assert_eq!(
            r(EntityKind::Citizen, referrals.as_str(), &referral),
            vec![
                Reference {
                    target: Target::Task,
                    id: task
                },
                Reference {
                    target: Target::Visit,
                    id: visit
                }
            ]
        );
        assert!(r(EntityKind::Citizen, referrals.as_str(), &Value::Null).is_empty());
        assert!(matches!(
            references(
                EntityKind::Citizen,
                &referrals,
                &serde_json::json!({"follow_up": "nope"})
            ),
            Err(SchemaError::NotAnId { .. })
        ));
        assert!(r(EntityKind::Visit, "citizen_id", &Value::Null).is_empty());
        assert!(r(EntityKind::Visit, "note", &v).is_empty());
        let nil = Value::String(Uuid::nil().to_string());
        assert!(matches!(
            references(EntityKind::Visit, "citizen_id", &nil),
            Err(SchemaError::NilId { .. })
        ));
        assert!(matches!(
            references(EntityKind::Visit, "follow_up", &Value::from(7)),
            Err(SchemaError::NotAnId { .. })
        ));
        let braced = Value::String(format!("{{{id}}}"));
        let upper = Value::String(id.to_string().to_uppercase());
        for other_spelling in [braced, upper, Value::String(id.simple().to_string())] {
            assert!(references(EntityKind::SiteLogEntry, "residents", &other_spelling).is_err());
        }
    }

    #[test]
    fn a_single_consent_is_read_as_the_consent_for_one_purpose_unless_that_item_was_written_since()
    {
        let citizen = Uuid::now_v7();
        let worker = Uuid::now_v7();
        let consent = serde_json::json!({"status": "given", "date": "2026-03-04",
            "scope": "alt", "method": "verbal", "recorded_by": worker});
        let mut record = serde_json::Map::new();
        record.insert("id".into(), serde_json::json!(citizen));
        record.insert("consent".into(), consent.clone());
        let mut old = record.clone();
        join_items(EntityKind::Citizen, &mut old).unwrap();
        assert!(!old.contains_key("consent"));
        let consents = old["consents"].as_array().unwrap();
        assert_eq!(consents.len(), 1);
        assert_eq!(consents[0]["id"], serde_json::json!(citizen));
        assert_eq!(consents[0]["purpose"], "recording");
        assert_eq!(consents[0]["scope"], "alt");
        // Written since: the item wins, the old consent is not read twice.
        let mut newer = consents[0].clone();
        newer["status"] = "withdrawn".into();
        record.insert(item_field("consents", citizen), newer.clone());
        join_items(EntityKind::Citizen, &mut record).unwrap();
        assert_eq!(record["consents"], serde_json::json!([newer]));
        // A removed consent (`null`) and a malformed one become nothing.
        for gone in [Value::Null, serde_json::json!({"status": "given"})] {
            assert_eq!(
                upcast_legacy(EntityKind::Citizen, citizen, "consent", &gone),
                None
            );
        }
        assert_eq!(
            upcast_legacy(EntityKind::Visit, citizen, "consent", &consent),
            None
        );
    }

    #[test]
    fn goals_travel_one_by_one_and_join_back_in_the_order_they_were_made() {
        let (first, second) = (GoalId::new(), GoalId::new());
        let goal = |id: GoalId, text: &str| serde_json::json!({"id": id, "text": text, "status": "active", "created": "2026-12-06"});
        let mut record = serde_json::Map::new();
        record.insert(
            "goals".into(),
            serde_json::json!([goal(second, "job"), goal(first, "bolig")]),
        );
        split_items(EntityKind::Citizen, &mut record).unwrap();
        let (a, b) = (item_field("goals", first.0), item_field("goals", second.0));
        assert_eq!(
            record.keys().collect::<Vec<_>>(),
            [&a, &b].map(|s| s as &String)
        );
        for name in [&a, &b] {
            assert!(check_field(EntityKind::Citizen, name).is_ok());
            assert_eq!(rule_field(EntityKind::Citizen, name), "goals");
            assert!(is_stored_field(EntityKind::Citizen, name));
        }
        assert!(matches!(
            check_field(EntityKind::Citizen, "goals"),
            Err(SchemaError::WholeList { .. })
        ));
        assert!(check_field(EntityKind::Visit, &item_field("goals", first.0)).is_err());
        assert!(check_field(EntityKind::Citizen, "goals__set").is_err());
        assert!(check_field(EntityKind::Citizen, &item_field("goals", Uuid::nil())).is_err());

        let mut joined = record.clone();
        join_items(EntityKind::Citizen, &mut joined).unwrap();
        assert_eq!(
            joined["goals"],
            serde_json::json!([goal(first, "bolig"), goal(second, "job")])
        );
        // A removed goal is null and left out; a goal under another's name is refused.
        record.insert(a.clone(), Value::Null);
        let mut removed = record.clone();
        join_items(EntityKind::Citizen, &mut removed).unwrap();
        assert_eq!(removed["goals"], serde_json::json!([goal(second, "job")]));
        record.insert(a, goal(second, "flyttet"));
        assert!(matches!(
            join_items(EntityKind::Citizen, &mut record),
            Err(SchemaError::ItemMisplaced { .. })
        ));
    }

    #[test]
    fn a_whole_list_replaces_the_items_and_removes_those_it_does_not_hold() {
        let (kept, dropped, added) = (GoalId::new(), GoalId::new(), GoalId::new());
        let goal = |id: GoalId| serde_json::json!({"id": id, "text": "x", "status": "active", "created": "2026-12-06"});
        let mut record = serde_json::Map::new();
        record.insert(
            "goals".into(),
            serde_json::json!([goal(kept), goal(dropped)]),
        );
        split_items(EntityKind::Citizen, &mut record).unwrap();
        let written = replace_list(
            EntityKind::Citizen,
            &mut record,
            "goals",
            serde_json::json!([goal(kept), goal(added)]),
        )
        .unwrap();
        assert_eq!(
            written.len(),
            3,
            "the dropped goal's removal and both goals of the list"
        );
        assert_eq!(record[&item_field("goals", dropped.0)], Value::Null);
        join_items(EntityKind::Citizen, &mut record).unwrap();
        assert_eq!(
            record["goals"],
            serde_json::json!([goal(kept), goal(added)])
        );
    }
}
