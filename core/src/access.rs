//! What each role may read and write: decided once, here, and used by the server's scope checks
//! (`sync-server/src/scope.rs`, for every record in the sync transaction) and by the app to
//! choose its screens, so the app never offers an action the server would refuse (DESIGN §2).
//!
//! Every record has a scope class, fixed when it is created:
//! - `citizen`: a citizen's own record;
//! - `case`: a visit, task or conflict about a citizen;
//! - `anon`: team work without a citizen (anonymous contacts);
//! - `site`, `site_log`: the team's sites and their logs.
//!
//! | role | reads (own team) | writes (own team) |
//! |---|---|---|
//! | outreach, home support | all classes | all classes |
//! | caretaker | their sites, those sites' logs, and the citizens who live there (residents) | their sites and those sites' logs |
//! | supervisor | all classes, in their team and the teams they supervise | the review of open free-text conflicts there ([`can_review_conflicts`]) |
//! | admin | nothing | nothing |

use serde::{Deserialize, Serialize};

/// A worker's role (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Role {
    /// Street work: the team's caseload.
    Outreach,
    /// Home visits: the team's caseload.
    HomeSupport,
    /// Social caretaker: the team's sites, their logs and their residents.
    Caretaker,
    /// Reads the team's work for review and reports; writes nothing.
    Supervisor,
    /// Manages people and devices; sees no citizen content.
    Admin,
}

impl Role {
    /// Every role, for checks and the authorization matrix.
    pub const ALL: [Role; 5] = [
        Role::Outreach,
        Role::HomeSupport,
        Role::Caretaker,
        Role::Supervisor,
        Role::Admin,
    ];

    /// The stable name stored in the database, typed in the admin CLI and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Outreach => "outreach",
            Role::HomeSupport => "home_support",
            Role::Caretaker => "caretaker",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// This role as one bit, for change-log rows meant for some roles only.
    pub fn bit(self) -> i64 {
        1 << (self as i64)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's scope class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Citizen,
    Case,
    Anon,
    Site,
    SiteLog,
}

impl Class {
    /// Every class, for the authorization matrix.
    pub const ALL: [Class; 5] = [
        Class::Citizen,
        Class::Case,
        Class::Anon,
        Class::Site,
        Class::SiteLog,
    ];

    /// The stable name stored with records and change-log rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Citizen => "citizen",
            Class::Case => "case",
            Class::Anon => "anon",
            Class::Site => "site",
            Class::SiteLog => "site_log",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Whether `role` may read records of `class` in its own team. `at_own_site`: the record is a
/// site, or belongs to a site, that is one of the caller's (a caretaker's assigned sites); for
/// a citizen, that they live at one.
pub fn can_read(role: Role, class: Class, at_own_site: bool) -> bool {
    match role {
        Role::Outreach | Role::HomeSupport | Role::Supervisor => true,
        Role::Caretaker => match class {
            Class::Site | Class::SiteLog | Class::Citizen => at_own_site,
            Class::Case | Class::Anon => false,
        },
        Role::Admin => false,
    }
}

/// Whether `role` may create or change records of `class` in its own team (`at_own_site` as
/// for [`can_read`]).
pub fn can_write(role: Role, class: Class, at_own_site: bool) -> bool {
    match role {
        Role::Outreach | Role::HomeSupport => true,
        Role::Caretaker => matches!(class, Class::Site | Class::SiteLog) && at_own_site,
        Role::Supervisor | Role::Admin => false,
    }
}

/// Whether `role` settles open free-text conflicts in the teams it reads, though it writes
/// nothing else there: a supervisor's conflict review. The write it makes is the conflict's
/// status and the one field the conflict is about, nothing more (the server checks both).
pub fn can_review_conflicts(role: Role) -> bool {
    role == Role::Supervisor
}

/// What site work needs of a resident: a caretaker's device receives only these fields of a
/// citizen's record — who they are and where they live — never CPR, phone, birth year, goals,
/// consent, tags or their primary worker (least privilege; DESIGN §4).
pub const CARETAKER_CITIZEN_FIELDS: &[&str] = &[
    "id",
    "alias",
    "full_name",
    "housing",
    "site_id",
    "team_id",
    "archived",
    "created_at",
];

/// Whether a device of `role` is sent `field` of a record of `entity` it may read.
pub fn served_field(role: Role, entity: crate::domain::EntityKind, field: &str) -> bool {
    role != Role::Caretaker
        || entity != crate::domain::EntityKind::Citizen
        || CARETAKER_CITIZEN_FIELDS.contains(&field)
}

/// What the app offers a worker on their tablet: its screens and the actions on them, derived
/// from [`can_read`] and [`can_write`] (never a second table), so no screen can produce an edit
/// the server refuses for the role. The server still checks every record: a caretaker's log
/// entry at a site that is not theirs, say, is refused there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Offer {
    /// The role has an app at all (an administrator's work is on the server).
    pub app: bool,
    /// Visits, contacts and tasks are shown: the today and tasks screens.
    pub cases: bool,
    /// Citizens are shown: the caseload and citizen pages (a caretaker's: their residents).
    pub citizens: bool,
    /// Create and edit citizens.
    pub edit_citizens: bool,
    /// Log visits and contacts, add follow-ups, change a task's status.
    pub log_visits: bool,
    /// Sites and their logs are shown.
    pub sites: bool,
    /// Add sites.
    pub edit_sites: bool,
    /// Write site-log entries (at the worker's own sites).
    pub log_sites: bool,
    /// Resolve or dismiss conflicts in the inbox.
    pub resolve_conflicts: bool,
    /// Settle open free-text conflicts only (keep one version or write them together): a
    /// supervisor's review of their teams.
    pub review_conflicts: bool,
}

impl Offer {
    /// The offer for `role`: reading and writing as the role table allows, at the worker's own
    /// sites where sites matter.
    pub fn of(role: Role) -> Offer {
        let cases = can_read(role, Class::Case, false) && can_read(role, Class::Anon, false);
        let log_visits = can_write(role, Class::Case, false) && can_write(role, Class::Anon, false);
        let log_sites = can_write(role, Class::SiteLog, true);
        Offer {
            app: Class::ALL.iter().any(|class| can_read(role, *class, true)),
            cases,
            citizens: can_read(role, Class::Citizen, true),
            edit_citizens: can_write(role, Class::Citizen, false),
            log_visits,
            sites: can_read(role, Class::Site, true),
            edit_sites: can_write(role, Class::Site, true),
            log_sites,
            // A conflict is a record of the class it is about: whoever writes some class can
            // settle conflicts (the server checks each one's class).
            resolve_conflicts: log_visits || log_sites,
            review_conflicts: can_review_conflicts(role),
        }
    }
}

impl Offer {
    /// Whether the worker may edit records of `entity` from the app (their own sites' where
    /// sites matter): the rule for sending a refused edit again.
    pub fn can_edit(&self, entity: crate::domain::EntityKind) -> bool {
        use crate::domain::EntityKind;
        match entity {
            EntityKind::Citizen => self.edit_citizens,
            EntityKind::Visit | EntityKind::Task => self.log_visits,
            EntityKind::Site => self.edit_sites,
            EntityKind::SiteLogEntry => self.log_sites,
            EntityKind::Conflict => self.resolve_conflicts || self.review_conflicts,
        }
    }

