//! Key derivation, key wrapping and field sealing.
//!
//! Key hierarchy (DESIGN §4):
//!
//! ```text
//! passphrase/PIN ──Argon2id(salt, calibrated cost)──┐
//! platform keystore secret (optional) ──────────────┴─HKDF-SHA256─▶ key-encryption key (KEK)
//! KEK ──wraps──▶ master key (random, 256 bit)
//! master key ──wraps──▶ data keys (random; one per citizen, one "general")
//! data key ──AES-256-GCM──▶ each field value
//! ```
//!
//! Changing the passphrase re-wraps only the master key. Erasing a citizen destroys one wrapped
//! data key, after which their ciphertexts are noise.
//!
//! Every ciphertext is bound by associated data to its place: format version, key id, table,
//! record id and field ([`Binding`]). A ciphertext copied to another row or field, or altered in
//! one bit, fails to open with [`CryptoError::Open`]. Nonces are random 96-bit values from the
//! OS; at our volumes (well under 2^32 seals per key) random nonces are safe for GCM.

use argon2::{Algorithm, Argon2, Params, Version};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Version byte at the start of every sealed value and in every binding.
pub const FORMAT_VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// Crypto failures. None of them carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, altered ciphertext, or ciphertext moved to another place.
    #[error("ciphertext failed to authenticate (wrong key, altered, or moved)")]
    Open,
    #[error("sealed value has unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("sealed value is truncated")]
    Truncated,
    #[error("key derivation parameters rejected: {0}")]
    Kdf(String),
    #[error("the operating system's random number generator failed")]
    Random,
}

/// A passphrase or PIN. Zeroized on drop; prints as a redaction.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

/// The passphrase is too short to be worth protecting keys with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("passphrase or PIN must be at least {min} characters")]
pub struct WeakPassphrase {
    pub min: usize,
}

impl Passphrase {
    /// Minimum length: a 6-digit PIN is the shortest secret accepted.
    pub const MIN_LEN: usize = 6;

    /// Accepts a passphrase of at least [`Self::MIN_LEN`] characters (after trimming a newline).
    /// Normalised to Unicode NFC, so "å" typed as one code point or as "a" + ring matches.
    pub fn new(s: impl Into<String>) -> Result<Passphrase, WeakPassphrase> {
        use unicode_normalization::UnicodeNormalization;
        let mut raw = Zeroizing::new(s.into());
        while raw.ends_with('\n') || raw.ends_with('\r') {
            raw.pop();
        }
        let s = Zeroizing::new(raw.nfc().collect::<String>());
        if s.chars().count() < Self::MIN_LEN {
            return Err(WeakPassphrase { min: Self::MIN_LEN });
        }
        Ok(Passphrase(s))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(‹redacted›)")
    }
}

/// Argon2id cost, stored in the store's header so every device can re-derive.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// The floor (OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane). Nothing weaker is
    /// accepted, even on request.
    pub const MINIMUM: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    /// A trivially cheap cost for the deterministic simulation's throwaway stores (thousands per
    /// run). Accepted by [`Self::check`] only in builds with the `sim` feature, never in the app.
    #[cfg(feature = "sim")]
    pub const SIMULATION: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    /// Memory used by calibration (RFC 9106's second recommended option uses 64 MiB).
    pub const CALIBRATION_MEMORY_KIB: u32 = 64 * 1024;
    /// Default calibration target per unlock.
    pub const DEFAULT_TARGET: Duration = Duration::from_millis(500);

    /// Rejects parameters below [`Self::MINIMUM`] or beyond what a tablet can hold.
    pub fn check(&self) -> Result<(), CryptoError> {
        #[cfg(feature = "sim")]
        if *self == Self::SIMULATION {
            return Ok(());
        }
        let min = Self::MINIMUM;
        if self.memory_kib < min.memory_kib
            || self.iterations < min.iterations
            || self.parallelism < 1
        {
            return Err(CryptoError::Kdf(format!(
                "below the minimum of m={} KiB, t={}, p=1",
                min.memory_kib, min.iterations
            )));
        }
        if self.memory_kib > 1024 * 1024 || self.iterations > 100 || self.parallelism > 8 {
            return Err(CryptoError::Kdf(
                "above the maximum of m=1 GiB, t=100, p=8".into(),
            ));
        }
        Ok(())
    }

    /// Picks the number of passes at 64 MiB so one derivation takes about `target` on this
    /// machine, never fewer than 3 passes. Returns the parameters and the expected time of one
    /// derivation with them. Times a 1-pass and a 3-pass run: the difference is the cost of a
    /// pass, the rest is the fixed cost of allocating and filling the memory.
    pub fn calibrate(target: Duration) -> Result<(KdfParams, Duration), CryptoError> {
        let time = |iterations: u32| -> Result<Duration, CryptoError> {
            let probe = KdfParams {
                memory_kib: Self::CALIBRATION_MEMORY_KIB,
                iterations,
                parallelism: 1,
            };
            let started = Instant::now();
            let mut out = Zeroizing::new([0u8; KEY_LEN]);
            argon2_into(&probe, b"calibration-probe", &[0u8; 16], &mut out[..])?;
            Ok(started.elapsed())
        };
        let one = time(1)?;
        let three = time(3)?;
        let per_pass = (three.saturating_sub(one) / 2).max(Duration::from_micros(1));
        let fixed = one.saturating_sub(per_pass);
        let passes =
            (target.saturating_sub(fixed).as_secs_f64() / per_pass.as_secs_f64()).round() as u32;
        let iterations = passes.clamp(3, 100);
        let params = KdfParams {
            memory_kib: Self::CALIBRATION_MEMORY_KIB,
            iterations,
            parallelism: 1,
        };
        Ok((params, fixed + per_pass * iterations))
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Argon2id m={} KiB, t={}, p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

fn argon2_into(
    params: &KdfParams,
    secret: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(out.len()),
    )
    .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(secret, salt, out)
        .map_err(|e| CryptoError::Kdf(e.to_string()))
}

