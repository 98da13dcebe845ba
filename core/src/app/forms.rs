//! What the screens send: form inputs, turned into domain records here so every rule lives in
//! one place. Blank optional text becomes `None`; dates arrive as `YYYY-MM-DD`; the domain's
//! `Validate` then checks the record as a whole before anything is saved.

use super::error::AppError;
use crate::domain::{
    AnonymousContact, Citizen, CitizenId, ConsentId, ConsentMethod, ConsentPurpose, ConsentStatus,
    Course, CourseId, CourseReview, Cpr, Goal, GoalId, GoalStatus, HousingChange, HousingChangeId,
    HousingSituation, NetworkPerson, PurposeConsent, Referral, ReferralCase, Sensitive, Site,
    SiteId, SiteKind, SiteLogEntry, SiteLogEntryId, SiteLogKind, Task, TaskId, TaskStatus, TeamId,
    Theme, Visit, VisitId, VisitKind, WorkerId,
};
use crate::store::{Resolution, Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use std::collections::BTreeSet;
use uuid::Uuid;

#[cfg(feature = "ts")]
use ts_rs::TS;

/// First run: where to sync, the one-time code from the administrator, and the PIN or
/// passphrase that will protect the store.
#[derive(Clone, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct FirstRunInput {
    pub server_url: String,
    pub code: String,
    pub pin: String,
}

impl std::fmt::Debug for FirstRunInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FirstRunInput(‹redacted›)")
    }
}

/// Consent as entered.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct ConsentInput {
    pub status: ConsentStatus,
    pub date: String,
    pub scope: String,
    pub method: ConsentMethod,
}

/// A goal as entered; `id` is `None` for a new goal.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct GoalInput {
    pub id: Option<Uuid>,
    pub text: String,
    pub status: GoalStatus,
}

/// The citizen form: create (`id` = `None`) or edit.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct CitizenInput {
    pub id: Option<Uuid>,
    pub alias: String,
    pub full_name: String,
    pub cpr: String,
    pub birth_year: Option<i32>,
    pub phone: String,
    pub housing: HousingSituation,
    pub site_id: Option<Uuid>,
    pub consent: Option<ConsentInput>,
    pub goals: Vec<GoalInput>,
    /// Short labels the team uses to find people ("natcafé", "metadon"); blank ones are dropped.
    pub tags: Vec<String>,
    /// Archived citizens leave the caseload (the case is closed) but keep their history.
    pub archived: bool,
}

/// A follow-up created together with a visit.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct FollowUpInput {
    pub title: String,
    pub due: String,
}

/// The visit form and the quick contact: a known citizen *or* an anonymous contact.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct VisitInput {
    pub citizen_id: Option<Uuid>,
    /// How many people were met, for an anonymous contact.
    pub anonymous_count: Option<u16>,
    pub anonymous_description: String,
    pub kind: VisitKind,
    /// When it started; `None` means now.
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub started_at_ms: Option<i64>,
    pub duration_minutes: u16,
    pub place: String,
    pub themes: Vec<Theme>,
    pub referrals: Vec<Referral>,
    pub note: String,
    pub wellbeing: Option<u8>,
    pub follow_up: Option<FollowUpInput>,
    /// The support course the visit was part of, and the citizen's goals it worked on.
    #[serde(default)]
    pub course_id: Option<Uuid>,
    #[serde(default)]
    pub goals: Vec<Uuid>,
}

/// A task about a citizen.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct TaskInput {
    pub citizen_id: Uuid,
    pub title: String,
    pub due: String,
}

/// A visit's correctable fields as the edit form holds them. Who it is about is not among them:
/// a record never moves between citizens by an edit (see [`link_visit`]).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct VisitEdit {
    pub kind: VisitKind,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub started_at_ms: i64,
    pub duration_minutes: u16,
    pub place: String,
    pub themes: Vec<Theme>,
    pub referrals: Vec<Referral>,
    pub note: String,
    pub wellbeing: Option<u8>,
    /// An anonymous contact's count and description (ignored for a visit about a citizen).
    pub anonymous_count: Option<u16>,
    pub anonymous_description: String,
}

