//! Sites and the caretaker's site log (social vicevært): resident contacts, neighbour dialogue,
//! incidents and repairs at alternative-housing sites and stairwell communities.
//!
//! Site-log entries are sealed with the device's general key, not a resident's key: an entry is
//! about the site, and erasing one resident must not erase the site's history. Their notes should
//! therefore not carry more about a resident than the site needs.

use super::{
    CitizenId, EntityKind, KeyScope, Projection, Record, Sensitive, SiteId, SiteLogEntryId,
    Validate, ValidationError, WorkerId, check_count, check_text, limits, millis,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What kind of place a site is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum SiteKind {
    AlternativeHousing,
    StairwellCommunity,
    Shelter,
    Other,
}

/// A site a caretaker looks after.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub id: SiteId,
    pub kind: SiteKind,
    pub name: Sensitive<String>,
    pub address: Sensitive<String>,
    #[serde(default)]
    pub archived: bool,
    pub created_at: DateTime<Utc>,
}

/// What a site-log entry records.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum SiteLogKind {
    ResidentContact,
    NeighbourDialogue,
    Incident,
    Repair,
    Other,
}

/// One entry in a site's log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteLogEntry {
    pub id: SiteLogEntryId,
    pub site_id: SiteId,
    pub at: DateTime<Utc>,
    pub kind: SiteLogKind,
    pub note: Sensitive<String>,
    #[serde(default)]
    pub residents: BTreeSet<CitizenId>,
    pub author: WorkerId,
    #[serde(default)]
    pub archived: bool,
}

impl Validate for Site {
    fn validate(&self) -> Result<(), ValidationError> {
        check_text("name", self.name.expose(), limits::NAME, false)?;
        check_text("address", self.address.expose(), limits::SHORT_TEXT, true)
    }
}

impl Validate for SiteLogEntry {
    fn validate(&self) -> Result<(), ValidationError> {
        check_text("note", self.note.expose(), limits::NOTE, false)?;
        check_count("residents", self.residents.len(), limits::RESIDENTS)
    }
}

impl Record for Site {
    const KIND: EntityKind = EntityKind::Site;
    const FIELDS: &'static [&'static str] =
        &["id", "kind", "name", "address", "archived", "created_at"];

    fn record_id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key_scope(&self) -> KeyScope {
        KeyScope::Site(self.id)
    }
    fn projection(&self) -> Projection {
        Projection {
            citizen_id: None,
            site_id: Some(self.id),
            sort_key: millis(self.created_at),
            archived: self.archived,
        }
    }
}

impl Record for SiteLogEntry {
    const KIND: EntityKind = EntityKind::SiteLogEntry;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "site_id",
        "at",
        "kind",
        "note",
        "residents",
        "author",
        "archived",
    ];
    const TEXT_FIELDS: &'static [&'static str] = &["note"];
    const SET_FIELDS: &'static [&'static str] = &["residents"];

    fn record_id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key_scope(&self) -> KeyScope {
        KeyScope::SiteEntry(self.id)
    }
    fn key_links(&self) -> Vec<KeyScope> {
        std::iter::once(KeyScope::Site(self.site_id))
            .chain(self.residents.iter().map(|r| KeyScope::Citizen(*r)))
            .collect()
    }
    fn projection(&self) -> Projection {
        Projection {
            citizen_id: None,
            site_id: Some(self.site_id),
            sort_key: millis(self.at),
            archived: self.archived,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_log_needs_a_note() {
        let e = SiteLogEntry {
            id: SiteLogEntryId::new(),
            site_id: SiteId::new(),
            at: Utc::now(),
            kind: SiteLogKind::Repair,
            note: "".into(),
            residents: BTreeSet::new(),
            author: WorkerId::new(),
            archived: false,
        };
        assert_eq!(e.validate(), Err(ValidationError::Blank { field: "note" }));
    }
}

super::redacted_debug!(Site);

super::redacted_debug!(SiteLogEntry);
