//! Console accounts and sessions.
//!
//! Accounts live in one file (`[web] accounts`), one per line:
//! `name:role:hash`, the hash an Argon2id PHC string (RFC 9106; the
//! `argon2` crate's default parameters, m = 19 MiB, t = 2, p = 1). The
//! file is written by `audit-trail user add|del|passwd` (mode 0640, replaced
//! atomically) and read by the console at each login, so changes apply at
//! once.
//!
//! Sessions are random 256-bit tokens in a cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` over TLS), held in memory: a restart logs
//! everyone out. A session ends after `idle_minutes` without a request and
//! after 12 hours in any case.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read records, sessions, reports and verification; download.
    Auditor,
    /// Also the status of schedules, uploads and SIEM forwarding.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "auditor" => Ok(Role::Auditor),
            "operator" => Ok(Role::Operator),
            _ => bail!("{s:?} is not a role: use auditor or operator"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub hash: String,
}

/// Whether `name` can be an account name: 1 to 64 of letters, digits and
/// `. _ @ -`, not starting with `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// The accounts file.
pub struct Accounts {
    pub path: PathBuf,
}

impl Accounts {
    pub fn new(path: PathBuf) -> Accounts {
        Accounts { path }
    }

    /// Every account; none when the file does not exist.
    pub fn read(&self) -> Result<Vec<Account>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.path.display())),
        };
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, ':');
            let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
                bail!("{} line {}: not name:role:hash", self.path.display(), n + 1);
            };
            let role = Role::parse(role).with_context(|| format!("{} line {}", self.path.display(), n + 1))?;
            out.push(Account { name: name.to_string(), role, hash: hash.to_string() });
        }
        Ok(out)
    }

    fn write(&self, accounts: &[Account]) -> Result<()> {
        let mut text = String::from("# audit-trail web console accounts: name:role:argon2id-hash (audit-trail user)\n");
        for a in accounts {
            text.push_str(&format!("{}:{}:{}\n", a.name, a.role.as_str(), a.hash));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::fsx::write_atomic(&self.path, text.as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o640))?;
        // Written by root for a service that runs as its own user: give the
        // file the owner of the directory it is in.
        if let Some(dir) = self.path.parent()
            && let Ok(m) = std::fs::metadata(dir)
        {
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::chown(&self.path, Some(m.uid()), Some(m.gid()));
        }
        Ok(())
    }

    /// Adds an account, or with `replace` sets the password (and role) of an existing one.
    pub fn set(&self, name: &str, role: Option<Role>, password: &str, replace: bool) -> Result<()> {
        if !valid_name(name) {
            bail!("{name:?} is not an account name: 1 to 64 letters, digits, '.', '_', '@' or '-'");
        }
        if password.chars().count() < 8 {
            bail!("the password is shorter than 8 characters");
        }
        let mut all = self.read()?;
        let hash = hash_password(password)?;
        match all.iter_mut().find(|a| a.name == name) {
            Some(_) if !replace => bail!("account {name:?} exists: use `audit-trail user passwd {name}`"),
            Some(a) => {
                a.hash = hash;
                if let Some(r) = role {
                    a.role = r;
                }
            }
            None if replace => bail!("no account {name:?}: use `audit-trail user add {name}`"),
            None => all.push(Account { name: name.to_string(), role: role.unwrap_or(Role::Auditor), hash }),
        }
        self.write(&all)
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        let mut all = self.read()?;
        let before = all.len();
        all.retain(|a| a.name != name);
        if all.len() == before {
            bail!("no account {name:?}");
        }
        self.write(&all)
    }

    /// The account when `password` is its password. Takes the time of one
    /// Argon2 verification whether or not the account exists.
    pub fn check(&self, name: &str, password: &str) -> Result<Option<Account>> {
        let all = self.read()?;
        let found = all.into_iter().find(|a| a.name == name);
        let hash = found.as_ref().map_or(DUMMY_HASH.as_str(), |a| a.hash.as_str());
        let ok = verify_password(password, hash);
        Ok(found.filter(|_| ok))
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    // A fresh 16-byte salt from the operating system (the crate's `getrandom`).
    let hash: PasswordHash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash checked against when the account does not exist, so that the
/// answer takes as long as for a wrong password.
pub static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("no such account").unwrap_or_default());

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// Sent back in forms that change state (logout).
    pub csrf: String,
    /// Random id naming the session in the audit records (`session_id`).
    pub id: String,
    /// The account's password hash at sign-in: a changed password, role or
    /// a deleted account ends the session.
    pub hash: String,
    pub source: String,
    started: Instant,
    seen: Instant,
    /// `seen` on the wall clock, for the time a timed-out session ended.
    seen_at: std::time::SystemTime,
    started_at: std::time::SystemTime,
}

