//! What the screens show, built from the store: plain data with everything a screen needs and
//! nothing it must compute itself (labels, overdue flags, counts). Times are milliseconds since
//! the Unix epoch (UTC); dates are `YYYY-MM-DD`.

use crate::access::Role;
use crate::domain::{
    Citizen, CitizenId, ConflictRecord, ConflictStatus, ConsentMethod, ConsentStatus, Course,
    CourseReview, EntityKind, GoalStatus, HousingChange, HousingSituation, NetworkPerson,
    PurposeConsent, Referral, ReferralCase, Site, SiteKind, SiteLogEntry, SiteLogKind, Task,
    TaskStatus, Theme, Visit, VisitKind,
};
use crate::merge::ConflictKind;
use crate::protocol::Profile;
use crate::store::{ListQuery, Store, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

#[cfg(feature = "ts")]
use ts_rs::TS;

/// How many contacts the today screen lists.
pub const RECENT_CONTACTS: usize = 15;
/// Follow-ups due within this many days show on the today screen.
pub const DUE_SOON_DAYS: i64 = 7;
/// The most visits a citizen page lists (the timeline pages further in a later version).
pub const TIMELINE_LIMIT: usize = 200;

/// Where a record stands with the server, shown beside it wherever it appears: "saved" in the
/// app means saved on this tablet, and this says whether the team has it yet.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(rename_all = "snake_case")]
pub enum SaveMark {
    /// Saved on this tablet, not yet accepted by the server.
    Pending,
    /// The server refused an edit of it: the edit waits on the set-aside screen.
    Refused,
}

/// The save marks of every record with unsent or refused edits, read once per screen.
pub(crate) struct Marks(HashMap<(EntityKind, Uuid), SaveMark>);

impl Marks {
    pub(crate) fn load(store: &Store) -> Result<Marks, StoreError> {
        let mut map = HashMap::new();
        let (pending, refused) = store.unsent_records()?;
        for key in pending {
            map.insert(key, SaveMark::Pending);
        }
        for key in refused {
            map.insert(key, SaveMark::Refused);
        }
        Ok(Marks(map))
    }

    pub(crate) fn of(&self, entity: EntityKind, id: Uuid) -> Option<SaveMark> {
        self.0.get(&(entity, id)).copied()
    }
}

/// A citizen in the caseload list.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct CitizenSummary {
    pub id: Uuid,
    /// Alias, else full name.
    pub label: String,
    pub full_name: Option<String>,
    pub housing: HousingSituation,
    /// The site the citizen lives at, if any (a caretaker's resident picker lists these first).
    pub site_id: Option<Uuid>,
    pub open_tasks: u32,
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub next_due: Option<NaiveDate>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub last_visit_ms: Option<i64>,
    /// Not yet on the server, or refused there.
    pub mark: Option<SaveMark>,
}

/// Consent as shown on the citizen page.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct ConsentView {
    pub status: ConsentStatus,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub date: NaiveDate,
    pub scope: String,
    pub method: ConsentMethod,
}

/// One of the citizen's goals, in their own words.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct GoalView {
    pub id: Uuid,
    pub text: String,
    pub status: GoalStatus,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub created: NaiveDate,
}

/// A visit or contact in a list or timeline.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct VisitView {
    pub id: Uuid,
    pub citizen_id: Option<Uuid>,
    /// The citizen's label, or `None` for an anonymous contact.
    pub citizen_label: Option<String>,
    pub anonymous_count: Option<u16>,
    pub anonymous_description: Option<String>,
    pub kind: VisitKind,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub started_at_ms: i64,
    pub duration_minutes: u16,
    pub place: Option<String>,
    pub themes: Vec<Theme>,
    pub referrals: Vec<Referral>,
    pub note: String,
    pub wellbeing: Option<u8>,
    /// The support course it was part of, and the citizen's goals it worked on.
    pub course_id: Option<Uuid>,
    pub goals: Vec<Uuid>,
    /// Written by the signed-in worker on this or another device.
    pub mine: bool,
    /// Not yet on the server, or refused there.
    pub mark: Option<SaveMark>,
}

