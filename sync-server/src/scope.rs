//! Who may see and change which records (DESIGN §6, "Access"). One place for the rules; the
//! sync transaction asks it about every pushed mutation and every pulled change.
//!
//! The role table (scope classes, what each role reads and writes) is `feltbog_core::access`,
//! shared with the app. A citizen's records follow the citizen: their scope is the citizen's
//! team *now* (the `citizens` table), so a citizen moved to another team takes their history
//! along and it is no longer served to the old team. Other records stay with the team that
//! created them.
//!
//! A caretaker's sites are the ones an administrator assigned them (`caretaker_sites`), and any
//! site they create. A supervisor reads their own team and the teams an administrator gave
//! them to supervise (`supervised_teams`). Nothing else is served or accepted across teams.
//! "Not yours" and "does not exist" give the same answer.

use crate::args;
use crate::identity::{Caller, Role};
use crate::storage::{Db, DbExt, StorageError};
use feltbog_core::domain::EntityKind;
use feltbog_core::domain::schema::{Reference, Target};
use feltbog_core::protocol::{FieldChange, Mutation};
use std::collections::BTreeSet;
use uuid::Uuid;

pub use feltbog_core::access::{Class, can_read, can_review_conflicts, can_write};

/// What a caller reaches beyond its role: the teams it reads (its own, and for a supervisor the
/// teams it supervises) and, for a caretaker, its sites. Read in the transaction that uses it,
/// so an assignment made meanwhile counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    pub teams: BTreeSet<Uuid>,
    pub sites: BTreeSet<Uuid>,
}

/// The [`Reach`] of `caller` now.
pub fn reach(db: &dyn Db, caller: &Caller) -> Result<Reach, StorageError> {
    let mut reach = Reach {
        teams: BTreeSet::from([caller.team_id]),
        sites: BTreeSet::new(),
    };
    let worker = args![caller.worker_id];
    match caller.role {
        Role::Caretaker => {
            reach.sites = db
                .all(
                    "SELECT site_id FROM caretaker_sites WHERE worker_id = ?1",
                    worker,
                )?
                .into_iter()
                .collect();
        }
        Role::Supervisor => {
            reach.teams.extend(db.all::<Uuid>(
                "SELECT team_id FROM supervised_teams WHERE worker_id = ?1",
                worker,
            )?);
        }
        _ => {}
    }
    Ok(reach)
}

/// The SQL condition that `column` (a team id) is a team the caller reads: `?1` is its own
/// team, `?6` its worker id.
pub(crate) fn team_condition(role: Role, column: &str) -> String {
    match role {
        Role::Supervisor => format!(
            "({column} = ?1 OR {column} IN \
             (SELECT team_id FROM supervised_teams WHERE worker_id = ?6))"
        ),
        _ => format!("{column} = ?1"),
    }
}

/// The SQL condition (over change-log row `c` joined to its citizen's scope `z`, with the
/// caller's worker id as `?6`) for the records `role` reads; kept beside [`can_read`] so the
/// two cannot drift apart unnoticed (a unit test and the authorization matrix test both).
pub(crate) fn read_condition(role: Role) -> &'static str {
    match role {
        Role::Outreach | Role::HomeSupport | Role::Supervisor => "TRUE",
        Role::Caretaker => {
            "(CASE WHEN c.class IN ('site', 'site_log') THEN c.site_id
                   WHEN c.class = 'citizen' THEN z.site_id END)
             IN (SELECT site_id FROM caretaker_sites WHERE worker_id = ?6)"
        }
        Role::Admin => "FALSE",
    }
}

/// Bits of every role: an erasure or a copy meant for all of a team.
pub fn all_roles() -> i64 {
    Role::ALL.iter().map(|r| r.bit()).sum()
}

/// Where a stored record belongs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordScope {
    pub team: Uuid,
    pub class: Class,
    pub citizen: Option<Uuid>,
    /// For a citizen's records: the citizen has a site.
    pub resident: bool,
    /// The site: a site's own id, a site-log entry's site (and a conflict's about one), the
    /// site a citizen lives at now.
    pub site: Option<Uuid>,
    /// The citizen was taken off devices (closed past retention) or purged.
    pub removed: bool,
}

/// The scope of an existing record, or `None` if there is no such record.
pub fn record_scope(
    db: &dyn Db,
    entity: EntityKind,
    id: Uuid,
) -> Result<Option<RecordScope>, StorageError> {
    /// Record team, class, citizen, the citizen's team, resident, removed, site.
    type Row = (
        Uuid,
        String,
        Option<Uuid>,
        Option<Uuid>,
        bool,
        bool,
        Option<Uuid>,
    );
    let row: Option<Row> = db.one(
        "SELECT r.team_id, r.class, r.citizen_id, z.team_id, coalesce(z.resident, 0),
                coalesce(z.off_devices = 1 OR z.purged_ms IS NOT NULL, FALSE),
                CASE WHEN r.class = 'citizen' THEN z.site_id ELSE r.site_id END
         FROM records r LEFT JOIN citizens z ON z.citizen_id = r.citizen_id
         WHERE r.entity = ?1 AND r.record_id = ?2",
        args![entity.as_str(), id],
    )?;
    let Some((team, class, citizen, citizen_team, resident, removed, site)) = row else {
        return Ok(None);
    };
    Ok(Some(RecordScope {
        team: citizen_team.unwrap_or(team),
        class: Class::parse(&class).unwrap_or(Class::Anon),
        citizen,
        resident,
        removed,
        site,
    }))
}

/// Whether `caller`, reaching `reach` ([`reach`]), may read a record with this scope.
pub fn readable(caller: &Caller, reach: &Reach, scope: &RecordScope) -> bool {
    reach.teams.contains(&scope.team)
        && !scope.removed
        && can_read(caller.role, scope.class, at(reach, scope))
}