    /// Whether the worker may settle a conflict of `kind` (keep one version, or a merged text;
    /// a notice is dismissed): whoever writes the records settles any, a reviewer only an open
    /// free-text one, and a reviewer never dismisses (the server's `is_conflict_review`).
    pub fn can_settle(&self, kind: crate::merge::ConflictKind) -> bool {
        self.resolve_conflicts
            || (self.review_conflicts && kind == crate::merge::ConflictKind::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caretaker_is_served_a_residents_name_and_place_only() {
        use crate::domain::{Citizen, EntityKind, Record};
        for field in CARETAKER_CITIZEN_FIELDS {
            assert!(
                Citizen::FIELDS.contains(field),
                "{field} is a citizen field"
            );
        }
        for field in [
            "cpr",
            "phone",
            "birth_year",
            "goals",
            "consents",
            "tags",
            "primary_worker",
            "housing_history",
            "eviction_risk",
            "rent_arrears",
            "resources",
            "courses",
            "course_reviews",
            "referrals",
            "network",
            // One goal, as goals travel.
            &crate::domain::schema::item_field("goals", uuid::Uuid::now_v7()),
        ] {
            assert!(
                !served_field(Role::Caretaker, EntityKind::Citizen, field),
                "{field}"
            );
            assert!(
                served_field(Role::Outreach, EntityKind::Citizen, field),
                "{field}"
            );
        }
        assert!(served_field(
            Role::Caretaker,
            EntityKind::SiteLogEntry,
            "note"
        ));
    }

    #[test]
    fn each_role_is_offered_what_the_role_table_lets_it_do() {
        let outreach = Offer::of(Role::Outreach);
        assert!(outreach.app && outreach.cases && outreach.log_visits && outreach.edit_citizens);
        assert_eq!(Offer::of(Role::HomeSupport), outreach);
        let caretaker = Offer::of(Role::Caretaker);
        assert!(caretaker.app && caretaker.sites && caretaker.log_sites && caretaker.edit_sites);
        assert!(caretaker.citizens, "their residents");
        assert!(!caretaker.cases && !caretaker.log_visits && !caretaker.edit_citizens);
        let supervisor = Offer::of(Role::Supervisor);
        assert!(supervisor.app && supervisor.cases && supervisor.citizens && supervisor.sites);
        assert!(
            !supervisor.log_visits
                && !supervisor.edit_citizens
                && !supervisor.log_sites
                && !supervisor.edit_sites
                && !supervisor.resolve_conflicts,
            "read-only but for the conflict review"
        );
        assert!(supervisor.review_conflicts);
        assert!(!outreach.review_conflicts && !caretaker.review_conflicts);
        let admin = Offer::of(Role::Admin);
        assert!(!admin.app && !admin.cases && !admin.citizens && !admin.sites);
        // Every write offered is one the table allows: nothing the server would refuse.
        for role in Role::ALL {
            let o = Offer::of(role);
            assert!(!o.edit_citizens || can_write(role, Class::Citizen, false));
            assert!(!o.log_visits || can_write(role, Class::Case, false));
            assert!(!o.log_sites || can_write(role, Class::SiteLog, true));
            assert!(!o.edit_sites || can_write(role, Class::Site, true));
        }
    }
}
