//! The commands the UI may call. Each one only parses its arguments, calls `feltbog_core::app`,
//! and hands back the result or the error's stable code: no rule lives here. They run on
//! Tauri's async pool (`async`), never on the main thread, because unlocking derives a key and
//! every read decrypts.
//!
//! Arguments keep their snake_case names (`rename_all`), the same as the generated TypeScript
//! types in `ui/src/lib/bindings.ts`.

use feltbog_core::app::forms::{
    CitizenInput, ConflictChoice, FirstRunInput, HandoverInput, PathwayEdit, SiteInput,
    SiteLogInput, TaskEdit, TaskInput, VisitEdit, VisitInput,
};
use feltbog_core::app::views::{
    CitizenDetail, CitizenSummary, Colleague, ConflictView, DraftView, SetAsideView, SiteLogView,
    SiteView, TaskView, Today,
};
use feltbog_core::app::{App, AppError, AppState, ErrorCode, Settings, SyncBar};
use feltbog_core::domain::TaskStatus;
use feltbog_core::protocol::EnrolmentLink;
use std::sync::Arc;
use tauri::State;
use uuid::Uuid;

type Shared<'a> = State<'a, Arc<App>>;
type Answer<T> = Result<T, AppError>;

/// Runs `f` on Tauri's blocking pool.
async fn blocking<T: Send + 'static>(
    app: &Shared<'_>,
    f: impl FnOnce(&App) -> Answer<T> + Send + 'static,
) -> Answer<T> {
    let app = Arc::clone(app);
    tauri::async_runtime::spawn_blocking(move || f(&app))
        .await
        // A panic's message could quote anything: say only that it happened.
        .map_err(|_| AppError::new(ErrorCode::Internal, "the command failed unexpectedly"))?
}

