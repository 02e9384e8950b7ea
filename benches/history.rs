//! Costs over a long history, which must not grow with it: a one-day export
//! against exporting everything and against `zcat | grep`, `status` and
//! `show`, and the peak memory of the bulk append that writes the history.
//!
//! `cargo bench --bench history` (records: `BENCH_HISTORY_RECORDS`, default
//! 5,000,000 over 1,000 days with 1,000 records a file, so 5,000 files;
//! 20,000 over 20 days with 100 a file at smoke size, see `common::smoke`).
//! One record in ten is backdated by up to ten days, so a day's records are
//! spread over the files of about eleven days. The history is written by the
//! archiver itself in one bulk `append --json` (the chain holds across every
//! file) and archived, then a few more files are sealed and left plain and
//! an active file is started: most of the history is archived, as on a
//! machine that has run for years.
//!
//! The one-day export is checked against the full export: it must give
//! exactly the records whose event time falls in the day. Figures are
//! printed, never asserted; each also goes into a `summary` line for
//! `benches/suite.sh`'s table.

mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::{Rng, measure, mib, per_s, secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");

/// `n` records from `start`, `step_ms` apart, one in ten backdated by up to ten days.
fn generate(path: &Path, rng: &mut Rng, start: DateTime<Utc>, first: usize, n: usize, step_ms: i64) {
    let apps = ["System Admin Tool", "Group Administration Tool", "Desktop Tool", "Attendant Console"];
    let actions = ["Login", "Logout", "Login failure", "Add", "Change", "Delete"];
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create input"));
    for i in first..first + n {
        let mut t = start + chrono::Duration::milliseconds(i as i64 * step_ms);
        if rng.next().is_multiple_of(10) {
            t -= chrono::Duration::milliseconds((rng.next() % (10 * 86_400_000)) as i64);
        }
        let action = rng.pick(&actions);
        writeln!(
            out,
            "{{\"timestamp\":\"{}\",\"user_name\":\"user{}\",\"tenant\":\"acme\",\"source_ip\":\"10.{}.{}.{}\",\"app_name\":\"{}\",\"action_type\":\"{action}\",\"action_data\":\"Session ID: {i} Extension {}\",\"category\":\"presence\"}}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            rng.next() % 500,
            rng.next() % 256,
            rng.next() % 256,
            1 + rng.next() % 254,
            rng.pick(&apps),
            1000 + rng.next() % 9000,
        )
        .expect("write input");
    }
    out.flush().expect("write input");
}

fn run(data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--data-dir").arg(data).arg("--schedules").arg(data.join("no-schedules")).args(args);
    c
}

fn ok(mut c: Command) {
    let status = c.stdout(Stdio::null()).status().expect("run audit-trail");
    assert!(status.success(), "{c:?} failed");
}

/// The median wall time of `runs` runs of `make()`.
fn median(runs: usize, mut make: impl FnMut() -> Command) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut c = make();
            c.stdout(Stdio::null()).stderr(Stdio::null());
            let start = Instant::now();
            let status = c.status().expect("run");
            let took = start.elapsed();
            assert!(status.success(), "{c:?} failed");
            took
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn ms(t: Duration) -> String {
    format!("{:.1} ms", t.as_secs_f64() * 1000.0)
}

/// Ids and event times (ms) of a CSV export's rows (`id,"timestamp",…`) whose time `keep` takes.
fn csv_rows(path: &Path, keep: impl Fn(i64) -> bool) -> (usize, Vec<(u64, i64)>) {
    use std::io::BufRead;
    let (mut rows, mut kept) = (0, Vec::new());
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open export"));
    for line in file.lines().skip(1) {
        let line = line.expect("read export");
        let mut f = line.splitn(3, ',');
        let id = f.next().unwrap().parse().expect("id");
        let ts = f.next().unwrap().trim_matches('"');
        let ms = DateTime::parse_from_rfc3339(ts).expect("timestamp").timestamp_millis();
        rows += 1;
        if keep(ms) {
            kept.push((id, ms));
        }
    }
    (rows, kept)
}

fn new_data(dir: &Path, capacity: usize) {
    std::fs::create_dir_all(dir.join("no-schedules")).unwrap();
    std::fs::write(
        dir.join("audit-trail.toml"),
        format!("host_name = \"bench\"\nevent_mask = \"all\"\ncapacity = {capacity}\n"),
    )
    .unwrap();
}

fn main() {
    if common::listing() {
        return;
    }
    let smoke = common::smoke();
    let n = common::knob("BENCH_HISTORY_RECORDS", 5_000_000, 20_000);
    let days: usize = if smoke { 20 } else { 1000 };
    let capacity = if smoke { 100 } else { 1000 };
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    new_data(&data, capacity);
    let start = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap();
    let step_ms = (days as i64 * 86_400_000) / n as i64;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let input = tmp.path().join("history.jsonl");
    let made = Instant::now();
    generate(&input, &mut rng, start, 0, n, step_ms);
    println!("long-history benchmark: {n} records over {days} days generated in {:.1} s", made.elapsed().as_secs_f64());

    // The whole history in one bulk append: its peak memory must not grow with the input.
    let mut append = Command::new(BIN);
    append.arg("--data-dir").arg(&data).args(["append", "--json"]).arg(&input);
    let (took, rss) = measure(append, None);
    std::fs::remove_file(&input).unwrap();
    println!("bulk append of {n} records: {:.3} s, peak {}", took.as_secs_f64(), mib(rss));
    let label = format!("{}k records", n / 1000);
    summary(
        &format!("long history: bulk append --json, {label} in one input, peak memory"),
        &format!("{} ({})", mib(rss), per_s(n as f64, took, "records")),
        "",
        "",
        None,
        "< 64 MiB",
    );
    let archive_start = Instant::now();
    ok(run(&data, &["archive"]));
    let archived = common::files_in(&data.join("archive"), ".xml.gz").len();
    println!("archived {archived} files in {:.3} s", archive_start.elapsed().as_secs_f64());
    // A few newer files left sealed, and an active one.
    let newer = tmp.path().join("newer.jsonl");
    generate(&newer, &mut rng, start, n, 3 * capacity + capacity / 2, step_ms);
    ok(run(&data, &["append", "--json", newer.to_str().unwrap()]));
    let sealed = common::files_in(&data.join("audit_trail"), ".xml").len();
    let files = archived + sealed + 1;
    println!("history: {archived} archived files, {sealed} sealed, 1 active");
    let history = format!("{label}, {files} files ({archived} archived)");

    // One day in the middle, against everything and against zcat | grep.
    let day = start + chrono::Duration::days(days as i64 / 2);
    let (from, to) = (day, day + chrono::Duration::days(1) - chrono::Duration::milliseconds(1));
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (day_csv, all_csv) = (tmp.path().join("day.csv"), tmp.path().join("all.csv"));
    let day_args = ["export", "--all", "--format", "csv", "--from", &fmt(from), "--to", &fmt(to)];
    let day_cmd = || {
        let mut c = run(&data, &day_args);
        c.arg("--out").arg(&day_csv);
        c
    };
    let all_cmd = || {
        let mut c = run(&data, &["export", "--all", "--format", "csv"]);
        c.arg("--out").arg(&all_csv);
        c
    };
    let stamp = format!("<TimeStamp>{}", day.format("%Y-%m-%d"));
    let zcat_cmd = || {
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!("zcat {}/archive/*.xml.gz | grep -c '{stamp}'", data.display()));
        c
    };
    let t_day = median(5, day_cmd);
    let t_all = median(3, all_cmd);
    let t_zcat = median(3, zcat_cmd);
    // The day's export holds exactly the records whose time is in the day.
    let (f, t) = (from.timestamp_millis(), to.timestamp_millis());
    let (rows, want) = csv_rows(&all_csv, |ms| (f..=t).contains(&ms));
    assert_eq!(rows, n + 3 * capacity + capacity / 2, "the full export holds every record");
    let (_, got) = csv_rows(&day_csv, |_| true);
    assert!(!want.is_empty() && got == want, "the one-day export differs: {} rows, {} expected", got.len(), want.len());
    println!(
        "one day ({} records): {} ms; everything: {:.3} s ({:.1}x); zcat | grep -c: {:.3} s",
        got.len(),
        t_day.as_millis(),
        t_all.as_secs_f64(),
        t_all.as_secs_f64() / t_day.as_secs_f64(),
        t_zcat.as_secs_f64()
    );
    let what = format!("long history: one-day export --all --from --to ({} records), {history}, median", got.len());
    let ratio = |peer: Duration| Some(peer.as_secs_f64() / t_day.as_secs_f64());
    summary(&what, &secs(t_day), "export --all (everything)", &secs(t_all), ratio(t_all), "≥ 50x everything");
    summary(&what, &secs(t_day), "zcat archive/*.gz | grep -c (the day)", &secs(t_zcat), ratio(t_zcat), "");

    // status and show: on this history, and on one of 10 files.
    let small = tmp.path().join("small");
    new_data(&small, capacity);
    let few = tmp.path().join("few.jsonl");
    generate(&few, &mut rng, start, 0, 10 * capacity + capacity / 2, step_ms);
    ok(run(&small, &["append", "--json", few.to_str().unwrap()]));
    for cmd in ["status", "show"] {
        let large = median(31, || run(&data, &[cmd]));
        let little = median(31, || run(&small, &[cmd]));
        println!("{cmd}: {} on {files} files, {} on 11 files", ms(large), ms(little));
        summary(
            &format!("long history: {cmd}, {history}, median of 31"),
            &ms(large),
            &format!("{cmd} on 11 files"),
            &ms(little),
            None,
            "< 20 ms",
        );
    }
}