/// Whether `caller`, reaching `reach`, may change a record with this scope: in its own team
/// only (a supervisor reads other teams and writes nothing).
pub fn writable(caller: &Caller, reach: &Reach, scope: &RecordScope) -> bool {
    scope.team == caller.team_id
        && !scope.removed
        && can_write(caller.role, scope.class, at(reach, scope))
}

/// Whether a record that `caller` writes may refer to `reference` ([`feltbog_core::domain::schema`]):
/// the target exists now and is the caller's business, in the caller's own team. A citizen must
/// be one the caller reads (a caretaker: a resident of one of their sites), a task one it may
/// change, a site or a worker one of its team's. "Not yours" and "does not exist" are the same
/// `false`, so a reference cannot probe another team's ids, nor file a team's writes in another
/// team's citizen's audit export.
pub fn reference_in_scope(
    db: &dyn Db,
    caller: &Caller,
    reach: &Reach,
    reference: Reference,
) -> Result<bool, StorageError> {
    let record = |entity| record_scope(db, entity, reference.id);
    Ok(match reference.target {
        Target::Citizen => record(EntityKind::Citizen)?
            .is_some_and(|s| s.team == caller.team_id && readable(caller, reach, &s)),
        Target::Task => record(EntityKind::Task)?.is_some_and(|s| writable(caller, reach, &s)),
        // The visit a referral was made on: one the writer reads.
        Target::Visit => record(EntityKind::Visit)?
            .is_some_and(|s| s.team == caller.team_id && readable(caller, reach, &s)),
        Target::Site => {
            record(EntityKind::Site)?.is_some_and(|s| s.team == caller.team_id && !s.removed)
        }
        Target::Worker => db.value(
            "SELECT count(*) > 0 FROM workers WHERE id = ?1 AND team_id = ?2",
            args![reference.id, caller.team_id],
        )?,
    })
}

fn at(reach: &Reach, scope: &RecordScope) -> bool {
    scope.site.is_some_and(|s| reach.sites.contains(&s))
}

/// The site a new record belongs to: a site its own id, a site-log entry the site its
/// `site_id` op names.
pub fn site_of_new(m: &Mutation) -> Option<Uuid> {
    let first = &m.ops[0];
    match first.entity {
        EntityKind::Site => Some(first.id),
        EntityKind::SiteLogEntry => m
            .ops
            .iter()
            .find(|op| op.field == "site_id")
            .and_then(|op| serde_json::from_value::<Uuid>(op.change.value().clone()).ok()),
        _ => None,
    }
}

/// The class and citizen of a record a mutation creates. A visit or task names its citizen
/// in its `citizen_id` op; without one a visit is anonymous team work.
pub fn classify_new(m: &Mutation) -> (Class, Option<Uuid>) {
    let first = &m.ops[0];
    let citizen_op = || {
        m.ops
            .iter()
            .find(|op| op.field == "citizen_id")
            .and_then(|op| match &op.change {
                FieldChange::Assign { value } => serde_json::from_value::<Uuid>(value.clone()).ok(),
                _ => None,
            })
    };
    match first.entity {
        EntityKind::Citizen => (Class::Citizen, Some(first.id)),
        EntityKind::Visit | EntityKind::Task => match citizen_op() {
            Some(c) => (Class::Case, Some(c)),
            None => (Class::Anon, None),
        },
        EntityKind::Site => (Class::Site, None),
        EntityKind::SiteLogEntry => (Class::SiteLog, None),
        EntityKind::Conflict => (Class::Anon, None),
    }
}

/// The fields that tie a record to its scope. Devices may set them when creating a record,
/// never change them: a record does not wander between citizens or teams by an edit.
pub fn is_scope_field(entity: EntityKind, field: &str) -> bool {
    match entity {
        EntityKind::Citizen => field == "team_id",
        EntityKind::Visit => field == "citizen_id" || field == "team_id",
        EntityKind::Task => field == "citizen_id",
        EntityKind::SiteLogEntry => field == "site_id",
        EntityKind::Site | EntityKind::Conflict => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, params};

    #[test]
    fn the_sql_condition_agrees_with_can_read() {
        let conn = Connection::open_in_memory().unwrap();
        let (worker, own, other) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        conn.execute_batch(
            "CREATE TABLE caretaker_sites (worker_id BLOB, site_id BLOB);
             INSERT INTO caretaker_sites VALUES (x'01010101010101010101010101010101',
                 x'02020202020202020202020202020202');",
        )
        .unwrap();
        // The change row's site (`c`) and the citizen's site now (`z`) vary apart: a site or
        // log is placed by its row, a citizen by where they live now.
        let places = [None, Some(own), Some(other)];
        for role in Role::ALL {
            for class in Class::ALL {
                for (row_site, lives_at) in places.iter().flat_map(|a| places.map(|b| (*a, b))) {
                    let sql = format!(
                        "SELECT coalesce({}, 0) FROM (SELECT ?1 AS class, ?2 AS site_id) c,
                             (SELECT ?3 AS site_id) z, (SELECT ?4 AS worker) w",
                        read_condition(role).replace("?6", "w.worker")
                    );
                    let got: bool = conn
                        .query_row(
                            &sql,
                            params![class.as_str(), row_site, lives_at, worker],
                            |r| r.get(0),
                        )
                        .unwrap();
                    let at_own_site = match class {
                        Class::Citizen => lives_at == Some(own),
                        _ => row_site == Some(own),
                    };
                    assert_eq!(
                        got,
                        can_read(role, class, at_own_site),
                        "{role} {class:?} row site {row_site:?}, lives at {lives_at:?}"
                    );
                }
            }
        }
    }
}
