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
    let leak = if planted(PlantedBug::ScopeLeak) {
        " OR 1"
    } else {
        ""
    };
    let sql = format!(
        "SELECT c.seq, c.device_id, c.echo, c.mutation, c.kind, c.citizen_id
         FROM changes c LEFT JOIN citizens z ON z.citizen_id = c.citizen_id
         WHERE c.seq > ?2 AND (({scoped}){leak}) ORDER BY c.seq LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let (team, cursor_arg, limit, bit, worker) = (
        &caller.team_id.as_bytes()[..],
        cursor as i64,
        limits::PULL_PAGE_MUTATIONS as i64,
        caller.role.bit(),
        &caller.worker_id.as_bytes()[..],
    );
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&team, &cursor_arg, &limit, &bit];
    if sql.contains("?5") {
        // Only a caretaker's or a supervisor's condition names the worker (sites, teams).
        args.push(&worker);
    }
    let mut rows = stmt.query(&args[..])?;
    let (mut changes, mut next_cursor, mut scanned, mut bytes) =
        (Vec::new(), cursor, 0usize, 0usize);
    let mut erase = Vec::new();
    let mut full = false;
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        let text: String = row.get(3)?;
        // The page stops before a change that would take it past its byte budget, unless the
        // page is still empty: with mutations bounded too, an answer always fits the client's
        // limits, and a page always moves the cursor.
        if !changes.is_empty() && bytes + text.len() > limits::PAGE_BYTES {
            full = true;
            break;
        }
        scanned += 1;
        next_cursor = seq;
        if row.get::<_, String>(4)? == "erase" {
            let citizen: Vec<u8> = row.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default();
            let citizen = Uuid::from_slice(&citizen).map_err(|_| SyncError::Corrupt("erasure"))?;
            erase.push(CitizenId(citizen));
            full = true;
            break;
        }
        let device: Vec<u8> = row.get(1)?;
        let echo: bool = row.get(2)?;
        if device == caller.device_id.0.as_bytes() && !echo && !resync {
            continue;
        }
        bytes += text.len();
        let mut mutation: Mutation =
            serde_json::from_str(&text).map_err(|_| SyncError::Corrupt("change log"))?;
        // Only the fields the caller's role is served (a caretaker: a resident's name and
        // place, not their CPR, goals or consent).
        mutation
            .ops
            .retain(|op| feltbog_core::access::served_field(caller.role, op.entity, &op.field));
        if mutation.ops.is_empty() {
            continue;
        }
        changes.push((seq, mutation));
    }
    drop(rows);
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
