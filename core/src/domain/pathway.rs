//! What is followed over months and years (issue 17): the housing pathway, support courses
//! (indsatser) and their reviews, referrals followed to an outcome, the citizen's network, and
//! consent per purpose.
//!
//! Each is an **item list** of the citizen's record ([`super::EntityKind::item_fields`]):
//! every item travels and merges as its own register (`courses__<id>`), is sealed under the
//! citizen's key, is checked against the writer's scope with the citizen, and is erased with
//! the citizen's key. Two workers adding a course and a referral offline both keep theirs; the
//! same referral edited twice is a conflict about that one referral. Items refer to each other
//! by id inside the record (a review names its course, a course the goals it works on).

use super::{
    CitizenId, ConsentMethod, ConsentStatus, GoalId, HousingSituation, Referral, Sensitive, TaskId,
    ValidationError, VisitId, WorkerId, check_opt_text, check_text, limits,
};
use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

macro_rules! item_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7): items list in the order they were made.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}

item_id!(/// One change of a citizen's housing situation.
    HousingChangeId);
item_id!(/// A support course (indsats).
    CourseId);
item_id!(/// A review of a support course.
    CourseReviewId);
item_id!(/// A referral followed to its outcome.
    ReferralCaseId);
item_id!(/// A relative or network person.
    NetworkPersonId);
item_id!(/// A consent for one purpose.
    ConsentId);

/// A change of housing situation, dated by when it happened (not when it was recorded).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct HousingChange {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub id: HousingChangeId,
    /// The day the citizen moved (or was found) there.
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub from: NaiveDate,
    pub situation: HousingSituation,
}

impl HousingSituation {
    /// A home of the citizen's own: what "kept the home" is measured on. Alternative housing
    /// (skæve boliger) is a home; a shelter, a stairwell or a hospital bed is not.
    pub fn is_home(self) -> bool {
        matches!(
            self,
            HousingSituation::OwnRental
                | HousingSituation::SupportedHousing
                | HousingSituation::AlternativeHousing
        )
    }
}

/// The days a citizen moved into a home from somewhere that was not one (the first entry counts
/// when it is a home), in date order. A move from one home to another is not a new move-in: the
/// citizen stayed housed.
pub fn move_ins(history: &[HousingChange]) -> Vec<NaiveDate> {
    let mut sorted: Vec<&HousingChange> = history.iter().collect();
    sorted.sort_by_key(|c| (c.from, c.id));
    let mut housed = false;
    let mut out = Vec::new();
    for change in sorted {
        let home = change.situation.is_home();
        if home && !housed {
            out.push(change.from);
        }
        housed = home;
    }
    out
}

/// Whether the citizen who moved into a home on `moved_in` still had one `months` later:
/// `None` while that day is after `today` (not yet known), else `Some(kept)`, where kept means
/// no change to a situation that is not a home on or before that day.
pub fn kept_home(
    history: &[HousingChange],
    moved_in: NaiveDate,
    months: u32,
    today: NaiveDate,
) -> Option<bool> {
    let due = moved_in.checked_add_months(Months::new(months))?;
    if due > today {
        return None;
    }
    Some(
        !history
            .iter()
            .any(|c| c.from > moved_in && c.from <= due && !c.situation.is_home()),
    )
}

/// The kind of support course.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CourseKind {
    /// Bostøtte (SEL § 85 home support).
    HousingSupport,
    HousingFirst,
    /// Støtte- og kontaktperson (SEL § 99).
    SupportContactPerson,
    /// Critical Time Intervention.
    Cti,
    /// Intensive Case Management.
    Icm,
    DebtCounselling,
    Other,
}

impl CourseKind {
    /// Every kind, in declaration order (reports and forms list them).
    pub const ALL: [CourseKind; 7] = [
        CourseKind::HousingSupport,
        CourseKind::HousingFirst,
        CourseKind::SupportContactPerson,
        CourseKind::Cti,
        CourseKind::Icm,
        CourseKind::DebtCounselling,
        CourseKind::Other,
    ];
}

/// How a course ended.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CourseEnding {
    /// The goals were reached, or enough of them.
    GoalsReached,
    /// Handed on to another course or service.
    HandedOver,
    /// The citizen chose to stop.
    CitizenEnded,
    /// The citizen moved away from the municipality.
    MovedAway,
    /// Contact was lost.
    LostContact,
    Died,
    Other,
}