/// Applies a visit correction: only the fields the worker changed since the form opened are
/// written; themes and referrals as additions and removals, so a concurrent edit of the same
/// visit on another tablet keeps what it added.
pub fn apply_visit_edit(
    mut current: Visit,
    started_from: &VisitEdit,
    edited: &VisitEdit,
    now: DateTime<Utc>,
) -> Result<Visit, AppError> {
    if edited.kind != started_from.kind {
        current.kind = edited.kind;
    }
    if edited.started_at_ms != started_from.started_at_ms {
        let at = at_ms("started_at", edited.started_at_ms)?;
        if at > now + chrono::Duration::minutes(5) {
            return Err(AppError::invalid(
                "started_at",
                "started_at is in the future",
            ));
        }
        current.started_at = at;
    }
    if edited.duration_minutes != started_from.duration_minutes {
        current.duration_minutes = edited.duration_minutes;
    }
    if edited.place != started_from.place {
        current.place = opt_text(&edited.place);
    }
    if edited.note != started_from.note {
        current.note = Sensitive(edited.note.trim().to_owned());
    }
    if edited.wellbeing != started_from.wellbeing {
        current.wellbeing = edited.wellbeing;
    }
    for t in started_from
        .themes
        .iter()
        .filter(|t| !edited.themes.contains(t))
    {
        current.themes.remove(t);
    }
    current.themes.extend(edited.themes.iter().copied());
    for r in started_from
        .referrals
        .iter()
        .filter(|r| !edited.referrals.contains(r))
    {
        current.referrals.remove(r);
    }
    current.referrals.extend(edited.referrals.iter().copied());
    if let Some(anon) = current.anonymous.as_mut() {
        if edited.anonymous_count != started_from.anonymous_count
            && let Some(n) = edited.anonymous_count
        {
            anon.count = n;
        }
        if edited.anonymous_description != started_from.anonymous_description {
            anon.description = Sensitive(edited.anonymous_description.trim().to_owned());
        }
    }
    Ok(current)
}

/// Links an anonymous contact to the citizen it turned out to be about: a new visit about the
/// citizen with the contact's values (by the same author, at the same time), and the anonymous
/// one archived. A record's citizen is fixed when it is created (the server's scope rule), so
/// linking is a copy, not a move.
pub fn link_visit(anonymous: &Visit, citizen: Uuid) -> Result<(Visit, Visit), AppError> {
    if anonymous.citizen_id.is_some() {
        return Err(AppError::invalid(
            "citizen_id",
            "the visit is already about a citizen",
        ));
    }
    let linked = Visit {
        id: VisitId::new(),
        citizen_id: Some(CitizenId(citizen)),
        anonymous: None,
        follow_up: None,
        archived: false,
        ..anonymous.clone()
    };
    let archived = Visit {
        archived: true,
        ..anonymous.clone()
    };
    Ok((linked, archived))
}

/// A task's editable fields as the edit form holds them (`due` as `YYYY-MM-DD`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct TaskEdit {
    pub title: String,
    pub due: String,
    pub assignee: Option<Uuid>,
}

/// Hands a citizen to another worker of the team, with a note for them.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct HandoverInput {
    pub citizen_id: Uuid,
    pub to: Uuid,
    /// For the new worker: where things stand, what to do first. Optional.
    pub note: String,
    /// The title of the task that brings the hand-over to the new worker's today screen, in
    /// the worker's language (the screen words it: "Overdraget fra Anne").
    pub task_title: String,
}

/// A site.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct SiteInput {
    pub kind: SiteKind,
    pub name: String,
    pub address: String,
}

/// A site-log entry (now, by the signed-in caretaker).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct SiteLogInput {
    pub site_id: Uuid,
    pub kind: SiteLogKind,
    pub note: String,
    pub residents: Vec<Uuid>,
}

/// How a worker settles a conflict from the inbox.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(tag = "choice", rename_all = "snake_case")]
pub enum ConflictChoice {
    KeepMine,
    KeepTheirs,
    /// Both versions edited into one text.
    Merged {
        text: String,
    },
    /// A notice: the current value stands.
    Dismiss,
}

/// Who is signed in on this device (from enrolment).
#[derive(Clone, Copy, Debug)]
pub struct Author {
    pub worker: WorkerId,
    pub team: TeamId,
}

impl Author {
    /// A placeholder author, for checking whether a record could be built at all.
    pub(crate) fn nobody() -> Author {
        Author {
            worker: WorkerId(Uuid::nil()),
            team: TeamId(Uuid::nil()),
        }
    }
}

/// A new contact made of a refused visit's values, by `author`: about `citizen`, or anonymous
/// when none is chosen (one person, unless the refused visit counted more). The refused visit's
/// follow-up is not carried over (it was refused too, or belongs to the old citizen).
pub fn visit_from_refused(
    edit: &crate::store::SetAsideEdit,
    citizen: Option<Uuid>,
    author: Author,
) -> Result<Visit, AppError> {
    let mut values = edit.values();
    let anonymous = match (citizen, values.get("anonymous")) {
        (Some(_), _) => serde_json::Value::Null,
        (None, Some(a)) if !a.is_null() => a.clone(),
        (None, _) => serde_json::json!({ "count": 1, "description": "" }),
    };
    values.insert("id".into(), serde_json::json!(VisitId::new().0));
    values.insert("citizen_id".into(), serde_json::json!(citizen));
    values.insert("anonymous".into(), anonymous);
    values.insert("author".into(), serde_json::json!(author.worker.0));
    values.insert("team_id".into(), serde_json::json!(author.team.0));
    values.insert("follow_up".into(), serde_json::Value::Null);
    values.insert("archived".into(), false.into());
    let visit: Visit = serde_json::from_value(serde_json::Value::Object(values))
        .map_err(|_| AppError::invalid("set_aside", "the refused edit is not a whole visit"))?;
    crate::domain::Validate::validate(&visit)?;
    Ok(visit)
}

