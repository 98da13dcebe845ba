//! Serving pulls: the change log by cursor, filtered to the caller's scope.

use super::SyncError;
use crate::args;
use crate::identity::Caller;
use crate::scope::{self};
use crate::storage::{Db, DbExt};
use feltbog_core::domain::CitizenId;
use feltbog_core::protocol::{Mutation, PullPage, limits};
use feltbog_core::sim::{PlantedBug, planted};
use uuid::Uuid;

/// The next page of changes for `caller` after `cursor`: the mutations in its worker's scope
/// ([`crate::scope`]), except the ones its own device sent (it has them) unless `resync` (it
/// erased them to pull its new scope afresh), whole mutations only; and the erasures meant for
/// it. A page ends at an erasure, which the device applies after the page's changes.
pub fn pull_page(
    db: &dyn Db,
    caller: &Caller,
    cursor: u64,
    resync: bool,
) -> Result<PullPage, SyncError> {
    // An erasure is served only while the citizen is still out of the caller's scope: one who
    // came back before the device synced stays, with any edits the device has pending.
    let readable = format!(
        "{} AND coalesce(z.off_devices = 0 AND z.purged_ms IS NULL, TRUE) AND {}",
        scope::team_condition(
            caller.role,
            "(CASE WHEN c.citizen_id IS NULL THEN c.team_id ELSE z.team_id END)"
        ),
        scope::read_condition(caller.role)
    );
    let row_team = scope::team_condition(caller.role, "c.team_id");
    let scoped = format!(
        "CASE WHEN c.kind = 'erase' THEN {row_team} AND (c.roles & ?4) != 0
              AND NOT coalesce({readable}, FALSE)
         ELSE (c.roles IS NULL OR ({row_team} AND (c.roles & ?4) != 0)) AND {readable} END"
    );
    // Every row `scoped` serves is filed under a team the caller reads, so the pull reads
    // each such team's rows through `changes_by_team` and never walks other teams' log: a
    // citizen's row is filed under the citizen's team when written, and a citizen moved to
    // another team takes their history along as copies filed under the new team
    // (`Ctx::deliver_history`), so the originals left under the old team are not needed.
    // The planted scope leak reads the whole log instead, unfiltered.
    let leak = planted(PlantedBug::ScopeLeak);
    let filter = if leak {
        format!("({scoped}) OR TRUE OR c.team_id = ?5")
    } else {
        format!("c.team_id = ?5 AND {scoped}")
    };
    // The page's rows by number first; each row's text is read only when the page takes it,
    // so a page holds no more than its byte budget (mutations are up to 1 MiB each).
    let sql = format!(
        "SELECT c.seq FROM changes c LEFT JOIN citizens z ON z.citizen_id = c.citizen_id
         WHERE c.seq > ?2 AND ({filter}) ORDER BY c.seq LIMIT ?3"
    );
    let teams = if leak {
        vec![caller.team_id]
    } else {
        scope::reach(db, caller)?.teams.into_iter().collect()
    };
    let seqs = first_rows(db, &sql, caller, cursor, &teams)?;
    let (mut changes, mut next_cursor, mut scanned, mut bytes) =
        (Vec::new(), cursor, 0usize, 0usize);
    let mut erase = Vec::new();
    let mut full = false;
    for seq in seqs {
        let row: LogRow = db
            .one(
                "SELECT seq, device_id, echo, mutation, kind, citizen_id FROM changes
                 WHERE seq = ?1",
                args![seq as i64],
            )?
            .map(|(seq, device, echo, mutation, kind, citizen)| LogRow {
                seq,
                device,
                echo,
                mutation,
                kind,
                citizen,
            })
            .ok_or(SyncError::Corrupt("change log"))?;
        // The page stops before a change that would take it past its byte budget, unless the
        // page is still empty: with mutations bounded too, an answer always fits the client's
        // limits, and a page always moves the cursor.
        if !changes.is_empty() && bytes + row.mutation.len() > limits::PAGE_BYTES {
            full = true;
            break;
        }
        scanned += 1;
        next_cursor = row.seq;
        if row.kind == "erase" {
            let citizen = row.citizen.ok_or(SyncError::Corrupt("erasure"))?;
            erase.push(CitizenId(citizen));
            full = true;
            break;
        }
        if row.device == caller.device_id.0 && !row.echo && !resync {
            continue;
        }
        bytes += row.mutation.len();
        let mut mutation: Mutation =
            serde_json::from_str(&row.mutation).map_err(|_| SyncError::Corrupt("change log"))?;
        // Only the fields the caller's role is served (a caretaker: a resident's name and
        // place, not their CPR, goals or consent).
        mutation
            .ops
            .retain(|op| feltbog_core::access::served_field(caller.role, op.entity, &op.field));
        if mutation.ops.is_empty() {
            continue;
        }
        changes.push((row.seq, mutation));
    }
    let more = full || scanned == limits::PULL_PAGE_MUTATIONS;
    if !more {
        // Nothing further is the caller's: its cursor goes to the head of the log. (Otherwise a
        // device that pulled a new scope afresh would stop at that scope's last change, below
        // pages it had applied before the change — and could take a late copy of one again.)
        let head: i64 = db.value("SELECT coalesce(max(seq), 0) FROM changes", &[])?;
        next_cursor = next_cursor.max(head as u64);
    }
    Ok(PullPage {
        changes,
        next_cursor,
        more,
        erase,
        resync,
    })
}

/// A change-log row as the pull reads it.
struct LogRow {
    seq: u64,
    device: Uuid,
    echo: bool,
    mutation: String,
    kind: String,
    citizen: Option<Uuid>,
}

/// The numbers of the first [`limits::PULL_PAGE_MUTATIONS`] rows after `cursor` that `sql`
/// selects from any of `teams` (bound as `?5`, one ordered index read per team), in order.
/// Each team's read holds that team's first rows, so the first of all of them are among them;
/// most callers read one team, a supervisor a few.
fn first_rows(
    db: &dyn Db,
    sql: &str,
    caller: &Caller,
    cursor: u64,
    teams: &[Uuid],
) -> Result<Vec<u64>, SyncError> {
    let mut found = Vec::new();
    for row_team in teams {
        let mut params = args![
            caller.team_id,
            cursor as i64,
            limits::PULL_PAGE_MUTATIONS as i64,
            caller.role.bit(),
            row_team
        ]
        .to_vec();
        // Only a caretaker's or a supervisor's condition names the worker (sites, teams).
        if sql.contains("?6") {
            params.push(caller.worker_id.into());
        }
        found.extend(db.all::<u64>(sql, &params)?);
    }
    if teams.len() > 1 {
        found.sort_unstable();
        found.truncate(limits::PULL_PAGE_MUTATIONS);
    }
    Ok(found)
}
