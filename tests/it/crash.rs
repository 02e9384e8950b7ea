//! Crash-safety tests: real processes killed with SIGKILL.
//!
//! Each randomised test prints its seed (`seed = N`); run it again with
//! `AUDIT_TRAIL_CRASH_SEED=N` to replay the same batches and kill delays (the
//! scheduling of the processes still differs from run to run).
//!
//! What the tests check, after the crashes and one normal append (which
//! repairs what the crashes left):
//!
//! * every acknowledged record is in `export --all` under exactly the id it
//!   was acknowledged with, with its content;
//! * ids are exactly `1..=max`, no gap, no duplicate, and the records of one
//!   batch are a contiguous prefix of that batch (only the tail can be lost);
//! * every `audit_trail/*.xml` is complete and parses (xmllint), holds exactly
//!   `capacity` records, and is never modified or removed once it appeared —
//!   checked after every round, *before* any repair too;
//! * file names are unique and sort in id order; `verify` passes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::harness::*;

const SIGKILL: i32 = 9;

/// Text that must survive byte for byte: markup, CDATA end, quotes, control
/// characters, non-ASCII.
const HOSTILE: &str = "<b>&amp; ]]> \"quoted\" 'single'\ttab\nsecond line\r\nthird é 日本 😀";

/// xorshift64*, seeded from the clock or `AUDIT_TRAIL_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed =
            std::env::var("AUDIT_TRAIL_CRASH_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
            });
        eprintln!("{test}: seed = {seed} (replay with AUDIT_TRAIL_CRASH_SEED={seed})");
        let state = seed ^ 0x9E37_79B9_7F4A_7C15;
        Rng(if state == 0 { 1 } else { state })
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// One JSON Lines record with this `action_data` (which starts with its token).
fn json_line(data: &str) -> String {
    let data = serde_json::to_string(data).unwrap();
    format!(
        r#"{{"user_name":"crash-tester","source_ip":"10.9.8.7","app_name":"crash","app_context":"Kill","action_type":"Add","category":"config","action_data":{data}}}"#
    )
}

/// `action_data` of a plain record: just the token.
fn plain(token: &str) -> String {
    token.to_owned()
}

/// `action_data` that must come back byte for byte.
fn hostile(token: &str) -> String {
    format!("{token} {HOSTILE}")
}

/// `action_data` of about 300 bytes.
fn padded(token: &str) -> String {
    format!("{token} {}", "0123456789abcdef".repeat(18))
}

/// The token of a record: the first word of its `action_data`.
fn token_of(action_data: &str) -> &str {
    action_data.split([' ', '\t', '\n']).next().unwrap_or("")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Batch,
    Single,
}

/// A running `append` process.
struct Proc {
    label: String,
    kind: Kind,
    tokens: Vec<String>,
    child: Child,
    started: Instant,
    kill_after: Option<Duration>,
}