/// A task or follow-up.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct TaskView {
    pub id: Uuid,
    pub citizen_id: Uuid,
    pub citizen_label: String,
    pub title: String,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub due: NaiveDate,
    pub status: TaskStatus,
    /// Open and due before today.
    pub overdue: bool,
    /// Who holds the task, by id and name (from the team directory).
    pub assignee: Option<Uuid>,
    pub assignee_name: Option<String>,
    /// Assigned to the signed-in worker.
    pub for_me: bool,
    /// Not yet on the server, or refused there.
    pub mark: Option<SaveMark>,
}

/// The citizen page: profile, consent, goals, timeline and tasks.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct CitizenDetail {
    pub id: Uuid,
    pub label: String,
    pub alias: Option<String>,
    pub full_name: Option<String>,
    /// Formatted `DDMMYY-XXXX`.
    pub cpr: Option<String>,
    pub birth_year: Option<i32>,
    pub phone: Option<String>,
    pub housing: HousingSituation,
    pub site_id: Option<Uuid>,
    /// The consent to recording (the one the citizen form edits); every purpose is in
    /// `pathway.consents`.
    pub consent: Option<ConsentView>,
    pub goals: Vec<GoalView>,
    pub tags: Vec<String>,
    pub archived: bool,
    /// What is followed over time: housing, courses, referrals, network, consents.
    pub pathway: PathwayView,
    /// Site-log entries that name the citizen (a resident), newest first.
    pub site_log: Vec<SiteLogView>,
    /// The worker who holds the case, by id and name.
    pub primary_worker: Option<Uuid>,
    pub primary_worker_name: Option<String>,
    pub visits: Vec<VisitView>,
    pub tasks: Vec<TaskView>,
    /// Not yet on the server, or refused there.
    pub mark: Option<SaveMark>,
}

/// The citizen's pathway (issue 17), for the citizen page.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct PathwayView {
    /// Every housing change, newest first.
    pub housing_history: Vec<HousingChange>,
    /// Each move into a home with whether it was kept at 3, 6 and 12 months (`null`: not yet).
    pub kept: Vec<KeptHome>,
    pub eviction_risk: bool,
    pub rent_arrears: bool,
    pub resources: Option<String>,
    /// Courses, running ones first, newest first.
    pub courses: Vec<Course>,
    /// Reviews, newest first.
    pub course_reviews: Vec<CourseReview>,
    /// Referrals, open ones first, newest first.
    pub referrals: Vec<ReferralCase>,
    pub network: Vec<NetworkPerson>,
    pub consents: Vec<ConsentItemView>,
    /// Wellbeing scores of the visits shown, oldest first: the trend chart's points.
    pub wellbeing: Vec<WellbeingPoint>,
}

/// One move into a home and whether it was kept.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct KeptHome {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub moved_in: NaiveDate,
    pub months_3: Option<bool>,
    pub months_6: Option<bool>,
    pub months_12: Option<bool>,
}

/// A consent for one purpose, with who recorded it by name.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct ConsentItemView {
    pub consent: PurposeConsent,
    pub recorded_by_name: Option<String>,
}

/// One point of the wellbeing trend.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct WellbeingPoint {
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at_ms: i64,
    pub score: u8,
}

/// The pathway view of a citizen: sorted for the page, the home-keeping measures computed.
pub(crate) fn pathway_view(
    c: &Citizen,
    visits: &[Visit],
    names: &Names,
    today: NaiveDate,
) -> PathwayView {
    use crate::domain::pathway::{kept_home, move_ins};
    let mut housing_history = c.housing_history.clone();
    housing_history.sort_by_key(|h| std::cmp::Reverse((h.from, h.id)));
    let kept = move_ins(&c.housing_history)
        .into_iter()
        .map(|moved_in| KeptHome {
            moved_in,
            months_3: kept_home(&c.housing_history, moved_in, 3, today),
            months_6: kept_home(&c.housing_history, moved_in, 6, today),
            months_12: kept_home(&c.housing_history, moved_in, 12, today),
        })
        .collect();
    let mut courses = c.courses.clone();
    courses.sort_by_key(|k| (k.ended.is_some(), std::cmp::Reverse((k.started, k.id))));
    let mut course_reviews = c.course_reviews.clone();
    course_reviews.sort_by_key(|r| std::cmp::Reverse((r.date, r.id)));
    let mut referrals = c.referrals.clone();
    referrals.sort_by_key(|r| (!r.outcome.is_open(), std::cmp::Reverse((r.made, r.id))));
    let mut wellbeing: Vec<WellbeingPoint> = visits
        .iter()
        .filter_map(|v| {
            v.wellbeing.map(|score| WellbeingPoint {
                at_ms: ms(v.started_at),
                score,
            })
        })
        .collect();
    wellbeing.sort_by_key(|p| p.at_ms);
    PathwayView {
        housing_history,
        kept,
        eviction_risk: c.eviction_risk,
        rent_arrears: c.rent_arrears,
        resources: c.resources.as_ref().map(|r| r.expose().clone()),
        courses,
        course_reviews,
        referrals,
        network: c.network.clone(),
        consents: c
            .consents
            .iter()
            .map(|k| ConsentItemView {
                consent: k.clone(),
                recorded_by_name: names.name(Some(k.recorded_by)),
            })
            .collect(),
        wellbeing,
    }
}

