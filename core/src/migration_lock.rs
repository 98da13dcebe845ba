//! Applied migrations are append-only: a database that ran migration 5 must never meet another
//! text under that number. Each crate keeps a lock file with the SHA-256 of every migration's
//! text, and a test ([`check`]) fails when a recorded migration's text changes or one goes
//! missing (issue 18 found three that had been edited after they were committed). A new
//! migration is recorded by running that test with `FELTBOG_UPDATE_MIGRATIONS=1`, which only
//! ever appends.

use std::path::Path;

/// The lock line of migration `number` (from 1): `number sha256-hex`.
fn line(number: usize, text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{number} {hex}")
}

/// Checks `migrations` against the lock file at `lock`: every recorded migration unchanged and
/// present, none unrecorded. With `FELTBOG_UPDATE_MIGRATIONS` set, unrecorded ones are
/// appended first; a changed one is never rewritten.
pub fn check(lock: &Path, migrations: &[&str]) -> Result<(), String> {
    let held = std::fs::read_to_string(lock).unwrap_or_default();
    let recorded: Vec<&str> = held.lines().filter(|l| !l.trim().is_empty()).collect();
    let fresh: Vec<String> = migrations
        .iter()
        .enumerate()
        .map(|(i, text)| line(i + 1, text))
        .collect();
    if recorded.len() > fresh.len() {
        return Err(format!(
            "{} records {} migrations, the code has {}: a committed migration was removed",
            lock.display(),
            recorded.len(),
            fresh.len()
        ));
    }
    for (i, (was, is)) in recorded.iter().zip(&fresh).enumerate() {
        if was != is {
            return Err(format!(
                "migration {} changed after it was committed: add a new migration instead \
                 (databases that ran it will never run it again)",
                i + 1
            ));
        }
    }
    if recorded.len() < fresh.len() {
        if std::env::var_os("FELTBOG_UPDATE_MIGRATIONS").is_none() {
            return Err(format!(
                "migrations {}..={} are not in {}: record them with FELTBOG_UPDATE_MIGRATIONS=1",
                recorded.len() + 1,
                fresh.len(),
                lock.display()
            ));
        }
        let mut text = recorded.join("\n");
        for l in &fresh[recorded.len()..] {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(l);
        }
        text.push('\n');
        std::fs::write(lock, text).map_err(|e| format!("{}: {e}", lock.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edited_or_removed_migration_fails_and_a_new_one_must_be_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("migrations.lock");
        std::fs::write(&lock, format!("{}\n{}\n", line(1, "a"), line(2, "b"))).unwrap();
        assert!(check(&lock, &["a", "b"]).is_ok());
        let edited = check(&lock, &["a", "b2"]).unwrap_err();
        assert!(edited.contains("migration 2 changed"), "{edited}");
        assert!(check(&lock, &["a"]).unwrap_err().contains("removed"));
        if std::env::var_os("FELTBOG_UPDATE_MIGRATIONS").is_none() {
            assert!(
                check(&lock, &["a", "b", "c"])
                    .unwrap_err()
                    .contains("3..=3")
            );
        }
    }
}