#[tauri::command(rename_all = "snake_case")]
pub async fn app_state(app: Shared<'_>) -> Answer<AppState> {
    blocking(&app, move |a| a.checked_state()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn first_run(app: Shared<'_>, input: FirstRunInput) -> Answer<AppState> {
    blocking(&app, move |a| a.first_run(&input)).await
}

/// Reads an enrolment QR code's text, or (`text` = `None`) the `feltbog-enrol:` link the app
/// was opened with, for the first-run screen's fields.
#[tauri::command(rename_all = "snake_case")]
pub async fn enrolment_link(
    app: Shared<'_>,
    text: Option<String>,
) -> Answer<Option<EnrolmentLink>> {
    blocking(&app, move |a| a.enrolment_link(text.as_deref())).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn unlock(app: Shared<'_>, pin: String) -> Answer<AppState> {
    blocking(&app, move |a| a.unlock(&pin)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn lock(app: Shared<'_>) -> Answer<()> {
    blocking(&app, move |a| {
        a.lock();
        Ok(())
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn touch(app: Shared<'_>) -> Answer<()> {
    blocking(&app, move |a| {
        a.touch();
        Ok(())
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn today(app: Shared<'_>) -> Answer<Today> {
    blocking(&app, move |a| a.today()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn caseload(app: Shared<'_>, search: String) -> Answer<Vec<CitizenSummary>> {
    blocking(&app, move |a| a.caseload(&search)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn citizen(app: Shared<'_>, id: Uuid) -> Answer<CitizenDetail> {
    blocking(&app, move |a| a.citizen(id)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_citizen(
    app: Shared<'_>,
    input: CitizenInput,
    started_from: Option<CitizenInput>,
) -> Answer<Uuid> {
    blocking(&app, move |a| a.save_citizen(&input, started_from.as_ref())).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_visit(app: Shared<'_>, input: VisitInput) -> Answer<Uuid> {
    blocking(&app, move |a| a.save_visit(&input)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn tasks(app: Shared<'_>, include_closed: bool) -> Answer<Vec<TaskView>> {
    blocking(&app, move |a| a.tasks(include_closed)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_task(app: Shared<'_>, input: TaskInput) -> Answer<Uuid> {
    blocking(&app, move |a| a.save_task(&input)).await
}

/// One edit of a citizen's pathway: an item saved or removed, or the circumstances.
#[tauri::command(rename_all = "snake_case")]
pub async fn save_pathway(app: Shared<'_>, citizen_id: Uuid, edit: PathwayEdit) -> Answer<()> {
    blocking(&app, move |a| a.save_pathway(citizen_id, &edit)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn set_task_status(app: Shared<'_>, id: Uuid, status: TaskStatus) -> Answer<()> {
    blocking(&app, move |a| a.set_task_status(id, status)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn edit_visit(
    app: Shared<'_>,
    id: Uuid,
    edited: VisitEdit,
    started_from: VisitEdit,
) -> Answer<()> {
    blocking(&app, move |a| a.edit_visit(id, &edited, &started_from)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn link_visit(app: Shared<'_>, id: Uuid, citizen_id: Uuid) -> Answer<Uuid> {
    blocking(&app, move |a| a.link_visit(id, citizen_id)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn edit_task(
    app: Shared<'_>,
    id: Uuid,
    edited: TaskEdit,
    started_from: TaskEdit,
) -> Answer<()> {
    blocking(&app, move |a| a.edit_task(id, &edited, &started_from)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn colleagues(app: Shared<'_>) -> Answer<Vec<Colleague>> {
    blocking(&app, move |a| a.colleagues()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn hand_over(app: Shared<'_>, input: HandoverInput) -> Answer<()> {
    blocking(&app, move |a| a.hand_over(&input)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn sites(app: Shared<'_>) -> Answer<Vec<SiteView>> {
    blocking(&app, move |a| a.sites()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_site(app: Shared<'_>, input: SiteInput) -> Answer<Uuid> {
    blocking(&app, move |a| a.save_site(&input)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn site_log(app: Shared<'_>, site_id: Uuid) -> Answer<Vec<SiteLogView>> {
    blocking(&app, move |a| a.site_log(site_id)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_site_log(app: Shared<'_>, input: SiteLogInput) -> Answer<Uuid> {
    blocking(&app, move |a| a.save_site_log(&input)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn conflicts(app: Shared<'_>) -> Answer<Vec<ConflictView>> {
    blocking(&app, move |a| a.conflicts()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn resolve_conflict(app: Shared<'_>, id: Uuid, choice: ConflictChoice) -> Answer<()> {
    blocking(&app, move |a| a.resolve_conflict(id, &choice)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn set_aside(app: Shared<'_>) -> Answer<Vec<SetAsideView>> {
    blocking(&app, move |a| a.set_aside()).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn resend_set_aside(app: Shared<'_>, seq: u64) -> Answer<()> {
    blocking(&app, move |a| a.resend_set_aside(seq)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn copy_set_aside(app: Shared<'_>, seq: u64, citizen_id: Option<Uuid>) -> Answer<Uuid> {
    blocking(&app, move |a| a.copy_set_aside(seq, citizen_id)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn discard_set_aside(app: Shared<'_>, seq: u64) -> Answer<()> {
    blocking(&app, move |a| a.discard_set_aside(seq)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn save_draft(
    app: Shared<'_>,
    form: String,
    citizen_id: Option<Uuid>,
    content: serde_json::Value,
) -> Answer<()> {
    blocking(&app, move |a| a.save_draft(&form, citizen_id, &content)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn draft(app: Shared<'_>, form: String) -> Answer<Option<DraftView>> {
    blocking(&app, move |a| a.draft(&form)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn discard_draft(app: Shared<'_>, form: String) -> Answer<()> {
    blocking(&app, move |a| a.discard_draft(&form)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn sync_bar(app: Shared<'_>) -> Answer<SyncBar> {
    blocking(&app, move |a| Ok(a.sync_bar())).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn sync_now(app: Shared<'_>) -> Answer<SyncBar> {
    blocking(&app, move |a| {
        a.kick_sync();
        Ok(a.sync_bar())
    })
    .await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn set_settings(app: Shared<'_>, settings: Settings) -> Answer<Settings> {
    blocking(&app, move |a| a.set_settings(settings)).await
}

#[tauri::command(rename_all = "snake_case")]
pub async fn wipe(app: Shared<'_>, unsynced_shown: u32) -> Answer<AppState> {
    blocking(&app, move |a| a.wipe(unsynced_shown)).await
}