/// Who is signed in on this tablet, as the server last said (settings show it; screens follow
/// the role).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct Me {
    pub name: String,
    pub role: Role,
    pub team: String,
    /// The other teams this worker reads (a supervisor's supervised teams).
    pub other_teams: Vec<String>,
    /// A caretaker's sites.
    pub sites: u32,
}

impl Me {
    /// The signed-in worker of a profile.
    pub fn of(profile: &Profile) -> Me {
        let team = |id| {
            profile
                .teams
                .iter()
                .find(|t| t.id == id)
                .map(|t| t.name.clone())
                .unwrap_or_default()
        };
        Me {
            name: profile.name.clone(),
            role: profile.role,
            team: team(profile.team_id),
            other_teams: profile
                .teams
                .iter()
                .filter(|t| t.id != profile.team_id)
                .map(|t| t.name.clone())
                .collect(),
            sites: profile.sites.len() as u32,
        }
    }
}

/// A worker of the team a case can be handed to, by name.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct Colleague {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
}

/// Workers of the signed-in worker's team who carry cases (outreach and home support), active,
/// by name; the signed-in worker left out.
pub fn colleagues(profile: Option<&Profile>) -> Vec<Colleague> {
    let Some(p) = profile else {
        return Vec::new();
    };
    let mut out: Vec<Colleague> = p
        .directory
        .iter()
        .filter(|d| d.active && d.team_id == p.team_id && d.id != p.worker_id)
        .filter(|d| crate::access::Offer::of(d.role).log_visits)
        .map(|d| Colleague {
            id: d.id,
            name: d.name.clone(),
            role: d.role,
        })
        .collect();
    out.sort_by_key(|c| c.name.to_lowercase());
    out
}

/// Names workers by id from the device's directory (empty when the server has not sent one).
#[derive(Default)]
pub(crate) struct Names(HashMap<Uuid, String>);

impl Names {
    pub(crate) fn of(profile: Option<&Profile>) -> Names {
        Names(
            profile
                .map(|p| p.directory.iter().map(|d| (d.id, d.name.clone())).collect())
                .unwrap_or_default(),
        )
    }

    fn name(&self, id: Option<crate::domain::WorkerId>) -> Option<String> {
        id.and_then(|w| self.0.get(&w.0).cloned())
    }
}

/// The today screen: follow-ups due soon (overdue first) and the latest contacts.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct Today {
    pub due_tasks: Vec<TaskView>,
    pub recent: Vec<VisitView>,
}

/// A site a caretaker looks after.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct SiteView {
    pub id: Uuid,
    pub kind: SiteKind,
    pub name: String,
    pub address: String,
}

/// An entry in a site's log.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct SiteLogView {
    pub id: Uuid,
    pub site_id: Uuid,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at_ms: i64,
    pub kind: SiteLogKind,
    pub note: String,
    /// The residents the entry mentions that are on this device, as ids and labels (same order).
    pub residents: Vec<Uuid>,
    pub resident_labels: Vec<String>,
    pub mine: bool,
    /// Not yet on the server, or refused there.
    pub mark: Option<SaveMark>,
}