impl CourseEnding {
    /// Every ending, in declaration order.
    pub const ALL: [CourseEnding; 7] = [
        CourseEnding::GoalsReached,
        CourseEnding::HandedOver,
        CourseEnding::CitizenEnded,
        CourseEnding::MovedAway,
        CourseEnding::LostContact,
        CourseEnding::Died,
        CourseEnding::Other,
    ];
}

/// A support course (indsats): started, planned to end, ended and how, and the citizen's own
/// goals it works on.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Course {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub id: CourseId,
    pub kind: CourseKind,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub started: NaiveDate,
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub planned_end: Option<NaiveDate>,
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub ended: Option<NaiveDate>,
    /// How it ended: set exactly when `ended` is.
    pub ending: Option<CourseEnding>,
    /// The citizen's goals this course works on (ids of [`super::Goal`]s of the same record).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "Array<string>"))]
    pub goals: BTreeSet<GoalId>,
    /// What the course is for, in words.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub note: Sensitive<String>,
}

/// A review of a course (opfølgning på indsatsen): the date and what was found.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CourseReview {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub id: CourseReviewId,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub course_id: CourseId,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub date: NaiveDate,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub text: Sensitive<String>,
}

/// Where a referral stands.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ReferralOutcome {
    /// Sent, no answer yet.
    #[default]
    Waiting,
    Accepted,
    DeclinedByCitizen,
    Done,
}

impl ReferralOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [ReferralOutcome; 4] = [
        ReferralOutcome::Waiting,
        ReferralOutcome::Accepted,
        ReferralOutcome::DeclinedByCitizen,
        ReferralOutcome::Done,
    ];

    /// Whether the referral still needs following up.
    pub fn is_open(self) -> bool {
        matches!(self, ReferralOutcome::Waiting | ReferralOutcome::Accepted)
    }
}

/// A referral followed to its outcome ("bridging": help is handed on, and someone checks that
/// it arrived).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ReferralCase {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub id: ReferralCaseId,
    pub target: Referral,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub made: NaiveDate,
    /// The visit it was made on, if any.
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub visit_id: Option<VisitId>,
    #[serde(default)]
    pub outcome: ReferralOutcome,
    /// When the outcome was learnt.
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub outcome_date: Option<NaiveDate>,
    /// The task that follows it up, when one was asked for.
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub follow_up: Option<TaskId>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub note: Sensitive<String>,
}

/// How a network person is related to the citizen.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Relation {
    Parent,
    Child,
    Sibling,
    Partner,
    OtherFamily,
    Friend,
    Neighbour,
    Professional,
    Other,
}

/// A relative or network person: who, how to reach them, and whether the citizen consents to
/// involving them.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct NetworkPerson {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub id: NetworkPersonId,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub name: Sensitive<String>,
    pub relation: Relation,
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub contact: Option<Sensitive<String>>,
    #[serde(default)]
    pub may_involve: bool,
}

/// What a consent is for.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ConsentPurpose {
    /// The work recorded and shared within the team (the single consent of before).
    Recording,
    /// Information shared with other agencies (cross-sector cooperation).
    SharingWithAgencies,
    /// Relatives and network involved.
    InvolvingNetwork,
    /// Health information obtained from doctors, hospitals or psychiatry.
    HealthInformation,
    Other,
}

/// The citizen's consent for one purpose: status, date, how given, recorded by whom, and its
/// scope in words.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PurposeConsent {
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub id: ConsentId,
    pub purpose: ConsentPurpose,
    pub status: ConsentStatus,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub date: NaiveDate,
    pub method: ConsentMethod,
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub recorded_by: WorkerId,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub scope: Sensitive<String>,
}

/// The consent that a citizen's record held before consent was per purpose (one
/// [`super::Consent`]), as the one purpose it was for. Its id is the citizen's own, so every
/// device and the server derive the same item from it.
pub fn legacy_consent(citizen: CitizenId, consent: &super::Consent) -> PurposeConsent {
    PurposeConsent {
        id: ConsentId(citizen.0),
        purpose: ConsentPurpose::Recording,
        status: consent.status,
        date: consent.date,
        method: consent.method,
        recorded_by: consent.recorded_by,
        scope: consent.scope.clone(),
    }
}

