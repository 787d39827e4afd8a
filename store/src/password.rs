//! Password policy and argon2id hashing.
//!
//! Hashing is CPU-bound (tens of milliseconds), so it runs on one of a fixed set of hashing
//! threads, one per core, and never stalls the async runtime. A login for an unknown email verifies
//! against a dummy hash made with the same parameters, so the unknown-email and wrong-password
//! branches cost the same time; a stored hash with older, cheaper parameters (the cost was raised
//! since) is padded to the measured time of a verification at the current ones.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroize;

use web::error::FieldError;

use crate::email::canonical_email;

/// OWASP's minimum argon2id parameters, and the configured ones (read with the configuration).
pub use settings::{Argon2Settings, OWASP_MIN_ITERATIONS, OWASP_MIN_MEMORY_KIB};

/// Longest password accepted, in characters after NFKC normalisation.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The 20,000 most common passwords (Django's list, from Royce Williams' analysis of breaches),
/// lower-cased, shipped inside the binary.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .collect()
});

/// NFKC-normalise a password, as it is hashed and compared.
pub fn normalize(password: &str) -> SecretString {
    SecretString::from(password.nfkc().collect::<String>())
}

/// Check a new password against the policy: NFKC, `min_chars..=256` characters, not a common
/// password, not the email. No composition rules (NIST SP 800-63B). Returns the normalised
/// password to hash.
pub fn check_policy(
    password: &SecretString,
    email: &str,
    min_chars: usize,
    field: &str,
) -> Result<SecretString, FieldError> {
    let normalized = normalize(password.expose_secret());
    let pw = normalized.expose_secret();
    let chars = pw.chars().count();
    if chars < min_chars {
        return Err(FieldError::new(
            field,
            "password_too_short",
            format!("The password must have at least {min_chars} characters."),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(FieldError::new(
            field,
            "password_too_long",
            format!("The password must have at most {MAX_PASSWORD_CHARS} characters."),
        ));
    }
    let lowered = pw.to_lowercase();
    if COMMON_PASSWORDS.contains(lowered.as_str()) {
        return Err(FieldError::new(
            field,
            "password_too_common",
            "This password is too common.",
        ));
    }
    if canonical_email(pw) == canonical_email(email) {
        return Err(FieldError::new(
            field,
            "password_equals_email",
            "The password must not be the email.",
        ));
    }
    Ok(normalized)
}

/// Hashes and verifies passwords with the configured argon2id parameters.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    /// A well-formed argon2id hash with the configured parameters, a random salt and a random
    /// output: verified against when the email is unknown. No password hashes to it, so it never
    /// matches, and verifying against it costs exactly what a real verification costs. Built
    /// without hashing, so a function that never verifies pays nothing for it at start-up.
    dummy_hash: String,
    /// The hashing threads' job queue, once the first hash has started them: one thread per
    /// core, so at most one hash per core runs at once (more would only queue for the CPU, and
    /// each holds `m` KiB of work memory). A Lambda instance serves one request at a time; this
    /// bounds the local API, where every login shares the process.
    ///
    /// Dedicated threads rather than tokio's blocking pool: measured with two hashes at once on
    /// two cores, `spawn_blocking` reached 70-79 % of twice the single-hash rate and these
    /// threads 87-91 %, as plain threads do (benches/benches/password.rs, BENCHMARKS.md).
    jobs: Mutex<Option<Sender<Job>>>,
    threads: usize,
    /// One permit per hashing thread, taken before a job is queued and given back when it is
    /// done: the queue never holds more jobs than there are threads, and a request waiting for
    /// its turn keeps its password in its own future, dropped with the request.
    permits: Arc<Semaphore>,
    /// argon2's work memory (`m` KiB each), allocated once per concurrent hash and reused.
    /// Letting argon2 allocate and free it on every call makes glibc raise its mmap threshold
    /// after the first free and then keep each thread's freed buffer in that thread's arena,
    /// so a warm instance grew by a buffer per blocking thread (measured: +190 MiB).
    buffers: Mutex<Vec<Vec<Block>>>,
    /// How long a verification at the configured parameters takes on this instance (a moving
    /// average of the real and dummy ones): what a verification against a cheaper, older hash is
    /// padded to.
    current_cost: Mutex<Option<Duration>>,
}

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    /// The stored hash used weaker parameters than configured: rehash it now that we know the password.
    pub needs_rehash: bool,
}