/// A conflict with both versions, this device's side first.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct ConflictView {
    pub id: Uuid,
    pub entity: EntityKind,
    pub record_id: Uuid,
    /// The citizen (or "anonymous contact", as `None`) the record is about.
    pub record_label: Option<String>,
    /// The field, as the screen names it: one goal's conflict is about `goals`.
    pub field: String,
    pub kind: ConflictKind,
    /// This device's version (or the losing one, if neither came from here), as text: for a
    /// structured field (a goal, a consent) its words, the rest in `mine_details`.
    pub mine: String,
    pub theirs: String,
    /// The other parts of a structured version (a goal's status, a consent's date), each as
    /// its translation group and raw value for the screen to put in words.
    pub mine_details: Vec<FieldText>,
    pub theirs_details: Vec<FieldText>,
    /// The version removes the item (a goal deleted on one tablet, edited on the other).
    pub mine_removed: bool,
    pub theirs_removed: bool,
    /// Who wrote each version, from the worker directory (`None`: not known on this device).
    pub mine_author: Option<String>,
    pub theirs_author: Option<String>,
    /// Whether "mine" is the value the record holds now.
    pub mine_is_current: bool,
    /// The versions can be written together as one text (free text, or the words of a goal
    /// or consent; not a whole goal list from before goals merged one by one).
    pub can_merge: bool,
    /// The worker may settle it from this tablet ([`crate::access::Offer::can_settle`]).
    pub can_settle: bool,
    pub status: ConflictStatus,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub created_at_ms: i64,
}

/// A kept half-typed form, as the screen offers it again.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct DraftView {
    /// The form's fields, as the screen kept them.
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    pub content: serde_json::Value,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at_ms: i64,
}

/// Why the server refused an edit, as the screen says it.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "ts", derive(TS))]
#[serde(rename_all = "snake_case")]
pub enum RefusedBecause {
    /// The record is outside what this worker may write (moved to another team, a role that
    /// does not write it, a site that is not theirs).
    OutOfScope,
    /// A value broke a rule of the record (too long, a reference that does not resolve).
    Invalid,
    /// Anything else the server said (an older or newer server's reason).
    Other,
}

/// One field of a refused edit: its value as text, or a set's elements (the screen words
/// enum values and dates in the worker's language).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct FieldText {
    pub field: String,
    pub values: Vec<String>,
}

/// A refused edit on the set-aside screen: what it was, why it was refused and what the worker
/// can do with it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(TS))]
pub struct SetAsideView {
    /// The edit's number on this device (how the screen names it back).
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub seq: u64,
    pub entity: EntityKind,
    pub record_id: Uuid,
    /// The citizen the record is about (or the site), when this device still holds them.
    pub record_label: Option<String>,
    /// The record is still on this device (a citizen who left the team's scope is not).
    pub on_device: bool,
    pub reason: RefusedBecause,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub at_ms: i64,
    /// The values the edit wrote (server-owned and internal fields left out).
    pub fields: Vec<FieldText>,
    /// It can be sent again as a new edit of the record (on this device, and the worker's
    /// role writes it).
    pub can_resend: bool,
    /// Its values can go into a new contact about another citizen or none (a whole visit, and
    /// the worker logs visits).
    pub can_copy: bool,
}

/// Fields a refused edit's list leaves out: ids and what the server sets.
const NOT_SHOWN: &[&str] = &["id", "author", "team_id", "created_at", "follow_up"];

