//! A citizen (borger): often known first by a nickname, later perhaps by name and CPR.
//! The citizen's own goals are kept in their own words — they are the starting point of the work
//! ("captain of their own life").

use super::pathway::{
    Course, CourseReview, HousingChange, NetworkPerson, PurposeConsent, ReferralCase,
};
use super::{
    CitizenId, Cpr, EntityKind, GoalId, KeyScope, Projection, Record, Sensitive, SiteId, TeamId,
    Validate, ValidationError, WorkerId, check_count, check_opt_text, check_range, check_text,
    limits, millis,
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Where the citizen lives now.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum HousingSituation {
    Street,
    Shelter,
    AlternativeHousing,
    StairwellCommunity,
    OwnRental,
    /// Supported or sheltered housing (botilbud).
    SupportedHousing,
    Hospital,
    Prison,
    /// Recorded before hospital and prison were told apart; no longer offered.
    HospitalOrPrison,
    #[default]
    Other,
}

impl HousingSituation {
    /// The situations a worker picks from, in the order the form lists them.
    pub const OFFERED: [HousingSituation; 9] = [
        HousingSituation::Street,
        HousingSituation::Shelter,
        HousingSituation::AlternativeHousing,
        HousingSituation::StairwellCommunity,
        HousingSituation::OwnRental,
        HousingSituation::SupportedHousing,
        HousingSituation::Hospital,
        HousingSituation::Prison,
        HousingSituation::Other,
    ];
}

/// Whether the citizen has consented to the work being recorded and shared.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ConsentStatus {
    NotAsked,
    Given,
    Declined,
    Withdrawn,
}

/// How consent was given.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ConsentMethod {
    Verbal,
    Written,
    Digital,
}

/// The single consent a citizen's record held before consent was recorded per purpose
/// ([`super::PurposeConsent`]). Kept to read records and databases from before: a stored one
/// is read as the consent for one purpose ([`super::pathway::legacy_consent`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub status: ConsentStatus,
    pub date: NaiveDate,
    pub scope: Sensitive<String>,
    pub method: ConsentMethod,
    pub recorded_by: WorkerId,
}

/// Progress on one of the citizen's goals.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum GoalStatus {
    Active,
    Achieved,
    Paused,
    Dropped,
}

/// One of the citizen's hopes, wishes and dreams, in their own words.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub id: GoalId,
    pub text: Sensitive<String>,
    pub status: GoalStatus,
    pub created: NaiveDate,
}

/// A citizen the team works with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citizen {
    pub id: CitizenId,
    /// Nickname or alias: street work often starts here.
    pub alias: Option<Sensitive<String>>,
    pub full_name: Option<Sensitive<String>>,
    pub cpr: Option<Cpr>,
    pub birth_year: Option<i32>,
    pub phone: Option<Sensitive<String>>,
    #[serde(default)]
    pub housing: HousingSituation,
    pub site_id: Option<SiteId>,
    pub team_id: Option<TeamId>,
    pub primary_worker: Option<WorkerId>,
    /// Consent per purpose; replaced the single consent of before (issue 17).
    #[serde(default)]
    pub consents: Vec<PurposeConsent>,
    #[serde(default)]
    pub goals: Vec<Goal>,
    /// The citizen's resources and interests, in their own words, beside their goals.
    #[serde(default)]
    pub resources: Option<Sensitive<String>>,
    /// Every change of housing situation, dated; `housing` is the situation now.
    #[serde(default)]
    pub housing_history: Vec<HousingChange>,
    /// At risk of eviction (udsættelsestruet).
    #[serde(default)]
    pub eviction_risk: bool,
    /// Behind with the rent (huslejerestance).
    #[serde(default)]
    pub rent_arrears: bool,
    #[serde(default)]
    pub courses: Vec<Course>,
    #[serde(default)]
    pub course_reviews: Vec<CourseReview>,
    /// Referrals followed to their outcome.
    #[serde(default)]
    pub referrals: Vec<ReferralCase>,
    /// Relatives and network persons.
    #[serde(default)]
    pub network: Vec<NetworkPerson>,
    #[serde(default)]
    pub tags: BTreeSet<String>,
    #[serde(default)]
    pub archived: bool,
    pub created_at: DateTime<Utc>,
}