/// Random bytes from the OS.
pub fn random<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    rng.fill(&mut buf).map_err(|_| CryptoError::Random)?;
    Ok(buf)
}

/// Hands out random 96-bit nonces drawn from the OS in blocks, so sealing the fifteen fields of
/// a record costs one `getrandom` call, not fifteen. Nonces need to be unique, not secret.
pub struct NoncePool {
    rng: SystemRandom,
    buf: [u8; NONCE_LEN * 64],
    next: usize,
}

impl NoncePool {
    /// An empty pool over the OS generator.
    pub fn new(rng: SystemRandom) -> NoncePool {
        NoncePool {
            rng,
            buf: [0; NONCE_LEN * 64],
            next: NONCE_LEN * 64,
        }
    }

    /// The OS generator behind the pool (for keys and salts, which are drawn directly).
    pub fn rng(&self) -> &SystemRandom {
        &self.rng
    }

    fn take(&mut self) -> Result<[u8; NONCE_LEN], CryptoError> {
        if self.next == self.buf.len() {
            self.rng
                .fill(&mut self.buf)
                .map_err(|_| CryptoError::Random)?;
            self.next = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.buf[self.next..self.next + NONCE_LEN]);
        // Never hand the same bytes out twice.
        self.buf[self.next..self.next + NONCE_LEN].fill(0);
        self.next += NONCE_LEN;
        Ok(nonce)
    }
}

/// A 256-bit secret key: the KEK, the master key or a data key. Zeroized on drop.
///
/// The expanded AES key schedule inside `ring`'s `LessSafeKey` is not zeroized by `ring`; it is
/// dropped with this value (see `docs/security.md`).
pub struct SecretKey {
    raw: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate(rng: &SystemRandom) -> Result<SecretKey, CryptoError> {
        let raw = Zeroizing::new(random::<KEY_LEN>(rng)?);
        Ok(SecretKey::from_raw(raw))
    }