/// The set-aside screen, oldest first.
pub fn set_aside(
    store: &mut Store,
    offer: &crate::access::Offer,
) -> Result<Vec<SetAsideView>, StoreError> {
    let edits = store.set_aside_edits()?;
    let mut out = Vec::with_capacity(edits.len());
    for e in &edits {
        let on_device = match e.entity {
            EntityKind::Citizen => store.get::<Citizen>(e.record_id)?.is_some(),
            EntityKind::Visit => store.get::<Visit>(e.record_id)?.is_some(),
            EntityKind::Task => store.get::<Task>(e.record_id)?.is_some(),
            EntityKind::Site => store.get::<Site>(e.record_id)?.is_some(),
            EntityKind::SiteLogEntry => store.get::<SiteLogEntry>(e.record_id)?.is_some(),
            EntityKind::Conflict => store.get::<ConflictRecord>(e.record_id)?.is_some(),
        };
        let values = e.values();
        let citizen = match e.entity {
            EntityKind::Citizen => Some(e.record_id),
            _ => values
                .get("citizen_id")
                .and_then(|v| v.as_str())
                .and_then(|s| Uuid::parse_str(s).ok()),
        };
        let record_label = match citizen {
            Some(id) => Labels::new(store).citizen(id)?,
            None => None,
        };
        let reason = match e.reason {
            Some(crate::protocol::RejectReason::OutOfScope) => RefusedBecause::OutOfScope,
            Some(crate::protocol::RejectReason::Invalid) => RefusedBecause::Invalid,
            _ => RefusedBecause::Other,
        };
        out.push(SetAsideView {
            seq: e.device_seq,
            entity: e.entity,
            record_id: e.record_id,
            record_label,
            on_device,
            reason,
            at_ms: e.at_ms as i64,
            fields: values
                .iter()
                .filter(|(k, _)| !NOT_SHOWN.contains(&k.as_str()))
                .map(|(k, v)| FieldText {
                    // One goal shows as a goal, in its words.
                    field: crate::domain::schema::rule_field(e.entity, k).to_owned(),
                    values: match v {
                        serde_json::Value::Array(items) => items.iter().map(as_text).collect(),
                        _ if crate::domain::schema::text_part(e.entity, k).is_some() => {
                            vec![version_words(e.entity, k, v).0]
                        }
                        other => vec![as_text(other)],
                    },
                })
                .collect(),
            can_resend: on_device && offer.can_edit(e.entity),
            can_copy: e.entity == EntityKind::Visit
                && offer.log_visits
                && super::forms::visit_from_refused(e, None, super::forms::Author::nobody())
                    .is_ok(),
        });
    }
    Ok(out)
}

/// Looks up citizen labels once per screen.
pub(crate) struct Labels<'s> {
    store: &'s mut Store,
    cache: HashMap<Uuid, Option<String>>,
}

