//! Shared by the benchmarks: realistic records, the same on every run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator, so every run sees the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Records generated at smoke size, when no `BENCH_RECORDS` is given.
pub const SMOKE_RECORDS: usize = 3000;

/// Whether the benchmarks run at smoke size, to check that they work rather
/// than to measure: when built without optimisation (`cargo test --benches`
/// runs them so in CI) or with `BENCH_SMOKE` set (`benches/suite.sh --smoke`).
pub fn smoke() -> bool {
    cfg!(debug_assertions) || std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The size knob `var` from the environment; else `full`, or `small` at smoke size.
pub fn knob(var: &str, full: usize, small: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(if smoke() { small } else { full })
}

/// How many records to generate: `BENCH_RECORDS`, else `full`, or [`SMOKE_RECORDS`] at smoke size.
pub fn records(full: usize) -> usize {
    knob("BENCH_RECORDS", full, SMOKE_RECORDS)
}

/// `--list` on the command line: `cargo test --benches -- --list` (and test
/// runners such as cargo-nextest) ask a test binary for its tests. A bench
/// has none, and must not run then. (`cargo bench` passes `--bench`, and
/// `cargo test --benches` nothing: both run it.)
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// A temporary directory holding `records.jsonl`: [`records`]`(default)`
/// records from [`generate`]. Returns the directory, the file and the count.
pub fn generated_input(default: usize) -> (tempfile::TempDir, PathBuf, usize) {
    let n = records(default);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("records.jsonl");
    generate(n, &input);
    (tmp, input, n)
}

/// `n` realistic records as JSON Lines (the same every run).
pub fn generate(n: usize, path: &Path) {
    let apps =
        ["System Admin Tool", "Group Administration Tool", "Desktop Tool", "Attendant Console", "Suite", "MiXML"];
    let actions = ["Login", "Logout", "Login failure", "Add", "Change", "Delete", "Submit"];
    let cats = ["presence", "failure", "config", "system", "modify"];
    let auth = ["LDAP", "Local", "SSO", "CUCM"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(n * 340);
    for i in 0..n {
        let action = rng.pick(&actions);
        let data = if action.starts_with("Log") {
            format!("Session ID: {i} User Authenticated: True Session Availability: True")
        } else {
            format!(
                "Extension {}: Display Name changed from 'Old Name {i}' to 'New Name {i}'; COS 1 -> 2",
                1000 + rng.next() % 9000
            )
        };
        let outcome = if action == "Login failure" { "failure" } else { "success" };
        out.push_str(&format!(
            "{{\"user_name\":\"user{}\",\"tenant\":\"acme\",\"source_ip\":\"10.{}.{}.{}\",\"app_name\":\"{}\",\"app_context\":\"User Session\",\"action_type\":\"{action}\",\"action_data\":\"{data}\",\"category\":\"{}\",\"outcome\":\"{outcome}\",\"auth_type\":\"{}\"}}\n",
            rng.next() % 500,
            rng.next() % 256,
            rng.next() % 256,
            1 + rng.next() % 254,
            rng.pick(&apps),
            rng.pick(&cats),
            rng.pick(&auth),
        ));
    }
    std::fs::write(path, out).expect("write input");
}

/// Starts `serve` on `data` (no schedules) and waits until its ingest socket answers.
pub fn start_serve(bin: &str, data: &Path) -> Child {
    let empty = data.join("no-schedules");
    std::fs::create_dir_all(&empty).unwrap();
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .arg("--schedules")
        .arg(&empty)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(data.join("ingest.sock")).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Runs a command (through GNU time when present); returns wall time and peak RSS in KiB.
pub fn measure(mut cmd: Command, stdout: Option<&Path>) -> (Duration, Option<u64>) {
    let rss_file = std::env::temp_dir().join(format!("audit-trail-bench-rss-{}", std::process::id()));
    let has_time = Path::new("/usr/bin/time").exists();
    let mut full = if has_time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(cmd.get_program()).args(cmd.get_args());
        c
    } else {
        std::mem::replace(&mut cmd, Command::new("true"))
    };
    if let Some(p) = stdout {
        full.stdout(std::fs::File::create(p).expect("output file"));
    } else {
        full.stdout(Stdio::null());
    }
    let start = Instant::now();
    let status = full.status().expect("run benchmark command");
    let took = start.elapsed();
    assert!(status.success(), "benchmark command failed: {full:?}");
    let rss = has_time
        .then(|| std::fs::read_to_string(&rss_file).ok())
        .flatten()
        .and_then(|s| s.trim().lines().last()?.parse().ok());
    (took, rss)
}

pub fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(suffix));
    v.sort();
    v
}

pub fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// A duration in seconds, as the summary lines show it.
pub fn secs(t: Duration) -> String {
    format!("{:.3} s", t.as_secs_f64())
}

/// `count` per second over `t`, three significant digits (`561k records/s`).
pub fn per_s(count: f64, t: Duration, unit: &str) -> String {
    let r = count / t.as_secs_f64();
    let (v, suffix) = if r >= 1e6 {
        (r / 1e6, "M")
    } else if r >= 1e3 {
        (r / 1e3, "k")
    } else {
        (r, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{suffix} {unit}/s")
}

/// Prints one machine-readable line for the side-by-side table of
/// `benches/suite.sh`, next to the human-readable figures:
///
/// `summary<TAB>measure<TAB>audit-trail<TAB>peer<TAB>peer figure<TAB>ratio<TAB>aim`
///
/// `ratio` is how many times better audit-trail is than the peer (above 1:
/// audit-trail is better), printed as `1.86x`; `None`, an empty peer or an
/// empty aim print as `-`.
pub fn summary(measure: &str, ours: &str, peer: &str, peer_figure: &str, ratio: Option<f64>, aim: &str) {
    let field = |s: &str| if s.is_empty() { "-".to_owned() } else { s.replace(['\t', '\n'], " ") };
    let ratio = ratio.filter(|r| r.is_finite()).map_or("-".to_owned(), |r| format!("{r:.2}x"));
    println!(
        "summary\t{}\t{}\t{}\t{}\t{ratio}\t{}",
        field(measure),
        field(ours),
        field(peer),
        field(peer_figure),
        field(aim)
    );
}
