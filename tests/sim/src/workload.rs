//! What workers do between syncs: create citizens and visits, edit fields of shared records
//! (free text and scalars, so conflicts arise), add and remove tags and themes, archive, and
//! resolve or dismiss the conflicts that reach their inbox.
//!
//! Every value written is unique to the run (a device name and a counter), so two concurrent
//! edits never agree by accident and a lost one cannot hide behind an equal value.

use crate::Broken;
use crate::world::{World, broken};
use feltbog_core::domain::{
    Citizen, CitizenId, Goal, GoalId, GoalStatus, HousingSituation, Sensitive, Theme, Visit,
    VisitId, VisitKind, WorkerId,
};
use feltbog_core::merge::ConflictKind;
use feltbog_core::store::{ListQuery, Resolution, Saved, Store, StoreError};
use uuid::Uuid;

const TAGS: [&str; 4] = ["bolig", "misbrug", "psykiatri", "økonomi"];
const THEMES: [Theme; 4] = [
    Theme::Housing,
    Theme::SubstanceUse,
    Theme::MentalHealth,
    Theme::Crisis,
];

fn all() -> ListQuery {
    ListQuery {
        include_archived: true,
        ..ListQuery::default()
    }
}

fn store_error(e: StoreError) -> Broken {
    broken("store", e)
}

/// One edit by `device` (nothing if it is crashed). Sometimes the device crashes inside the
/// save, before it commits (the worker is never told "saved"). Every mutation the device did
/// save is kept, as saved, for the reference model (`checks::reference_model`).
pub(crate) fn edit(world: &mut World, device: usize) -> Result<(), Broken> {
    let Some(store) = world.devices[device].store.as_mut() else {
        return Ok(());
    };
    let before = store.last_device_seq().map_err(store_error)?;
    if world.chance(3) {
        world.env.borrow().plan.device_save_crash.set(true);
    }
    let result = one_edit(world, device);
    world.env.borrow().plan.device_save_crash.set(false);
    result.map_err(|b| {
        if b.trace.is_empty() {
            world.with_trace(b)
        } else {
            b
        }
    })?;
    let Some(store) = world.devices[device].store.as_mut() else {
        return Ok(());
    };
    let after = store.last_device_seq().map_err(store_error)?;
    if after > before {
        let pending = store.outbox().map_err(store_error)?;
        for seq in before + 1..=after {
            let m = pending
                .iter()
                .find(|m| m.device_seq == seq)
                .ok_or_else(|| broken("store", format!("saved mutation {seq} is not pending")))?;
            world.saved.push((device, m.clone()));
        }
    }
    Ok(())
}

fn one_edit(world: &mut World, device: usize) -> Result<(), Broken> {
    if world.devices[device].store.is_none() {
        return Ok(());
    }
    let n = world.next_number();
    let name = world.devices[device].name;
    let text = format!("{name}-{n}");
    let worker = WorkerId(world.devices[device].worker);
    let now = chrono::DateTime::from_timestamp_millis(world.now() as i64).unwrap_or_default();
    // Ids sort by creation order, so the oldest records are the "hot" ones on every device.
    let id = Uuid::from_u64_pair(n, 0xF317_0000 + device as u64);
    let roll = world.rng_below(100);
    let (citizens, visits) = {
        let store = world.devices[device].store.as_mut().expect("checked above");
        (
            store.list::<Citizen>(&all()).map_err(store_error)?,
            store.list::<Visit>(&all()).map_err(store_error)?,
        )
    };
    let (mut citizens, mut visits) = (citizens, visits);
    // The same order on every device, so the "hot" records below are the same ones everywhere.
    citizens.sort_by_key(|c| c.id);
    visits.sort_by_key(|v| v.id);
    let pick = |world: &World, len: usize| world.rng_below(len.max(1) as u64) as usize;
    // Most edits go to a few shared records, so devices often edit the same field concurrently.
    let pick_hot = |world: &World, len: usize| {
        if world.chance(75) {
            world.rng_below(len.clamp(1, 2) as u64) as usize
        } else {
            pick(world, len)
        }
    };
    let what: String;
    let saved = match roll {
        _ if citizens.len() < 2 || roll < 6 => {
            let citizen = Citizen {
                id: CitizenId(id),
                alias: Some(Sensitive(text.clone())),
                housing: HousingSituation::Shelter,
                created_at: now,
                tags: [TAGS[pick(world, TAGS.len())].to_owned()].into(),
                ..Citizen::with_alias("x")
            };
            what = format!("creates citizen {}", citizen.id.0);
            store_of(world, device).save(&citizen)
        }
        6..22 => {
            let citizen = citizens[pick_hot(world, citizens.len())].id;
            let visit = Visit {
                id: VisitId(id),
                started_at: now,
                note: Sensitive(text.clone()),
                themes: [THEMES[pick(world, THEMES.len())]].into(),
                ..Visit::with_citizen(citizen, worker, VisitKind::HomeVisit)
            };
            what = format!("logs visit {} for citizen {}", visit.id.0, citizen.0);
            store_of(world, device).save(&visit)
        }
        22..26 => {
            let visit = Visit {
                id: VisitId(id),
                started_at: now,
                ..Visit::anonymous(1 + pick(world, 5) as u16, &text, worker)
            };
            what = format!("logs anonymous contact {}", visit.id.0);
            store_of(world, device).save(&visit)
        }
        26..40 if !visits.is_empty() => {
            let mut visit = visits[pick_hot(world, visits.len())].clone();
            visit.note = Sensitive(text.clone());
            what = format!("edits the note of visit {}", visit.id.0);
            store_of(world, device).save(&visit)
        }
        40..50 => {
            let mut citizen = citizens[pick_hot(world, citizens.len())].clone();
            citizen.phone = Some(Sensitive(format!("+45 {n:08}")));
            what = format!("edits the phone of citizen {}", citizen.id.0);
            store_of(world, device).save(&citizen)
        }
        50..56 => {
            let mut citizen = citizens[pick_hot(world, citizens.len())].clone();
            citizen.alias = Some(Sensitive(text.clone()));
            what = format!("edits the alias of citizen {}", citizen.id.0);
            store_of(world, device).save(&citizen)
        }
        56..66 => {
            let mut citizen = citizens[pick_hot(world, citizens.len())].clone();
            let tag = TAGS[pick(world, TAGS.len())].to_owned();
            what = format!("toggles a tag of citizen {}", citizen.id.0);
            if !citizen.tags.remove(&tag) {
                citizen.tags.insert(tag);
            }
            store_of(world, device).save(&citizen)
        }
        66..72 if !visits.is_empty() => {
            let mut visit = visits[pick_hot(world, visits.len())].clone();
            let theme = THEMES[pick(world, THEMES.len())];
            what = format!("toggles a theme of visit {}", visit.id.0);
            if !visit.themes.remove(&theme) {
                visit.themes.insert(theme);
            }
            store_of(world, device).save(&visit)
        }
        72..77 => {
            let citizen = &citizens[pick_hot(world, citizens.len())];
            what = format!("archives/restores citizen {}", citizen.id.0);
            let archived = !citizen.archived;
            let id = citizen.id.0;
            store_of(world, device).set_archived::<Citizen>(id, archived)
        }
        77..85 => {
            let mut citizen = citizens[pick_hot(world, citizens.len())].clone();
            // Goals merge one by one: edit a goal the citizen has (two devices editing the
            // same goal conflict over it), or replace them all with a new one.
            match citizen.goals.first_mut() {
                Some(goal) if id.as_bytes()[15].is_multiple_of(2) => {
                    goal.text = Sensitive(text.clone());
                    what = format!("edits a goal of citizen {}", citizen.id.0);
                }
                _ => {
                    citizen.goals = vec![Goal {
                        id: GoalId(id),
                        text: Sensitive(text.clone()),
                        status: GoalStatus::Active,
                        created: now.date_naive(),
                    }];
                    what = format!("rewrites the goals of citizen {}", citizen.id.0);
                }
            }
            store_of(world, device).save(&citizen)
        }
        _ => return resolve_one(world, device, &text),
    };
    report(world, device, &what, saved)
}

