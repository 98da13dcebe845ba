//! Feltbog's tablet app: the Tauri 2 shell around `feltbog_core::app`.
//!
//! The shell does three things only: it puts the store in the platform's app data directory,
//! exposes thin [`commands`], and runs the two background loops of the core app — the sync
//! loop (its bar is pushed to the UI as `sync` events) and the idle lock, which drops the keys
//! in Rust and then reloads the web view so nothing decrypted stays in the page.
#![forbid(unsafe_code)]

pub mod commands;

use feltbog_core::app::{App, AppConfig, Phase, Settings, SyncSchedule, SyncState};
use std::sync::Arc;
use std::time::Duration;
use tauri::{Emitter, Manager};

/// Environment variable: lock after this many seconds idle, whatever the settings say (kiosk
/// set-ups and the end-to-end tests, which cannot wait minutes).
pub const LOCK_AFTER_ENV: &str = "FELTBOG_LOCK_AFTER_SECS";
/// Seconds between syncs while unlocked, and between standing checks while locked
/// ([`App::check_standing`]); only ever shorter than the default minute (tests use a few).
pub const SYNC_EVERY_ENV: &str = "FELTBOG_SYNC_EVERY_SECS";

/// The sync schedule: the default, or every `FELTBOG_SYNC_EVERY_SECS` (1–60) and no longer
/// after failures.
fn schedule() -> SyncSchedule {
    let default = SyncSchedule::default();
    match std::env::var(SYNC_EVERY_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| (1..=default.every.as_secs()).contains(s))
    {
        Some(secs) => {
            let every = Duration::from_secs(secs);
            SyncSchedule {
                every,
                first_wait: default.first_wait.min(every),
                max_wait: every,
            }
        }
        None => default,
    }
}

/// How often the idle lock looks at the clock.
const LOCK_TICK: Duration = Duration::from_secs(1);

/// Registers every command on `builder`: shared by the app and its IPC tests.
pub fn with_commands<R: tauri::Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![
        commands::app_state,
        commands::first_run,
        commands::enrolment_link,
        commands::unlock,
        commands::lock,
        commands::touch,
        commands::today,
        commands::caseload,
        commands::citizen,
        commands::save_citizen,
        commands::save_visit,
        commands::tasks,
        commands::save_task,
        commands::save_pathway,
        commands::set_task_status,
        commands::edit_visit,
        commands::link_visit,
        commands::edit_task,
        commands::colleagues,
        commands::hand_over,
        commands::sites,
        commands::save_site,
        commands::site_log,
        commands::save_site_log,
        commands::conflicts,
        commands::resolve_conflict,
        commands::set_aside,
        commands::resend_set_aside,
        commands::copy_set_aside,
        commands::discard_set_aside,
        commands::save_draft,
        commands::draft,
        commands::discard_draft,
        commands::sync_bar,
        commands::sync_now,
        commands::set_settings,
        commands::wipe,
    ])
}

/// The app's configuration from its data directory and the environment.
pub fn config(data_dir: std::path::PathBuf) -> AppConfig {
    let mut config = AppConfig::new(data_dir);
    // Only ever shorter than the longest a user may choose: the variable cannot switch the
    // lock off.
    config.idle_lock_override = std::env::var(LOCK_AFTER_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s.min(u64::from(*Settings::LOCK_RANGE.end()))));
    config
}

/// Starts the background loops of `app`, reporting to the UI through `handle`.
pub fn start_loops<R: tauri::Runtime>(app: &Arc<App>, handle: &tauri::AppHandle<R>) {
    let (sync_app, sync_handle) = (Arc::clone(app), handle.clone());
    std::thread::Builder::new()
        .name("feltbog-sync".into())
        .spawn(move || {
            sync_app.run_sync_loop(schedule(), &|bar| {
                let _ = sync_handle.emit("sync", bar);
                if bar.state == SyncState::Revoked && sync_app.state().phase == Phase::FirstRun {
                    // Revoked: the store is gone. Reload so nothing of it stays on screen.
                    for webview in sync_handle.webview_windows().values() {
                        let _ = webview.eval("window.location.reload()");
                    }
                }
            });
        })
        .expect("spawn the sync thread");
    let (lock_app, lock_handle) = (Arc::clone(app), handle.clone());
    std::thread::Builder::new()
        .name("feltbog-idle-lock".into())
        .spawn(move || {
            lock_app.run_lock_loop(LOCK_TICK, &|| {
                let _ = lock_handle.emit("locked", ());
                for webview in lock_handle.webview_windows().values() {
                    let _ = webview.eval("window.location.reload()");
                }
            });
        })
        .expect("spawn the idle-lock thread");
}

/// Lets the first-run screen use the camera to read an enrolment QR code: WebKitGTK keeps
/// media streams off and refuses their permission requests unless the embedder says otherwise.
/// Only the app's own page is ever loaded (the CSP allows nothing else); a video-only request
/// is granted only while the app is at first run. Any other permission request (audio,
/// location, notifications) is refused.
#[cfg(target_os = "linux")]
fn allow_camera<R: tauri::Runtime>(window: &tauri::WebviewWindow<R>, app: &Arc<App>) {
    let app = Arc::clone(app);
    let _ = window.with_webview(move |webview| {
        use webkit2gtk::glib::prelude::Cast;
        use webkit2gtk::{
            PermissionRequestExt, SettingsExt, UserMediaPermissionRequest,
            UserMediaPermissionRequestExt, WebViewExt,
        };
        let view = webview.inner();
        if let Some(settings) = WebViewExt::settings(&view) {
            settings.set_enable_media_stream(true);
        }
        view.connect_permission_request(move |_, request| {
            match request.downcast_ref::<UserMediaPermissionRequest>() {
                Some(media)
                    if media.is_for_video_device()
                        && !media.is_for_audio_device()
                        && app.state().phase == Phase::FirstRun =>
                {
                    request.allow();
                }
                _ => request.deny(),
            }
            true
        });
    });
}

/// Runs the app.
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    with_commands(tauri::Builder::default())
        .plugin(tauri_plugin_deep_link::init())
        .setup(|tauri_app| {
            let dir = tauri_app.path().app_data_dir()?;
            let app = Arc::new(App::new(config(dir)));
            // Opened by a `feltbog-enrol:` link (an enrolment QR code read by another app, a
            // link in a mail): first run fills its fields from it. On Linux the link is the
            // only command-line argument.
            use tauri_plugin_deep_link::DeepLinkExt;
            let deep_link = tauri_app.deep_link();
            if let Some(url) = deep_link
                .get_current()
                .ok()
                .flatten()
                .and_then(|u| u.into_iter().next())
            {
                app.opened_with(url.as_str());
            }
            let opened = Arc::clone(&app);
            deep_link.on_open_url(move |event| {
                if let Some(url) = event.urls().first() {
                    opened.opened_with(url.as_str());
                }
            });
            start_loops(&app, tauri_app.handle());
            #[cfg(target_os = "linux")]
            for window in tauri_app.webview_windows().values() {
                allow_camera(window, &app);
            }
            tauri_app.manage(app);
            Ok(())
        })
        .build(tauri::generate_context!())
        .expect("the Tauri app failed to start")
        .run(|handle, event| {
            if let tauri::RunEvent::Exit = event
                && let Some(app) = handle.try_state::<Arc<App>>()
            {
                app.stop();
            }
        });
}
