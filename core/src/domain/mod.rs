//! The domain model of DESIGN §3: what outreach, home-visit and caretaker work records.
//!
//! Every record type implements [`Record`], which tells the store three things it must not
//! guess: which data key seals it ([`KeyScope`] — a citizen's own key, so erasing the citizen
//! erases everything about them), which plain, non-personal columns it may be listed by
//! ([`Projection`]), and which fields are add-wins sets for merge.
//!
//! Values that are personal data are wrapped in [`Sensitive`] (or are a [`Cpr`]), whose `Debug`
//! and `Display` print a redaction: a stray `{:?}` in a log line cannot leak a name or a note.
//! Validation ([`Validate`]) returns a [`ValidationError`] naming the field and the rule broken —
//! never the offending value.

mod citizen;
mod conflict;
mod cpr;
pub mod pathway;
pub mod schema;
mod site;
mod task;
mod visit;

pub use citizen::{
    Citizen, Consent, ConsentMethod, ConsentStatus, Goal, GoalStatus, HousingSituation,
};
pub use conflict::{ConflictId, ConflictRecord, ConflictStatus};
pub use cpr::{Cpr, CprError};
pub use pathway::{
    ConsentId, ConsentPurpose, Course, CourseEnding, CourseId, CourseKind, CourseReview,
    CourseReviewId, HousingChange, HousingChangeId, NetworkPerson, NetworkPersonId, PurposeConsent,
    ReferralCase, ReferralCaseId, ReferralOutcome, Relation,
};
pub use site::{Site, SiteKind, SiteLogEntry, SiteLogKind};
pub use task::{Task, TaskStatus};
pub use visit::{AnonymousContact, Referral, Theme, Visit, VisitKind};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt;
use uuid::Uuid;

/// Which kind of record a field operation, an outbox entry or an AEAD binding is about.
/// The names are stable: they appear in associated data and on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum EntityKind {
    Citizen,
    Visit,
    Task,
    Site,
    SiteLogEntry,
    /// A conflict version raised by the server: synced like any record.
    Conflict,
}

impl EntityKind {
    /// Every kind, for lookups and validation.
    pub const ALL: [EntityKind; 6] = [
        EntityKind::Citizen,
        EntityKind::Visit,
        EntityKind::Task,
        EntityKind::Site,
        EntityKind::SiteLogEntry,
        EntityKind::Conflict,
    ];

