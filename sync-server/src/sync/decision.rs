//! A supervisor's decision on an open free-text conflict, from the dashboard.

use super::apply::Ctx;
use super::state::field_value;
use super::{SERVER_DEVICE, SyncError, filed_under};
use crate::args;
use crate::audit::{self, Action, Entry};
use crate::identity::{Caller, Role};
use crate::scope::{self};
use crate::storage::{Db, DbExt, Transact};
use feltbog_core::domain::schema::{self};
use feltbog_core::domain::{ConflictStatus, EntityKind};
use feltbog_core::hlc::{DeviceId, Hlc, Stamp};
use feltbog_core::protocol::{FieldChange, FieldOp, Mutation, RejectReason};
use uuid::Uuid;

/// A supervisor's decision on an open free-text conflict, made in the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "keep", content = "text", rename_all = "snake_case")]
pub enum Decision {
    /// The version that holds now.
    Current,
    /// The other version.
    Other,
    /// A text written from both (the text part of a structured value: a goal's words).
    Merged(String),
}

/// Settles an open free-text conflict for a supervisor signed in to the dashboard, by the same
/// rule and write path as a review from their tablet (`Ctx::is_conflict_review`,
/// `Ctx::judge`): the field gets the chosen value, then the conflict is marked resolved, as
/// two mutations the server writes in her name (no device of hers exists), logged for every
/// device of the team and audited as her writes. A refusal (not her team's, no longer open,
/// a value the record cannot hold) changes nothing.
pub fn review_from_dashboard(
    db: &mut impl Transact,
    worker: Uuid,
    conflict: Uuid,
    decision: &Decision,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<Result<(), (RejectReason, String)>, SyncError> {
    db.write_if(|tx| {
        let out = decide(tx, worker, conflict, decision, now_ms, max_drift_ms)?;
        let commit = out.is_ok();
        Ok((out, commit))
    })
}

/// [`review_from_dashboard`] in its transaction, committed only when the decision holds.
fn decide(
    tx: &dyn Db,
    worker: Uuid,
    conflict: Uuid,
    decision: &Decision,
    now_ms: u64,
    max_drift_ms: u64,
) -> Result<Result<(), (RejectReason, String)>, SyncError> {
    let refused = |why: &str| Ok(Err((RejectReason::OutOfScope, why.to_owned())));
    let team: Option<Vec<u8>> = tx.one(
        "SELECT team_id FROM workers WHERE id = ?1 AND active = 1 AND role = ?2",
        args![worker, Role::Supervisor.as_str()],
    )?;
    let Some(team) = team.and_then(|t| Uuid::from_slice(&t).ok()) else {
        return refused("only an active supervisor reviews conflicts");
    };
    let caller = Caller {
        device_id: SERVER_DEVICE,
        worker_id: worker,
        team_id: team,
        role: Role::Supervisor,
    };
    let reach = scope::reach(tx, &caller)?;
    let value = |field: &str| field_value(tx, EntityKind::Conflict, conflict, field);
    let (Some(entity), Some(record), Some(field), Some(current), Some(other)) = (
        value("entity")?,
        value("record_id")?,
        value("field")?,
        value("winner")?,
        value("loser")?,
    ) else {
        return refused("no such conflict");
    };
    let (Ok(entity), Ok(record), Some(field)) = (
        serde_json::from_value::<EntityKind>(entity),
        serde_json::from_value::<Uuid>(record),
        field.as_str().map(str::to_owned),
    ) else {
        return Err(SyncError::Corrupt("conflict"));
    };
    if let Decision::Merged(text) = decision
        && text.trim().is_empty()
    {
        return Ok(Err((
            RejectReason::Invalid,
            "write the text to keep".into(),
        )));
    }
    let chosen = match decision {
        Decision::Current => current,
        Decision::Other => other,
        Decision::Merged(text) => match (&current, schema::text_part(entity, &field)) {
            (serde_json::Value::String(_), _) => serde_json::json!(text),
            (serde_json::Value::Object(parts), Some(part)) => {
                let mut parts = parts.clone();
                parts.insert(part.to_owned(), serde_json::json!(text));
                serde_json::Value::Object(parts)
            }
            _ => {
                return Ok(Err((
                    RejectReason::Invalid,
                    "this conflict has no text to write together".into(),
                )));
            }
        },
    };
    let base: Option<(i64, Vec<u8>)> = tx.one(
        "SELECT hlc, device FROM fields WHERE entity = ?1 AND record_id = ?2 AND field = ?3",
        args![entity.as_str(), record, &field],
    )?;
    let base = base.map(|(hlc, device)| Stamp {
        hlc: Hlc::from_u64(hlc as u64),
        device: DeviceId(Uuid::from_slice(&device).unwrap_or_default()),
    });
    let mut ctx = Ctx::new(tx, max_drift_ms, now_ms)?;
    let hlc = ctx.clock.now(now_ms)?;
    let writes = [
        (entity, record, field, chosen, base),
        (
            EntityKind::Conflict,
            conflict,
            "status".to_owned(),
            serde_json::json!(ConflictStatus::Resolved),
            None,
        ),
    ];
    let mut trail = Vec::new();
    for (entity, id, field, value, base) in writes {
        ctx.server_seq += 1;
        let mutation = Mutation {
            device_id: SERVER_DEVICE,
            device_seq: ctx.server_seq,
            ops: vec![FieldOp {
                entity,
                id,
                field,
                change: FieldChange::Assign { value },
                hlc,
                base,
            }],
        };
        match ctx.judge(&caller, &reach, &mutation)? {
            Err(refusal) => return Ok(Err(refusal)),
            Ok(citizen) => {
                for citizen in filed_under(ctx.tx, entity, id, citizen)? {
                    trail.push(Entry::by_web(worker, Action::Write).record(
                        entity.as_str(),
                        id,
                        citizen,
                    ));
                }
            }
        }
    }
    ctx.finish()?;
    audit::append_many(tx, now_ms, &trail)?;
    Ok(Ok(()))
}