    fn from_raw(raw: Zeroizing<[u8; KEY_LEN]>) -> SecretKey {
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw[..]).expect("32-byte key"));
        SecretKey { raw, aead }
    }

    /// Derives the key-encryption key from a passphrase, the store's salt and cost, and an
    /// optional platform keystore secret (see [`crate::keystore`]).
    pub fn derive_kek(
        passphrase: &Passphrase,
        salt: &[u8; 16],
        params: &KdfParams,
        platform_secret: Option<&[u8]>,
    ) -> Result<SecretKey, CryptoError> {
        params.check()?;
        let mut stretched = Zeroizing::new([0u8; KEY_LEN]);
        argon2_into(params, passphrase.bytes(), salt, &mut stretched[..])?;
        let extra = platform_secret.map_or(0, <[u8]>::len);
        let mut ikm = Zeroizing::new(Vec::with_capacity(KEY_LEN + extra));
        ikm.extend_from_slice(&stretched[..]);
        if let Some(secret) = platform_secret {
            ikm.extend_from_slice(secret);
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"feltbog/kek/v1").extract(&ikm);
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        prk.expand(&[b"key-encryption-key"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut raw[..]))
            .map_err(|_| CryptoError::Kdf("hkdf expand".into()))?;
        Ok(SecretKey::from_raw(raw))
    }

    /// Wraps (seals) another key under this one, bound to `binding`.
    pub fn wrap(
        &self,
        nonces: &mut NoncePool,
        key: &SecretKey,
        binding: &Binding<'_>,
    ) -> Result<Vec<u8>, CryptoError> {
        self.seal(nonces, binding, &key.raw[..])
    }

    /// Unwraps a key sealed by [`Self::wrap`] with the same binding.
    pub fn unwrap_key(
        &self,
        binding: &Binding<'_>,
        wrapped: &[u8],
    ) -> Result<SecretKey, CryptoError> {
        let plain = Zeroizing::new(self.open(binding, wrapped)?);
        let raw: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| CryptoError::Open)?;
        Ok(SecretKey::from_raw(Zeroizing::new(raw)))
    }

    /// Seals `plaintext` bound to `binding`: `version ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn seal(
        &self,
        nonces: &mut NoncePool,
        binding: &Binding<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = nonces.take()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut ad = AdBuf::new();
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(binding.associated_data_into(FORMAT_VERSION, &mut ad)),
                &mut out[1 + NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Open)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a value sealed by [`Self::seal`]; fails unless key, binding and bytes all match.
    pub fn open(&self, binding: &Binding<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(sealed.len());
        self.open_append(binding, sealed, &mut out)?;
        Ok(out)
    }

    /// Like [`Self::open`], but appends the plaintext to `out` (no allocation per value: the
    /// store decrypts a whole record's fields into one buffer). On error `out` is unchanged.
    pub fn open_append(
        &self,
        binding: &Binding<'_>,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Truncated)?;
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Truncated)?;
        let start = out.len();
        out.extend_from_slice(body);
        let mut ad = AdBuf::new();
        let opened = self
            .aead
            .open_in_place(
                nonce,
                Aad::from(binding.associated_data_into(version, &mut ad)),
                &mut out[start..],
            )
            .map(|plain| plain.len());
        match opened {
            Ok(len) => {
                out.truncate(start + len);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(CryptoError::Open)
            }
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(‹redacted›)")
    }
}

/// Identifies a data key (random, stored beside the wrapped key; not secret).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 16]);

/// Where a ciphertext belongs. Its bytes are the AEAD associated data, so the ciphertext opens
/// only in this place. Each part is length-prefixed, so no two bindings share an encoding.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    pub key_id: KeyId,
    pub table: &'a str,
    pub record: &'a [u8],
    pub field: &'a str,
}

/// Associated data is built on the stack when it fits (it nearly always does).
struct AdBuf {
    stack: [u8; 256],
    heap: Vec<u8>,
}

impl AdBuf {
    fn new() -> AdBuf {
        AdBuf {
            stack: [0; 256],
            heap: Vec::new(),
        }
    }
}

