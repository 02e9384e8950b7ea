//! Schedules fire the way crontab(5) and cron do, through DST changes and
//! clock steps (README "Schedules"). The rules themselves are checked zone by
//! zone in `crontab.rs`; these run the real binary under libfaketime.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::{BIN, Env};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const LIBFAKETIME_MT: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

fn need(lib: &str) {
    assert!(Path::new(lib).exists(), "{lib} is missing: install the Debian package faketime (.ci/run does)");
}

fn schedule(dir: &Path, name: &str, cron: &str, job: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), format!("cron = \"{cron}\"\njob = \"{job}\"\n")).unwrap();
}

/// `schedules --next n --json` with the clock at the local time `local` in
/// zone `tz`.
fn next_at(env: &Env, dir: &Path, tz: &str, local: &str, n: usize) -> serde_json::Value {
    need(LIBFAKETIME);
    let out = Command::new(BIN)
        .args(["--data-dir"])
        .arg(&env.data)
        .arg("--schedules")
        .arg(dir)
        .args(["schedules", "--next", &n.to_string(), "--json"])
        .env("TZ", tz)
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME", format!("@{local}"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn times(v: &serde_json::Value, name: &str) -> Vec<String> {
    let s = v["schedules"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap();
    s["next"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

#[test]
fn listings_follow_crontab_through_both_dst_changes() {
    let env = Env::new();
    let dir = env.dir.path().join("schedules");
    schedule(&dir, "backup-daily", "0 45 2 * * *", "backup");
    schedule(&dir, "hourly", "@hourly", "rotate");
    schedule(&dir, "monday", "0 0 3 * * 1", "archive");
    // The day before DST starts: the 02:45 that does not exist runs at 03:00.
    let v = next_at(&env, &dir, "Europe/Berlin", "2026-03-28 12:00:00", 2);
    assert_eq!(times(&v, "backup-daily"), ["2026-03-29 03:00:00 +02:00", "2026-03-30 02:45:00 +02:00"]);
    let v = next_at(&env, &dir, "America/New_York", "2026-03-07 17:00:00", 1);
    assert_eq!(times(&v, "backup-daily"), ["2026-03-08 03:00:00 -04:00"]);
    // The night DST ends: once at 02:45, and @hourly keeps its pace.
    let v = next_at(&env, &dir, "Europe/Berlin", "2026-10-25 00:50:00", 6);
    assert_eq!(times(&v, "backup-daily")[..2], ["2026-10-25 02:45:00 +02:00", "2026-10-26 02:45:00 +01:00"]);
    assert_eq!(
        times(&v, "hourly")[..4],
        [
            "2026-10-25 01:00:00 +02:00",
            "2026-10-25 02:00:00 +02:00",
            "2026-10-25 02:00:00 +01:00",
            "2026-10-25 03:00:00 +01:00"
        ]
    );
    // Day-of-week 1 is Monday, as in crontab(5).
    let v = next_at(&env, &dir, "UTC", "2026-11-30 12:00:00", 2);
    assert_eq!(times(&v, "monday"), ["2026-12-07 03:00:00 +00:00", "2026-12-14 03:00:00 +00:00"]);
}

#[test]
fn a_schedule_that_never_fires_is_refused_with_its_file_and_line() {
    let env = Env::new();
    let dir = env.dir.path().join("schedules");
    schedule(&dir, "never", "0 0 0 30 2 *", "purge");
    schedule(&dir, "sunday0", "0 0 4 * * 0", "archive");
    let run = env.run(&["--schedules", dir.to_str().unwrap(), "schedules"]);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stdout.contains("never.toml:1") && run.stdout.contains("never fires"), "{}", run.stdout);
    assert!(run.stdout.contains("sunday0"), "day-of-week 0 (Sunday) loads: {}", run.stdout);
}

/// The wall clock a day ahead for a few seconds, then back: schedules go on
/// at once instead of waiting for the future time they last fired at.
#[test]
fn a_clock_stepped_back_never_stalls_the_scheduler() {
    need(LIBFAKETIME_MT);
    let env = Env::new();
    let dir = env.dir.path().join("schedules");
    schedule(&dir, "rotate", "*/2 * * * * *", "rotate");
    let offset = env.dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&env.data)
        .arg("--schedules")
        .arg(&dir)
        .arg("serve")
        .env("LD_PRELOAD", LIBFAKETIME_MT)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs =
        || std::fs::read_to_string(env.data.join("state/jobs/history.jsonl")).unwrap_or_default().lines().count();
    let feed = |secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            env.run(&["append", "--app", "A", "--action", "B"]);
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    feed(4);
    std::fs::write(&offset, "+1d\n").unwrap();
    feed(3);
    std::fs::write(&offset, "+0\n").unwrap();
    let before = runs();
    feed(10);
    let after = runs();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(after - before >= 3, "{} runs in the 10 s after the clock came back", after - before);
}

/// Fire times agree with croniter (an independent implementation, Debian
/// python3-croniter) for a corpus of expressions in several zones, up to the
/// first daylight-saving change, where this project follows cron's rules on
/// purpose (tested above and in `crontab.rs`).
#[test]
fn fire_times_agree_with_croniter_away_from_dst_changes() {
    let python = "/usr/bin/python3";
    let ok = Command::new(python).args(["-c", "import croniter"]).status().is_ok_and(|s| s.success());
    assert!(ok, "python3-croniter is needed (Debian package python3-croniter; .ci/run installs it)");
    let oracle = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/cron_oracle.py");
    // crontab(5) form; ours takes a seconds field first.
    let corpus = [
        "*/7 * * * *",
        "0 * * * *",
        "30 2 * * *",
        "45 23 * * 0",
        "0 3 * * 1",
        "0 3 * * 7",
        "15 6 * * 1-5",
        "0 0 1 * *",
        "0 0 1,15 * 1",
        "5 4 * * sun",
        "0 12 * 2-4 mon-fri",
        "0 */6 * * *",
        "10 8-18/2 * * 2,4",
        "59 23 31 * *",
        "0 0 29 2 *",
    ];
    for (zone, start) in [
        ("UTC", "2026-06-10 12:00:00"),
        ("Europe/Berlin", "2026-04-01 12:00:00"),
        ("America/New_York", "2026-11-02 00:30:00"),
        ("Australia/Lord_Howe", "2026-04-06 09:00:00"),
    ] {
        let out = Command::new(python).arg(&oracle).args([zone, start, "60"]).args(corpus).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let env = Env::new();
        let dir = env.dir.path().join("schedules");
        for (i, e) in corpus.iter().enumerate() {
            schedule(&dir, &format!("c{i:02}"), &format!("0 {e}"), "rotate");
        }
        let got = next_at(&env, &dir, zone, start, 60);
        for (i, e) in corpus.iter().enumerate() {
            let expected: Vec<i64> = want[*e].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            let ours: Vec<i64> = times(&got, &format!("c{i:02}"))
                .iter()
                .map(|t| chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S %:z").unwrap().timestamp())
                .take(expected.len())
                .collect();
            assert!(!expected.is_empty() || *e == "0 0 29 2 *", "{zone} {e}: the oracle gave nothing");
            assert_eq!(ours, expected, "{zone}, from {start}: {e}");
        }
    }
}