impl Session {
    /// When the session ended if it timed out: its idle time after the last
    /// request, or its longest life after sign-in, whichever came first.
    pub fn timed_out_at(&self, idle: Duration) -> std::time::SystemTime {
        (self.seen_at + idle).min(self.started_at + MAX_SESSION)
    }
}

/// Longest life of a session, however active.
const MAX_SESSION: Duration = Duration::from_secs(12 * 3600);

pub struct Sessions {
    idle: Duration,
    live: Mutex<HashMap<String, Session>>,
    /// Sign-ins in progress, one at a time per account name.
    pub attempts: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// Failed logins per account name and per source address: count and last time.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Random bytes as hex.
pub fn token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // A machine without a random source cannot hold sessions safely.
    getrandom::fill(&mut b).expect("the operating system's random source");
    hex::encode(b)
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            live: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session; returns its token and the session.
    pub fn start(&self, account: &Account, source: &str) -> (String, Session) {
        let now = Instant::now();
        let s = Session {
            user: account.name.clone(),
            role: account.role,
            csrf: token(16),
            id: token(6),
            hash: account.hash.clone(),
            source: source.to_string(),
            started: now,
            seen: now,
            seen_at: std::time::SystemTime::now(),
            started_at: std::time::SystemTime::now(),
        };
        let t = token(32);
        self.live.lock().unwrap_or_else(|e| e.into_inner()).insert(t.clone(), s.clone());
        (t, s)
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) >= self.idle || now.duration_since(s.started) >= MAX_SESSION
    }

    /// Ends the sessions that timed out; returns them (for their records).
    pub fn sweep(&self) -> Vec<Session> {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = live.iter().filter(|(_, s)| self.expired(s, now)).map(|(t, _)| t.clone()).collect();
        gone.into_iter().filter_map(|t| live.remove(&t)).collect()
    }

    /// The live session of `token`, marked as seen now.
    pub fn get(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let s = live.get_mut(token)?;
        if self.expired(s, now) {
            return None;
        }
        s.seen = now;
        s.seen_at = std::time::SystemTime::now();
        Some(s.clone())
    }

    /// The idle time after which a session ends.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Ends the sessions `keep` says no to; returns them.
    pub fn end_unless(&self, keep: impl Fn(&Session) -> bool) -> Vec<Session> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = live.iter().filter(|(_, s)| !keep(s)).map(|(t, _)| t.clone()).collect();
        gone.into_iter().filter_map(|t| live.remove(&t)).collect()
    }

    /// Ends every session (the console stops); returns them.
    pub fn end_all(&self) -> Vec<Session> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, s)| s).collect()
    }

    pub fn end(&self, token: &str) -> Option<Session> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(token)
    }

    /// The lock held by a sign-in from `source` while it runs (with its
    /// delay): another one from there meanwhile, for any account, is
    /// refused, so parallel guesses gain nothing, and guesses from
    /// elsewhere do not hold up an account's owner.
    pub fn attempt_lock(&self, source: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut a = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if a.len() > 10_000 {
            a.retain(|_, m| std::sync::Arc::strong_count(m) > 1);
        }
        a.entry(source.to_string()).or_default().clone()
    }

    /// How long to wait before answering a login for `name` from `source`:
    /// nothing at first, then doubling from 0.5 s with each recent failure
    /// for that account from that address, or from that address for any
    /// account, up to 8 s. Failures older than 15 minutes are forgotten.
    pub fn delay(&self, name: &str, source: &str) -> Duration {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = [format!("u:{}\0{source}", name.to_ascii_lowercase()), format!("s:{source}")]
            .iter()
            .filter_map(|k| f.get(k))
            .filter(|(_, at)| at.elapsed() < Duration::from_secs(900))
            .map(|(n, _)| *n)
            .max()
            .unwrap_or(0);
        if n == 0 { Duration::ZERO } else { Duration::from_millis(250u64 << n.min(5)) }
    }

    pub fn failed(&self, name: &str, source: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() > 100_000 {
            f.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(900));
        }
        for k in [format!("u:{}\0{source}", name.to_ascii_lowercase()), format!("s:{source}")] {
            let e = f.entry(k).or_insert((0, Instant::now()));
            if e.1.elapsed() >= Duration::from_secs(900) {
                e.0 = 0;
            }
            e.0 = e.0.saturating_add(1);
            e.1 = Instant::now();
        }
    }

    /// A sign-in succeeded: that account's failures from `source` are
    /// forgotten (the address's own count stays, so that signing in to one
    /// account does not open the way to guessing others).
    pub fn succeeded(&self, name: &str, source: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.remove(&format!("u:{}\0{source}", name.to_ascii_lowercase()));
    }
}

