//! Command-line arguments. Passphrases never come from argv (visible in `ps` and shell
//! history): they come from `FELTBOG_PASSPHRASE` or the first line of standard input.

use clap::{Args, Parser, Subcommand};
use feltbog_core::domain::{HousingSituation, Referral, Theme, VisitKind};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use uuid::Uuid;

/// Feltbog's device store from the command line: for scripting, support and tests.
#[derive(Parser, Debug)]
#[command(name = "feltbog-device", version, about)]
pub struct Cli {
    /// The store file.
    #[arg(
        long,
        env = "FELTBOG_STORE",
        default_value = "feltbog-data/device.feltbog",
        global = true
    )]
    pub store: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new encrypted store (asks for a passphrase or PIN of at least 6 characters).
    Init(InitArgs),
    /// Check the passphrase and report how long unlocking takes.
    Unlock,
    /// Store facts that need no passphrase: device id, schema, key-derivation cost, counts.
    Status,
    /// Re-wrap the keys under a new passphrase (current from FELTBOG_PASSPHRASE or stdin line 1,
    /// new from FELTBOG_NEW_PASSPHRASE or the next stdin line).
    ChangePassphrase,
    /// Citizens.
    #[command(subcommand)]
    Citizen(CitizenCommand),
    /// Visits and contacts.
    #[command(subcommand)]
    Visit(VisitCommand),
    /// Mutations waiting for sync.
    Outbox,
    /// Enrol this device with a server, using a one-time code from the administrator.
    Enrol {
        /// The server, e.g. http://127.0.0.1:8787.
        #[arg(long, env = "FELTBOG_SERVER")]
        server: String,
        /// The enrolment code (XXXX-XXXX-XXXX-XXXX).
        #[arg(long, env = "FELTBOG_ENROLMENT_CODE")]
        code: String,
    },
    /// Push the outbox and pull the server's changes until both are done.
    Sync {
        /// Network attempts per round trip before giving up.
        #[arg(long, default_value_t = 4)]
        attempts: u32,
    },
    /// Replace this device's token with a fresh one (the old one stops working at once).
    RotateToken,
    /// Conflicts waiting for a decision (--all: resolved and dismissed ones too).
    Conflicts {
        #[arg(long)]
        all: bool,
    },
    /// Resolve a conflict: keep mine, keep theirs, or a merged text.
    Resolve {
        id: Uuid,
        #[arg(long, value_parser = ["mine", "theirs"], conflicts_with = "merged", required_unless_present = "merged")]
        keep: Option<String>,
        /// A merged value (text for notes).
        #[arg(long)]
        merged: Option<String>,
    },
    /// Dismiss a notice (the later edit stands).
    Dismiss { id: Uuid },
    /// Save records from JSON lines on stdin (`{"kind":"citizen","record":{...}}`); prints one
    /// line per record only after it is durably saved.
    Import,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Target time of one key derivation; Argon2id passes are calibrated to it on this machine.
    #[arg(long, default_value_t = 500)]
    pub kdf_target_ms: u64,
    /// Use this Argon2id memory (KiB) instead of calibrating (minimum 19456).
    #[arg(long, requires = "kdf_iterations")]
    pub kdf_memory_kib: Option<u32>,
    /// Use this many Argon2id passes instead of calibrating (minimum 2).
    #[arg(long, requires = "kdf_memory_kib")]
    pub kdf_iterations: Option<u32>,
    /// Wrong attempts before the keys are destroyed.
    #[arg(long, default_value_t = 10)]
    pub max_attempts: u32,
}

#[derive(Subcommand, Debug)]
pub enum CitizenCommand {
    /// Add a citizen.
    Add(CitizenAdd),
    /// List citizens (newest first).
    List {
        #[arg(long)]
        archived: bool,
    },
    /// Show one citizen.
    Show { id: Uuid },
    /// Search alias, name, CPR, phone and tags.
    Search {
        query: String,
        #[arg(long)]
        archived: bool,
    },
    /// Archive a citizen (or bring one back with --undo).
    Archive {
        id: Uuid,
        #[arg(long)]
        undo: bool,
    },
    /// Erase a citizen and everything about them from this device (destroys their key).
    Erase { id: Uuid },
}

#[derive(Args, Debug)]
pub struct CitizenAdd {
    #[arg(long)]
    pub alias: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// DDMMYY-SSSS.
    #[arg(long)]
    pub cpr: Option<String>,
    #[arg(long)]
    pub birth_year: Option<i32>,
    #[arg(long)]
    pub phone: Option<String>,
    /// street, shelter, alternative_housing, stairwell_community, own_rental, hospital_or_prison, other
    #[arg(long, value_parser = snake_case::<HousingSituation>, default_value = "other")]
    pub housing: HousingSituation,
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum VisitCommand {
    /// Log a visit or contact.
    Add(VisitAdd),
    /// List visits (newest first).
    List {
        #[arg(long)]
        citizen: Option<Uuid>,
        #[arg(long)]
        archived: bool,
    },
    /// Show one visit.
    Show { id: Uuid },
}

#[derive(Args, Debug)]
pub struct VisitAdd {
    /// The citizen visited.
    #[arg(
        long,
        conflicts_with = "anonymous",
        required_unless_present = "anonymous"
    )]
    pub citizen: Option<Uuid>,
    /// An anonymous contact: how many people.
    #[arg(long)]
    pub anonymous: Option<u16>,
    /// Short description of an anonymous contact.
    #[arg(long, default_value = "")]
    pub description: String,
    /// home_visit, street_contact, contact_centre, site, phone, escort_to_appointment
    #[arg(long, value_parser = snake_case::<VisitKind>)]
    pub kind: VisitKind,
    #[arg(long = "theme", value_parser = snake_case::<Theme>)]
    pub themes: Vec<Theme>,
    #[arg(long = "referral", value_parser = snake_case::<Referral>)]
    pub referrals: Vec<Referral>,
    #[arg(long, default_value = "")]
    pub note: String,
    #[arg(long)]
    pub place: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub duration: u16,
    /// 1–10, if the citizen wanted to give one.
    #[arg(long)]
    pub wellbeing: Option<u8>,
    /// The worker logging the visit; defaults to the enrolled worker. The server takes the
    /// author from authentication whatever is given here.
    #[arg(long, env = "FELTBOG_WORKER")]
    pub worker: Option<Uuid>,
}

/// Parses a domain enum from its snake_case wire name; the error lists the valid names.
fn snake_case<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}
