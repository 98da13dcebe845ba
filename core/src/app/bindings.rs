//! The TypeScript declarations of every type the screens exchange with Rust, generated from the
//! Rust types themselves (ts-rs) into `ui/src/lib/bindings.ts`. A test fails when the checked-in
//! file is stale; `FELTBOG_UPDATE_BINDINGS=1 cargo test -p feltbog-core --features http,ts
//! bindings` rewrites it.

use super::{forms, views};
use ts_rs::{Config, TS};

macro_rules! declare {
    ($cfg:expr, $out:expr, $($ty:ty),+ $(,)?) => {
        $( $out.push(format!("export {}", <$ty as TS>::decl($cfg))); )+
    };
}

/// The whole bindings file.
pub fn typescript() -> String {
    let cfg = Config::new().with_large_int("number");
    let mut decls: Vec<String> = Vec::new();
    use crate::domain::*;
    declare!(
        &cfg,
        decls,
        // Enums of the domain.
        HousingSituation,
        ConsentStatus,
        ConsentMethod,
        GoalStatus,
        VisitKind,
        Theme,
        Referral,
        TaskStatus,
        SiteKind,
        SiteLogKind,
        ConflictStatus,
        EntityKind,
        CourseKind,
        CourseEnding,
        ReferralOutcome,
        Relation,
        ConsentPurpose,
        // The pathway's items (issue 17), as the citizen page shows them and its form sends them.
        HousingChange,
        Course,
        CourseReview,
        ReferralCase,
        NetworkPerson,
        PurposeConsent,
        crate::merge::ConflictKind,
        crate::access::Role,
        crate::access::Offer,
        // The app.
        super::Phase,
        super::Language,
        super::Settings,
        super::SyncState,
        super::SyncProgress,
        super::SyncBar,
        super::AppState,
        super::ErrorCode,
        super::AppError,
        // What screens show.
        views::Me,
        views::CitizenSummary,
        views::ConsentView,
        views::GoalView,
        views::VisitView,
        views::TaskView,
        views::CitizenDetail,
        views::PathwayView,
        views::KeptHome,
        views::ConsentItemView,
        views::WellbeingPoint,
        views::Today,
        views::SiteView,
        views::SiteLogView,
        views::ConflictView,
        views::SaveMark,
        views::RefusedBecause,
        views::FieldText,
        views::SetAsideView,
        views::Colleague,
        views::DraftView,
        crate::protocol::EnrolmentLink,
        // What screens send.
        forms::FirstRunInput,
        forms::ConsentInput,
        forms::GoalInput,
        forms::CitizenInput,
        forms::FollowUpInput,
        forms::VisitInput,
        forms::TaskInput,
        forms::TaskEdit,
        forms::VisitEdit,
        forms::HandoverInput,
        forms::SiteInput,
        forms::SiteLogInput,
        forms::ConflictChoice,
        forms::PathwayItem,
        forms::PathwayEdit,
    );
    let mut out = String::from(
        "// Generated from the Rust types by `core/src/app/bindings.rs` (ts-rs). Do not edit:\n\
         // run `FELTBOG_UPDATE_BINDINGS=1 cargo test -p feltbog-core --features http,ts bindings`.\n\n",
    );
    for d in decls {
        out.push_str(&d);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// What each role is offered ([`crate::access::Offer::of`]), as JSON for the UI's browser-test
/// backend: the test double reads the role table from Rust instead of keeping a copy.
pub fn offers_json() -> String {
    let offers: std::collections::BTreeMap<_, _> = crate::access::Role::ALL
        .iter()
        .map(|r| (*r, crate::access::Offer::of(*r)))
        .collect();
    let mut text = serde_json::to_string_pretty(&offers).expect("offers serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Fails when the checked-in `relative` file differs from `fresh`; with
    /// `FELTBOG_UPDATE_BINDINGS` set it writes it first.
    fn generated_file_is_current(relative: &str, fresh: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
        if std::env::var_os("FELTBOG_UPDATE_BINDINGS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, fresh).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == fresh,
            "{relative} is stale: run \
             `FELTBOG_UPDATE_BINDINGS=1 cargo test -p feltbog-core --features http,ts bindings`"
        );
    }

    #[test]
    fn the_browser_tests_role_table_is_cores() {
        generated_file_is_current("../ui/tests/browser/offers.json", &super::offers_json());
    }

    #[test]
    fn checked_in_bindings_are_current() {
        generated_file_is_current("../ui/src/lib/bindings.ts", &super::typescript());
    }
}