impl<'s> Labels<'s> {
    pub(crate) fn new(store: &'s mut Store) -> Labels<'s> {
        Labels {
            store,
            cache: HashMap::new(),
        }
    }

    pub(crate) fn citizen(&mut self, id: Uuid) -> Result<Option<String>, StoreError> {
        if let Some(hit) = self.cache.get(&id) {
            return Ok(hit.clone());
        }
        let label = match self.store.get::<Citizen>(id) {
            Ok(c) => c.map(|c| label_of(&c)),
            // A citizen erased from this device leaves records that can no longer be opened.
            Err(StoreError::KeyDestroyed) => None,
            Err(e) => return Err(e),
        };
        self.cache.insert(id, label.clone());
        Ok(label)
    }
}

/// A citizen's short name: alias, else full name, else empty (the UI shows "unnamed").
pub fn label_of(c: &Citizen) -> String {
    c.alias
        .as_ref()
        .or(c.full_name.as_ref())
        .map(|s| s.expose().clone())
        .unwrap_or_default()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn visit_view(v: &Visit, label: Option<String>, me: Uuid, marks: &Marks) -> VisitView {
    VisitView {
        mark: marks.of(EntityKind::Visit, v.id.0),
        id: v.id.0,
        citizen_id: v.citizen_id.map(|c| c.0),
        citizen_label: label,
        anonymous_count: v.anonymous.as_ref().map(|a| a.count),
        anonymous_description: v.anonymous.as_ref().map(|a| a.description.expose().clone()),
        kind: v.kind,
        started_at_ms: ms(v.started_at),
        duration_minutes: v.duration_minutes,
        place: v.place.as_ref().map(|p| p.expose().clone()),
        themes: v.themes.iter().copied().collect(),
        referrals: v.referrals.iter().copied().collect(),
        note: v.note.expose().clone(),
        wellbeing: v.wellbeing,
        course_id: v.course_id.map(|c| c.0),
        goals: v.goals.iter().map(|g| g.0).collect(),
        mine: v.author.0 == me,
    }
}

pub(crate) fn task_view(
    t: &Task,
    label: String,
    today: NaiveDate,
    (marks, names, me): (&Marks, &Names, Uuid),
) -> TaskView {
    TaskView {
        assignee: t.assignee.map(|w| w.0),
        assignee_name: names.name(t.assignee),
        for_me: t.assignee.is_some_and(|w| w.0 == me),
        mark: marks.of(EntityKind::Task, t.id.0),
        id: t.id.0,
        citizen_id: t.citizen_id.0,
        citizen_label: label,
        title: t.title.expose().clone(),
        due: t.due,
        status: t.status,
        overdue: t.status == TaskStatus::Open && t.due < today,
    }
}

/// The today screen for `today`.
pub fn today(store: &mut Store, me: Uuid, today: NaiveDate) -> Result<Today, StoreError> {
    let horizon = today + chrono::Duration::days(DUE_SOON_DAYS);
    let mut tasks: Vec<Task> = store
        .list::<Task>(&ListQuery::default())?
        .into_iter()
        .filter(|t| t.status == TaskStatus::Open && t.due <= horizon)
        .collect();
    // The worker's own first (a case handed to them, say), then by due date.
    tasks.sort_by_key(|t| (t.assignee.map(|w| w.0) != Some(me), t.due));
    let names = Names::of(store.profile()?.as_ref());
    let visits = store.list::<Visit>(&ListQuery {
        limit: Some(RECENT_CONTACTS),
        ..ListQuery::default()
    })?;
    let marks = Marks::load(store)?;
    let mut labels = Labels::new(store);
    let mut due_tasks = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let label = labels.citizen(t.citizen_id.0)?.unwrap_or_default();
        due_tasks.push(task_view(t, label, today, (&marks, &names, me)));
    }
    let mut recent = Vec::with_capacity(visits.len());
    for v in &visits {
        let label = match v.citizen_id {
            Some(c) => labels.citizen(c.0)?,
            None => None,
        };
        recent.push(visit_view(v, label, me, &marks));
    }
    Ok(Today { due_tasks, recent })
}

/// The caseload: every active citizen, or those matching `search`, sorted by label.
pub fn caseload(store: &mut Store, search: &str) -> Result<Vec<CitizenSummary>, StoreError> {
    let citizens = if search.trim().is_empty() {
        store.list::<Citizen>(&ListQuery::default())?
    } else {
        store.search_citizens(search, false)?
    };
    let mut open: HashMap<CitizenId, (u32, NaiveDate)> = HashMap::new();
    for t in store.list::<Task>(&ListQuery::default())? {
        if t.status == TaskStatus::Open {
            let e = open.entry(t.citizen_id).or_insert((0, t.due));
            e.0 += 1;
            e.1 = e.1.min(t.due);
        }
    }
    let marks = Marks::load(store)?;
    let mut out = Vec::with_capacity(citizens.len());
    for c in citizens {
        let last = store.list::<Visit>(&ListQuery {
            citizen: Some(c.id),
            limit: Some(1),
            ..ListQuery::default()
        })?;
        let (open_tasks, next_due) = open.get(&c.id).map_or((0, None), |(n, d)| (*n, Some(*d)));
        out.push(CitizenSummary {
            id: c.id.0,
            label: label_of(&c),
            full_name: c.full_name.as_ref().map(|s| s.expose().clone()),
            housing: c.housing,
            site_id: c.site_id.map(|s| s.0),
            open_tasks,
            next_due,
            last_visit_ms: last.first().map(|v| ms(v.started_at)),
            mark: marks.of(EntityKind::Citizen, c.id.0),
        });
    }
    out.sort_by_key(|s| s.label.to_lowercase());
    Ok(out)
}

/// The citizen page.
pub fn citizen(
    store: &mut Store,
    id: Uuid,
    me: Uuid,
    today: NaiveDate,
) -> Result<CitizenDetail, StoreError> {
    let c: Citizen = store.get(id)?.ok_or(StoreError::RecordNotFound {
        entity: EntityKind::Citizen,
    })?;
    let label = label_of(&c);
    let query = ListQuery {
        citizen: Some(c.id),
        ..ListQuery::default()
    };
    let visits = store.list::<Visit>(&ListQuery {
        limit: Some(TIMELINE_LIMIT),
        ..query
    })?;
    let mut tasks = store.list::<Task>(&query)?;
    tasks.sort_by_key(|t| (t.status != TaskStatus::Open, t.due));
    let marks = Marks::load(store)?;
    let names = Names::of(store.profile()?.as_ref());
    let site_log = entries_naming(store, id, me)?;
    Ok(CitizenDetail {
        site_log,
        mark: marks.of(EntityKind::Citizen, c.id.0),
        id: c.id.0,
        label: label.clone(),
        alias: c.alias.as_ref().map(|s| s.expose().clone()),
        full_name: c.full_name.as_ref().map(|s| s.expose().clone()),
        cpr: c.cpr.as_ref().map(|cpr| cpr.expose()),
        birth_year: c.birth_year,
        phone: c.phone.as_ref().map(|s| s.expose().clone()),
        housing: c.housing,
        site_id: c.site_id.map(|s| s.0),
        pathway: pathway_view(&c, &visits, &names, today),
        consent: crate::app::forms::recording_consent(&c).map(|k| ConsentView {
            status: k.status,
            date: k.date,
            scope: k.scope.expose().clone(),
            method: k.method,
        }),
        goals: c
            .goals
            .iter()
            .map(|g| GoalView {
                id: g.id.0,
                text: g.text.expose().clone(),
                status: g.status,
                created: g.created,
            })
            .collect(),
        tags: c.tags.iter().cloned().collect(),
        archived: c.archived,
        primary_worker: c.primary_worker.map(|w| w.0),
        primary_worker_name: names.name(c.primary_worker),
        visits: visits
            .iter()
            .map(|v| visit_view(v, Some(label.clone()), me, &marks))
            .collect(),
        tasks: tasks
            .iter()
            .map(|t| task_view(t, label.clone(), today, (&marks, &names, me)))
            .collect(),
    })
}

/// Open tasks (or all, with `include_closed`), soonest due first.
pub fn tasks(
    store: &mut Store,
    include_closed: bool,
    today: NaiveDate,
    me: Uuid,
) -> Result<Vec<TaskView>, StoreError> {
    let mut tasks: Vec<Task> = store
        .list::<Task>(&ListQuery::default())?
        .into_iter()
        .filter(|t| include_closed || t.status == TaskStatus::Open)
        .collect();
    tasks.sort_by_key(|t| (t.status != TaskStatus::Open, t.due));
    let marks = Marks::load(store)?;
    let names = Names::of(store.profile()?.as_ref());
    let mut labels = Labels::new(store);
    let mut out = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let label = labels.citizen(t.citizen_id.0)?.unwrap_or_default();
        out.push(task_view(t, label, today, (&marks, &names, me)));
    }
    Ok(out)
}