impl Passwords {
    pub fn new(settings: Argon2Settings) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let dummy_hash = dummy_hash(&params)?;
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                dummy_hash,
                jobs: Mutex::new(None),
                threads: cores,
                permits: Arc::new(Semaphore::new(cores)),
                buffers: Mutex::new(Vec::new()),
                current_cost: Mutex::new(None),
            }),
        })
    }

    /// Hash a (normalised) password on one of the hashing threads.
    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        self.blocking(move |inner| inner.hash(&password)).await
    }

    /// Verify `password` against `stored`, or against the dummy hash when there is no stored hash,
    /// so that both cases do the same work.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> anyhow::Result<Verified> {
        let (verified, pad) = self
            .blocking(move |inner| {
                let normalized = normalize(password.expose_secret());
                // An instance's first verification also times one at the configured parameters
                // (whatever the branch, so the first login costs the same on every branch).
                if inner.current_cost().is_none() {
                    inner.timed_dummy(&normalized);
                }
                let known = stored.is_some();
                let hash_text = stored.as_deref().unwrap_or(&inner.dummy_hash);
                let parsed = match PasswordHash::new(hash_text) {
                    Ok(p) => p,
                    Err(_) => {
                        // A corrupt stored hash must not be distinguishable by timing either.
                        inner.timed_dummy(&normalized);
                        tracing::error!("stored password hash is not a valid PHC string");
                        let refused = Verified {
                            matches: false,
                            needs_rehash: false,
                        };
                        return Ok((refused, Duration::ZERO));
                    }
                };
                let cheaper = known && weaker_than(&parsed, &inner.params);
                let started = Instant::now();
                let matches = inner.verify_parsed(&parsed, &normalized) && known;
                let took = started.elapsed();
                let pad = if cheaper {
                    // A hash made before the cost was raised verifies faster than the dummy an
                    // unknown email gets: make up the difference, so the time does not tell that
                    // the account exists (and has an old hash).
                    inner.current_cost().unwrap_or_default().saturating_sub(took)
                } else {
                    inner.record_cost(took);
                    Duration::ZERO
                };
                Ok((
                    Verified {
                        matches,
                        needs_rehash: matches && cheaper,
                    },
                    pad,
                ))
            })
            .await?;
        // Waited out here, not on a hashing thread, which is free for the next hash meanwhile.
        if !pad.is_zero() {
            tokio::time::sleep(pad).await;
        }
        Ok(verified)
    }

    /// Run `work` on a hashing thread once one of the per-thread permits is free (waiters are
    /// served in arrival order), inside the caller's span. A job whose caller has gone away (its
    /// request was dropped) is skipped.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let inner = self.inner.clone();
        let permit = inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .context("password hashing permits closed")?;
        let span = tracing::Span::current();
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            if done.is_closed() {
                return;
            }
            let _ = done.send(span.in_scope(|| work(&inner)));
        });
        self.inner.submit(job)?;
        result.await.context("password hashing task failed")?
    }
}

/// One hash (or verification) for a hashing thread; it sends its own result back.
type Job = Box<dyn FnOnce() + Send>;