/// The accounts file of a data directory when `[web] accounts` is unset.
pub fn default_accounts_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("web-accounts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_round_trip_and_check_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let a = Accounts::new(dir.path().join("acc"));
        a.set("alice", Some(Role::Operator), "correct horse", false).unwrap();
        a.set("bob", None, "battery staple", false).unwrap();
        assert!(a.set("alice", None, "another one", false).is_err());
        assert!(a.set("bad:name", None, "long enough", false).is_err());
        assert!(a.set("carol", None, "short", false).is_err());
        let text = std::fs::read_to_string(dir.path().join("acc")).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        assert_eq!(a.check("alice", "correct horse").unwrap().unwrap().role, Role::Operator);
        assert!(a.check("alice", "wrong").unwrap().is_none());
        assert!(a.check("nobody", "correct horse").unwrap().is_none());
        a.set("alice", None, "new password", true).unwrap();
        assert!(a.check("alice", "correct horse").unwrap().is_none());
        assert!(a.check("alice", "new password").unwrap().is_some());
        a.delete("bob").unwrap();
        assert!(a.check("bob", "battery staple").unwrap().is_none());
        assert!(a.delete("bob").is_err());
    }

    #[test]
    fn failed_logins_slow_down_the_next_attempt() {
        let s = Sessions::new(Duration::from_secs(60));
        assert_eq!(s.delay("alice", "10.0.0.1"), Duration::ZERO);
        s.failed("alice", "10.0.0.1");
        let one = s.delay("alice", "10.0.0.2");
        s.failed("alice", "10.0.0.1");
        let two = s.delay("bob", "10.0.0.1");
        // From another address, the account's owner does not wait.
        assert_eq!(one, Duration::ZERO);
        assert!(two > Duration::ZERO, "{two:?}");
        for _ in 0..20 {
            s.failed("alice", "10.0.0.1");
        }
        assert!(s.delay("alice", "x") <= Duration::from_secs(8));
        assert!(s.delay("alice", "10.0.0.1") >= Duration::from_secs(8));
        s.succeeded("alice", "10.0.0.1");
        // The address's own failures still count.
        assert!(s.delay("alice", "10.0.0.1") >= Duration::from_secs(8));
        assert!(s.delay("carol", "10.0.0.1") >= Duration::from_secs(8));
    }
}
