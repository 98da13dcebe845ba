//! A visit or contact (besøg, kontakt). Street work logs many contacts anonymously — a count and
//! a short description — so a visit has either a citizen or an anonymous contact, never neither.

use super::{
    CitizenId, CourseId, EntityKind, GoalId, KeyScope, Projection, Record, Sensitive, TaskId,
    TeamId, Validate, ValidationError, VisitId, WorkerId, check_count, check_opt_text, check_range,
    check_text, limits, millis,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What kind of contact this was.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum VisitKind {
    HomeVisit,
    StreetContact,
    ContactCentre,
    Site,
    Phone,
    EscortToAppointment,
}

impl VisitKind {
    /// Every kind, in declaration order (reports and generated datasets list them).
    pub const ALL: [VisitKind; 6] = [
        VisitKind::HomeVisit,
        VisitKind::StreetContact,
        VisitKind::ContactCentre,
        VisitKind::Site,
        VisitKind::Phone,
        VisitKind::EscortToAppointment,
    ];
}

/// What the contact was about.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Theme {
    Housing,
    EconomyAndDebt,
    PhysicalHealth,
    MentalHealth,
    SubstanceUse,
    WorkAndEducation,
    NetworkAndLoneliness,
    DailyLiving,
    Crisis,
    Other,
}

/// Where the citizen was referred or helped on to: a visit's referrals, and the target of a
/// referral followed to its outcome ([`super::ReferralCase`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Referral {
    DebtCounselling,
    HousingSupport,
    AddictionTreatment,
    Doctor,
    Psychiatry,
    JobCentre,
    VolunteerCentre,
    Shelter,
    LegalAid,
    /// The citizen's case worker (sagsbehandler) in the municipality.
    CaseWorker,
    HomeCare,
    SocialNurse,
    HousingAssociation,
    Hospital,
    Police,
    ProbationService,
    Other,
}

/// A contact with people not (yet) known by name.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousContact {
    /// How many people were met.
    pub count: u16,
    pub description: Sensitive<String>,
}

/// A visit or contact.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub id: VisitId,
    pub citizen_id: Option<CitizenId>,
    pub anonymous: Option<AnonymousContact>,
    /// On the device this is the signed-in worker; the server takes it from authentication.
    pub author: WorkerId,
    pub team_id: Option<TeamId>,
    pub started_at: DateTime<Utc>,
    pub duration_minutes: u16,
    pub kind: VisitKind,
    pub place: Option<Sensitive<String>>,
    #[serde(default)]
    pub themes: BTreeSet<Theme>,
    #[serde(default)]
    pub note: Sensitive<String>,
    #[serde(default)]
    pub referrals: BTreeSet<Referral>,
    /// Wellbeing score 1–10 given by the citizen, if they wanted to.
    pub wellbeing: Option<u8>,
    pub follow_up: Option<TaskId>,
    /// The support course this visit was part of (an item of the citizen's `courses`).
    #[serde(default)]
    pub course_id: Option<CourseId>,
    /// The citizen's goals the visit worked on (items of the citizen's `goals`).
    #[serde(default)]
    pub goals: BTreeSet<GoalId>,
    #[serde(default)]
    pub archived: bool,
}

impl Visit {
    /// A new visit with a known citizen, starting now.
    pub fn with_citizen(citizen: CitizenId, author: WorkerId, kind: VisitKind) -> Visit {
        Visit {
            id: VisitId::new(),
            citizen_id: Some(citizen),
            anonymous: None,
            author,
            team_id: None,
            started_at: Utc::now(),
            duration_minutes: 0,
            kind,
            place: None,
            themes: BTreeSet::new(),
            note: Sensitive::default(),
            referrals: BTreeSet::new(),
            wellbeing: None,
            follow_up: None,
            course_id: None,
            goals: BTreeSet::new(),
            archived: false,
        }
    }

    /// A new anonymous street contact, starting now.
    pub fn anonymous(count: u16, description: &str, author: WorkerId) -> Visit {
        Visit {
            citizen_id: None,
            anonymous: Some(AnonymousContact {
                count,
                description: description.into(),
            }),
            ..Visit::with_citizen(CitizenId::new(), author, VisitKind::StreetContact)
        }
    }
}