/// A hashing thread: run jobs until every sender is gone. A panicking job ends only itself (its
/// caller gets an error when its result channel closes), not the thread.
fn hashing_thread(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

impl Inner {
    /// Queue `job` for the hashing threads, starting them on first use (a function that never
    /// hashes never starts them). Threads that started are kept even if others could not be:
    /// fewer threads only means jobs wait longer; none at all is an error, tried again next time.
    fn submit(&self, job: Job) -> anyhow::Result<()> {
        let mut jobs = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let queue = match jobs.as_ref() {
            Some(queue) => queue,
            None => {
                let (queue, receiver) = std::sync::mpsc::channel();
                let receiver = Arc::new(Mutex::new(receiver));
                let mut started = 0;
                let mut failure = None;
                for i in 0..self.threads {
                    let receiver = receiver.clone();
                    match std::thread::Builder::new()
                        .name(format!("argon2-{i}"))
                        .spawn(move || hashing_thread(&receiver))
                    {
                        Ok(_) => started += 1,
                        Err(e) => failure = Some(e),
                    }
                }
                if let Some(e) = failure {
                    if started == 0 {
                        return Err(anyhow::Error::new(e).context("starting the password hashing threads"));
                    }
                    tracing::warn!(error = %e, started, wanted = self.threads, "not every password hashing thread started");
                }
                jobs.insert(queue)
            }
        };
        queue
            .send(job)
            .map_err(|_| anyhow::anyhow!("the password hashing threads have stopped"))
    }

    fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.with_memory(self.params.block_count(), |memory| {
            hasher.hash_password_into_with_memory(password.expose_secret().as_bytes(), &salt_bytes, &mut out, memory)
        })
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
        let output = Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?;
        Ok(PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        }
        .to_string())
    }

    fn current_cost(&self) -> Option<Duration> {
        *self
            .current_cost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fold one timing of a verification at the configured parameters into the moving average
    /// (weight 1/8: steady under noise, follows a change of load within a few dozen logins).
    fn record_cost(&self, took: Duration) {
        let mut cost = self
            .current_cost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *cost = Some(match *cost {
            None => took,
            Some(average) => (average * 7 + took) / 8,
        });
    }

    /// Verify against the dummy hash (configured parameters) and record how long it took.
    fn timed_dummy(&self, password: &SecretString) {
        let started = Instant::now();
        let _ = self.verify_text(&self.dummy_hash, password);
        self.record_cost(started.elapsed());
    }

    fn verify_text(&self, hash: &str, password: &SecretString) -> bool {
        PasswordHash::new(hash).is_ok_and(|parsed| self.verify_parsed(&parsed, password))
    }

    /// What `argon2`'s `PasswordVerifier` does (algorithm, version and parameters from the PHC
    /// string; constant-time comparison of the outputs), on the reused work memory.
    fn verify_parsed(&self, parsed: &PasswordHash<'_>, password: &SecretString) -> bool {
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let Ok(params) = Params::try_from(parsed) else {
            return false;
        };
        let mut salt_buf = [0u8; Salt::MAX_LENGTH];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        let blocks = params.block_count();
        let hasher = Argon2::new(algorithm, version, params);
        let mut out = vec![0u8; expected.len()];
        let computed = self.with_memory(blocks, |memory| {
            hasher.hash_password_into_with_memory(password.expose_secret().as_bytes(), salt_bytes, &mut out, memory)
        });
        // `Output`'s equality is constant-time.
        computed.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
    }

    /// Lend `work` a zeroed work area of at least `blocks` blocks from the pool (allocating one
    /// when every pooled area is in use), then wipe it and put it back.
    fn with_memory<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut area = WorkArea {
            memory: self
                .buffers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()
                .unwrap_or_default(),
            pool: &self.buffers,
        };
        if area.memory.len() < blocks {
            area.memory.resize(blocks, Block::new());
        }
        work(&mut area.memory[..blocks])
    }
}

/// A work area on loan from the pool. Dropping it (after the hash, or while unwinding from a
/// panic in it) wipes it, since it holds values derived from the password, and puts it back.
struct WorkArea<'a> {
    memory: Vec<Block>,
    pool: &'a Mutex<Vec<Vec<Block>>>,
}

impl Drop for WorkArea<'_> {
    fn drop(&mut self) {
        self.memory.iter_mut().for_each(Zeroize::zeroize);
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(std::mem::take(&mut self.memory));
    }
}

/// A PHC string with the configured parameters, a random salt and a random output.
fn dummy_hash(params: &Params) -> anyhow::Result<String> {
    let mut salt_bytes = [0u8; 16];
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    getrandom::fill(&mut salt_bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    getrandom::fill(&mut out).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    }
    .to_string())
}

