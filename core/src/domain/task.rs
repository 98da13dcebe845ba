//! A task or follow-up (opfølgning) about a citizen: "help is never given up".

use super::{
    CitizenId, EntityKind, KeyScope, Projection, Record, Sensitive, TaskId, Validate,
    ValidationError, WorkerId, check_text, limits,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Where a task stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum TaskStatus {
    #[default]
    Open,
    Done,
    Cancelled,
}

/// A follow-up about one citizen.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub citizen_id: CitizenId,
    pub title: Sensitive<String>,
    pub created_at: DateTime<Utc>,
    pub due: NaiveDate,
    pub assignee: Option<WorkerId>,
    #[serde(default)]
    pub status: TaskStatus,
    #[serde(default)]
    pub archived: bool,
}

impl Validate for Task {
    fn validate(&self) -> Result<(), ValidationError> {
        check_text("title", self.title.expose(), limits::SHORT_TEXT, false)?;
        if self.due < self.created_at.date_naive() {
            return Err(ValidationError::DueBeforeCreation);
        }
        Ok(())
    }
}

impl Record for Task {
    const KIND: EntityKind = EntityKind::Task;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "citizen_id",
        "title",
        "created_at",
        "due",
        "assignee",
        "status",
        "archived",
    ];
    const TEXT_FIELDS: &'static [&'static str] = &["title"];

    fn record_id(&self) -> uuid::Uuid {
        self.id.0
    }
    fn key_scope(&self) -> KeyScope {
        KeyScope::Citizen(self.citizen_id)
    }
    fn projection(&self) -> Projection {
        let due = self
            .due
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
        Projection {
            citizen_id: Some(self.citizen_id),
            site_id: None,
            sort_key: due.unwrap_or_default(),
            archived: self.archived,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn due_date_before_creation_is_rejected() {
        let created = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let mut t = Task {
            id: TaskId::new(),
            citizen_id: CitizenId::new(),
            title: "Ring til gældsrådgivning".into(),
            created_at: created,
            due: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
            assignee: None,
            status: TaskStatus::Open,
            archived: false,
        };
        assert_eq!(t.validate(), Err(ValidationError::DueBeforeCreation));
        t.due = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert!(t.validate().is_ok());
        t.title = " ".into();
        assert_eq!(t.validate(), Err(ValidationError::Blank { field: "title" }));
    }
}

super::redacted_debug!(Task);