fn opt_text(s: &str) -> Option<Sensitive<String>> {
    let t = s.trim();
    (!t.is_empty()).then(|| Sensitive(t.to_owned()))
}

/// Parses a `YYYY-MM-DD` date from a form field.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| AppError::invalid(field, format!("{field} must be a date (YYYY-MM-DD)")))
}

fn at_ms(field: &str, ms: i64) -> Result<DateTime<Utc>, AppError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| AppError::invalid(field, format!("{field} is not a valid time")))
}

/// Builds the citizen to save: a new one owned by the author's team, or `existing` edited.
pub fn citizen_from(
    input: &CitizenInput,
    existing: Option<Citizen>,
    author: Author,
    now: DateTime<Utc>,
) -> Result<Citizen, AppError> {
    let mut c = existing.unwrap_or_else(|| Citizen {
        team_id: Some(author.team),
        primary_worker: Some(author.worker),
        ..Citizen::with_alias("")
    });
    if input.id.is_none() {
        c.created_at = now;
    }
    c.alias = opt_text(&input.alias);
    c.full_name = opt_text(&input.full_name);
    c.cpr = match input.cpr.trim() {
        "" => None,
        s => Some(Cpr::parse(s).map_err(|e| AppError::invalid("cpr", e.to_string()))?),
    };
    c.birth_year = input.birth_year;
    c.phone = opt_text(&input.phone);
    // Every change of housing is kept in the pathway, dated today (the pathway's own form
    // dates a move back in time).
    let new = input.id.is_none();
    if (new && input.housing != HousingSituation::Other) || (!new && c.housing != input.housing) {
        c.housing_history.push(HousingChange {
            id: HousingChangeId::new(),
            from: now.date_naive(),
            situation: input.housing,
        });
    }
    c.housing = input.housing;
    c.site_id = input.site_id.map(SiteId);
    c.tags = input
        .tags
        .iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    c.archived = input.archived;
    // The form's consent is the consent to recording (the single consent of before); other
    // purposes are edited one by one ([`apply_pathway_edit`]).
    let held = recording_consent(&c).cloned();
    c.consents
        .retain(|k| Some(k.id) != held.as_ref().map(|h| h.id));
    if let Some(k) = &input.consent {
        c.consents.push(PurposeConsent {
            // The citizen's own id, as the single consent of before had, unless an item holds it.
            id: held.as_ref().map_or_else(
                || {
                    if c.consents.iter().any(|k| k.id.0 == c.id.0) {
                        ConsentId::new()
                    } else {
                        ConsentId(c.id.0)
                    }
                },
                |h| h.id,
            ),
            purpose: ConsentPurpose::Recording,
            status: k.status,
            date: parse_date("consent.date", &k.date)?,
            scope: Sensitive(k.scope.trim().to_owned()),
            method: k.method,
            recorded_by: held
                .as_ref()
                .filter(|old| old.status == k.status)
                .map_or(author.worker, |old| old.recorded_by),
        });
        c.consents.sort_by_key(|k| k.id);
    }
    let today = now.date_naive();
    let old_goals = std::mem::take(&mut c.goals);
    c.goals = input
        .goals
        .iter()
        .filter(|g| !g.text.trim().is_empty())
        .map(|g| {
            let kept = g.id.and_then(|id| old_goals.iter().find(|o| o.id.0 == id));
            Goal {
                id: kept.map_or_else(GoalId::new, |o| o.id),
                text: Sensitive(g.text.trim().to_owned()),
                status: g.status,
                created: kept.map_or(today, |o| o.created),
            }
        })
        .collect();
    forget_removed_goals(&mut c);
    Ok(c)
}

/// A goal removed from the citizen is no longer one a course works on (a course naming a goal
/// the record does not hold is invalid on the device and the server alike).
fn forget_removed_goals(c: &mut Citizen) {
    let goals: BTreeSet<GoalId> = c.goals.iter().map(|g| g.id).collect();
    for course in &mut c.courses {
        course.goals.retain(|g| goals.contains(g));
    }
}

