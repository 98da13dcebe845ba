//! Tauri's build step: embeds the config, and generates one `allow-<command>` permission per
//! app command so the capability in `capabilities/default.json` can list exactly those.

fn main() {
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "app_state",
            "first_run",
            "enrolment_link",
            "unlock",
            "lock",
            "touch",
            "today",
            "caseload",
            "citizen",
            "save_citizen",
            "save_visit",
            "tasks",
            "save_task",
            "save_pathway",
            "set_task_status",
            "edit_visit",
            "link_visit",
            "edit_task",
            "colleagues",
            "hand_over",
            "sites",
            "save_site",
            "site_log",
            "save_site_log",
            "conflicts",
            "resolve_conflict",
            "set_aside",
            "resend_set_aside",
            "copy_set_aside",
            "discard_set_aside",
            "save_draft",
            "draft",
            "discard_draft",
            "sync_bar",
            "sync_now",
            "set_settings",
            "wipe",
        ]),
    ))
    .expect("tauri build step");
}