fn store_of(world: &mut World, device: usize) -> &mut Store {
    world.devices[device]
        .store
        .as_mut()
        .expect("checked by the caller")
}

fn report(
    world: &mut World,
    device: usize,
    what: &str,
    saved: Result<Saved, StoreError>,
) -> Result<(), Broken> {
    let name = world.devices[device].name;
    match saved {
        Ok(Saved::Written { device_seq }) => {
            world.env.borrow_mut().stats.edits += 1;
            world.log(|| format!("{name}: {what} (seq {device_seq})"));
            Ok(())
        }
        Ok(Saved::Unchanged) => Ok(()),
        Err(StoreError::Io(e)) if e.to_string() == "simulated crash" => {
            world.log(|| format!("{name}: crashes while saving ({what})"));
            world.crash_device(device);
            Ok(())
        }
        Err(e) => Err(world.with_trace(broken("store", format!("{name} {what}: {e}")))),
    }
}

/// Resolves or dismisses one open conflict in the device's inbox, if there is one.
fn resolve_one(world: &mut World, device: usize, text: &str) -> Result<(), Broken> {
    let name = world.devices[device].name;
    let open = world.devices[device]
        .store
        .as_mut()
        .expect("checked by the caller")
        .conflicts(false)
        .map_err(store_error)?;
    if open.is_empty() {
        return Ok(());
    }
    let conflict = open[world.rng_below(open.len() as u64) as usize].clone();
    let choice = world.rng_below(3);
    world.env.borrow_mut().stats.conflicts_settled += 1;
    let store = world.devices[device].store.as_mut().expect("checked above");
    let result = match conflict.kind {
        ConflictKind::Notice => store.dismiss_conflict(conflict.id),
        ConflictKind::Open => {
            let resolution = match choice {
                0 => Resolution::KeepMine,
                1 => Resolution::KeepTheirs,
                // Free text, or the words of a goal or consent, written together.
                _ if conflict.winner.is_string()
                    || feltbog_core::domain::schema::text_part(
                        conflict.entity,
                        &conflict.field,
                    )
                    .is_some() =>
                {
                    Resolution::Merged(text.into())
                }
                _ => Resolution::KeepTheirs,
            };
            store.resolve_conflict(conflict.id, resolution)
        }
    };
    match result {
        Ok(()) => {
            world.env.borrow_mut().stats.edits += 1;
            world.log(|| {
                format!(
                    "{name}: settles conflict {} on {} {} {}",
                    conflict.id.0, conflict.entity, conflict.record_id, conflict.field
                )
            });
            Ok(())
        }
        Err(StoreError::Io(e)) if e.to_string() == "simulated crash" => {
            world.log(|| format!("{name}: crashes while settling a conflict"));
            world.crash_device(device);
            Ok(())
        }
        Err(e) => Err(world.with_trace(broken("store", format!("{name} settles a conflict: {e}")))),
    }
}
