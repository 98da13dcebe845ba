//! Supervisors' sign-in to the reports dashboard: a login name and a password the supervisor
//! sets with a one-time code from the administrator, stored as an Argon2id hash; sessions held
//! by an HttpOnly cookie, with a CSRF token for every change; back-off after failed attempts and
//! a lock-out after many. Every sign-in, refusal and sign-out is audited.
//!
//! Only supervisors sign in, and each request checks again that the worker is still an active
//! supervisor: a role change, a disabled worker or a new set-up code ends their sessions at once.
//! Password hashing runs outside the database lock ([`verify_password`]).

use crate::args;
use crate::audit::{self, Action, Entry};
use crate::identity::{self, IdentityError, Role};
use crate::storage::{Db, DbExt, Transact};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use uuid::Uuid;

/// Shortest and longest password accepted (characters).
pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 256;
/// How long a set-up code is valid.
pub const SETUP_TTL_MS: u64 = 72 * 60 * 60 * 1000;
/// A session ends after this long without a request, and at the latest after [`SESSION_MAX_MS`].
pub const SESSION_IDLE_MS: u64 = 30 * 60 * 1000;
pub const SESSION_MAX_MS: u64 = 12 * 60 * 60 * 1000;
/// Failed attempts before each further one must wait (1 s, doubling, at most 15 min).
pub const FREE_FAILURES: i64 = 3;
/// Failed attempts that lock the login for [`LOCK_OUT_MS`].
pub const LOCK_OUT_AFTER: i64 = 10;
pub const LOCK_OUT_MS: u64 = 60 * 60 * 1000;

/// Sign-in failures. The messages tell the user what to do and nothing about the account.
#[derive(Debug, thiserror::Error)]
pub enum WebAuthError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("audit: {0}")]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("only an active supervisor can sign in to the reports")]
    NotSupervisor,
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("the set-up code is unknown, used or expired")]
    CodeRefused,
    #[error("wrong login name or password")]
    Refused,
    /// Too many failed attempts: wait this long.
    #[error("too many failed attempts: wait {} seconds", .retry_after_ms.div_ceil(1000))]
    Wait { retry_after_ms: u64 },
    #[error("the password could not be hashed")]
    Hash,
}

/// A signed-in supervisor, as each request sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub worker_id: Uuid,
    pub name: String,
    /// The token a change must carry in `X-CSRF-Token`.
    pub csrf: String,
    /// The teams they read: their own and those they supervise.
    pub teams: Vec<Uuid>,
}

impl Session {
    /// The teams a report covers: `team` if they read it, or every team they read. `None`
    /// for a team they do not read (the request is refused, not narrowed).
    pub fn report_teams(&self, team: Option<Uuid>) -> Option<Vec<Uuid>> {
        match team {
            Some(team) => self.teams.contains(&team).then(|| vec![team]),
            None => Some(self.teams.clone()),
        }
    }
}

/// Gives an active supervisor a login name and a one-time code to set their password with
/// (again). An existing password and every session end: this is also how an administrator
/// unlocks a locked-out login. Run by [`crate::admin::web_access`], in its transaction with
/// the audit row.
pub fn issue_setup(
    conn: &dyn Db,
    worker: Uuid,
    login: &str,
    now_ms: u64,
) -> Result<String, WebAuthError> {
    let login = normalise_login(login)?;
    let role: Option<String> = conn.one(
        "SELECT role FROM workers WHERE id = ?1 AND active = 1",
        args![worker],
    )?;
    if role.as_deref() != Some(Role::Supervisor.as_str()) {
        return Err(WebAuthError::NotSupervisor);
    }
    let taken: bool = conn.value(
        "SELECT count(*) > 0 FROM web_logins WHERE login = ?1 AND worker_id != ?2",
        args![&login, worker],
    )?;
    if taken {
        return Err(WebAuthError::Invalid(
            "login name: another supervisor has it",
        ));
    }
    let code = identity::new_code()?;
    conn.execute(
        "INSERT INTO web_logins (worker_id, login, setup_hash, setup_expires_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (worker_id) DO UPDATE SET login = ?2, password_hash = NULL,
             setup_hash = ?3, setup_expires_ms = ?4, failures = 0, locked_until_ms = NULL",
        args![
            worker,
            login,
            identity::hash(&identity::normalise_code(&code)),
            (now_ms + SETUP_TTL_MS) as i64
        ],
    )?;
    end_sessions(conn, worker)?;
    Ok(code)
}

/// Sets the password with the one-time code (then spent). Returns the worker. Run in the
/// caller's writing transaction.
pub fn set_up(
    conn: &dyn Db,
    login: &str,
    code: &str,
    password: &str,
    now_ms: u64,
) -> Result<Uuid, WebAuthError> {
    check_password(password)?;
    let login = normalise_login(login).map_err(|_| WebAuthError::CodeRefused)?;
    let worker: Option<Uuid> = conn.one(
        "SELECT worker_id FROM web_logins WHERE login = ?1 AND setup_hash = ?2
           AND setup_expires_ms > ?3",
        args![
            login,
            identity::hash(&identity::normalise_code(code)),
            now_ms as i64
        ],
    )?;
    let worker = worker.ok_or(WebAuthError::CodeRefused)?;
    let hash = hash_password(password)?;
    conn.execute(
        "UPDATE web_logins SET password_hash = ?2, setup_hash = NULL, setup_expires_ms = NULL,
             failures = 0, locked_until_ms = NULL
         WHERE worker_id = ?1",
        args![worker, hash],
    )?;
    Ok(worker)
}

