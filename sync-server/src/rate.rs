//! Per-key rate limiting: a device may not hammer the server, nor one address guess enrolment
//! codes.
//!
//! Each key has a token bucket, kept as the single instant at which it will be full again
//! (GCRA): a request costs one token, tokens return at `per_minute`, at most `burst` are held.
//! The clock is a parameter, so tests need no sleeps. On SQLite the state is in memory (a
//! restart forgets it, which costs an attacker one burst); on PostgreSQL, where several
//! instances answer one client, it is in the database ([`Shared`]) and every instance spends
//! from the same buckets.

use crate::args;
use crate::pool::Conn;
use crate::storage::{Db, DbExt, StorageError, Transact};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most keys a [`Limiter`] holds, so a flood of distinct keys (addresses) cannot exhaust
/// memory. About 80 bytes a key.
pub const MAX_KEYS: usize = 100_000;

/// How many requests a key may make: `burst` at once, then `per_minute` steadily. Zero in either
/// is taken as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// Token buckets by key. Use one limiter per kind of key (device ids, addresses), so keys of
/// different kinds never share a bucket.
pub struct Limiter {
    /// The time one token takes to return.
    interval: Duration,
    /// `interval * burst`: how far ahead of now a bucket's full-again instant may run.
    window: Duration,
    max_keys: usize,
    /// Key -> the instant its bucket is full again. Past instants mean full.
    buckets: Mutex<HashMap<Box<[u8]>, Instant>>,
}

