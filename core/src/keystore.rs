//! The seam for a platform keystore secret (DESIGN §4).
//!
//! A PIN has few possible values; anyone who copies the store file can try them all offline,
//! however slow Argon2id is made. A secret held by the platform's keystore (Android Keystore,
//! iOS Keychain/Secure Enclave, a desktop OS keyring) and mixed into the key-encryption key
//! closes that gap: the file alone is then not enough. See `docs/security.md`.
//!
//! The store asks a [`PlatformSecret`] for its secret at create and at every unlock. If the
//! secret is lost (device reset), the local store cannot be opened — by design; the server still
//! holds everything already synced.

use zeroize::Zeroizing;

/// Why the platform keystore could not provide its secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    #[error("the platform keystore is unavailable: {0}")]
    Unavailable(String),
}

/// A source of a device-bound secret mixed into the key-encryption key.
pub trait PlatformSecret: Send + Sync {
    /// A short name recorded in the store header, so unlock can say which keystore it needs.
    fn name(&self) -> &'static str;
    /// The secret (at least 16 bytes), or `None` where this platform has no keystore.
    fn secret(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError>;
}

/// No platform keystore: the passphrase alone protects the keys (desktop without a keyring,
/// and the command-line front).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPlatformSecret;

impl PlatformSecret for NoPlatformSecret {
    fn name(&self) -> &'static str {
        "none"
    }
    fn secret(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
        Ok(None)
    }
}

/// A secret supplied by the embedding app (e.g. read by the Tauri shell from a platform
/// keystore plugin). Also what tests use to show the mixing works.
pub struct SuppliedSecret(Zeroizing<Vec<u8>>);

impl SuppliedSecret {
    /// Wraps a secret of at least 16 bytes.
    pub fn new(secret: Vec<u8>) -> Result<SuppliedSecret, KeystoreError> {
        if secret.len() < 16 {
            return Err(KeystoreError::Unavailable(
                "secret shorter than 16 bytes".into(),
            ));
        }
        Ok(SuppliedSecret(Zeroizing::new(secret)))
    }
}

impl PlatformSecret for SuppliedSecret {
    fn name(&self) -> &'static str {
        "supplied"
    }
    fn secret(&self) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
        Ok(Some(self.0.clone()))
    }
}