impl Citizen {
    /// A new citizen known only by an alias, created now.
    pub fn with_alias(alias: &str) -> Citizen {
        Citizen {
            id: CitizenId::new(),
            alias: Some(alias.into()),
            full_name: None,
            cpr: None,
            birth_year: None,
            phone: None,
            housing: HousingSituation::default(),
            site_id: None,
            team_id: None,
            primary_worker: None,
            consents: Vec::new(),
            goals: Vec::new(),
            resources: None,
            housing_history: Vec::new(),
            eviction_risk: false,
            rent_arrears: false,
            courses: Vec::new(),
            course_reviews: Vec::new(),
            referrals: Vec::new(),
            network: Vec::new(),
            tags: BTreeSet::new(),
            archived: false,
            created_at: Utc::now(),
        }
    }

    /// The name to show a worker: alias, else full name.
    pub fn display_name(&self) -> &str {
        self.alias
            .as_ref()
            .or(self.full_name.as_ref())
            .map(|s| s.expose().as_str())
            .unwrap_or("")
    }
}

impl Validate for Citizen {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.alias.is_none() && self.full_name.is_none() {
            return Err(ValidationError::CitizenNeedsAliasOrName);
        }
        check_opt_text("alias", &self.alias, limits::NAME)?;
        check_opt_text("full_name", &self.full_name, limits::NAME)?;
        check_opt_text("phone", &self.phone, limits::PHONE)?;
        if let Some(year) = self.birth_year {
            check_range(
                "birth_year",
                i64::from(year),
                1900,
                i64::from(Utc::now().year()),
            )?;
            if let Some(born) = self.cpr.as_ref().and_then(Cpr::birth_date)
                && born.year() != year
            {
                return Err(ValidationError::CprBirthYearMismatch);
            }
        }
        check_opt_text("resources", &self.resources, limits::SHORT_TEXT * 4)?;
        check_count("goals", self.goals.len(), limits::GOALS)?;
        for goal in &self.goals {
            check_text("goals.text", goal.text.expose(), limits::SHORT_TEXT, false)?;
        }
        check_count("tags", self.tags.len(), limits::TAGS)?;
        for tag in &self.tags {
            check_text("tags", tag, limits::TAG, false)?;
        }
        super::pathway::validate(self)
    }
}

impl Record for Citizen {
    const KIND: EntityKind = EntityKind::Citizen;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "alias",
        "full_name",
        "cpr",
        "birth_year",
        "phone",
        "housing",
        "site_id",
        "team_id",
        "primary_worker",
        "consents",
        "goals",
        "resources",
        "housing_history",
        "eviction_risk",
        "rent_arrears",
        "courses",
        "course_reviews",
        "referrals",
        "network",
        "tags",
        "archived",
        "created_at",
    ];
    const TEXT_FIELDS: &'static [&'static str] = &[
        "goals",
        "consents",
        "resources",
        "courses",
        "course_reviews",
        "referrals",
        "network",
    ];
    const SET_FIELDS: &'static [&'static str] = &["tags"];

    fn record_id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key_scope(&self) -> KeyScope {
        KeyScope::Citizen(self.id)
    }
    fn projection(&self) -> Projection {
        Projection {
            citizen_id: Some(self.id),
            site_id: self.site_id,
            sort_key: millis(self.created_at),
            archived: self.archived,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_alias_or_name() {
        let mut c = Citizen::with_alias("Fisk");
        assert!(c.validate().is_ok());
        c.alias = None;
        assert_eq!(c.validate(), Err(ValidationError::CitizenNeedsAliasOrName));
        c.full_name = Some("Jens Hansen".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_long_or_blank_names_and_mismatched_birth_year() {
        let mut c = Citizen::with_alias(&"x".repeat(201));
        assert!(matches!(
            c.validate(),
            Err(ValidationError::TooLong { field: "alias", .. })
        ));
        c.alias = Some("   ".into());
        assert_eq!(c.validate(), Err(ValidationError::Blank { field: "alias" }));
        c.alias = Some("Fisk".into());
        c.cpr = Some(Cpr::parse("010190-1234").unwrap());
        c.birth_year = Some(1991);
        assert_eq!(c.validate(), Err(ValidationError::CprBirthYearMismatch));
        c.birth_year = Some(1990);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn invalid_cpr_in_json_is_a_clear_error() {
        let mut json = serde_json::to_value(Citizen::with_alias("Fisk")).unwrap();
        json["cpr"] = "320190-1234".into();
        let err = serde_json::from_value::<Citizen>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a real date"), "{err}");
        assert!(!err.contains("320190"), "error echoes the CPR: {err}");
    }

    #[test]
    fn debug_never_prints_personal_data() {
        let mut c = Citizen::with_alias("Fisk");
        c.full_name = Some("Jens Hansen".into());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("Fisk") && !dbg.contains("Jens"), "{dbg}");
    }
}

super::redacted_debug!(Citizen);