/// Applies a worker's edit of a citizen to the record as stored now. Only the fields the worker
/// changed (edited differs from what the form started from) are written; goals merge by id.
/// Without this, a form opened before a sync would write back every value it showed and
/// silently undo a colleague's edit that arrived meanwhile.
pub fn apply_citizen_edit(
    mut current: Citizen,
    started_from: &Citizen,
    edited: &Citizen,
) -> Citizen {
    macro_rules! take_changed {
        ($($field:ident),+) => {
            $( if edited.$field != started_from.$field {
                current.$field = edited.$field.clone();
            } )+
        };
    }
    take_changed!(
        alias, full_name, cpr, birth_year, phone, housing, site_id, archived
    );
    // A housing change the worker made is kept in the pathway (the dated entry `citizen_from`
    // made for it).
    if edited.housing != started_from.housing
        && let Some(entry) = edited
            .housing_history
            .iter()
            .find(|h| !current.housing_history.iter().any(|c| c.id == h.id))
    {
        current.housing_history.push(entry.clone());
    }
    // The consent to recording, as the form edits it (other purposes have their own form).
    if recording_consent(edited) != recording_consent(started_from) {
        let before = recording_consent(started_from).map(|k| k.id);
        current.consents.retain(|k| {
            Some(k.id) != before && Some(k.id) != recording_consent(edited).map(|e| e.id)
        });
        if let Some(k) = recording_consent(edited) {
            current.consents.push(k.clone());
            current.consents.sort_by_key(|k| k.id);
        }
    }
    // Tags as a set: add what the worker added, remove what they removed, keep the rest.
    for added in edited.tags.difference(&started_from.tags) {
        current.tags.insert(added.clone());
    }
    for removed in started_from.tags.difference(&edited.tags) {
        current.tags.remove(removed);
    }
    for goal in &edited.goals {
        match started_from.goals.iter().find(|g| g.id == goal.id) {
            Some(before) if before == goal => {}
            _ => match current.goals.iter_mut().find(|g| g.id == goal.id) {
                Some(slot) => *slot = goal.clone(),
                None => current.goals.push(goal.clone()),
            },
        }
    }
    current.goals.retain(|g| {
        !started_from.goals.iter().any(|b| b.id == g.id)
            || edited.goals.iter().any(|e| e.id == g.id)
    });
    forget_removed_goals(&mut current);
    current
}

/// Builds a visit and, if asked for, its follow-up task (saved together).
pub fn visit_from(
    input: &VisitInput,
    author: Author,
    now: DateTime<Utc>,
) -> Result<(Visit, Option<Task>), AppError> {
    let started_at = match input.started_at_ms {
        Some(ms) => at_ms("started_at", ms)?,
        None => now,
    };
    if started_at > now + chrono::Duration::minutes(5) {
        return Err(AppError::invalid(
            "started_at",
            "started_at is in the future",
        ));
    }
    let anonymous = match (input.citizen_id, input.anonymous_count) {
        (None, Some(count)) => Some(AnonymousContact {
            count,
            description: Sensitive(input.anonymous_description.trim().to_owned()),
        }),
        _ => None,
    };
    let mut visit = Visit {
        id: VisitId::new(),
        citizen_id: input.citizen_id.map(CitizenId),
        anonymous,
        author: author.worker,
        team_id: Some(author.team),
        started_at,
        duration_minutes: input.duration_minutes,
        kind: input.kind,
        place: opt_text(&input.place),
        themes: input.themes.iter().copied().collect(),
        note: Sensitive(input.note.trim().to_owned()),
        referrals: input.referrals.iter().copied().collect(),
        wellbeing: input.wellbeing,
        follow_up: None,
        course_id: input.course_id.map(CourseId),
        goals: input.goals.iter().copied().map(GoalId).collect(),
        archived: false,
    };
    let task = match (&input.follow_up, visit.citizen_id) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(AppError::invalid(
                "follow_up",
                "a follow-up needs a known citizen",
            ));
        }
        (Some(f), Some(citizen)) => {
            let task = follow_up_task(citizen, f, author, now)?;
            visit.follow_up = Some(task.id);
            Some(task)
        }
    };
    Ok((visit, task))
}

/// The citizen with a followed referral (issue 17) for each referral the new `visit` made: made
/// that day, waiting for an outcome, pointing at the visit. `None` when the visit made none
/// (or is anonymous): the citizen need not be saved. A referral chip on a visit is thus
/// followed up on the citizen's page like any referral.
pub fn follow_visit_referrals(mut citizen: Citizen, visit: &Visit) -> Option<Citizen> {
    if visit.referrals.is_empty() || visit.citizen_id != Some(citizen.id) {
        return None;
    }
    for target in &visit.referrals {
        citizen.referrals.push(ReferralCase {
            id: crate::domain::ReferralCaseId::new(),
            target: *target,
            made: visit.started_at.date_naive(),
            visit_id: Some(visit.id),
            outcome: crate::domain::ReferralOutcome::Waiting,
            outcome_date: None,
            follow_up: None,
            note: Sensitive::default(),
        });
    }
    Some(citizen)
}

/// The follow-up task a form asked for (with a visit, with a referral), about `citizen`;
/// its errors name `follow_up.<field>`, where the form shows them.
fn follow_up_task(
    citizen: CitizenId,
    f: &FollowUpInput,
    author: Author,
    now: DateTime<Utc>,
) -> Result<Task, AppError> {
    task_from(
        &TaskInput {
            citizen_id: citizen.0,
            title: f.title.clone(),
            due: f.due.clone(),
        },
        author,
        now,
    )
    .map_err(|mut e| {
        e.field = e.field.map(|f| format!("follow_up.{f}"));
        e
    })
}

/// Builds a task assigned to the author.
pub fn task_from(input: &TaskInput, author: Author, now: DateTime<Utc>) -> Result<Task, AppError> {
    Ok(Task {
        id: TaskId::new(),
        citizen_id: CitizenId(input.citizen_id),
        title: Sensitive(input.title.trim().to_owned()),
        created_at: now,
        due: parse_date("due", &input.due)?,
        assignee: Some(author.worker),
        status: TaskStatus::Open,
        archived: false,
    })
}

