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
//! | supervisor | all classes, in their team and the teams they supervise | nothing |
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
