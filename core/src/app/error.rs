//! The one error shape the screens see: a stable code to translate, plus details they need
//! (which field, how long to wait). Messages come from the library errors, which never carry
//! personal data, so they are safe to show and to log.

use crate::crypto::WeakPassphrase;
use crate::domain::ValidationError;
use crate::store::StoreError;
use crate::sync::{SyncError, TransportError};
use serde::Serialize;

/// What went wrong, as a code the UI translates (`da`/`en`); stable across versions.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The store is locked: show the lock screen.
    Locked,
    /// No store yet: show first run.
    NotSetUp,
    /// First run was already completed on this device.
    AlreadySetUp,
    WrongPin,
    /// Too many wrong attempts: wait `retry_after_ms`.
    BackOff,
    /// The keys were destroyed after too many wrong attempts: wipe and enrol again.
    Destroyed,
    /// The PIN or passphrase is too short.
    WeakPin,
    /// A field broke a rule; `field` names it.
    Invalid,
    NotFound,
    /// The worker's role does not allow this action.
    NotAllowed,
    BadServerAddress,
    /// A scanned QR code or an opened link is not a Feltbog enrolment.
    ForeignCode,
    /// A Feltbog enrolment whose address or code is damaged.
    DamagedCode,
    /// The server refused the enrolment code (unknown, used or expired).
    EnrolmentRefused,
    /// The server could not be reached.
    Offline,
    /// The server revoked this device or its worker.
    Revoked,
    UpdateRequired,
    /// Something unexpected; the message says what (never personal data).
    Internal,
}

/// An error as the screens receive it.
#[derive(Clone, Debug, Serialize, thiserror::Error)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[error("{message}")]
pub struct AppError {
    pub code: ErrorCode,
    /// English description, for logs and as a fallback; the UI shows its own text per code.
    pub message: String,
    /// The field a validation error is about (e.g. `note`, `anonymous.count`).
    pub field: Option<String>,
    #[cfg_attr(feature = "ts", ts(type = "number | null"))]
    pub retry_after_ms: Option<u64>,
    pub attempts_left: Option<u32>,
}

impl AppError {
    /// An error with only a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            field: None,
            retry_after_ms: None,
            attempts_left: None,
        }
    }

    /// A validation error about `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> AppError {
        AppError {
            field: Some(field.to_owned()),
            ..AppError::new(ErrorCode::Invalid, message)
        }
    }
}

fn validation_field(e: &ValidationError) -> Option<&'static str> {
    match e {
        ValidationError::Required { field }
        | ValidationError::TooLong { field, .. }
        | ValidationError::Blank { field }
        | ValidationError::OutOfRange { field, .. }
        | ValidationError::TooMany { field, .. }
        | ValidationError::EndsBeforeStart { field }
        | ValidationError::UnknownItem { field } => Some(field),
        ValidationError::EndingWithoutEnd => Some("courses.ending"),
        ValidationError::InvalidCpr(_) | ValidationError::CprBirthYearMismatch => Some("cpr"),
        ValidationError::CitizenNeedsAliasOrName => Some("alias"),
        ValidationError::VisitNeedsCitizenOrAnonymous
        | ValidationError::VisitHasCitizenAndAnonymous => Some("citizen_id"),
        ValidationError::DueBeforeCreation => Some("due"),
    }
}

impl From<ValidationError> for AppError {
    fn from(e: ValidationError) -> AppError {
        AppError {
            field: validation_field(&e).map(str::to_owned),
            ..AppError::new(ErrorCode::Invalid, e.to_string())
        }
    }
}

impl From<WeakPassphrase> for AppError {
    fn from(e: WeakPassphrase) -> AppError {
        AppError {
            field: Some("pin".to_owned()),
            ..AppError::new(ErrorCode::WeakPin, e.to_string())
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        let message = e.to_string();
        match e {
            StoreError::Locked => AppError::new(ErrorCode::Locked, message),
            StoreError::NotFound => AppError::new(ErrorCode::NotSetUp, message),
            StoreError::AlreadyExists => AppError::new(ErrorCode::AlreadySetUp, message),
            StoreError::WrongPassphrase { attempts_left } => AppError {
                attempts_left: Some(attempts_left),
                ..AppError::new(ErrorCode::WrongPin, message)
            },
            StoreError::BackOff { retry_after_ms } => AppError {
                retry_after_ms: Some(retry_after_ms),
                ..AppError::new(ErrorCode::BackOff, message)
            },
            StoreError::Destroyed => AppError::new(ErrorCode::Destroyed, message),
            StoreError::NewerSchema { .. } => AppError::new(ErrorCode::UpdateRequired, message),
            StoreError::RecordNotFound { .. }
            | StoreError::KeyDestroyed
            | StoreError::SetAsideNotFound => AppError::new(ErrorCode::NotFound, message),
            StoreError::Validation(v) => v.into(),
            StoreError::InvalidValue { field } => AppError::invalid(&field, message),
            _ => AppError::new(ErrorCode::Internal, message),
        }
    }
}

impl From<SyncError> for AppError {
    fn from(e: SyncError) -> AppError {
        let message = e.to_string();
        match e {
            SyncError::Store(s) => s.into(),
            SyncError::NotEnrolled => AppError::new(ErrorCode::NotSetUp, message),
            SyncError::Unauthorized | SyncError::Revoked => {
                AppError::new(ErrorCode::Revoked, message)
            }
            SyncError::UpdateRequired => AppError::new(ErrorCode::UpdateRequired, message),
            // No answer, or not the server's (a captive portal's login page, say).
            SyncError::Transport(TransportError::Unreachable(_) | TransportError::Decode(_)) => {
                AppError::new(ErrorCode::Offline, "server unreachable")
            }
            SyncError::Transport(TransportError::Refused {
                code: Some(crate::protocol::ErrorCode::EnrolmentRefused),
                ..
            }) => AppError::new(ErrorCode::EnrolmentRefused, message),
            SyncError::Transport(_) => AppError::new(ErrorCode::Internal, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_name_their_field_and_never_the_value() {
        let e: AppError = ValidationError::TooLong {
            field: "note",
            max: 10,
            actual: 12,
        }
        .into();
        assert_eq!(e.code, ErrorCode::Invalid);
        assert_eq!(e.field.as_deref(), Some("note"));
        let e: AppError = StoreError::WrongPassphrase { attempts_left: 3 }.into();
        assert_eq!((e.code, e.attempts_left), (ErrorCode::WrongPin, Some(3)));
        let e: AppError = SyncError::Transport(TransportError::Unreachable(
            "http://10.0.0.1:1/ refused".into(),
        ))
        .into();
        assert_eq!(e.code, ErrorCode::Offline);
        assert!(!e.message.contains("10.0.0.1"), "{}", e.message);
    }
}
