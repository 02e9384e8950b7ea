//! A time-range export reads only the files whose event times can meet the
//! range (the time index, `state/index.jsonl`), and never skips a match:
//! event times are data and arrive out of order, late and backdated.

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};

use crate::support::harness::Env;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` records whose event times mostly follow the order they arrive in, and
/// also come backdated (up to 10 days) and late-stamped ahead (up to 5 days), in
/// several UTC offsets.
fn records(rng: &mut Rng, start: DateTime<Utc>, n: usize, step: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut t = start + step * i as i32;
        match rng.below(100) {
            0..15 => t -= Duration::minutes(rng.below(10 * 24 * 60) as i64),
            15..25 => t += Duration::minutes(rng.below(5 * 24 * 60) as i64),
            _ => {}
        }
        let offset = FixedOffset::east_opt([0, 3600, -5 * 3600, 5 * 1800][rng.below(4) as usize]).unwrap();
        let ts = t.with_timezone(&offset).to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        out.extend_from_slice(
            format!(
                "{{\"timestamp\":\"{ts}\",\"app_name\":\"System Admin Tool\",\"action_type\":\"Login\",\"user_name\":\"u{i}\",\"category\":\"presence\"}}\n"
            )
            .as_bytes(),
        );
    }
    out
}

fn millis(ts: &str) -> i64 {
    DateTime::parse_from_rfc3339(ts).unwrap().timestamp_millis()
}

/// Ids and event times of every record, from an export without a filter.
fn all_times(env: &Env) -> Vec<(u64, i64)> {
    env.export_all_lines()
        .into_iter()
        .map(|(id, line)| {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            (id, millis(v["timestamp"].as_str().unwrap()))
        })
        .collect()
}

fn exported_ids(env: &Env, from: Option<&str>, to: Option<&str>) -> Vec<u64> {
    let mut args = vec!["export", "--all", "--format", "json"];
    if let Some(f) = from {
        args.extend(["--from", f]);
    }
    if let Some(t) = to {
        args.extend(["--to", t]);
    }
    let run = env.run(&args).success();
    run.stdout
        .lines()
        .map(|l| l.strip_prefix("{\"id\":").unwrap().split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn time_range_export_never_skips_a_matching_record_with_late_and_backdated_times() {
    let env = Env::with_capacity(7);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let step = Duration::minutes(40);
    // Half the history archived, half sealed, and an active file.
    env.run_with_input(&["append", "--json", "-"], &records(&mut rng, start, 300, step)).success();
    env.run(&["archive"]).success();
    env.run_with_input(&["append", "--json", "-"], &records(&mut rng, start + step * 300, 303, step)).success();
    let index = std::fs::read_to_string(env.data.join("state/index.jsonl")).unwrap();
    assert!(index.lines().count() >= 80, "a line for every sealed file:\n{index}");

    let all = all_times(&env);
    assert_eq!(all.len(), 603);
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut windows: Vec<(Option<String>, Option<String>)> = Vec::new();
    // Every UTC day the records span, and the days around them.
    for day in -12..30 {
        let from = start + Duration::days(day);
        windows.push((Some(fmt(from)), Some(fmt(from + Duration::days(1) - Duration::milliseconds(1)))));
    }
    // Windows of random length, and open-ended ones.
    for _ in 0..20 {
        let from = start + Duration::minutes(rng.below(30 * 24 * 60) as i64 - 10 * 24 * 60);
        let to = from + Duration::minutes(1 + rng.below(3 * 24 * 60) as i64);
        windows.push((Some(fmt(from)), Some(fmt(to))));
    }
    windows.push((Some(fmt(start + Duration::days(15))), None));
    windows.push((None, Some(fmt(start + Duration::days(3)))));
    let mut matched = 0;
    for (from, to) in &windows {
        let (f, t) = (from.as_deref().map(millis), to.as_deref().map(millis));
        let want: Vec<u64> = all
            .iter()
            .filter(|(_, ts)| f.is_none_or(|f| *ts >= f) && t.is_none_or(|t| *ts <= t))
            .map(|(id, _)| *id)
            .collect();
        let got = exported_ids(&env, from.as_deref(), to.as_deref());
        assert_eq!(got, want, "--from {from:?} --to {to:?}");
        matched += got.len();
    }
    assert!(matched > 603, "the windows match records");
}

/// The ids a window should give, from the unfiltered export's times.
fn ids_between(all: &[(u64, i64)], from: i64, to: i64) -> Vec<u64> {
    all.iter().filter(|(_, ts)| (from..=to).contains(ts)).map(|(id, _)| *id).collect()
}

#[test]
fn archived_files_the_index_rules_out_are_not_opened_and_old_archives_are_indexed_once() {
    let env = Env::with_capacity(10);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    // Ten files a day for ten days, nothing backdated: each day's files hold only that day.
    let mut input = Vec::new();
    for i in 0..1000 {
        let t = start + Duration::minutes(i * 144 / 10);
        input.extend_from_slice(
            format!(
                "{{\"timestamp\":\"{}\",\"app_name\":\"System Admin Tool\",\"action_type\":\"Login\",\"user_name\":\"u{}\",\"category\":\"presence\"}}\n",
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                rng.below(50)
            )
            .as_bytes(),
        );
    }
    env.run_with_input(&["append", "--json", "-"], &input).success();
    let index_path = env.data.join("state/index.jsonl");
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    // The index is lost (or the files were sealed by a version that kept none): archive gives each file its line.
    std::fs::remove_file(&index_path).unwrap();
    env.run(&["archive"]).success();
    let archived = lines(&env.data.join("archive/manifest.jsonl"));
    assert!(archived >= 99, "{archived} files archived");
    assert_eq!(lines(&index_path), archived, "a line for every file archived");
    // Archived before: the lines are added by the next run, once.
    std::fs::remove_file(&index_path).unwrap();
    let run = env.run(&["archive"]).success();
    assert!(run.stderr.contains(&format!("time-index line of {archived} archived file(s)")), "{}", run.stderr);
    let run = env.run(&["archive"]).success();
    assert!(!run.stderr.contains("time-index line"), "indexed once: {}", run.stderr);
    assert_eq!(lines(&index_path), archived);

    let all = all_times(&env);
    assert_eq!(all.len(), 1000);
    let day = |d: i64| {
        let from = start + Duration::days(d);
        (from, from + Duration::days(1) - Duration::milliseconds(1))
    };
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // The first day's archived files become unreadable: a window that cannot meet them never opens them.
    let archive = env.data.join("archive");
    let mut first_day = Vec::new();
    let manifest = std::fs::read_to_string(archive.join("manifest.jsonl")).unwrap();
    for line in manifest.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["last_id"].as_u64().unwrap() <= 90 {
            first_day.push(archive.join(e["file"].as_str().unwrap()));
        }
    }
    assert!(first_day.len() >= 8, "{first_day:?}");
    for p in &first_day {
        std::fs::write(p, b"not gzip at all").unwrap();
    }
    let (from, to) = day(5);
    let got = exported_ids(&env, Some(&fmt(from)), Some(&fmt(to)));
    assert_eq!(got, ids_between(&all, millis(&fmt(from)), millis(&fmt(to))));
    assert!(!got.is_empty());
    // A window that meets them does open them, and says so.
    let (from, to) = day(0);
    env.run(&["export", "--all", "--from", &fmt(from), "--to", &fmt(to)]).failure();
    // A line the manifest does not confirm (another file of that name) rules out nothing.
    let index = std::fs::read_to_string(&index_path).unwrap();
    let victim = first_day[0].file_name().unwrap().to_str().unwrap().trim_end_matches(".xml.gz").to_owned();
    let forged: String = index
        .lines()
        .map(|l| {
            let mut e: serde_json::Value = serde_json::from_str(l).unwrap();
            if e["stem"] == victim.as_str() {
                e["first_id"] = serde_json::json!(e["first_id"].as_u64().unwrap() + 1);
            }
            format!("{e}\n")
        })
        .collect();
    std::fs::write(&index_path, forged).unwrap();
    let (from, to) = day(5);
    env.run(&["export", "--all", "--from", &fmt(from), "--to", &fmt(to)]).failure();
}
