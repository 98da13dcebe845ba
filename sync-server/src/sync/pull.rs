//! Serving pulls: the change log by cursor, filtered to the caller's scope.

use super::SyncError;
use crate::identity::Caller;
use crate::scope::{self};
use feltbog_core::domain::CitizenId;
use feltbog_core::protocol::{Mutation, PullPage, limits};
use feltbog_core::sim::{PlantedBug, planted};
use rusqlite::Connection;
use uuid::Uuid;

/// The next page of changes for `caller` after `cursor`: the mutations in its worker's scope
/// ([`crate::scope`]), except the ones its own device sent (it has them) unless `resync` (it
/// erased them to pull its new scope afresh), whole mutations only; and the erasures meant for
/// it. A page ends at an erasure, which the device applies after the page's changes.
pub fn pull_page(
    conn: &Connection,
    caller: &Caller,
    cursor: u64,
    resync: bool,
) -> Result<PullPage, SyncError> {
    // An erasure is served only while the citizen is still out of the caller's scope: one who
    // came back before the device synced stays, with any edits the device has pending.
    let readable = format!(
        "{} AND coalesce(z.off_devices = 0 AND z.purged_ms IS NULL, 1) AND {}",
        scope::team_condition(
            caller.role,
            "(CASE WHEN c.citizen_id IS NULL THEN c.team_id ELSE z.team_id END)"
        ),
        scope::read_condition(caller.role)
    );
    let row_team = scope::team_condition(caller.role, "c.team_id");
    let scoped = format!(
        "CASE WHEN c.kind = 'erase' THEN {row_team} AND (c.roles & ?4) != 0
              AND NOT coalesce({readable}, 0)
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
        format!("({scoped}) OR 1")
    } else {
        format!("c.team_id = ?6 AND {scoped}")
    };
    let sql = format!(
        "SELECT c.seq, c.device_id, c.echo, c.mutation, c.kind, c.citizen_id
         FROM changes c LEFT JOIN citizens z ON z.citizen_id = c.citizen_id
         WHERE c.seq > ?2 AND ({filter}) ORDER BY c.seq LIMIT ?3"
    );
    let teams = if leak {
        vec![caller.team_id]
    } else {
        scope::reach(conn, caller)?.teams.into_iter().collect()
    };
    let rows = first_rows(conn, &sql, caller, cursor, &teams)?;
    let (mut changes, mut next_cursor, mut scanned, mut bytes) =
        (Vec::new(), cursor, 0usize, 0usize);
    let mut erase = Vec::new();
    let mut full = false;
    for row in rows {
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
            let citizen = row.citizen.unwrap_or_default();
            let citizen = Uuid::from_slice(&citizen).map_err(|_| SyncError::Corrupt("erasure"))?;
            erase.push(CitizenId(citizen));
            full = true;
            break;
        }
        if row.device == caller.device_id.0.as_bytes() && !row.echo && !resync {
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
        let head: i64 = conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM changes")?
            .query_row([], |r| r.get(0))?;
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
    device: Vec<u8>,
    echo: bool,
    mutation: String,
    kind: String,
    citizen: Option<Vec<u8>>,
}

/// The first [`limits::PULL_PAGE_MUTATIONS`] rows after `cursor` that `sql` selects from any of
/// `teams` (bound as `?6`, one ordered index read per team), in `seq` order. Each team's read
/// holds that team's first rows, so the first of all of them are among them; most callers read
/// one team, a supervisor a few.
fn first_rows(
    conn: &Connection,
    sql: &str,
    caller: &Caller,
    cursor: u64,
    teams: &[Uuid],
) -> Result<Vec<LogRow>, SyncError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let (team, cursor_arg, limit, bit, worker) = (
        &caller.team_id.as_bytes()[..],
        cursor as i64,
        limits::PULL_PAGE_MUTATIONS as i64,
        caller.role.bit(),
        &caller.worker_id.as_bytes()[..],
    );
    let mut found = Vec::new();
    for row_team in teams {
        let row_team = &row_team.as_bytes()[..];
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&team, &cursor_arg, &limit, &bit];
        // Only a caretaker's or a supervisor's condition names the worker (sites, teams), but
        // naming the row's team (?6) needs ?5 bound; the planted leak names no row team.
        if sql.contains("?6") || sql.contains("?5") {
            args.push(&worker);
        }
        if sql.contains("?6") {
            args.push(&row_team);
        }
        let mut rows = stmt.query(&args[..])?;
        while let Some(row) = rows.next()? {
            found.push(LogRow {
                seq: row.get::<_, i64>(0)? as u64,
                device: row.get(1)?,
                echo: row.get(2)?,
                mutation: row.get(3)?,
                kind: row.get(4)?,
                citizen: row.get(5)?,
            });
        }
    }
    if teams.len() > 1 {
        found.sort_by_key(|row| row.seq);
        found.truncate(limits::PULL_PAGE_MUTATIONS);
    }
    Ok(found)
}