/// The sites on this device, by name.
pub fn sites(store: &mut Store) -> Result<Vec<SiteView>, StoreError> {
    let mut out: Vec<SiteView> = store
        .list::<Site>(&ListQuery::default())?
        .into_iter()
        .map(|s| SiteView {
            id: s.id.0,
            kind: s.kind,
            name: s.name.expose().clone(),
            address: s.address.expose().clone(),
        })
        .collect();
    out.sort_by_key(|s| s.name.to_lowercase());
    Ok(out)
}

/// One site's log, newest first.
pub fn site_log(store: &mut Store, site: Uuid, me: Uuid) -> Result<Vec<SiteLogView>, StoreError> {
    let entries = store.list::<SiteLogEntry>(&ListQuery {
        site: Some(crate::domain::SiteId(site)),
        ..ListQuery::default()
    })?;
    log_views(store, &entries, me)
}

/// The site-log entries that name a resident, at any site, newest first: a caretaker's
/// resident page (and everyone's citizen page) shows them.
pub fn entries_naming(
    store: &mut Store,
    citizen: Uuid,
    me: Uuid,
) -> Result<Vec<SiteLogView>, StoreError> {
    let entries: Vec<SiteLogEntry> = store
        .list::<SiteLogEntry>(&ListQuery::default())?
        .into_iter()
        .filter(|e| e.residents.contains(&CitizenId(citizen)))
        .take(TIMELINE_LIMIT)
        .collect();
    log_views(store, &entries, me)
}

fn log_views(
    store: &mut Store,
    entries: &[SiteLogEntry],
    me: Uuid,
) -> Result<Vec<SiteLogView>, StoreError> {
    let marks = Marks::load(store)?;
    let mut labels = Labels::new(store);
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let (mut residents, mut resident_labels) = (Vec::new(), Vec::new());
        for r in &e.residents {
            if let Some(l) = labels.citizen(r.0)? {
                residents.push(r.0);
                resident_labels.push(l);
            }
        }
        out.push(SiteLogView {
            id: e.id.0,
            site_id: e.site_id.0,
            at_ms: ms(e.at),
            kind: e.kind,
            note: e.note.expose().clone(),
            residents,
            resident_labels,
            mine: e.author.0 == me,
            mark: marks.of(EntityKind::SiteLogEntry, e.id.0),
        });
    }
    Ok(out)
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Open conflicts, oldest first: the inbox.
pub fn conflicts(
    store: &mut Store,
    offer: &crate::access::Offer,
) -> Result<Vec<ConflictView>, StoreError> {
    let device = store.device_id();
    let mut list = store.conflicts(false)?;
    list.sort_by_key(|c| c.created_at);
    let names = Names::of(store.profile()?.as_ref());
    let mut labels = Labels::new(store);
    let mut out = Vec::with_capacity(list.len());
    for c in &list {
        let mut view = conflict_view(c, device, &mut labels, &names)?;
        view.can_settle = offer.can_settle(c.kind);
        out.push(view);
    }
    Ok(out)
}