impl Validate for Visit {
    fn validate(&self) -> Result<(), ValidationError> {
        match (&self.citizen_id, &self.anonymous) {
            (None, None) => return Err(ValidationError::VisitNeedsCitizenOrAnonymous),
            (Some(_), Some(_)) => return Err(ValidationError::VisitHasCitizenAndAnonymous),
            (None, Some(anon)) => {
                check_range("anonymous.count", i64::from(anon.count), 1, 500)?;
                check_text(
                    "anonymous.description",
                    anon.description.expose(),
                    limits::SHORT_TEXT,
                    true,
                )?;
            }
            (Some(_), None) => {}
        }
        check_range(
            "duration_minutes",
            i64::from(self.duration_minutes),
            0,
            24 * 60,
        )?;
        check_opt_text("place", &self.place, limits::SHORT_TEXT)?;
        check_text("note", self.note.expose(), limits::NOTE, true)?;
        if let Some(score) = self.wellbeing {
            check_range("wellbeing", i64::from(score), 1, 10)?;
        }
        if self.citizen_id.is_none() && (self.course_id.is_some() || !self.goals.is_empty()) {
            return Err(ValidationError::UnknownItem { field: "course_id" });
        }
        check_count("goals", self.goals.len(), limits::GOALS)?;
        Ok(())
    }
}

impl Record for Visit {
    const KIND: EntityKind = EntityKind::Visit;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "citizen_id",
        "anonymous",
        "author",
        "team_id",
        "started_at",
        "duration_minutes",
        "kind",
        "place",
        "themes",
        "note",
        "referrals",
        "wellbeing",
        "follow_up",
        "course_id",
        "goals",
        "archived",
    ];
    const TEXT_FIELDS: &'static [&'static str] = &["note", "anonymous"];
    const SET_FIELDS: &'static [&'static str] = &["themes", "referrals", "goals"];

    fn record_id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key_scope(&self) -> KeyScope {
        match self.citizen_id {
            Some(c) => KeyScope::Citizen(c),
            None => KeyScope::General,
        }
    }
    fn projection(&self) -> Projection {
        Projection {
            citizen_id: self.citizen_id,
            site_id: None,
            sort_key: millis(self.started_at),
            archived: self.archived,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_exactly_one_subject() {
        let mut v = Visit::anonymous(3, "group by the station", WorkerId::new());
        assert!(v.validate().is_ok());
        v.anonymous = None;
        assert_eq!(
            v.validate(),
            Err(ValidationError::VisitNeedsCitizenOrAnonymous)
        );
        v.citizen_id = Some(CitizenId::new());
        assert!(v.validate().is_ok());
        v.anonymous = Some(AnonymousContact {
            count: 1,
            description: "x".into(),
        });
        assert_eq!(
            v.validate(),
            Err(ValidationError::VisitHasCitizenAndAnonymous)
        );
    }

    #[test]
    fn bounds_note_count_and_wellbeing() {
        let mut v = Visit::anonymous(0, "", WorkerId::new());
        assert!(matches!(
            v.validate(),
            Err(ValidationError::OutOfRange {
                field: "anonymous.count",
                ..
            })
        ));
        v.anonymous = Some(AnonymousContact {
            count: 2,
            description: "".into(),
        });
        v.note = Sensitive("n".repeat(limits::NOTE + 1));
        assert!(matches!(
            v.validate(),
            Err(ValidationError::TooLong { field: "note", .. })
        ));
        v.note = "ok".into();
        v.wellbeing = Some(11);
        assert!(matches!(
            v.validate(),
            Err(ValidationError::OutOfRange {
                field: "wellbeing",
                ..
            })
        ));
    }

    #[test]
    fn debug_prints_no_health_data() {
        let mut v = Visit::anonymous(2, "ved stationen", WorkerId::new());
        v.themes.insert(Theme::SubstanceUse);
        v.referrals.insert(Referral::Psychiatry);
        v.wellbeing = Some(3);
        let dbg = format!("{v:?}");
        assert!(
            !dbg.contains("Substance") && !dbg.contains("Psychiatry") && !dbg.contains("stationen"),
            "{dbg}"
        );
        assert!(dbg.contains(&v.id.to_string()));
    }

    #[test]
    fn anonymous_contacts_use_the_general_key() {
        let v = Visit::anonymous(2, "", WorkerId::new());
        assert_eq!(v.key_scope(), KeyScope::General);
        let c = CitizenId::new();
        assert_eq!(
            Visit::with_citizen(c, WorkerId::new(), VisitKind::Phone).key_scope(),
            KeyScope::Citizen(c)
        );
    }
}

super::redacted_debug!(Visit);
