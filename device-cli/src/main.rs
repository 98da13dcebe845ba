//! `feltbog-device`: a thin command-line front over `feltbog_core::store`.
//!
//! Each command parses its arguments, calls the store, and prints. Business rules stay in core.
#![forbid(unsafe_code)]

mod cli;
mod input;
mod output;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cli::{CitizenCommand, Cli, Command, InitArgs, VisitCommand};
use feltbog_core::crypto::KdfParams;
use feltbog_core::domain::ConflictId;
use feltbog_core::domain::{
    AnonymousContact, Citizen, CitizenId, Cpr, EntityKind, Site, SiteLogEntry, Task, Visit,
    WorkerId,
};
use feltbog_core::keystore::NoPlatformSecret;
use feltbog_core::store::{CreateOptions, ListQuery, LockoutPolicy, Resolution, Store};
use feltbog_core::sync::{self, Retry, http::HttpTransport};
use input::Input;
use output::Out;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let cli = Cli::parse();
    let out = Out { json: cli.json };
    if let Err(err) = run(cli, &out) {
        eprintln!("feltbog-device: {}", describe(&err));
        std::process::exit(1);
    }
}

/// The error and its causes, skipping a cause that the message before it already quotes.
fn describe(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn open_locked(cli: &Cli) -> Result<Store> {
    Store::open(&cli.store, Arc::new(NoPlatformSecret))
        .with_context(|| format!("cannot open {}", cli.store.display()))
}

fn open_unlocked(cli: &Cli, input: &mut Input) -> Result<Store> {
    let mut store = open_locked(cli)?;
    store.unlock(&input.passphrase("FELTBOG_PASSPHRASE")?)?;
    Ok(store)
}

fn run(cli: Cli, out: &Out) -> Result<()> {
    let mut input = Input::stdin();
    match &cli.command {
        Command::Init(args) => init(&cli, args, &mut input, out),
        Command::Unlock => {
            let mut store = open_locked(&cli)?;
            let report = store.unlock(&input.passphrase("FELTBOG_PASSPHRASE")?)?;
            out.unlock(&report)
        }
        Command::Status => out.status(&open_locked(&cli)?),
        Command::ChangePassphrase => {
            let mut store = open_unlocked(&cli, &mut input)?;
            let current = input.last_passphrase().context("no current passphrase")?;
            let new = input.passphrase("FELTBOG_NEW_PASSPHRASE")?;
            store.change_passphrase(&current, &new)?;
            out.message("Passphrase changed.")
        }
        Command::Citizen(cmd) => citizen(&cli, cmd, &mut input, out),
        Command::Visit(cmd) => visit(&cli, cmd, &mut input, out),
        Command::Outbox => out.outbox(&open_unlocked(&cli, &mut input)?.outbox()?),
        Command::Import => import(&cli, &mut input, out),
        Command::Enrol { server, code } => {
            let mut store = open_unlocked(&cli, &mut input)?;
            let transport = HttpTransport::new(server)?;
            let response = sync::enrol(&mut store, &transport, server, code)?;
            out.message(&format!(
                "Enrolled: worker {}, team {}. Run `feltbog-device sync`.",
                response.worker_id, response.team_id
            ))
        }
        Command::Sync { attempts } => {
            let mut store = open_unlocked(&cli, &mut input)?;
            let url = store
                .enrolment()?
                .context("this device is not enrolled: run `feltbog-device enrol`")?
                .server_url;
            let transport = HttpTransport::new(&url)?;
            let retry = Retry {
                attempts: (*attempts).max(1),
                ..Retry::default()
            };
            let result = sync::sync_now(&mut store, &transport, retry, &mut |p| {
                if p.more {
                    eprintln!("pulled {} changes, more to come…", p.pulled);
                }
            });
            if let Err(sync::SyncError::Revoked) = result {
                return Err(erase_revoked(store, &cli.store));
            }
            out.sync_report(&result?, &store.sync_status()?)
        }
        Command::RotateToken => {
            let mut store = open_unlocked(&cli, &mut input)?;
            let url = store
                .enrolment()?
                .context("this device is not enrolled: run `feltbog-device enrol`")?
                .server_url;
            match sync::rotate_token(&mut store, &HttpTransport::new(&url)?) {
                Err(sync::SyncError::Revoked) => return Err(erase_revoked(store, &cli.store)),
                result => result?,
            }
            eprintln!("token rotated");
            Ok(())
        }
        Command::Conflicts { all } => {
            out.conflicts(&open_unlocked(&cli, &mut input)?.conflicts(*all)?)
        }
        Command::Resolve { id, keep, merged } => {
            let mut store = open_unlocked(&cli, &mut input)?;
            let resolution = match (keep.as_deref(), merged) {
                (Some("mine"), _) => Resolution::KeepMine,
                (Some(_), _) => Resolution::KeepTheirs,
                (None, Some(text)) => Resolution::Merged(text.clone().into()),
                (None, None) => bail!("say --keep mine, --keep theirs or --merged TEXT"),
            };
            store.resolve_conflict(ConflictId(*id), resolution)?;
            out.message("Conflict resolved; the choice syncs like any edit.")
        }
        Command::Dismiss { id } => {
            open_unlocked(&cli, &mut input)?.dismiss_conflict(ConflictId(*id))?;
            out.message("Notice dismissed.")
        }
    }
}

/// The server revoked this device or its worker: erase the store (keys overwritten first, then
/// the files), as the app does, and say so.
fn erase_revoked(store: Store, path: &std::path::Path) -> anyhow::Error {
    let erased = (|| -> Result<()> {
        store.destroy()?;
        feltbog_core::store::remove_files(path)?;
        Ok(())
    })();
    match erased {
        Ok(()) => anyhow::anyhow!(
            "this device's access was revoked on the server; its store has been erased"
        ),
        Err(e) => e.context("this device's access was revoked, but erasing its store failed"),
    }
}

fn init(cli: &Cli, args: &InitArgs, input: &mut Input, out: &Out) -> Result<()> {
    let (kdf, estimate) = match (args.kdf_memory_kib, args.kdf_iterations) {
        (Some(memory_kib), Some(iterations)) => (
            KdfParams {
                memory_kib,
                iterations,
                parallelism: 1,
            },
            None,
        ),
        _ => {
            let (params, took) = KdfParams::calibrate(Duration::from_millis(args.kdf_target_ms))?;
            (params, Some(took))
        }
    };
    let passphrase = input.passphrase("FELTBOG_PASSPHRASE")?;
    if let Some(dir) = cli.store.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let options = CreateOptions {
        kdf,
        lockout: LockoutPolicy {
            max_attempts: args.max_attempts,
            ..LockoutPolicy::default()
        },
        platform: Arc::new(NoPlatformSecret),
        device_id: None,
    };
    let started = std::time::Instant::now();
    let store = Store::create(&cli.store, &passphrase, &options)?;
    out.created(&store, &kdf, estimate, started.elapsed())
}

fn citizen(cli: &Cli, cmd: &CitizenCommand, input: &mut Input, out: &Out) -> Result<()> {
    let mut store = open_unlocked(cli, input)?;
    match cmd {
        CitizenCommand::Add(a) => {
            let mut c = Citizen::with_alias("");
            c.alias = a.alias.clone().map(Into::into);
            c.full_name = a.name.clone().map(Into::into);
            c.cpr = a
                .cpr
                .as_deref()
                .map(Cpr::parse)
                .transpose()
                .context("invalid --cpr")?;
            c.birth_year = a.birth_year;
            c.phone = a.phone.clone().map(Into::into);
            c.housing = a.housing;
            c.tags = a.tags.iter().cloned().collect();
            let saved = store.save(&c)?;
            out.saved(EntityKind::Citizen, c.id.0, saved)
        }
        CitizenCommand::List { archived } => out.citizens(&store.list::<Citizen>(&ListQuery {
            include_archived: *archived,
            ..Default::default()
        })?),
        CitizenCommand::Show { id } => match store.get::<Citizen>(*id)? {
            Some(c) => out.record(&c),
            None => bail!("no such citizen"),
        },
        CitizenCommand::Search { query, archived } => {
            out.citizens(&store.search_citizens(query, *archived)?)
        }
        CitizenCommand::Archive { id, undo } => {
            let saved = store.set_archived::<Citizen>(*id, !undo)?;
            out.saved(EntityKind::Citizen, *id, saved)
        }
        CitizenCommand::Erase { id } => {
            let removed = store.erase_citizen(CitizenId(*id))?;
            out.message(&format!(
                "Erased {removed} records and destroyed the citizen's key."
            ))
        }
    }
}

fn visit(cli: &Cli, cmd: &VisitCommand, input: &mut Input, out: &Out) -> Result<()> {
    let mut store = open_unlocked(cli, input)?;
    match cmd {
        VisitCommand::Add(a) => {
            let enrolled = store.enrolment()?.map(|e| e.worker_id);
            let author = a.worker.or(enrolled).unwrap_or_else(uuid::Uuid::nil);
            let mut v = Visit::with_citizen(CitizenId::new(), WorkerId(author), a.kind);
            v.citizen_id = a.citizen.map(CitizenId);
            v.anonymous = a.anonymous.map(|count| AnonymousContact {
                count,
                description: a.description.clone().into(),
            });
            v.themes = a.themes.iter().copied().collect();
            v.referrals = a.referrals.iter().copied().collect();
            v.note = a.note.clone().into();
            v.place = a.place.clone().map(Into::into);
            v.duration_minutes = a.duration;
            v.wellbeing = a.wellbeing;
            if let Some(citizen) = v.citizen_id
                && store.get::<Citizen>(citizen.0)?.is_none()
            {
                bail!("no such citizen on this device");
            }
            let saved = store.save(&v)?;
            out.saved(EntityKind::Visit, v.id.0, saved)
        }
        VisitCommand::List { citizen, archived } => {
            out.visits(&store.list::<Visit>(&ListQuery {
                citizen: citizen.map(CitizenId),
                include_archived: *archived,
                ..Default::default()
            })?)
        }
        VisitCommand::Show { id } => match store.get::<Visit>(*id)? {
            Some(v) => out.record(&v),
            None => bail!("no such visit"),
        },
    }
}

/// One line of `import` input.
#[derive(serde::Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
enum ImportLine {
    Citizen(Citizen),
    Visit(Visit),
    Task(Task),
    Site(Site),
    SiteLogEntry(SiteLogEntry),
}

fn import(cli: &Cli, input: &mut Input, out: &Out) -> Result<()> {
    let mut store = open_unlocked(cli, input)?;
    let (mut saved, mut failed) = (0u64, 0u64);
    let mut line_no = 0;
    while let Some(line) = input.next_line()? {
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        // serde's messages can quote the input; report only where and what kind of problem.
        let parsed: ImportLine = match serde_json::from_str(&line) {
            Ok(p) => p,
            Err(e) => {
                eprintln!(
                    "line {line_no}: not a valid record ({:?} error at column {})",
                    e.classify(),
                    e.column()
                );
                failed += 1;
                continue;
            }
        };
        let result = match &parsed {
            ImportLine::Citizen(r) => store.save(r).map(|s| (EntityKind::Citizen, r.id.0, s)),
            ImportLine::Visit(r) => store.save(r).map(|s| (EntityKind::Visit, r.id.0, s)),
            ImportLine::Task(r) => store.save(r).map(|s| (EntityKind::Task, r.id.0, s)),
            ImportLine::Site(r) => store.save(r).map(|s| (EntityKind::Site, r.id.0, s)),
            ImportLine::SiteLogEntry(r) => {
                store.save(r).map(|s| (EntityKind::SiteLogEntry, r.id.0, s))
            }
        };
        match result {
            Ok((kind, id, s)) => {
                saved += 1;
                // Printed only after the commit returned: a caller may rely on every printed id.
                out.saved(kind, id, s)?;
            }
            Err(e) => {
                eprintln!("line {line_no}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} lines were not saved", saved + failed);
    }
    Ok(())
}