/// Checks every item list of the pathway against its own rules and the record's other items
/// (a review's course and a course's goals must be the citizen's).
pub(crate) fn validate(citizen: &super::Citizen) -> Result<(), ValidationError> {
    use limits::{CONSENTS, COURSES, HOUSING_CHANGES, NETWORK, REFERRALS, REVIEWS};
    super::check_count(
        "housing_history",
        citizen.housing_history.len(),
        HOUSING_CHANGES,
    )?;
    super::check_count("courses", citizen.courses.len(), COURSES)?;
    super::check_count("course_reviews", citizen.course_reviews.len(), REVIEWS)?;
    super::check_count("referrals", citizen.referrals.len(), REFERRALS)?;
    super::check_count("network", citizen.network.len(), NETWORK)?;
    super::check_count("consents", citizen.consents.len(), CONSENTS)?;
    let goals: BTreeSet<GoalId> = citizen.goals.iter().map(|g| g.id).collect();
    let courses: BTreeSet<CourseId> = citizen.courses.iter().map(|c| c.id).collect();
    for course in &citizen.courses {
        check_text(
            "courses.note",
            course.note.expose(),
            limits::SHORT_TEXT,
            true,
        )?;
        if course.planned_end.is_some_and(|end| end < course.started)
            || course.ended.is_some_and(|end| end < course.started)
        {
            return Err(ValidationError::EndsBeforeStart { field: "courses" });
        }
        if course.ended.is_some() != course.ending.is_some() {
            return Err(ValidationError::EndingWithoutEnd);
        }
        super::check_count("courses.goals", course.goals.len(), limits::GOALS)?;
        if !course.goals.is_subset(&goals) {
            return Err(ValidationError::UnknownItem {
                field: "courses.goals",
            });
        }
    }
    for review in &citizen.course_reviews {
        check_text(
            "course_reviews.text",
            review.text.expose(),
            limits::NOTE,
            false,
        )?;
        if !courses.contains(&review.course_id) {
            return Err(ValidationError::UnknownItem {
                field: "course_reviews.course_id",
            });
        }
    }
    for referral in &citizen.referrals {
        check_text(
            "referrals.note",
            referral.note.expose(),
            limits::SHORT_TEXT,
            true,
        )?;
        if referral.outcome_date.is_some_and(|d| d < referral.made) {
            return Err(ValidationError::EndsBeforeStart {
                field: "referrals.outcome_date",
            });
        }
    }
    for person in &citizen.network {
        check_text("network.name", person.name.expose(), limits::NAME, false)?;
        check_opt_text("network.contact", &person.contact, limits::SHORT_TEXT)?;
    }
    for consent in &citizen.consents {
        check_text(
            "consents.scope",
            consent.scope.expose(),
            limits::SHORT_TEXT,
            true,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn change(from: &str, situation: HousingSituation) -> HousingChange {
        HousingChange {
            id: HousingChangeId::new(),
            from: day(from),
            situation,
        }
    }

    #[test]
    fn a_move_in_is_counted_from_not_housed_to_housed_only() {
        use HousingSituation::*;
        let history = vec![
            change("2025-01-10", Street),
            change("2025-03-01", OwnRental),
            change("2025-05-01", SupportedHousing),
            change("2025-09-01", Shelter),
            change("2025-10-01", AlternativeHousing),
        ];
        assert_eq!(
            move_ins(&history),
            vec![day("2025-03-01"), day("2025-10-01")]
        );
    }

    #[test]
    fn kept_home_is_unknown_until_the_day_and_broken_by_a_move_out_before_it() {
        use HousingSituation::*;
        let history = vec![
            change("2025-03-01", OwnRental),
            change("2025-08-15", Shelter),
        ];
        let moved = day("2025-03-01");
        let today = day("2025-12-01");
        assert_eq!(kept_home(&history, moved, 3, today), Some(true));
        assert_eq!(kept_home(&history, moved, 6, today), Some(false));
        assert_eq!(kept_home(&history, moved, 12, today), None);
        // Leaving on the very day the measure falls counts as not kept.
        assert_eq!(kept_home(&history, moved, 3, day("2025-06-01")), Some(true));
        let left_on_the_day = vec![
            change("2025-03-01", OwnRental),
            change("2025-06-01", Street),
        ];
        assert_eq!(kept_home(&left_on_the_day, moved, 3, today), Some(false));
    }
}