fn spawn_batch(env: &Env, label: String, tokens: Vec<String>, data: fn(&str) -> String) -> Proc {
    let mut input = String::new();
    for t in &tokens {
        input.push_str(&json_line(&data(t)));
        input.push('\n');
    }
    let mut c = env.cmd(&["append", "--json", "-"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = c.spawn().expect("spawn audit-trail");
    let mut stdin = child.stdin.take().unwrap();
    if input.len() < 32 * 1024 {
        // Fits in the pipe buffer: no need for a writer thread.
        let _ = stdin.write_all(input.as_bytes());
    } else {
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    Proc { label, kind: Kind::Batch, tokens, child, started, kill_after: None }
}

fn spawn_single(env: &Env, label: String, token: String) -> Proc {
    let mut c = env.cmd(&[
        "append",
        "--user",
        "crash-tester",
        "--source-ip",
        "10.9.8.7",
        "--app",
        "crash",
        "--context",
        "Kill",
        "--action",
        "Add",
        "--category",
        "config",
        "--data",
        &token,
    ]);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = c.spawn().expect("spawn audit-trail");
    Proc { label, kind: Kind::Single, tokens: vec![token], child, started, kill_after: None }
}

/// A process that has ended.
struct Done {
    label: String,
    kind: Kind,
    tokens: Vec<String>,
    status: ExitStatus,
    /// Ended by our SIGKILL (not merely scheduled for one).
    killed: bool,
    stdout: String,
    stderr: String,
}

/// Kills the processes that have a `kill_after` at that moment after their
/// start, then waits for all of them.
fn kill_and_wait(mut procs: Vec<Proc>) -> Vec<Done> {
    let mut schedule: Vec<(Instant, usize)> =
        procs.iter().enumerate().filter_map(|(i, p)| p.kill_after.map(|d| (p.started + d, i))).collect();
    schedule.sort();
    for (at, i) in schedule {
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // SIGKILL; harmless if the process has already exited (it is not
        // reaped before wait_with_output below).
        let _ = procs[i].child.kill();
    }
    procs
        .into_iter()
        .map(|p| {
            let out = p.child.wait_with_output().expect("wait for audit-trail");
            Done {
                label: p.label,
                kind: p.kind,
                tokens: p.tokens,
                status: out.status,
                killed: out.status.signal() == Some(SIGKILL),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect()
}

/// The repair notes that opening the log printed.
fn repair_notes(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains("repaired ") || l.contains("removed ") || l.contains("finished sealing"))
        .map(str::to_owned)
        .collect()
}

/// Everything learnt from the processes: what was acknowledged, and what
/// went wrong (collected so that one failure shows every problem found).
#[derive(Default)]
struct Ledger {
    /// id → token of every acknowledged record.
    acked: BTreeMap<u64, String>,
    /// The tokens of every batch started, in input order.
    batches: Vec<Vec<String>>,
    problems: Vec<String>,
    processes: usize,
    kills: usize,
    /// Killed after printing their acknowledgement.
    acked_then_killed: usize,
    repair_notes: Vec<String>,
}

impl Ledger {
    fn absorb(&mut self, d: Done) {
        self.processes += 1;
        if d.killed {
            self.kills += 1;
        }
        self.repair_notes.extend(repair_notes(&d.stderr));
        let first_id = match d.kind {
            Kind::Batch => match parse_batch_ack(&d.stdout) {
                Some((n, a, b)) => {
                    if n != d.tokens.len() as u64 || b + 1 != a + n {
                        self.problems.push(format!(
                            "{}: acknowledged `{}` for a batch of {} records",
                            d.label,
                            d.stdout.trim(),
                            d.tokens.len()
                        ));
                    }
                    Some(a)
                }
                None => None,
            },
            Kind::Single => d.stdout.trim().parse::<u64>().ok(),
        };
        if d.status.success() && first_id.is_none() {
            self.problems.push(format!("{}: exited 0 without acknowledging: stdout {:?}", d.label, d.stdout));
        }
        if !d.killed && !d.status.success() {
            self.problems.push(format!(
                "{}: was not killed but failed ({}): stdout {:?} stderr {:?}",
                d.label, d.status, d.stdout, d.stderr
            ));
        }
        if let Some(first) = first_id {
            if d.killed {
                self.acked_then_killed += 1;
            }
            for (i, t) in d.tokens.iter().enumerate() {
                let id = first + i as u64;
                if let Some(other) = self.acked.insert(id, t.clone()) {
                    self.problems.push(format!("id {id} acknowledged twice: for {other} and for {t} ({})", d.label));
                }
            }
        }
        if d.kind == Kind::Batch {
            self.batches.push(d.tokens);
        }
    }

    fn run_all(&mut self, procs: Vec<Proc>) {
        for d in kill_and_wait(procs) {
            self.absorb(d);
        }
    }

    /// A normal single-record append that must succeed; returns its id and
    /// the repair notes it printed.
    fn append_one(&mut self, env: &Env, token: &str) -> (Option<u64>, Vec<String>) {
        let p = spawn_single(env, format!("append {token}"), token.to_owned());
        let d = kill_and_wait(vec![p]).pop().unwrap();
        let notes = repair_notes(&d.stderr);
        let id = d.stdout.trim().parse().ok();
        // absorb() reports a failure: this process is never killed.
        self.absorb(d);
        (id, notes)
    }

    #[track_caller]
    fn assert_no_problems(&self, test: &str) {
        assert!(
            self.problems.is_empty(),
            "{test}: {} problem(s):\n  {}",
            self.problems.len(),
            self.problems.join("\n  ")
        );
    }
}

/// A sealed file as first seen.
struct SealedFile {
    hash: u64,
    len: u64,
    first_id: u64,
    count: u64,
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Watches `audit_trail/`: every sealed file is checked when it first
/// appears, must stay as it was, and the files chain up in id order.
struct SealedWatch {
    capacity: u64,
    seen: BTreeMap<PathBuf, SealedFile>,
}

impl SealedWatch {
    fn new(capacity: u64) -> SealedWatch {
        SealedWatch { capacity, seen: BTreeMap::new() }
    }

    /// Checks new sealed files, the stylesheet, names and the id chain;
    /// returns the last id of the sealed files (0 when none).
    fn check(&mut self, env: &Env, problems: &mut Vec<String>) -> u64 {
        let dir = env.sealed_dir();
        let mut new = Vec::new();
        let mut present = HashSet::new();
        for entry in std::fs::read_dir(&dir).expect("list audit_trail/") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "audit-trail.xsl" {
                check_stylesheet(&path, problems);
            } else if let Some(stem) = name.strip_suffix(".xml") {
                if !valid_stem(stem) {
                    problems.push(format!("unexpected sealed file name {name}"));
                }
                present.insert(path.clone());
                if !self.seen.contains_key(&path) {
                    new.push(path);
                }
            }
        }
        for p in self.seen.keys() {
            if !present.contains(p) {
                problems.push(format!("sealed file {} disappeared", p.display()));
            }
        }
        new.sort();
        problems.extend(well_formed_errors(&new));
        for path in new {
            let bytes = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let ids = record_ids_in(&bytes);
            let first_id = header_first_id(&bytes).unwrap_or(0);
            if first_id == 0 {
                problems.push(format!("sealed {name} has no first-id"));
            }
            let expected: Vec<u64> = (first_id..first_id + ids.len() as u64).collect();
            if ids != expected {
                problems.push(format!("sealed {name}: first-id {first_id} but record ids {ids:?}"));
            }
            if ids.len() as u64 != self.capacity {
                problems.push(format!(
                    "sealed {name} holds {} records; capacity is {} and nothing rotated early",
                    ids.len(),
                    self.capacity
                ));
            }
            if !bytes.ends_with(b"</AuditTrail>\n") || memchr::memmem::find(&bytes, b"<Seal ").is_none() {
                problems.push(format!("sealed {name} lacks its seal or closing tag"));
            }
            let count = ids.len() as u64;
            self.seen.insert(path, SealedFile { hash: hash_bytes(&bytes), len: bytes.len() as u64, first_id, count });
        }
        // Names sort in creation order: the chain of ids follows the names.
        let mut next = 1;
        for (path, f) in &self.seen {
            if f.first_id != next {
                problems.push(format!(
                    "sealed files out of order or with a gap: {} starts at id {} where {next} was expected",
                    path.display(),
                    f.first_id
                ));
            }
            next = f.first_id + f.count;
        }
        next - 1
    }

    /// Every sealed file seen is still byte for byte what it was.
    fn check_unchanged(&self, problems: &mut Vec<String>) {
        for (path, f) in &self.seen {
            match std::fs::read(path) {
                Ok(b) if b.len() as u64 == f.len && hash_bytes(&b) == f.hash => {}
                Ok(_) => problems.push(format!("sealed file {} was modified after it was sealed", path.display())),
                Err(e) => problems.push(format!("sealed file {} cannot be read: {e}", path.display())),
            }
        }
    }
}

/// `pbx01_YYYYMMDDHHMMSS`.
fn valid_stem(stem: &str) -> bool {
    stem.strip_prefix("pbx01_").is_some_and(|s| s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// The stylesheet in `audit_trail/` must be the complete shipped one.
fn check_stylesheet(path: &Path, problems: &mut Vec<String>) {
    let shipped = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/audit-trail.xsl")).unwrap();
    let got = std::fs::read(path).unwrap_or_default();
    if got != shipped {
        problems.push(format!(
            "{} is not the shipped stylesheet ({} bytes instead of {})",
            path.display(),
            got.len(),
            shipped.len()
        ));
    }
}

/// The whole history, after recovery: ids `1..=max` in order, every
/// acknowledged record under its id with its content, each token once, and
/// the records of a batch a contiguous prefix of it. Returns the export.
fn check_history(env: &Env, ledger: &mut Ledger, data_of: fn(&str) -> String) -> Vec<(u64, String)> {
    let lines = env.export_all_lines();
    let problems = &mut ledger.problems;
    for (i, (id, _)) in lines.iter().enumerate() {
        if *id != i as u64 + 1 {
            problems.push(format!(
                "export: record #{} has id {id}, expected {} (gap, duplicate or disorder)",
                i + 1,
                i + 1
            ));
            break;
        }
    }
    let mut token_ids: HashMap<String, u64> = HashMap::new();
    let mut by_id: HashMap<u64, serde_json::Value> = HashMap::new();
    for (id, line) in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["app_name"] == "crash" {
            let data = v["action_data"].as_str().unwrap_or_default();
            let token = token_of(data).to_owned();
            if data != data_of(&token) {
                problems.push(format!("id {id}: action_data {data:?} is not what was submitted for {token}"));
            }
            if let Some(other) = token_ids.insert(token.clone(), *id) {
                problems.push(format!("record {token} stored twice: ids {other} and {id}"));
            }
        }
        by_id.insert(*id, v);
    }
    for (id, token) in &ledger.acked {
        match by_id.get(id) {
            None => problems.push(format!("acknowledged record {token} (id {id}) is missing")),
            Some(v) => {
                let data = v["action_data"].as_str().unwrap_or_default();
                if token_of(data) != token || v["app_name"] != "crash" || v["user_name"] != "crash-tester" {
                    problems.push(format!("id {id} was acknowledged for {token} but holds {v}"));
                }
            }
        }
    }
    for batch in &ledger.batches {
        let ids: Vec<Option<u64>> = batch.iter().map(|t| token_ids.get(t).copied()).collect();
        let kept = ids.iter().take_while(|i| i.is_some()).count();
        if let Some(j) = ids[kept..].iter().position(Option::is_some) {
            problems.push(format!(
                "batch of {}: record {} is missing but the later {} is stored",
                batch[0],
                batch[kept],
                batch[kept + j]
            ));
        }
        for w in ids[..kept].windows(2) {
            if w[1] != w[0].map(|i| i + 1) {
                problems.push(format!("batch of {}: its records are not consecutive ({ids:?})", batch[0]));
                break;
            }
        }
    }
    lines
}

/// `verify` over the data directory passes and covers `1..=max`.
fn check_verify(env: &Env, max: u64, problems: &mut Vec<String>) {
    let run = env.run(&["verify"]);
    if run.code != Some(0) || !run.stdout.contains(&format!("ids 1..{max}")) {
        problems.push(format!(
            "verify (expecting ids 1..{max}) said: code {:?}, stdout {:?}, stderr {:?}",
            run.code, run.stdout, run.stderr
        ));
    }
}

/// After recovery: exactly one active file, not named like a sealed one,
/// whose records carry on from the sealed files up to `last_id`.
fn check_active(env: &Env, sealed_last: u64, last_id: u64, problems: &mut Vec<String>) {
    let actives = env.active_files();
    let [active] = actives.as_slice() else {
        problems.push(format!("expected exactly one active file, found {actives:?}"));
        return;
    };
    let name = active.file_name().unwrap().to_string_lossy().into_owned();
    let Some(stem) = name.strip_suffix(".xml.open") else {
        problems.push(format!("unexpected active file name {name}"));
        return;
    };
    if !valid_stem(stem) || env.sealed_dir().join(format!("{stem}.xml")).exists() {
        problems.push(format!("active file name {name} is malformed or taken by a sealed file"));
    }
    let bytes = std::fs::read(active).unwrap();
    let ids = record_ids_in(&bytes);
    let expected: Vec<u64> = (sealed_last + 1..=last_id).collect();
    if header_first_id(&bytes) != Some(sealed_last + 1) || ids != expected {
        problems.push(format!(
            "active {name}: first-id {:?}, ids {ids:?}; expected ids {}..={last_id} after the sealed files",
            header_first_id(&bytes),
            sealed_last + 1
        ));
    }
}

/// What a crash left in an active file that recovery has to repair, judged
/// from the raw bytes: `None` when the file ends cleanly after its header or
/// after a complete record.
fn tear_of(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let Some(root) = memchr::memmem::find(&bytes, b"<AuditTrail ") else {
        return Some(format!("header cut short ({} bytes)", bytes.len()));
    };
    let Some(header_end) = bytes[root..].iter().position(|&b| b == b'>').map(|p| root + p + 1) else {
        return Some(format!("header cut short ({} bytes)", bytes.len()));
    };
    if bytes.ends_with(b"</AuditTrail>\n") {
        return Some("sealed but not moved".into());
    }
    if memchr::memmem::find(&bytes, b"<Seal ").is_some() {
        return Some("trailer cut short".into());
    }
    if bytes.len() == header_end || bytes.ends_with(b"</Record>") {
        return None;
    }
    Some(format!("torn tail: {:?}", String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(40)..])))
}

/// What a randomised crash test starts with.
struct CrashTest {
    /// Its random numbers (the seed is printed).
    rng: Rng,
    /// A new data directory.
    env: Env,
    ledger: Ledger,
    watch: SealedWatch,
    /// When the test started.
    start: Instant,
}

impl CrashTest {
    /// The start of `test`, on a data directory whose files hold `capacity`
    /// records.
    fn new(test: &str, capacity: u64) -> CrashTest {
        CrashTest {
            rng: Rng::new(test),
            env: Env::with_capacity(capacity),
            ledger: Ledger::default(),
            watch: SealedWatch::new(capacity),
            start: Instant::now(),
        }
    }
}

#[test]
fn concurrent_appends_killed_at_random() {
    const TEST: &str = "concurrent_appends_killed_at_random";
    const CAPACITY: u64 = 7;
    let CrashTest { mut rng, env, mut ledger, mut watch, start } = CrashTest::new(TEST, CAPACITY);
    let mut rounds = 0;
    while rounds < 20 || (ledger.kills < 250 && rounds < 150 && start.elapsed() < Duration::from_secs(35)) {
        let mut procs = Vec::new();
        for p in 0..6 {
            let n = rng.range(1, 40);
            let tokens = (0..n).map(|i| format!("proc-{rounds}-{p}-{i}")).collect();
            procs.push(spawn_batch(&env, format!("round {rounds} batch {p} ({n} records)"), tokens, plain));
        }
        for s in 0..2 {
            procs.push(spawn_single(&env, format!("round {rounds} single {s}"), format!("single-{rounds}-{s}")));
        }
        for p in &mut procs {
            if rng.percent(70) {
                p.kill_after = Some(Duration::from_millis(rng.range(0, 30)));
            }
        }
        ledger.run_all(procs);
        // Before any repair, too: sealed files are complete and chain up.
        watch.check(&env, &mut ledger.problems);
        rounds += 1;
    }

    // The next writer repairs what the last round left.
    let (last, _) = ledger.append_one(&env, "final");
    let lines = check_history(&env, &mut ledger, plain);
    let max = lines.last().map_or(0, |l| l.0);
    if last != Some(max) {
        ledger.problems.push(format!("the final append got id {last:?}, but the history ends at {max}"));
    }
    let sealed_last = watch.check(&env, &mut ledger.problems);
    watch.check_unchanged(&mut ledger.problems);
    check_active(&env, sealed_last, max, &mut ledger.problems);
    check_verify(&env, max, &mut ledger.problems);

    eprintln!(
        "{TEST}: {rounds} rounds, {} processes, {} killed by SIGKILL ({} after acknowledging), \
         {} acknowledged records of {max} stored, {} sealed files, {} repair notes, {:.1?}",
        ledger.processes,
        ledger.kills,
        ledger.acked_then_killed,
        ledger.acked.len(),
        watch.seen.len(),
        ledger.repair_notes.len(),
        start.elapsed()
    );
    assert!(ledger.kills >= 100, "only {} processes were killed mid-run", ledger.kills);
    ledger.assert_no_problems(TEST);
}

/// `action_data` of about 8 KB: 50 such records make a 400 KB write, long
/// enough for a kill to cut it in the middle.
fn fat(token: &str) -> String {
    format!("{token} {}", "fedcba9876543210".repeat(500))
}

/// The `first-id` of the active file, from its header.
fn active_first_id(env: &Env) -> Option<u64> {
    use std::io::Read;
    let path = env.active_files().pop()?;
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path).ok()?.take(512).read_to_end(&mut head).ok()?;
    header_first_id(&head)
}

/// Waits until the active file starts at `first_id` or later (the files
/// before it are sealed), then for `extra`, and kills the process (unless it
/// has exited by then).
fn kill_when_active_reaches(env: &Env, mut p: Proc, first_id: u64, extra: Duration) -> Done {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && p.child.try_wait().ok().flatten().is_none() {
        if active_first_id(env).is_some_and(|id| id >= first_id) {
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    std::thread::sleep(extra);
    let _ = p.child.kill();
    kill_and_wait(vec![p]).pop().unwrap()
}

#[test]
fn kill_during_big_rollover_batch() {
    const TEST: &str = "kill_during_big_rollover_batch";
    const CAPACITY: u64 = 50;
    let CrashTest { mut rng, env, mut ledger, mut watch, start } = CrashTest::new(TEST, CAPACITY);
    let mut tears = Vec::new();
    let mut attempt = 0;
    let mut next_id = 1;
    while attempt < 10 || (tears.is_empty() && attempt < 30) {
        // Alternately many small records (a rollover every 50 records) and
        // fewer large ones (each file written in one long write).
        let (kind, records, data): (&str, u64, fn(&str) -> String) =
            if attempt % 2 == 0 { ("big", 20_000, padded) } else { ("fat", 600, fat) };
        let tokens = (0..records).map(|i| format!("{kind}-{attempt}-{i}")).collect();
        let p = spawn_batch(&env, format!("attempt {attempt} ({records} {kind} records)"), tokens, data);
        // Somewhere in the middle of the batch, at a random point of a file.
        let files = rng.range(1, records / CAPACITY - 1);
        let extra = Duration::from_micros(rng.range(0, if kind == "fat" { 3000 } else { 400 }));
        let d = kill_when_active_reaches(&env, p, next_id + files * CAPACITY, extra);
        let killed = d.killed;
        ledger.absorb(d);

        // Before recovery: what did the kill leave?
        let torn: Vec<String> = env.active_files().iter().filter_map(|p| tear_of(p)).collect();
        watch.check(&env, &mut ledger.problems);

        let (id, notes) = ledger.append_one(&env, &format!("after-{attempt}"));
        next_id = id.map_or(next_id, |id| id + 1);
        eprintln!(
            "{TEST}: attempt {attempt} ({kind}): kill after {files} files + {extra:.1?} {}; \
             left {torn:?}; next append id {id:?}, notes {notes:?}",
            if killed { "landed" } else { "came too late" }
        );
        if !torn.is_empty() {
            tears.extend(torn.iter().cloned());
            if notes.is_empty() {
                ledger
                    .problems
                    .push(format!("attempt {attempt}: the crash left {torn:?} but no repair note was printed"));
            }
        }
        // The ids carry on without a gap: sealed files, then the active file.
        let sealed_last = watch.check(&env, &mut ledger.problems);
        if let Some(id) = id {
            check_active(&env, sealed_last, id, &mut ledger.problems);
        }
        attempt += 1;
    }

    let data_of: fn(&str) -> String = |t| match t.split('-').next() {
        Some("big") => padded(t),
        Some("fat") => fat(t),
        _ => plain(t),
    };
    let lines = check_history(&env, &mut ledger, data_of);
    let max = lines.last().map_or(0, |l| l.0);
    watch.check(&env, &mut ledger.problems);
    watch.check_unchanged(&mut ledger.problems);
    check_verify(&env, max, &mut ledger.problems);
    let torn_records = tears.iter().filter(|t| t.starts_with("torn tail")).count();
    eprintln!(
        "{TEST}: {attempt} attempts, {} killed, {} states repaired ({torn_records} torn record tails), \
         {} repair notes, {max} records, {:.1?}",
        ledger.kills,
        tears.len(),
        ledger.repair_notes.len(),
        start.elapsed()
    );
    assert!(
        !ledger.repair_notes.is_empty(),
        "no kill in {attempt} attempts left anything to repair; kill earlier or write more"
    );
    ledger.assert_no_problems(TEST);
}

#[test]
fn acknowledged_records_survive_sigkill_of_the_acknowledging_process() {
    const TEST: &str = "acknowledged_records_survive_sigkill_of_the_acknowledging_process";
    const CAPACITY: u64 = 7;
    let CrashTest { mut rng, env, mut ledger, mut watch, start } = CrashTest::new(TEST, CAPACITY);

    // Acknowledged records with text that must come back byte for byte.
    let tokens: Vec<String> = (0..100).map(|i| format!("early-{i}")).collect();
    ledger.run_all(vec![spawn_batch(&env, "early batch".into(), tokens, hostile)]);
    assert_eq!(ledger.acked.len(), 100, "{:?}", ledger.problems);
    // The export lines of every acknowledged record, as first exported.
    let mut snapshot: BTreeMap<u64, String> = BTreeMap::new();
    // Exports now and compares; returns the export (empty if it failed).
    let compare = |snapshot: &BTreeMap<u64, String>, when: &str, problems: &mut Vec<String>| {
        let now: HashMap<u64, String> = match env.try_export_all_lines() {
            Ok(lines) => lines.into_iter().collect(),
            Err(e) => {
                problems.push(format!("{when}: the acknowledged records cannot be read: {e}"));
                return HashMap::new();
            }
        };
        for (id, before) in snapshot {
            match now.get(id) {
                Some(line) if line == before => {}
                Some(line) => {
                    problems.push(format!("{when}: acknowledged id {id} changed:\n  was {before}\n  now {line}"))
                }
                None => problems.push(format!("{when}: acknowledged id {id} is gone")),
            }
        }
        now
    };
    let extend = |snapshot: &mut BTreeMap<u64, String>, ledger: &Ledger, now: &HashMap<u64, String>| {
        for id in ledger.acked.keys() {
            if let Some(line) = now.get(id) {
                snapshot.entry(*id).or_insert_with(|| line.clone());
            }
        }
    };
    let now = compare(&snapshot, "start", &mut ledger.problems);
    extend(&mut snapshot, &ledger, &now);
    assert_eq!(snapshot.len(), 100);

    for round in 0..8 {
        // Two appenders killed at random, one left alone: whichever of them
        // gets the lock first, the one that finishes is acknowledged and
        // joins the snapshot; the others tear the log under it.
        let mut procs = Vec::new();
        for p in 0..3 {
            let tokens = (0..150).map(|i| format!("late-{round}-{p}-{i}")).collect();
            let mut proc = spawn_batch(&env, format!("round {round} batch {p}"), tokens, hostile);
            if p < 2 {
                proc.kill_after = Some(Duration::from_millis(rng.range(1, 25)));
            }
            procs.push(proc);
        }
        ledger.run_all(procs);
        // Straight after the kills, before any repair, and after one.
        compare(&snapshot, &format!("round {round}, after the kills"), &mut ledger.problems);
        watch.check(&env, &mut ledger.problems);
        ledger.append_one(&env, &format!("mid-{round}"));
        let now = compare(&snapshot, &format!("round {round}, after recovery"), &mut ledger.problems);
        extend(&mut snapshot, &ledger, &now);
    }

    // `mid-N` singles carry the plain data of the single-record path.
    let data_of: fn(&str) -> String = |t| if t.starts_with("mid-") { plain(t) } else { hostile(t) };
    let lines = check_history(&env, &mut ledger, data_of);
    let max = lines.last().map_or(0, |l| l.0);
    watch.check(&env, &mut ledger.problems);
    watch.check_unchanged(&mut ledger.problems);
    check_verify(&env, max, &mut ledger.problems);
    eprintln!(
        "{TEST}: {} processes, {} killed, {} acknowledged records compared, {max} records, {} repair notes, {:.1?}",
        ledger.processes,
        ledger.kills,
        snapshot.len(),
        ledger.repair_notes.len(),
        start.elapsed()
    );
    ledger.assert_no_problems(TEST);
}

#[test]
fn two_writers_one_record_at_a_time_get_disjoint_gap_free_ids() {
    const TEST: &str = "two_writers_one_record_at_a_time_get_disjoint_gap_free_ids";
    const PER_WRITER: u64 = 100;
    let env = Env::with_capacity(7);
    let start = Instant::now();
    let results: Vec<Vec<(u64, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let env = &env;
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..PER_WRITER {
                        let token = format!("writer-{w}-{i}");
                        let input = format!("{}\n", json_line(&token));
                        let run = env.run_with_input(&["append", "--json", "-"], input.as_bytes()).success();
                        let ack = parse_batch_ack(&run.stdout);
                        let Some((1, a, b)) = ack else { panic!("writer {w}: unexpected answer {:?}", run.stdout) };
                        assert_eq!(a, b);
                        got.push((a, token));
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (w, got) in results.iter().enumerate() {
        assert!(got.windows(2).all(|p| p[0].0 < p[1].0), "writer {w}: ids not increasing: {got:?}");
    }
    let mut all: Vec<u64> = results.iter().flatten().map(|(id, _)| *id).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=2 * PER_WRITER).collect::<Vec<_>>(), "ids of the two writers");

    let mut ledger = Ledger::default();
    for (id, token) in results.into_iter().flatten() {
        ledger.acked.insert(id, token);
    }
    // Every record is a one-record batch: contiguity is the id check above.
    let data_of: fn(&str) -> String = plain;
    let exported = env.export_all_lines();
    assert_eq!(exported.len() as u64, 2 * PER_WRITER);
    for (id, line) in &exported {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let token = &ledger.acked[id];
        assert_eq!(v["action_data"].as_str(), Some(data_of(token).as_str()), "id {id}");
    }
    let mut watch = SealedWatch::new(7);
    let sealed_last = watch.check(&env, &mut ledger.problems);
    check_active(&env, sealed_last, 2 * PER_WRITER, &mut ledger.problems);
    check_verify(&env, 2 * PER_WRITER, &mut ledger.problems);
    eprintln!("{TEST}: {} appends in {:.1?}", 2 * PER_WRITER, start.elapsed());
    ledger.assert_no_problems(TEST);
}

/// Several writers starting at once on a brand-new data directory all
/// succeed, and the stylesheet they install is complete.
#[test]
fn concurrent_first_appends_on_a_fresh_directory_all_succeed() {
    const TEST: &str = "concurrent_first_appends_on_a_fresh_directory_all_succeed";
    let mut problems = Vec::new();
    for attempt in 0..40 {
        let env = Env::with_capacity(7);
        let procs: Vec<_> =
            (0..8).map(|p| spawn_single(&env, format!("dir {attempt} writer {p}"), format!("fresh-{p}"))).collect();
        let mut ledger = Ledger::default();
        ledger.run_all(procs);
        let mut ids: Vec<u64> = ledger.acked.keys().copied().collect();
        ids.sort_unstable();
        if ids != (1..=8).collect::<Vec<_>>() {
            ledger.problems.push(format!("ids handed out: {ids:?}"));
        }
        let mut watch = SealedWatch::new(7);
        watch.check(&env, &mut ledger.problems);
        problems.extend(ledger.problems.into_iter().map(|p| format!("fresh directory {attempt}: {p}")));
    }
    assert!(problems.is_empty(), "{TEST}: {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
}