/// True when the stored hash is not argon2id or used lower cost parameters than configured.
fn weaker_than(stored: &PasswordHash<'_>, wanted: &Params) -> bool {
    if stored.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(stored) {
        Ok(p) => p.m_cost() < wanted.m_cost() || p.t_cost() < wanted.t_cost() || p.p_cost() < wanted.p_cost(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn code(pw: &str, email: &str) -> Option<&'static str> {
        check_policy(&secret(pw), email, 8, "password").err().map(|e| e.code)
    }

    #[test]
    fn ships_at_least_ten_thousand_common_passwords() {
        assert!(COMMON_PASSWORDS.len() >= 10_000, "{}", COMMON_PASSWORDS.len());
        assert!(COMMON_PASSWORDS.contains("password"));
    }

    #[test]
    fn policy() {
        assert_eq!(code("short", "a@example.com"), Some("password_too_short"));
        assert_eq!(code(&"x".repeat(257), "a@example.com"), Some("password_too_long"));
        assert_eq!(code(&"ab".repeat(128), "a@example.com"), None, "256 characters is fine");
        assert_eq!(code("password", "a@example.com"), Some("password_too_common"));
        assert_eq!(
            code("PassWord123", "a@example.com"),
            Some("password_too_common"),
            "case-insensitive"
        );
        assert_eq!(
            code("Long.Mail@Example.com", " long.mail@example.com "),
            Some("password_equals_email")
        );
        assert_eq!(code("correct horse battery staple", "a@example.com"), None);
        // Length counts after normalisation: four characters that NFKC turns into eight
        // ("ﬃ" → "ffi") are long enough; "ﬀﬀﬀﬀ" → "ffffffff" is long enough but common.
        assert_eq!(code("ﬃﬃqz", "a@example.com"), None);
        assert_eq!(code("ﬀﬀﬀﬀ", "a@example.com"), Some("password_too_common"));
        assert_eq!(code("ﬃq", "a@example.com"), Some("password_too_short"));
        assert_eq!(
            code("ｐａｓｓｗｏｒｄ", "a@example.com"),
            Some("password_too_common"),
            "full-width is NFKC'd"
        );
        // Characters, not bytes: 8 multi-byte characters are enough.
        assert_eq!(code("éèêëēėęě", "a@example.com"), None);
    }

    #[test]
    fn min_length_is_configurable_upward() {
        let r = check_policy(&secret("abcdefghij"), "a@b.co", 12, "password");
        assert_eq!(r.err().map(|e| e.code), Some("password_too_short"));
    }

    fn owasp() -> Argon2Settings {
        Argon2Settings {
            memory_kib: OWASP_MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hash_and_verify() -> anyhow::Result<()> {
        let p = Passwords::new(owasp())?;
        let hash = p.hash(normalize("correct horse battery staple")).await?;
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        let ok = p
            .verify(secret("correct horse battery staple"), Some(hash.clone()))
            .await?;
        assert_eq!(
            ok,
            Verified {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = p.verify(secret("wrong horse battery staple"), Some(hash)).await?;
        assert!(!bad.matches);
        // Unknown user: verified against the dummy hash, never a match, even for its own password.
        let none = p.verify(secret("anything at all"), None).await?;
        assert!(!none.matches);
        Ok(())
    }

    #[tokio::test]
    async fn nfkc_equivalent_passwords_match() -> anyhow::Result<()> {
        let p = Passwords::new(owasp())?;
        let hash = p.hash(normalize("ｃｏｒｒｅｃｔ-horse")).await?;
        assert!(p.verify(secret("correct-horse"), Some(hash)).await?.matches);
        Ok(())
    }

    #[tokio::test]
    async fn raised_parameters_ask_for_a_rehash() -> anyhow::Result<()> {
        let old = Passwords::new(owasp())?;
        let hash = old.hash(normalize("correct horse battery staple")).await?;
        let stronger = Passwords::new(Argon2Settings {
            iterations: 3,
            ..owasp()
        })?;
        let v = stronger
            .verify(secret("correct horse battery staple"), Some(hash))
            .await?;
        assert_eq!(
            v,
            Verified {
                matches: true,
                needs_rehash: true
            }
        );
        Ok(())
    }

    /// After a cost raise, a wrong password for an account whose hash still has the old, cheaper
    /// parameters takes as long as an unknown email (verified at the current parameters).
    #[tokio::test]
    async fn a_stale_cheaper_hash_takes_as_long_as_an_unknown_email() -> anyhow::Result<()> {
        let old = Passwords::new(owasp())?;
        let stale = old.hash(normalize("correct horse battery staple")).await?;
        let raised = Passwords::new(Argon2Settings {
            memory_kib: OWASP_MIN_MEMORY_KIB * 4,
            ..owasp()
        })?;
        let time = |stored: Option<String>| {
            let raised = raised.clone();
            async move {
                let start = std::time::Instant::now();
                let v = raised.verify(secret("wrong horse battery staple"), stored).await?;
                assert!(!v.matches);
                anyhow::Ok(start.elapsed())
            }
        };
        // Warm up (the first verification of an instance also times the current parameters).
        time(None).await?;
        time(Some(stale.clone())).await?;
        let (mut unknown, mut stale_times) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            unknown.push(time(None).await?);
            stale_times.push(time(Some(stale.clone())).await?);
        }
        unknown.sort();
        stale_times.sort();
        let (u, s) = (unknown[3], stale_times[3]);
        // Unpadded, the stale hash costs a quarter of the current one.
        assert!(s.as_secs_f64() >= 0.8 * u.as_secs_f64(), "stale {s:?} vs unknown {u:?}");
        Ok(())
    }

    #[tokio::test]
    async fn corrupt_hash_never_matches() -> anyhow::Result<()> {
        let p = Passwords::new(owasp())?;
        let v = p.verify(secret("x"), Some("not-a-hash".into())).await?;
        assert!(!v.matches);
        Ok(())
    }
    #[tokio::test]
    async fn the_dummy_hash_has_the_configured_parameters_and_matches_nothing() -> anyhow::Result<()> {
        let p = Passwords::new(owasp())?;
        let parsed = PasswordHash::new(&p.inner.dummy_hash).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (19_456, 2, 1));
        assert_eq!(parsed.hash.map(|h| h.len()), Some(Params::DEFAULT_OUTPUT_LEN));
        assert!(!weaker_than(&parsed, &p.inner.params), "same cost as a real hash");
        // Two instances never share a dummy hash (random salt and output).
        assert_ne!(p.inner.dummy_hash, Passwords::new(owasp())?.inner.dummy_hash);
        Ok(())
    }

    /// Hashes made here verify with the argon2 crate's own verifier and the other way round, so
    /// hashes stored before the work memory was pooled keep working.
    #[tokio::test]
    async fn interoperates_with_the_argon2_crate() -> anyhow::Result<()> {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let p = Passwords::new(owasp())?;
        let ours = p.hash(normalize("correct horse battery staple")).await?;
        let parsed = PasswordHash::new(&ours).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery staple", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse battery staple", &parsed)
                .is_err()
        );

        let salt = SaltString::encode_b64(b"sixteen byte slt").map_err(|e| anyhow::anyhow!("{e}"))?;
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let theirs = Argon2::new(
                algorithm,
                Version::V0x13,
                Params::new(8_192, 1, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?,
            )
            .hash_password(b"tr0ub4dor&3-legacy", &salt)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string();
            let v = p.verify(secret("tr0ub4dor&3-legacy"), Some(theirs.clone())).await?;
            assert_eq!(
                v,
                Verified {
                    matches: true,
                    needs_rehash: true
                },
                "{theirs}"
            );
            assert!(!p.verify(secret("tr0ub4dor&3-legacY"), Some(theirs)).await?.matches);
        }
        Ok(())
    }

    /// The hashing threads start with the first hash, not before: a function that never hashes
    /// (tasks, admin, the authorizer) pays nothing for them.
    #[tokio::test]
    async fn hashing_threads_start_on_first_use() -> anyhow::Result<()> {
        let p = Passwords::new(Argon2Settings {
            memory_kib: 1_024,
            iterations: 1,
            parallelism: 1,
        })?;
        let started = |p: &Passwords| p.inner.jobs.lock().map(|j| j.is_some()).unwrap_or(false);
        assert!(!started(&p));
        let hash = p.hash(normalize("a password of some length")).await?;
        assert!(started(&p));
        assert!(p.verify(secret("a password of some length"), Some(hash)).await?.matches);
        Ok(())
    }

    /// A hash that panics half-way still wipes its work area and gives it back to the pool.
    #[test]
    fn a_panicking_hash_still_wipes_its_work_area() -> anyhow::Result<()> {
        let p = Passwords::new(Argon2Settings {
            memory_kib: 1_024,
            iterations: 1,
            parallelism: 1,
        })?;
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.inner.with_memory(1_024, |memory| {
                memory.iter_mut().for_each(|b| b.as_mut().fill(0x5eed));
                std::panic::resume_unwind(Box::new("a hash that fails half-way"));
            })
        }));
        assert!(unwound.is_err());
        let pool = p.inner.buffers.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        assert_eq!(pool.len(), 1, "the area went back to the pool");
        assert!(pool[0].iter().all(|b| b.as_ref().iter().all(|w| *w == 0)), "wiped");
        Ok(())
    }

    /// The work memory is reused: however many hashes ran, at most one area per core exists, and
    /// each is wiped after use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_memory_is_pooled_per_core_and_wiped() -> anyhow::Result<()> {
        let p = Passwords::new(Argon2Settings {
            memory_kib: 1_024,
            iterations: 1,
            parallelism: 1,
        })?;
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..(4 * cores + 4) {
            let p = p.clone();
            tasks.spawn(async move { p.hash(normalize(&format!("password number {i}"))).await });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        let pool = p.inner.buffers.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        assert!(
            !pool.is_empty() && pool.len() <= cores,
            "{} areas for {cores} cores",
            pool.len()
        );
        for area in pool.iter() {
            assert_eq!(area.len(), 1_024);
            assert!(area.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)), "wiped");
        }
        Ok(())
    }
}