/// Applies a task edit: only the fields the worker changed since the form opened
/// (`started_from`) are written, so a colleague's change to another field, synced meanwhile,
/// stays.
pub fn apply_task_edit(
    mut current: Task,
    started_from: &TaskEdit,
    edited: &TaskEdit,
) -> Result<Task, AppError> {
    if edited.title != started_from.title {
        current.title = Sensitive(edited.title.trim().to_owned());
    }
    if edited.due != started_from.due {
        current.due = parse_date("due", &edited.due)?;
    }
    if edited.assignee != started_from.assignee {
        current.assignee = edited.assignee.map(WorkerId);
    }
    Ok(current)
}

/// The task that brings a hand-over to the new worker: due today, assigned to them, its title
/// the screen's words and the note.
pub fn handover_task(input: &HandoverInput, now: DateTime<Utc>) -> Task {
    let note = input.note.trim();
    let title = if note.is_empty() {
        input.task_title.trim().to_owned()
    } else {
        format!("{}: {note}", input.task_title.trim())
    };
    Task {
        id: TaskId::new(),
        citizen_id: CitizenId(input.citizen_id),
        title: Sensitive(title),
        created_at: now,
        due: now
            .with_timezone(&chrono::Local)
            .date_naive()
            .max(now.date_naive()),
        assignee: Some(WorkerId(input.to)),
        status: TaskStatus::Open,
        archived: false,
    }
}

/// Builds a site.
pub fn site_from(input: &SiteInput, now: DateTime<Utc>) -> Site {
    Site {
        id: SiteId::new(),
        kind: input.kind,
        name: Sensitive(input.name.trim().to_owned()),
        address: Sensitive(input.address.trim().to_owned()),
        archived: false,
        created_at: now,
    }
}

/// Builds a site-log entry written now.
pub fn site_log_from(input: &SiteLogInput, author: Author, now: DateTime<Utc>) -> SiteLogEntry {
    SiteLogEntry {
        id: SiteLogEntryId::new(),
        site_id: SiteId(input.site_id),
        at: now,
        kind: input.kind,
        note: Sensitive(input.note.trim().to_owned()),
        residents: input
            .residents
            .iter()
            .copied()
            .map(CitizenId)
            .collect::<BTreeSet<_>>(),
        author: author.worker,
        archived: false,
    }
}