    /// The fields of this kind that merge as add-wins sets.
    pub fn set_fields(self) -> &'static [&'static str] {
        match self {
            EntityKind::Citizen => Citizen::SET_FIELDS,
            EntityKind::Visit => Visit::SET_FIELDS,
            EntityKind::Task => Task::SET_FIELDS,
            EntityKind::Site => Site::SET_FIELDS,
            EntityKind::SiteLogEntry => SiteLogEntry::SET_FIELDS,
            EntityKind::Conflict => ConflictRecord::SET_FIELDS,
        }
    }

    /// The free-text fields of this kind: a concurrent edit stays open until a person decides.
    pub fn text_fields(self) -> &'static [&'static str] {
        match self {
            EntityKind::Citizen => Citizen::TEXT_FIELDS,
            EntityKind::Visit => Visit::TEXT_FIELDS,
            EntityKind::Task => Task::TEXT_FIELDS,
            EntityKind::Site => Site::TEXT_FIELDS,
            EntityKind::SiteLogEntry => SiteLogEntry::TEXT_FIELDS,
            EntityKind::Conflict => ConflictRecord::TEXT_FIELDS,
        }
    }

    /// The stable name used in the store, in associated data and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Citizen => "citizen",
            EntityKind::Visit => "visit",
            EntityKind::Task => "task",
            EntityKind::Site => "site",
            EntityKind::SiteLogEntry => "site_log_entry",
            EntityKind::Conflict => "conflict",
        }
    }

    /// Parses the stable name back.
    pub fn parse(s: &str) -> Option<EntityKind> {
        [
            Self::Citizen,
            Self::Visit,
            Self::Task,
            Self::Site,
            Self::SiteLogEntry,
            Self::Conflict,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Personal data: prints as a redaction in `Debug` and `Display`, serialises as itself.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Sensitive<T>(pub T);

impl<T> Sensitive<T> {
    /// The value itself — call sites that reveal personal data are easy to grep for.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl From<&str> for Sensitive<String> {
    fn from(s: &str) -> Self {
        Sensitive(s.to_owned())
    }
}

impl From<String> for Sensitive<String> {
    fn from(s: String) -> Self {
        Sensitive(s)
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("‹redacted›")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("‹redacted›")
    }
}

/// `Debug` for a record that prints its id only: themes, referrals, scores and tags are health
/// and social data, and a stray `{:?}` must not put them in a log.
macro_rules! redacted_debug {
    ($ty:ident) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("id", &self.id)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use redacted_debug;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(/// A citizen (borger). Random; says nothing about the person.
    CitizenId);
id_type!(/// A visit or contact.
    VisitId);
id_type!(/// A task or follow-up.
    TaskId);
id_type!(/// A site (alternative housing, stairwell community, shelter).
    SiteId);
id_type!(/// A site-log entry.
    SiteLogEntryId);
id_type!(/// A worker (assigned by the server at enrolment).
    WorkerId);
id_type!(/// A team.
    TeamId);
id_type!(/// One of a citizen's own goals.
    GoalId);

/// Which data key seals a record's fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KeyScope {
    /// The citizen's own key: destroying it erases every record about them.
    Citizen(CitizenId),
    /// A site's key: the site itself. Destroying it (the site left the device's scope) erases
    /// the site and, through their links, its log entries.
    Site(SiteId),
    /// One site-log entry's own key, linked to its site's key and to the key of every resident
    /// it names ([`Record::key_links`]): destroying any of those destroys it, so the entry
    /// goes with the site or with a resident, whichever leaves first.
    SiteEntry(SiteLogEntryId),
    /// The device's general key, for data not about one citizen or site (anonymous contacts,
    /// the device's own settings and token).
    General,
}

/// The plain columns a record may be listed and sorted by. They must never hold personal data:
/// only random ids, a sort time and flags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Projection {
    pub citizen_id: Option<CitizenId>,
    pub site_id: Option<SiteId>,
    /// Milliseconds since the epoch: a visit's start, a task's due date, a citizen's creation.
    pub sort_key: i64,
    pub archived: bool,
}

/// A record the encrypted store can hold and sync field by field.
///
/// Its serde form must be a JSON object whose top-level keys are the sync fields.
pub trait Record: Serialize + DeserializeOwned + Validate + Clone {
    /// The kind, as used in the store and on the wire.
    const KIND: EntityKind;
    /// Every top-level field of the serde form: the fields that travel in field ops. A field
    /// not listed here is refused by the server ([`schema`]); a test holds the list equal to
    /// the serde form.
    const FIELDS: &'static [&'static str];
    /// Top-level fields that merge as add-wins sets (their JSON form is an array).
    const SET_FIELDS: &'static [&'static str] = &[];
    /// Free-text fields: a concurrent edit is an open conflict until a person resolves it.
    const TEXT_FIELDS: &'static [&'static str] = &[];

    /// The record's id.
    fn record_id(&self) -> Uuid;
    /// The data key that seals the record.
    fn key_scope(&self) -> KeyScope;
    /// Keys whose destruction must destroy this record's key too (a site-log entry: its site
    /// and the residents it names). Links are only ever added.
    fn key_links(&self) -> Vec<KeyScope> {
        Vec::new()
    }
    /// Plain listing columns.
    fn projection(&self) -> Projection;
}

/// Domain validation: run by the store before every save, and by the server on every mutation.
pub trait Validate {
    /// Checks every rule; returns the first broken one.
    fn validate(&self) -> Result<(), ValidationError>;
}