/// What a sign-in attempt needs from the database before the password is checked (outside
/// the lock): the worker if the login exists, and their hash if one is set.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub worker: Option<Uuid>,
    pub hash: Option<String>,
}

/// Looks up `login`, refusing at once while it must wait (back-off or lock-out).
pub fn begin_sign_in(conn: &dyn Db, login: &str, now_ms: u64) -> Result<Attempt, WebAuthError> {
    let Ok(login) = normalise_login(login) else {
        return Ok(Attempt {
            worker: None,
            hash: None,
        });
    };
    let row: Option<(Vec<u8>, Option<String>, Option<i64>)> = conn.one(
        "SELECT worker_id, password_hash, locked_until_ms FROM web_logins WHERE login = ?1",
        args![login],
    )?;
    let Some((worker, hash, locked_until)) = row else {
        return Ok(Attempt {
            worker: None,
            hash: None,
        });
    };
    if let Some(until) = locked_until
        && until as u64 > now_ms
    {
        return Err(WebAuthError::Wait {
            retry_after_ms: until as u64 - now_ms,
        });
    }
    Ok(Attempt {
        worker: Uuid::from_slice(&worker).ok(),
        hash,
    })
}

/// Whether `password` matches `hash`. Without a hash it checks against a fixed one, so an
/// unknown login takes as long as a known one.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("feltbog dummy password").unwrap_or_default());
    let stored = hash.unwrap_or(dummy);
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && hash.is_some()
}

/// Records the outcome of an attempt in one writing transaction: on success a new session
/// (its cookie token and the session), on failure the back-off and an audit row (committed,
/// though the answer is a refusal).
pub fn finish_sign_in(
    db: &mut impl Transact,
    attempt: &Attempt,
    password_ok: bool,
    now_ms: u64,
) -> Result<(String, Session), WebAuthError> {
    db.write_if(|tx| {
        let outcome = record_sign_in(tx, attempt, password_ok, now_ms)?;
        // A refusal is recorded (the back-off and its audit row); "not a supervisor" is not.
        let commit = !matches!(outcome, Err(WebAuthError::NotSupervisor));
        Ok::<_, WebAuthError>((outcome, commit))
    })?
}

/// [`finish_sign_in`] in its transaction: the outcome the caller gets, after the storage
/// errors that roll it back.
fn record_sign_in(
    tx: &dyn Db,
    attempt: &Attempt,
    password_ok: bool,
    now_ms: u64,
) -> Result<Result<(String, Session), WebAuthError>, WebAuthError> {
    let Some(worker) = attempt.worker.filter(|_| password_ok) else {
        if let Some(worker) = attempt.worker {
            let failures: i64 = tx.value(
                "UPDATE web_logins SET failures = failures + 1 WHERE worker_id = ?1
                 RETURNING failures",
                args![worker],
            )?;
            let wait = backoff_ms(failures);
            if wait > 0 {
                tx.execute(
                    "UPDATE web_logins SET locked_until_ms = ?2 WHERE worker_id = ?1",
                    args![worker, (now_ms + wait) as i64],
                )?;
            }
        }
        let entry = match attempt.worker {
            Some(w) => Entry::by_web(w, Action::SignInRefused),
            None => Entry::server(Action::SignInRefused),
        };
        audit::append(tx, now_ms, &entry)?;
        return Ok(Err(WebAuthError::Refused));
    };
    let Some(mut session) = supervisor(tx, worker)? else {
        return Ok(Err(WebAuthError::NotSupervisor));
    };
    tx.execute(
        "UPDATE web_logins SET failures = 0, locked_until_ms = NULL WHERE worker_id = ?1",
        args![worker],
    )?;
    let token = identity::hex(&identity::random_bytes::<32>()?);
    session.csrf = identity::hex(&identity::random_bytes::<16>()?);
    tx.execute(
        "INSERT INTO web_sessions (token_hash, worker_id, csrf, created_ms, last_ms)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        args![identity::hash(&token), worker, &session.csrf, now_ms as i64],
    )?;
    audit::append(tx, now_ms, &Entry::by_web(worker, Action::SignIn))?;
    Ok(Ok((token, session)))
}

/// The wait after `failures` failed attempts in a row.
pub fn backoff_ms(failures: i64) -> u64 {
    if failures >= LOCK_OUT_AFTER {
        LOCK_OUT_MS
    } else if failures >= FREE_FAILURES {
        (1000u64 << (failures - FREE_FAILURES).min(20)).min(15 * 60 * 1000)
    } else {
        0
    }
}