impl Binding<'_> {
    fn parts(&self) -> [&[u8]; 3] {
        [self.table.as_bytes(), self.record, self.field.as_bytes()]
    }

    /// `"feltbog" ‖ version ‖ key id ‖ (len ‖ table) ‖ (len ‖ record) ‖ (len ‖ field)`.
    fn associated_data_into<'b>(&self, version: u8, buf: &'b mut AdBuf) -> &'b [u8] {
        let len = 7 + 1 + 16 + self.parts().iter().map(|p| 4 + p.len()).sum::<usize>();
        let out: &mut [u8] = if len <= buf.stack.len() {
            &mut buf.stack[..len]
        } else {
            buf.heap.resize(len, 0);
            &mut buf.heap[..]
        };
        out[..7].copy_from_slice(b"feltbog");
        out[7] = version;
        out[8..24].copy_from_slice(&self.key_id.0);
        let mut at = 24;
        for part in self.parts() {
            out[at..at + 4].copy_from_slice(&(part.len() as u32).to_be_bytes());
            out[at + 4..at + 4 + part.len()].copy_from_slice(part);
            at += 4 + part.len();
        }
        out
    }

    #[cfg(test)]
    fn associated_data(&self, version: u8) -> Vec<u8> {
        self.associated_data_into(version, &mut AdBuf::new())
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (NoncePool, SecretKey) {
        let rng = SystemRandom::new();
        let k = SecretKey::generate(&rng).unwrap();
        (NoncePool::new(rng), k)
    }

    fn binding<'a>(record: &'a [u8], field: &'a str) -> Binding<'a> {
        Binding {
            key_id: KeyId([1; 16]),
            table: "visit",
            record,
            field,
        }
    }

    #[test]
    fn round_trip_and_every_bit_flip_fails() {
        let (mut rng, k) = key();
        let b = binding(b"rec-1", "note");
        let sealed = k.seal(&mut rng, &b, b"hemmelig note").unwrap();
        assert_eq!(k.open(&b, &sealed).unwrap(), b"hemmelig note");
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(k.open(&b, &bad).is_err(), "bit {i} flip opened");
        }
    }

    #[test]
    fn moved_to_other_field_record_table_or_key_fails() {
        let (mut rng, k) = key();
        let b = binding(b"rec-1", "note");
        let sealed = k.seal(&mut rng, &b, b"x").unwrap();
        assert_eq!(
            k.open(&binding(b"rec-2", "note"), &sealed),
            Err(CryptoError::Open)
        );
        assert_eq!(
            k.open(&binding(b"rec-1", "place"), &sealed),
            Err(CryptoError::Open)
        );
        let other_table = Binding {
            table: "citizen",
            ..b
        };
        assert_eq!(k.open(&other_table, &sealed), Err(CryptoError::Open));
        let other_key_id = Binding {
            key_id: KeyId([2; 16]),
            ..b
        };
        assert_eq!(k.open(&other_key_id, &sealed), Err(CryptoError::Open));
        let (_, other_key) = key();
        assert_eq!(other_key.open(&b, &sealed), Err(CryptoError::Open));
    }

    #[test]
    fn nonces_never_repeat_across_refills() {
        let mut pool = NoncePool::new(SystemRandom::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            assert!(seen.insert(pool.take().unwrap()));
        }
    }

    #[test]
    fn long_bindings_spill_to_the_heap_and_still_bind() {
        let (mut rng, k) = key();
        let long = "f".repeat(400);
        let b = Binding {
            key_id: KeyId([3; 16]),
            table: "visit",
            record: b"r",
            field: &long,
        };
        let sealed = k.seal(&mut rng, &b, b"v").unwrap();
        assert_eq!(k.open(&b, &sealed).unwrap(), b"v");
        let shorter = Binding {
            field: &long[1..],
            ..b
        };
        assert_eq!(k.open(&shorter, &sealed), Err(CryptoError::Open));
    }

    #[test]
    fn bindings_are_unambiguous() {
        let a = Binding {
            key_id: KeyId([0; 16]),
            table: "ab",
            record: b"c",
            field: "d",
        };
        let b = Binding {
            key_id: KeyId([0; 16]),
            table: "a",
            record: b"bc",
            field: "d",
        };
        assert_ne!(a.associated_data(1), b.associated_data(1));
    }

    #[test]
    fn kek_depends_on_passphrase_and_platform_secret() {
        let rng = SystemRandom::new();
        let master = SecretKey::generate(&rng).unwrap();
        let mut rng = NoncePool::new(rng);
        let salt = [9u8; 16];
        let p = KdfParams::MINIMUM;
        let pass = Passphrase::new("correct horse").unwrap();
        let b = Binding {
            key_id: KeyId([0; 16]),
            table: "keyring",
            record: b"master",
            field: "wrapped",
        };
        let kek = SecretKey::derive_kek(&pass, &salt, &p, Some(b"device-secret")).unwrap();
        let wrapped = kek.wrap(&mut rng, &master, &b).unwrap();
        let again = SecretKey::derive_kek(&pass, &salt, &p, Some(b"device-secret")).unwrap();
        assert!(again.unwrap_key(&b, &wrapped).is_ok());
        let no_secret = SecretKey::derive_kek(&pass, &salt, &p, None).unwrap();
        assert!(no_secret.unwrap_key(&b, &wrapped).is_err());
        let wrong = SecretKey::derive_kek(
            &Passphrase::new("wrong horse").unwrap(),
            &salt,
            &p,
            Some(b"device-secret"),
        )
        .unwrap();
        assert_eq!(
            wrong.unwrap_key(&b, &wrapped).unwrap_err(),
            CryptoError::Open
        );
    }

    #[test]
    fn weak_inputs_are_refused() {
        assert_eq!(
            Passphrase::new("12345").unwrap_err(),
            WeakPassphrase { min: 6 }
        );
        assert!(Passphrase::new("123456\n").is_ok());
        let composed = Passphrase::new("blåbærgrød").unwrap();
        let decomposed = Passphrase::new("bla\u{30a}bærgrød").unwrap();
        assert_eq!(composed.bytes(), decomposed.bytes());
        let weak = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        assert!(matches!(weak.check(), Err(CryptoError::Kdf(_))));
        assert!(!format!("{:?}", Passphrase::new("topsecret").unwrap()).contains("topsecret"));
    }
}