/// A broken domain rule. Names the field and the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{field} is required")]
    Required { field: &'static str },
    #[error("{field} is too long: {actual} characters, at most {max}")]
    TooLong {
        field: &'static str,
        max: usize,
        actual: usize,
    },
    #[error("{field} must not be blank")]
    Blank { field: &'static str },
    #[error("{field} is out of range: must be between {min} and {max}")]
    OutOfRange {
        field: &'static str,
        min: i64,
        max: i64,
    },
    #[error("invalid CPR number: {0}")]
    InvalidCpr(#[from] CprError),
    #[error("the CPR number's birth year does not match birth_year")]
    CprBirthYearMismatch,
    #[error("a citizen needs an alias or a full name")]
    CitizenNeedsAliasOrName,
    #[error("a visit needs either a citizen or an anonymous contact count")]
    VisitNeedsCitizenOrAnonymous,
    #[error("a visit cannot have both a citizen and an anonymous contact")]
    VisitHasCitizenAndAnonymous,
    #[error("the due date is before the task was created")]
    DueBeforeCreation,
    #[error("{field} ends before it starts")]
    EndsBeforeStart { field: &'static str },
    #[error("a course's ending is given exactly when its end date is")]
    EndingWithoutEnd,
    #[error("{field} names an item the record does not hold")]
    UnknownItem { field: &'static str },
    #[error("{field} has too many entries: {actual}, at most {max}")]
    TooMany {
        field: &'static str,
        max: usize,
        actual: usize,
    },
}

/// Length limits (in characters). Generous for real notes, small enough to bound sync bodies.
pub mod limits {
    pub const NAME: usize = 200;
    pub const PHONE: usize = 40;
    pub const SHORT_TEXT: usize = 500;
    pub const NOTE: usize = 20_000;
    pub const GOALS: usize = 50;
    /// Goals a citizen's record may hold on the server, removed ones (their `null` marks)
    /// included: bounds what one record can grow to, far above what the work produces.
    pub const GOALS_EVER: usize = 10 * GOALS;
    pub const TAGS: usize = 50;
    pub const TAG: usize = 60;
    pub const RESIDENTS: usize = 200;
    /// The pathway's item lists (issue 17): far above a long pathway of real work.
    pub const HOUSING_CHANGES: usize = 200;
    pub const COURSES: usize = 50;
    pub const REVIEWS: usize = 500;
    pub const REFERRALS: usize = 300;
    pub const NETWORK: usize = 50;
    pub const CONSENTS: usize = 20;

    /// How many items one list of a stored record may hold on the server, removed ones (their
    /// `null` marks) included: ten times what a saved record may show.
    pub fn items_ever(list: &str) -> usize {
        10 * match list {
            "goals" => GOALS,
            "housing_history" => HOUSING_CHANGES,
            "courses" => COURSES,
            "course_reviews" => REVIEWS,
            "referrals" => REFERRALS,
            "network" => NETWORK,
            "consents" => CONSENTS,
            _ => 0,
        }
    }
}

pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    allow_blank: bool,
) -> Result<(), ValidationError> {
    let actual = value.chars().count();
    if actual > max {
        return Err(ValidationError::TooLong { field, max, actual });
    }
    if !allow_blank && value.trim().is_empty() {
        return Err(ValidationError::Blank { field });
    }
    Ok(())
}

pub(crate) fn check_opt_text(
    field: &'static str,
    value: &Option<Sensitive<String>>,
    max: usize,
) -> Result<(), ValidationError> {
    match value {
        Some(v) => check_text(field, v.expose(), max, false),
        None => Ok(()),
    }
}

pub(crate) fn check_range(
    field: &'static str,
    value: i64,
    min: i64,
    max: i64,
) -> Result<(), ValidationError> {
    if value < min || value > max {
        return Err(ValidationError::OutOfRange { field, min, max });
    }
    Ok(())
}

pub(crate) fn check_count(
    field: &'static str,
    actual: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if actual > max {
        return Err(ValidationError::TooMany { field, max, actual });
    }
    Ok(())
}

pub(crate) fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}