/// The session a cookie token stands for, if it is live and its worker still an active
/// supervisor; touching it keeps it alive. A dead session is deleted. Run in the caller's
/// writing transaction.
pub fn session(conn: &dyn Db, token: &str, now_ms: u64) -> Result<Option<Session>, WebAuthError> {
    let key = identity::hash(token);
    let row: Option<(Uuid, String, i64, i64)> = conn.one(
        "SELECT worker_id, csrf, created_ms, last_ms FROM web_sessions WHERE token_hash = ?1",
        args![&key],
    )?;
    let Some((worker, csrf, created, last)) = row else {
        return Ok(None);
    };
    let live = now_ms < created as u64 + SESSION_MAX_MS && now_ms < last as u64 + SESSION_IDLE_MS;
    let found = if live {
        supervisor(conn, worker)?
    } else {
        None
    };
    let Some(mut session) = found else {
        conn.execute(
            "DELETE FROM web_sessions WHERE token_hash = ?1",
            args![&key],
        )?;
        return Ok(None);
    };
    conn.execute(
        "UPDATE web_sessions SET last_ms = ?2 WHERE token_hash = ?1",
        args![&key, now_ms as i64],
    )?;
    session.csrf = csrf;
    Ok(Some(session))
}

/// Ends the session of `token` (signing out), audited, in one writing transaction.
pub fn sign_out(
    db: &mut impl Transact,
    token: &str,
    worker: Uuid,
    now_ms: u64,
) -> Result<(), WebAuthError> {
    db.write(|tx| {
        tx.execute(
            "DELETE FROM web_sessions WHERE token_hash = ?1",
            args![identity::hash(token)],
        )?;
        audit::append(tx, now_ms, &Entry::by_web(worker, Action::SignOut))?;
        Ok(())
    })
}

/// Ends every session of `worker` (a new set-up code; also called when their role changes).
pub fn end_sessions(conn: &dyn Db, worker: Uuid) -> Result<(), WebAuthError> {
    conn.execute(
        "DELETE FROM web_sessions WHERE worker_id = ?1",
        args![worker],
    )?;
    Ok(())
}

/// `worker` as a session (without its CSRF token) if they are an active supervisor now.
fn supervisor(conn: &dyn Db, worker: Uuid) -> Result<Option<Session>, WebAuthError> {
    let row: Option<(Uuid, String, String)> = conn.one(
        "SELECT team_id, name, role FROM workers
         WHERE id = ?1 AND active = 1 AND disabled_ms IS NULL",
        args![worker],
    )?;
    let Some((team, name, role)) = row else {
        return Ok(None);
    };
    if role != Role::Supervisor.as_str() {
        return Ok(None);
    }
    let caller = identity::Caller {
        device_id: feltbog_core::hlc::DeviceId(Uuid::nil()),
        worker_id: worker,
        team_id: team,
        role: Role::Supervisor,
    };
    let reach = crate::scope::reach(conn, &caller)?;
    Ok(Some(Session {
        worker_id: worker,
        name,
        csrf: String::new(),
        teams: reach.teams.into_iter().collect(),
    }))
}

fn check_password(password: &str) -> Result<(), WebAuthError> {
    let n = password.chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(WebAuthError::Invalid("password: at least 12 characters"));
    }
    if n > PASSWORD_MAX_CHARS || password.chars().any(char::is_control) {
        return Err(WebAuthError::Invalid(
            "password: at most 256 printable characters",
        ));
    }
    Ok(())
}

/// A login name: 3–64 of `a–z 0–9 . _ -`, compared in lower case.
fn normalise_login(login: &str) -> Result<String, WebAuthError> {
    let login = login.trim().to_lowercase();
    let fine = (3..=64).contains(&login.len())
        && login
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
    if fine {
        Ok(login)
    } else {
        Err(WebAuthError::Invalid(
            "login name: 3–64 of a–z, 0–9, '.', '_', '-'",
        ))
    }
}

fn hash_password(password: &str) -> Result<String, WebAuthError> {
    let salt_bytes = identity::random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| WebAuthError::Hash)?;
    // Argon2id, version 0x13, the crate's defaults (19 MiB, 2 passes): OWASP's minimum.
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| WebAuthError::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_then_lock_out() {
        assert_eq!(backoff_ms(1), 0);
        assert_eq!(backoff_ms(2), 0);
        assert_eq!(backoff_ms(3), 1000);
        assert_eq!(backoff_ms(4), 2000);
        assert_eq!(backoff_ms(9), 64_000);
        assert_eq!(backoff_ms(10), LOCK_OUT_MS);
    }

    #[test]
    fn a_password_hash_is_argon2id_and_verifies_only_its_password() {
        let h = hash_password("et langt kodeord 42").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(Some(&h), "et langt kodeord 42"));
        assert!(!verify_password(Some(&h), "et langt kodeord 43"));
        assert!(!verify_password(None, "feltbog dummy password"));
    }

    #[test]
    fn login_names_are_plain_and_case_blind() {
        assert_eq!(normalise_login(" Anne.K ").unwrap(), "anne.k");
        for bad in ["ab", "anne k", "anne@x", &"a".repeat(65)] {
            assert!(normalise_login(bad).is_err(), "{bad}");
        }
    }
}