/// Applies a worker's choice from the conflict inbox.
pub fn settle_conflict(
    store: &mut Store,
    id: Uuid,
    choice: &ConflictChoice,
) -> Result<(), StoreError> {
    let id = crate::domain::ConflictId(id);
    match choice {
        ConflictChoice::KeepMine => store.resolve_conflict(id, Resolution::KeepMine),
        ConflictChoice::KeepTheirs => store.resolve_conflict(id, Resolution::KeepTheirs),
        ConflictChoice::Merged { text } => {
            store.resolve_conflict(id, Resolution::Merged(text.clone().into()))
        }
        ConflictChoice::Dismiss => store.dismiss_conflict(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Validate;

    fn author() -> Author {
        Author {
            worker: WorkerId::new(),
            team: TeamId::new(),
        }
    }

    #[test]
    fn pathway_edits_move_the_housing_only_when_the_latest_entry_changes_and_keep_purposes() {
        let a = author();
        let now = Utc::now();
        let today = now.date_naive();
        let mut c = Citizen::with_alias("Kaj");
        c.housing = HousingSituation::OwnRental; // recorded before the pathway existed
        let change = |days: i64, situation| HousingChange {
            id: HousingChangeId::new(),
            from: today - chrono::Duration::days(days),
            situation,
        };
        let save = |item| PathwayEdit::Save {
            item,
            follow_up: None,
        };
        // A first, backdated entry is history: the situation now stays.
        let old = change(400, HousingSituation::Shelter);
        let (c1, _) =
            apply_pathway_edit(c.clone(), &save(PathwayItem::HousingHistory(old)), a, now).unwrap();
        assert_eq!(c1.housing, HousingSituation::OwnRental);
        // A move dated today is a move now; so is a newer entry once there is a history.
        let (c2, _) = apply_pathway_edit(
            c1.clone(),
            &save(PathwayItem::HousingHistory(change(
                0,
                HousingSituation::SupportedHousing,
            ))),
            a,
            now,
        )
        .unwrap();
        assert_eq!(c2.housing, HousingSituation::SupportedHousing);
        // An edit of anything else leaves the situation alone, even where it and the pathway
        // disagree (a concurrent edit merged that way).
        let mut disagree = c2.clone();
        disagree.housing = HousingSituation::Street;
        let person = NetworkPerson {
            id: crate::domain::NetworkPersonId::new(),
            name: "Ida".into(),
            relation: crate::domain::Relation::Sibling,
            contact: None,
            may_involve: false,
        };
        let (c3, _) =
            apply_pathway_edit(disagree, &save(PathwayItem::Network(person)), a, now).unwrap();
        assert_eq!(c3.housing, HousingSituation::Street);
        // A consent keeps its purpose.
        let consent = PurposeConsent {
            id: ConsentId(c.id.0),
            purpose: ConsentPurpose::Recording,
            status: ConsentStatus::Given,
            date: today,
            method: ConsentMethod::Verbal,
            recorded_by: a.worker,
            scope: Sensitive::default(),
        };
        let (c4, _) =
            apply_pathway_edit(c3, &save(PathwayItem::Consents(consent.clone())), a, now).unwrap();
        let other = PurposeConsent {
            purpose: ConsentPurpose::SharingWithAgencies,
            ..consent.clone()
        };
        let err = apply_pathway_edit(c4.clone(), &save(PathwayItem::Consents(other)), a, now)
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("consents.purpose"));
        // A second consent to recording survives the citizen form's edit of the first.
        let renewed = PurposeConsent {
            id: ConsentId::new(),
            ..consent.clone()
        };
        let mut held = c4.clone();
        held.consents.push(renewed.clone());
        let mut edited = held.clone();
        edited.consents[0].scope = "kun bolig".into();
        let saved = apply_citizen_edit(held.clone(), &held, &edited);
        assert!(saved.consents.contains(&renewed), "the other consent stays");
        assert!(
            saved
                .consents
                .iter()
                .any(|k| k.scope.expose() == "kun bolig")
        );
    }

    #[test]
    fn a_goal_removed_in_the_citizen_form_leaves_the_courses_that_worked_on_it() {
        let now = Utc::now();
        let mut c = Citizen::with_alias("Kaj");
        let goal = Goal {
            id: GoalId::new(),
            text: "Bolig".into(),
            status: GoalStatus::Active,
            created: now.date_naive(),
        };
        c.goals.push(goal.clone());
        c.courses.push(Course {
            id: CourseId::new(),
            kind: crate::domain::CourseKind::Cti,
            started: now.date_naive(),
            planned_end: None,
            ended: None,
            ending: None,
            goals: BTreeSet::from([goal.id]),
            note: Sensitive::default(),
        });
        let mut edited = c.clone();
        edited.goals.clear();
        let saved = apply_citizen_edit(c.clone(), &c, &edited);
        assert!(saved.courses[0].goals.is_empty());
        saved.validate().expect("the record stays valid");
    }

    fn visit_input() -> VisitInput {
        VisitInput {
            citizen_id: None,
            anonymous_count: Some(2),
            anonymous_description: "  two by the station ".into(),
            kind: VisitKind::StreetContact,
            started_at_ms: None,
            duration_minutes: 10,
            place: " ".into(),
            themes: vec![Theme::Housing, Theme::Housing],
            referrals: vec![],
            note: String::new(),
            wellbeing: None,
            follow_up: None,
            course_id: None,
            goals: vec![],
        }
    }

    #[test]
    fn an_anonymous_quick_contact_becomes_a_valid_visit_by_the_author() {
        let a = author();
        let (v, task) = visit_from(&visit_input(), a, Utc::now()).unwrap();
        v.validate().unwrap();
        assert!(task.is_none());
        assert_eq!(v.author, a.worker);
        assert_eq!(v.team_id, Some(a.team));
        assert_eq!(
            v.anonymous.unwrap().description.expose(),
            "two by the station"
        );
        assert!(v.place.is_none(), "blank text is no value");
        assert_eq!(v.themes.len(), 1);
    }

    #[test]
    fn a_follow_up_needs_a_citizen_and_a_real_date() {
        let mut input = visit_input();
        input.follow_up = Some(FollowUpInput {
            title: "call".into(),
            due: "2099-01-01".into(),
        });
        let e = visit_from(&input, author(), Utc::now()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("follow_up"));
        input.citizen_id = Some(Uuid::now_v7());
        input.anonymous_count = None;
        input.follow_up.as_mut().unwrap().due = "31/12".into();
        let e = visit_from(&input, author(), Utc::now()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("follow_up.due"));
        input.follow_up.as_mut().unwrap().due = "2099-01-01".into();
        let (v, task) = visit_from(&input, author(), Utc::now()).unwrap();
        assert_eq!(v.follow_up, task.map(|t| t.id));
    }

    #[test]
    fn a_visit_cannot_start_in_the_future() {
        let mut input = visit_input();
        input.started_at_ms = Some((Utc::now() + chrono::Duration::hours(2)).timestamp_millis());
        let e = visit_from(&input, author(), Utc::now()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("started_at"));
    }

    #[test]
    fn an_edit_writes_only_what_the_worker_changed_and_keeps_a_colleagues_edit() {
        let a = author();
        let form = CitizenInput {
            id: None,
            alias: "Fisk".into(),
            full_name: String::new(),
            cpr: String::new(),
            birth_year: None,
            phone: "11111111".into(),
            housing: HousingSituation::Street,
            site_id: None,
            consent: None,
            tags: vec![],
            archived: false,
            goals: vec![
                GoalInput {
                    id: None,
                    text: "Egen bolig".into(),
                    status: GoalStatus::Active,
                },
                GoalInput {
                    id: None,
                    text: "Mindre druk".into(),
                    status: GoalStatus::Active,
                },
            ],
        };
        let stored = citizen_from(&form, None, a, Utc::now()).unwrap();
        // What B's form started from.
        let mut started = form.clone();
        started.id = Some(stored.id.0);
        for (g, s) in started.goals.iter_mut().zip(&stored.goals) {
            g.id = Some(s.id.0);
        }
        // Meanwhile a colleague changed the phone, added a goal and a tag; it synced to B.
        let mut current = stored.clone();
        current.phone = Some("22222222".into());
        current.tags.insert("natcafé".into());
        current.goals.push(Goal {
            id: GoalId::new(),
            text: "Se min datter".into(),
            status: GoalStatus::Active,
            created: Utc::now().date_naive(),
        });
        // B changes the housing, drops the second goal, and saves the form it opened earlier.
        let mut edited = started.clone();
        edited.housing = HousingSituation::Shelter;
        edited.goals.pop();
        edited.tags.push("  metadon ".into());
        let base = citizen_from(&started, Some(current.clone()), a, Utc::now()).unwrap();
        let mine = citizen_from(&edited, Some(current.clone()), a, Utc::now()).unwrap();
        let saved = apply_citizen_edit(current, &base, &mine);
        assert_eq!(saved.housing, HousingSituation::Shelter, "B's edit");
        // Both housing situations are in the pathway, dated: the first and B's change.
        let pathway: Vec<HousingSituation> =
            saved.housing_history.iter().map(|h| h.situation).collect();
        assert_eq!(
            pathway,
            [HousingSituation::Street, HousingSituation::Shelter]
        );
        assert_eq!(
            stored.housing_history.len(),
            1,
            "a new citizen's first situation"
        );
        assert_eq!(
            saved.phone,
            Some("22222222".into()),
            "the colleague's phone stays"
        );
        let goals: Vec<&str> = saved
            .goals
            .iter()
            .map(|g| g.text.expose().as_str())
            .collect();
        assert_eq!(
            goals,
            ["Egen bolig", "Se min datter"],
            "removed one, kept the new one"
        );
        let tags: Vec<&str> = saved.tags.iter().map(String::as_str).collect();
        assert_eq!(
            tags,
            ["metadon", "natcafé"],
            "both the colleague's tag and B's"
        );
    }

    #[test]
    fn editing_a_citizen_keeps_goal_ids_and_creation_and_checks_the_cpr() {
        let a = author();
        let mut input = CitizenInput {
            id: None,
            alias: "Fisk".into(),
            full_name: String::new(),
            cpr: String::new(),
            birth_year: None,
            phone: String::new(),
            housing: HousingSituation::Street,
            site_id: None,
            consent: None,
            tags: vec![],
            archived: false,
            goals: vec![GoalInput {
                id: None,
                text: "Få egen bolig".into(),
                status: GoalStatus::Active,
            }],
        };
        let created = citizen_from(&input, None, a, Utc::now()).unwrap();
        created.validate().unwrap();
        assert_eq!(created.team_id, Some(a.team));
        input.id = Some(created.id.0);
        input.goals[0].id = Some(created.goals[0].id.0);
        input.goals.push(GoalInput {
            id: None,
            text: "   ".into(),
            status: GoalStatus::Active,
        });
        let later = Utc::now() + chrono::Duration::days(3);
        let edited = citizen_from(&input, Some(created.clone()), a, later).unwrap();
        assert_eq!(edited.goals.len(), 1, "a blank goal is dropped");
        assert_eq!(edited.goals[0].id, created.goals[0].id);
        assert_eq!(edited.created_at, created.created_at);
        input.cpr = "123".into();
        let e = citizen_from(&input, None, a, Utc::now()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cpr"));
        assert!(!e.message.contains("123"));
    }
}

/// The consent to recording: the one the citizen form edits (the single consent of before).
pub fn recording_consent(c: &Citizen) -> Option<&PurposeConsent> {
    c.consents
        .iter()
        .filter(|k| k.purpose == ConsentPurpose::Recording)
        .min_by_key(|k| (k.id.0 != c.id.0, k.id))
}

/// One item of a citizen's pathway as a form saves it (issue 17). Items are saved one at a
/// time, so a form open while a colleague's edit of another item syncs in undoes nothing. A new
/// item comes with a fresh id (UUIDv7, made by the screen); an existing one with its own.
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(tag = "list", content = "item", rename_all = "snake_case")]
pub enum PathwayItem {
    HousingHistory(HousingChange),
    Courses(Course),
    CourseReviews(CourseReview),
    Referrals(ReferralCase),
    Network(NetworkPerson),
    Consents(PurposeConsent),
}

/// A pathway edit: an item saved or removed, or the citizen's circumstances (eviction risk,
/// rent arrears, resources in their own words).
#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PathwayEdit {
    Save {
        item: PathwayItem,
        /// A follow-up task to make with a referral ("when asked for").
        follow_up: Option<FollowUpInput>,
    },
    Remove {
        /// The list's field name (`courses`, `referrals`, …).
        list: String,
        id: Uuid,
    },
    Circumstances {
        eviction_risk: bool,
        rent_arrears: bool,
        resources: String,
    },
}