/// One version of a conflict in words: the text a person wrote, the other parts of a
/// structured value (group, raw value) and whether it removes the item.
fn version_words(
    entity: EntityKind,
    field: &str,
    value: &serde_json::Value,
) -> (String, Vec<FieldText>, bool) {
    let Some(part) = crate::domain::schema::text_part(entity, field) else {
        return (as_text(value), Vec::new(), false);
    };
    let parts = match value {
        serde_json::Value::Object(parts) => parts,
        // A whole goal list (a conflict raised before goals travelled one by one): the goals'
        // words, one per line.
        serde_json::Value::Array(items) => {
            let words = items.iter().filter_map(|i| i.get(part)).map(as_text);
            return (words.collect::<Vec<_>>().join("\n"), Vec::new(), false);
        }
        _ => return (String::new(), Vec::new(), value.is_null()),
    };
    // Each part, named by the translation group its values are worded by.
    let groups: &[(&str, &str)] = match crate::domain::schema::rule_field(entity, field) {
        "goals" => &[("status", "goal_status"), ("created", "date")],
        "consents" => &[
            ("purpose", "consent_purpose"),
            ("status", "consent"),
            ("method", "consent_method"),
            ("date", "date"),
        ],
        "courses" => &[
            ("kind", "course_kind"),
            ("started", "date"),
            ("ending", "course_ending"),
        ],
        "course_reviews" => &[("date", "date")],
        "referrals" => &[
            ("target", "referral"),
            ("outcome", "referral_outcome"),
            ("made", "date"),
        ],
        "network" => &[("relation", "relation"), ("contact", "text")],
        _ => &[("count", "count")],
    };
    let details = groups
        .iter()
        .filter_map(|(key, group)| {
            parts.get(*key).filter(|v| !v.is_null()).map(|v| FieldText {
                field: (*group).to_owned(),
                values: vec![as_text(v)],
            })
        })
        .collect();
    (
        parts.get(part).map(as_text).unwrap_or_default(),
        details,
        false,
    )
}

fn conflict_view(
    c: &ConflictRecord,
    device: crate::hlc::DeviceId,
    labels: &mut Labels<'_>,
    names: &Names,
) -> Result<ConflictView, StoreError> {
    // The same rule as `Store::resolve_conflict`: "mine" is the loser unless the winner alone
    // came from this device.
    let mine_is_loser = c.loser_stamp.device == device || c.winner_stamp.device != device;
    let ((mine, mine_by), (theirs, theirs_by)) = if mine_is_loser {
        ((&c.loser, c.loser_author), (&c.winner, c.winner_author))
    } else {
        ((&c.winner, c.winner_author), (&c.loser, c.loser_author))
    };
    let (mine_text, mine_details, mine_removed) = version_words(c.entity, &c.field, mine);
    let (theirs_text, theirs_details, theirs_removed) = version_words(c.entity, &c.field, theirs);
    let record_label = match c.citizen_id {
        Some(id) => labels.citizen(id.0)?,
        None => None,
    };
    Ok(ConflictView {
        id: c.id.0,
        entity: c.entity,
        record_id: c.record_id,
        record_label,
        field: crate::domain::schema::rule_field(c.entity, &c.field).to_owned(),
        kind: c.kind,
        mine: mine_text,
        theirs: theirs_text,
        mine_details,
        theirs_details,
        mine_removed,
        theirs_removed,
        mine_author: names.name(mine_by),
        theirs_author: names.name(theirs_by),
        mine_is_current: !mine_is_loser,
        can_merge: c.kind == ConflictKind::Open
            && !c.entity.item_fields().contains(&c.field.as_str()),
        can_settle: false,
        status: c.status,
        created_at_ms: ms(c.created_at),
    })
}