impl Limiter {
    /// A limiter holding at most [`MAX_KEYS`] keys.
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter::with_max_keys(limit, MAX_KEYS)
    }

    fn with_max_keys(limit: RateLimit, max_keys: usize) -> Limiter {
        let interval = Duration::from_secs(60) / limit.per_minute.max(1);
        Limiter {
            interval,
            window: interval.saturating_mul(limit.burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there (a refused
    /// request takes nothing). Round the wait up to whole seconds for a `Retry-After` header.
    pub fn check(&self, key: &[u8], now: Instant) -> Result<(), Duration> {
        self.check_n(key, 1, now)
    }

    /// Takes `n` tokens at once (a push's field operations, its bytes), or says how long until
    /// they are there. `n` above the burst never fits: size the burst for the largest request
    /// an honest client makes.
    pub fn check_n(&self, key: &[u8], n: u32, now: Instant) -> Result<(), Duration> {
        let cost = self.interval.saturating_mul(n.max(1));
        // Poisoning cannot leave a bucket half-updated: every update is one store.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(full_at) = buckets.get_mut(key) {
            let next = (*full_at).max(now) + cost;
            let ahead = next.saturating_duration_since(now);
            if ahead > self.window {
                return Err(ahead - self.window);
            }
            *full_at = next;
            return Ok(());
        }
        // A new key has a full bucket, and a bucket holds at least one token.
        if cost > self.window {
            return Err(cost - self.window);
        }
        if buckets.len() >= self.max_keys {
            evict(&mut buckets, now, self.max_keys);
        }
        buckets.insert(key.into(), now + cost);
        Ok(())
    }

    /// Gives back `n` tokens taken by [`Limiter::check_n`] for a request that was refused on
    /// other grounds after all.
    pub fn refund(&self, key: &[u8], n: u32) {
        let cost = self.interval.saturating_mul(n.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(full_at) = buckets.get_mut(key) {
            *full_at = full_at.checked_sub(cost).unwrap_or(*full_at);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys are device ids or addresses: show only the count.
impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("interval", &self.interval)
            .field("window", &self.window)
            .field("keys", &self.len())
            .finish()
    }
}

/// A limiter every instance shares: the same GCRA kept in the database (`rate_limits`, one
/// row per kind of key and key), for servers on PostgreSQL, where a load balancer sends one
/// client to any instance and limits kept per instance would multiply the limit by their
/// number. A check is one statement that decides and spends together (the row is locked for
/// the rest of its short transaction), so two instances cannot both spend a bucket's last
/// token; a refused check writes nothing. Times are in µs (a limit of up to 60 million a
/// minute keeps its exact interval), on the wall clock, so instances must keep time (NTP) as
/// they do for the sync anyway.
pub struct Shared {
    kind: &'static str,
    interval_us: i64,
    window_us: i64,
    checks: std::sync::atomic::AtomicU64,
}

/// How often a [`Shared`] limiter drops the rows of full buckets (they mean what no row means),
/// so a flood of distinct keys does not grow the table without end.
const PRUNE_EVERY: u64 = 4096;

impl Shared {
    /// A limiter for keys of `kind` (a short fixed name: "device", "address", …).
    pub fn new(kind: &'static str, limit: RateLimit) -> Shared {
        // Rounded up: a limit is never looser than asked for.
        let interval_us = 60_000_000u64.div_ceil(u64::from(limit.per_minute.max(1))) as i64;
        Shared {
            kind,
            interval_us,
            window_us: interval_us.saturating_mul(i64::from(limit.burst.max(1))),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// [`Limiter::check_n`] on the shared bucket, in the caller's transaction; `now_us` is the
    /// wall clock in µs.
    pub fn check_n(
        &self,
        db: &dyn Db,
        key: &[u8],
        n: u32,
        now_us: i64,
    ) -> Result<Result<(), Duration>, StorageError> {
        let cost = self.interval_us.saturating_mul(i64::from(n.max(1)));
        if cost > self.window_us {
            return Ok(Err(Duration::from_micros((cost - self.window_us) as u64)));
        }
        if self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            db.execute(
                "DELETE FROM rate_limits WHERE full_at_us < ?1",
                args![now_us],
            )?;
        }
        // The bucket is full again at max(full_at, now) + cost after this request: taken if
        // that is at most a window ahead. A new key's bucket is full (cost <= window, above).
        // The update's WHERE skips a refused check: no row comes back, and nothing is written.
        let taken: Option<i64> = db.one(
            "INSERT INTO rate_limits (kind, key, full_at_us) VALUES (?1, ?2, ?6)
             ON CONFLICT (kind, key) DO UPDATE SET
               full_at_us = CASE WHEN rate_limits.full_at_us > ?3
                 THEN rate_limits.full_at_us ELSE ?3 END + ?4
             WHERE CASE WHEN rate_limits.full_at_us > ?3
                 THEN rate_limits.full_at_us ELSE ?3 END + ?4 - ?3 <= ?5
             RETURNING full_at_us",
            args![self.kind, key, now_us, cost, self.window_us, now_us + cost],
        )?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let full_at: i64 = db.value(
            "SELECT full_at_us FROM rate_limits WHERE kind = ?1 AND key = ?2",
            args![self.kind, key],
        )?;
        let wait = full_at.max(now_us) + cost - now_us - self.window_us;
        Ok(Err(Duration::from_micros(wait.max(1) as u64)))
    }

    /// [`Limiter::refund`] on the shared bucket.
    pub fn refund(&self, db: &dyn Db, key: &[u8], n: u32) -> Result<(), StorageError> {
        let cost = self.interval_us.saturating_mul(i64::from(n.max(1)));
        db.execute(
            "UPDATE rate_limits SET full_at_us = full_at_us - ?3 WHERE kind = ?1 AND key = ?2",
            args![self.kind, key, cost],
        )?;
        Ok(())
    }
}

/// The wall clock in µs since the epoch (the shared buckets' clock).
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A limit kept where the server's instances can share it: in this process (SQLite: one
/// instance by nature, and a database write per request would queue behind the one writer) or
/// in the database (PostgreSQL).
pub enum Bucket {
    Local(Limiter),
    Shared(Shared),
}

impl Bucket {
    /// The bucket for `limit`: shared in the database when `shared`.
    pub fn new(kind: &'static str, limit: RateLimit, shared: bool) -> Bucket {
        if shared {
            Bucket::Shared(Shared::new(kind, limit))
        } else {
            Bucket::Local(Limiter::new(limit))
        }
    }

    /// Takes `n` tokens from `key`'s bucket, or says how long until they are there. A shared
    /// bucket is checked on `conn` (a request's connection), in a transaction of its own; a
    /// local one needs none.
    pub fn check_n(
        &self,
        conn: Option<&mut Conn<'_>>,
        key: &[u8],
        n: u32,
    ) -> Result<Result<(), Duration>, StorageError> {
        match (self, conn) {
            (Bucket::Local(l), _) => Ok(l.check_n(key, n, Instant::now())),
            (Bucket::Shared(s), Some(conn)) => {
                conn.write_aside(|db| s.check_n(db, key, n, now_us()))
            }
            (Bucket::Shared(_), None) => {
                Err(StorageError::Missing("connection for a shared limit"))
            }
        }
    }

    /// Gives back `n` tokens (a request refused on other grounds after all).
    pub fn refund(
        &self,
        conn: Option<&mut Conn<'_>>,
        key: &[u8],
        n: u32,
    ) -> Result<(), StorageError> {
        match (self, conn) {
            (Bucket::Local(l), _) => {
                l.refund(key, n);
                Ok(())
            }
            (Bucket::Shared(s), Some(conn)) => conn.write_aside(|db| s.refund(db, key, n)),
            (Bucket::Shared(_), None) => {
                Err(StorageError::Missing("connection for a shared limit"))
            }
        }
    }

    /// Whether checks need a database connection (else they are answered in memory).
    pub fn is_shared(&self) -> bool {
        matches!(self, Bucket::Shared(_))
    }
}

/// Makes room, down to 90% of `max` so the cost is paid once per many new keys. Full buckets go
/// first: forgetting them changes nothing. If that is not enough (a flood of busy keys), those
/// nearest to full go next, which at worst hands them their burst early.
fn evict(buckets: &mut HashMap<Box<[u8]>, Instant>, now: Instant, max: usize) {
    buckets.retain(|_, full_at| *full_at > now);
    let low = (max - max / 10).min(max - 1);
    if buckets.len() <= low {
        return;
    }
    let excess = buckets.len() - low;
    let mut instants: Vec<Instant> = buckets.values().copied().collect();
    let (_, &mut cut, _) = instants.select_nth_unstable(excess - 1);
    let mut left = excess;
    buckets.retain(|_, full_at| {
        let drop = left > 0 && *full_at <= cut;
        left -= usize::from(drop);
        !drop
    });
}

/// The key for a client address: IPv4 as is, IPv6 by its /64, since one client commonly holds a
/// whole /64 and could otherwise rotate through it. IPv4-mapped IPv6 counts as IPv4.
pub fn ip_key(ip: IpAddr) -> [u8; 9] {
    let mut key = [0; 9];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            key[0] = 4;
            key[1..5].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            key[0] = 6;
            key[1..].copy_from_slice(&v6.octets()[..8]);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weighted_check_takes_that_many_tokens_and_a_refund_gives_them_back() {
        let limiter = Limiter::new(RateLimit {
            per_minute: 600,
            burst: 100,
        });
        let t0 = Instant::now();
        assert_eq!(limiter.check_n(b"d", 60, t0), Ok(()));
        assert_eq!(limiter.check_n(b"d", 40, t0), Ok(()));
        // Empty now: one more token is 100 ms away (600 a minute).
        assert_eq!(
            limiter.check_n(b"d", 1, t0),
            Err(Duration::from_millis(100))
        );
        limiter.refund(b"d", 40);
        assert_eq!(limiter.check_n(b"d", 40, t0), Ok(()));
        // More than the burst never fits, not even for a new key.
        assert!(limiter.check_n(b"e", 101, t0).is_err());
        assert_eq!(limiter.check_n(b"e", 100, t0), Ok(()));
    }

    const SEC: Duration = Duration::from_secs(1);

    fn limiter(per_minute: u32, burst: u32) -> Limiter {
        Limiter::new(RateLimit { per_minute, burst })
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_the_right_retry_after() {
        let l = limiter(60, 3); // a token a second
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(b"dev", t0), Ok(()));
        }
        assert_eq!(l.check(b"dev", t0), Err(SEC));
        assert_eq!(
            l.check(b"dev", t0 + SEC / 4),
            Err(SEC * 3 / 4),
            "the wait shrinks as time passes"
        );
        // Refusals take nothing: waiting exactly the retry-after works.
        assert_eq!(l.check(b"dev", t0 + SEC), Ok(()));
        assert_eq!(l.check(b"dev", t0 + SEC), Err(SEC));
    }

    #[test]
    fn tokens_refill_with_time_up_to_the_burst() {
        let l = limiter(6, 5); // a token every ten seconds
        let t0 = Instant::now();
        for _ in 0..5 {
            l.check(b"dev", t0).unwrap();
        }
        assert!(l.check(b"dev", t0).is_err());
        let t1 = t0 + SEC * 25; // two tokens back, the third in five seconds
        assert_eq!(l.check(b"dev", t1), Ok(()));
        assert_eq!(l.check(b"dev", t1), Ok(()));
        assert_eq!(l.check(b"dev", t1), Err(SEC * 5));
        // Idle for an hour: a full bucket, no more.
        let t2 = t1 + SEC * 3600;
        for _ in 0..5 {
            assert_eq!(l.check(b"dev", t2), Ok(()));
        }
        assert_eq!(l.check(b"dev", t2), Err(SEC * 10));
    }

    #[test]
    fn keys_are_independent() {
        let l = limiter(60, 2);
        let t0 = Instant::now();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        l.check(&a, t0).unwrap();
        l.check(&a, t0).unwrap();
        assert!(l.check(&a, t0).is_err());
        assert_eq!(l.check(&b, t0), Ok(()));
        assert_eq!(l.check(&b, t0), Ok(()));
        assert!(l.check(&b, t0).is_err());
        assert_eq!(l.check(&a, t0), Err(SEC), "b's use did not touch a");
    }

    #[test]
    fn an_earlier_now_than_before_is_harmless() {
        let l = limiter(60, 1);
        let t0 = Instant::now();
        l.check(b"k", t0 + SEC * 10).unwrap();
        assert_eq!(l.check(b"k", t0), Err(SEC * 11));
    }

    #[test]
    fn zero_limits_are_taken_as_one() {
        let l = limiter(0, 0);
        let t0 = Instant::now();
        assert_eq!(l.check(b"k", t0), Ok(()));
        assert_eq!(l.check(b"k", t0), Err(SEC * 60));
    }

    #[test]
    fn memory_stays_within_the_key_bound() {
        let l = limiter(60, 5);
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS as u32 + MAX_KEYS as u32 / 2) {
            l.check(&i.to_be_bytes(), t0).unwrap();
            if i % 10_007 == 0 {
                assert!(l.len() <= MAX_KEYS);
            }
        }
        assert!(l.len() <= MAX_KEYS);
        assert!(l.len() > MAX_KEYS / 2);
    }

    #[test]
    fn idle_buckets_are_evicted_first() {
        let l = Limiter::with_max_keys(
            RateLimit {
                per_minute: 60,
                burst: 2,
            },
            10,
        );
        let t0 = Instant::now();
        // Five idle keys (one token used long ago), five exhausted just now.
        for i in 0..5u8 {
            l.check(&[i], t0).unwrap();
        }
        let t1 = t0 + SEC * 60;
        for i in 5..10u8 {
            l.check(&[i], t1).unwrap();
            l.check(&[i], t1).unwrap();
        }
        l.check(b"new", t1).unwrap();
        assert_eq!(l.len(), 6, "only the idle ones went");
        for i in 5..10u8 {
            assert!(l.check(&[i], t1).is_err(), "busy key {i} is still limited");
        }
    }

    #[test]
    fn without_idle_buckets_the_nearest_to_full_are_evicted() {
        let l = Limiter::with_max_keys(
            RateLimit {
                per_minute: 60,
                burst: 3,
            },
            10,
        );
        let t0 = Instant::now();
        // Keys 0..5 used one token, keys 5..10 all three.
        for i in 0..10u8 {
            for _ in 0..if i < 5 { 1 } else { 3 } {
                l.check(&[i], t0).unwrap();
            }
        }
        l.check(b"new", t0).unwrap();
        assert!(l.len() <= 10);
        for i in 5..10u8 {
            assert!(
                l.check(&[i], t0).is_err(),
                "exhausted key {i} is still limited"
            );
        }
    }

    /// The shared bucket (here on SQLite; on PostgreSQL through the conformance suite and
    /// `tests/concurrency.rs`) answers as the in-memory one does, to the µs.
    #[test]
    fn a_shared_bucket_takes_refuses_and_refills_like_the_local_one() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        let shared = Shared::new(
            "t",
            RateLimit {
                per_minute: 60,
                burst: 3,
            },
        );
        let local = limiter(60, 3);
        let (t0, i0) = (1_000_000_000_000i64, Instant::now());
        let at = |s: f64| (t0 + (s * 1e6) as i64, i0 + Duration::from_secs_f64(s));
        for s in [0.0, 0.0, 0.0, 0.0, 0.25, 1.0, 1.0, 30.0, 30.0, 30.0, 30.0] {
            let (us, instant) = at(s);
            assert_eq!(
                shared.check_n(&conn, b"dev", 1, us).unwrap(),
                local.check(b"dev", instant),
                "at {s} s"
            );
        }
        // A refusal writes nothing: the bucket is as the last taken token left it.
        let full_at = |conn: &rusqlite::Connection| -> i64 {
            conn.value(
                "SELECT full_at_us FROM rate_limits WHERE key = x'646576'",
                &[],
            )
            .unwrap()
        };
        let before = full_at(&conn);
        assert!(
            shared
                .check_n(&conn, b"dev", 1, at(30.0).0)
                .unwrap()
                .is_err()
        );
        assert_eq!(full_at(&conn), before);
        // A weighted check and its refund.
        shared.refund(&conn, b"dev", 2).unwrap();
        assert_eq!(
            shared.check_n(&conn, b"dev", 2, at(30.0).0).unwrap(),
            Ok(())
        );
        assert!(
            shared
                .check_n(&conn, b"other", 4, at(30.0).0)
                .unwrap()
                .is_err()
        );
    }

    /// Limits above 60,000 a minute keep their interval (a ms clock would have made it 0 and
    /// let everything through).
    #[test]
    fn a_shared_bucket_holds_a_limit_finer_than_a_millisecond() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        let shared = Shared::new(
            "t",
            RateLimit {
                per_minute: 600_000,
                burst: 10,
            },
        );
        let t0 = 1_000_000_000_000i64;
        for _ in 0..10 {
            assert_eq!(shared.check_n(&conn, b"k", 1, t0).unwrap(), Ok(()));
        }
        assert_eq!(
            shared.check_n(&conn, b"k", 1, t0).unwrap(),
            Err(Duration::from_micros(100))
        );
        assert_eq!(shared.check_n(&conn, b"k", 1, t0 + 100).unwrap(), Ok(()));
    }

    #[test]
    fn ip_keys_group_an_ipv6_slash_64_and_unmap_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            ip_key(ip("2001:db8:1:2::1")),
            ip_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:2::1")), ip_key(ip("2001:db8:1:3::1")));
        assert_eq!(ip_key(ip("::ffff:192.0.2.7")), ip_key(ip("192.0.2.7")));
        assert_ne!(ip_key(ip("192.0.2.7")), ip_key(ip("192.0.2.8")));
    }
}