fn upsert<T: Clone>(list: &mut Vec<T>, item: T, id_of: impl Fn(&T) -> Uuid) {
    let id = id_of(&item);
    match list.iter_mut().find(|x| id_of(x) == id) {
        Some(slot) => *slot = item,
        None => list.push(item),
    }
    list.sort_by_key(|x| id_of(x));
}

/// Applies one pathway edit to the citizen as stored now; returns the citizen and the
/// follow-up task to save with it, if one was asked for. The housing situation now follows the
/// latest dated change of the pathway; a consent's recorder is whoever changed its status.
pub fn apply_pathway_edit(
    mut c: Citizen,
    edit: &PathwayEdit,
    author: Author,
    now: DateTime<Utc>,
) -> Result<(Citizen, Option<Task>), AppError> {
    let mut task = None;
    let latest = |c: &Citizen| {
        c.housing_history
            .iter()
            .max_by_key(|h| (h.from, h.id))
            .cloned()
    };
    let (had_history, latest_before) = (!c.housing_history.is_empty(), latest(&c));
    match edit {
        PathwayEdit::Save { item, follow_up } => {
            if follow_up.is_some() && !matches!(item, PathwayItem::Referrals(_)) {
                return Err(AppError::invalid(
                    "follow_up",
                    "only a referral takes a follow-up task",
                ));
            }
            match item.clone() {
                PathwayItem::HousingHistory(change) => {
                    if change.from > now.date_naive() {
                        return Err(AppError::invalid(
                            "housing_history.from",
                            "a move cannot be dated in the future",
                        ));
                    }
                    upsert(&mut c.housing_history, change, |x| x.id.0);
                }
                PathwayItem::Courses(course) => upsert(&mut c.courses, course, |x| x.id.0),
                PathwayItem::CourseReviews(review) => {
                    upsert(&mut c.course_reviews, review, |x| x.id.0)
                }
                PathwayItem::Referrals(mut referral) => {
                    if let Some(f) = follow_up {
                        let made = follow_up_task(c.id, f, author, now)?;
                        referral.follow_up = Some(made.id);
                        task = Some(made);
                    }
                    upsert(&mut c.referrals, referral, |x| x.id.0)
                }
                PathwayItem::Network(person) => upsert(&mut c.network, person, |x| x.id.0),
                PathwayItem::Consents(mut consent) => {
                    // What a consent is for is fixed once it is recorded: a consent for
                    // another purpose is a new consent.
                    if c.consents
                        .iter()
                        .any(|k| k.id == consent.id && k.purpose != consent.purpose)
                    {
                        return Err(AppError::invalid(
                            "consents.purpose",
                            "a recorded consent keeps its purpose; record a new one",
                        ));
                    }
                    consent.recorded_by = c
                        .consents
                        .iter()
                        .find(|k| k.id == consent.id && k.status == consent.status)
                        .map_or(author.worker, |k| k.recorded_by);
                    upsert(&mut c.consents, consent, |x| x.id.0)
                }
            }
        }
        PathwayEdit::Remove { list, id } => {
            let id = *id;
            let before = pathway_len(&c);
            match list.as_str() {
                "housing_history" => c.housing_history.retain(|x| x.id.0 != id),
                "courses" => {
                    if c.course_reviews.iter().any(|r| r.course_id.0 == id) {
                        return Err(AppError::invalid(
                            "courses",
                            "a course with reviews cannot be removed; end it instead",
                        ));
                    }
                    c.courses.retain(|x| x.id.0 != id)
                }
                "course_reviews" => c.course_reviews.retain(|x| x.id.0 != id),
                "referrals" => c.referrals.retain(|x| x.id.0 != id),
                "network" => c.network.retain(|x| x.id.0 != id),
                "consents" => c.consents.retain(|x| x.id.0 != id),
                _ => return Err(AppError::invalid("list", "no such list")),
            }
            if pathway_len(&c) == before {
                return Err(AppError::new(
                    super::error::ErrorCode::NotFound,
                    "the item is not there (removed on another tablet?)",
                ));
            }
        }
        PathwayEdit::Circumstances {
            eviction_risk,
            rent_arrears,
            resources,
        } => {
            c.eviction_risk = *eviction_risk;
            c.rent_arrears = *rent_arrears;
            c.resources = opt_text(resources);
        }
    }
    // The situation now follows the pathway when an edit changed its latest entry; a first,
    // backdated entry of a citizen whose situation was recorded before the pathway existed is
    // history, not a move now.
    let latest_after = latest(&c);
    if latest_after != latest_before
        && let Some(now_in) = latest_after
        && (had_history || now_in.from >= now.date_naive())
    {
        c.housing = now_in.situation;
    }
    Ok((c, task))
}

fn pathway_len(c: &Citizen) -> usize {
    c.housing_history.len()
        + c.courses.len()
        + c.course_reviews.len()
        + c.referrals.len()
        + c.network.len()
        + c.consents.len()
}
