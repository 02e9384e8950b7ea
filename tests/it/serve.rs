//! The service: ingest socket, single instance, self-audit, event mask,
//! reload, scheduler, and SIGKILL under socket load.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use crate::support::harness::{Env, json_records, run_in, submit, well_formed_errors};

fn line(data: &str, category: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"app_name": "Provisioning", "action_type": "Change", "action_data": data, "category": category})
    )
}

/// Every exported record as (id, action_data, app_name, action_type).
fn exported(env: &Env) -> Vec<(u64, String, String, String)> {
    env.export_all_lines()
        .into_iter()
        .map(|(id, l)| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
            (id, s("action_data"), s("app_name"), s("action_type"))
        })
        .collect()
}

#[test]
fn answers_come_in_request_order_and_only_for_durable_records() {
    let env = Env::new();
    let server = env.serve(&env.no_schedules());
    let mut input = String::new();
    let mut expect = Vec::new();
    for i in 0..1200 {
        if i % 10 == 3 {
            input.push_str("{\"app_name\":\"x\"}\n");
            expect.push("error");
        } else if i % 7 == 5 {
            input.push_str(&line(&format!("masked {i}"), "read"));
            expect.push("dropped");
        } else {
            input.push_str(&line(&format!("kept {i} <&]]>\ttab"), "config"));
            expect.push("id");
        }
        if i % 100 == 0 {
            input.push_str("\n   \n");
        }
    }
    let answers = submit(server.connect(), input.into_bytes());
    assert_eq!(answers.len(), expect.len(), "one answer per request line");
    let mut ids = Vec::new();
    for (i, (a, want)) in answers.iter().zip(&expect).enumerate() {
        match *want {
            "id" => ids.push((a["id"].as_u64().unwrap_or_else(|| panic!("answer {i}: {a}")), i)),
            "error" => assert!(a["error"].as_str().is_some_and(|e| e.contains("action_type")), "answer {i}: {a}"),
            _ => {
                assert!(a["id"].is_null() && a["dropped"].as_str().is_some_and(|d| d.contains("read")), "{i}: {a}")
            }
        }
    }
    // Record 1 is the service's own start record.
    for (k, (id, _)) in ids.iter().enumerate() {
        assert_eq!(*id, 2 + k as u64, "ids are consecutive in request order");
    }
    // Readers take no lock: the export sees the records while the service runs.
    let got: HashMap<u64, String> = exported(&env).into_iter().map(|(id, d, _, _)| (id, d)).collect();
    for (id, i) in &ids {
        assert_eq!(got[id], format!("kept {i} <&]]>\ttab"));
    }
    let err = server.stop();
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    let all = exported(&env);
    assert_eq!(all.first().map(|r| r.3.as_str()), Some("Start"));
    assert_eq!(all.last().map(|r| (r.2.as_str(), r.3.as_str())), Some(("audit-trail", "Stop")));
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let dropped = expect.iter().filter(|e| **e == "dropped").count() as u64;
    assert_eq!(st["dropped"]["read"].as_u64(), Some(dropped), "{st}");
    assert!(st["service"].is_null());
    env.run(&["verify"]).success();
}

#[test]
fn long_lines_span_many_reads_and_an_overlong_line_is_refused() {
    let env = Env::new();
    let server = env.serve(&env.no_schedules());
    // 900 KiB of action data (several socket reads), between short records,
    // and a last line without its newline.
    let big: String = (0..900 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let mut input = line("before", "config");
    input.push_str(&line(&big, "config"));
    input.push_str(&line("after", "config"));
    input.push_str(line("unterminated", "config").trim_end());
    let answers = submit(server.connect(), input.into_bytes());
    let ids: Vec<u64> = answers.iter().map(|a| a["id"].as_u64().unwrap_or_else(|| panic!("{a}"))).collect();
    assert_eq!(ids.len(), 4, "{answers:?}");
    let got: HashMap<u64, String> = exported(&env).into_iter().map(|(id, d, _, _)| (id, d)).collect();
    assert_eq!(got[&ids[0]], "before");
    assert_eq!(got[&ids[1]], big, "the long record reads back exactly");
    assert_eq!(got[&ids[2]], "after");
    assert_eq!(got[&ids[3]], "unterminated");

    // A line longer than the limit gets an error and the connection ends;
    // nothing of it is stored.
    let mut huge = line("x", "config").into_bytes();
    huge.truncate(huge.len() - 2);
    huge.extend(std::iter::repeat_n(b'y', 9 << 20));
    let answers = submit(server.connect(), huge);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0]["error"].as_str().is_some_and(|e| e.contains("longer than")), "{}", answers[0]);
    assert_eq!(exported(&env).len(), got.len(), "nothing stored from the refused line");
    // The service still serves others.
    let a = submit(server.connect(), line("still here", "config").into_bytes());
    assert!(a[0]["id"].as_u64().is_some(), "{a:?}");
    server.stop();
    env.run(&["verify"]).success();
}

#[test]
fn concurrent_clients_get_unique_gap_free_ids() {
    let env = Env::with_capacity(700);
    let server = env.serve(&env.no_schedules());
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let stream = server.connect();
            std::thread::spawn(move || {
                let input: String = (0..600).map(|i| line(&format!("c{c} r{i}"), "config")).collect();
                let answers = submit(stream, input.into_bytes());
                answers.iter().enumerate().map(|(i, a)| (a["id"].as_u64().unwrap(), format!("c{c} r{i}"))).collect()
            })
        })
        .collect();
    let mut sent: BTreeMap<u64, String> = BTreeMap::new();
    for c in clients {
        let got: Vec<(u64, String)> = c.join().unwrap();
        // Each client sees its own ids increasing.
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        for (id, data) in got {
            assert!(sent.insert(id, data).is_none(), "id {id} given twice");
        }
    }
    assert_eq!(sent.len(), 4800);
    server.stop();
    let all = exported(&env);
    let ids: Vec<u64> = all.iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "gap-free from 1");
    for (id, data, _, _) in &all {
        if let Some(want) = sent.get(id) {
            assert_eq!(data, want, "record {id}");
        }
    }
    assert!(env.sealed_files().len() >= 6, "rollovers happened under concurrent load");
    assert!(well_formed_errors(&env.sealed_files()).is_empty());
    env.run(&["verify"]).success();
}

#[test]
fn second_service_is_refused_and_cli_goes_through_the_service() {
    let env = Env::new();
    let server = env.serve(&env.no_schedules());
    let second = env.run(&["--schedules", env.no_schedules().to_str().unwrap(), "serve"]).failure();
    assert!(
        second.stderr.contains("already running") && second.stderr.contains(&server.pid().to_string()),
        "{}",
        second.stderr
    );
    // append (one record and JSON Lines) and rotate reach the running service.
    let one = env.run(&["append", "--app", "Console", "--action", "Login", "--category", "presence"]).success();
    assert_eq!(one.stdout.trim(), "2");
    let many = env.run_with_input(&["append", "--json", "-"], &json_records(50)).success();
    assert!(many.stdout.contains("appended 50 records: ids 3..52"), "{}", many.stdout);
    let bad = env.run_with_input(&["append", "--json", "-"], b"{\"app_name\":\"x\"}\n").failure();
    assert!(bad.stderr.contains("line 1") && bad.stderr.contains("action_type"), "{}", bad.stderr);
    let rot = env.run(&["rotate"]).success();
    assert!(rot.stdout.contains("sealed") && rot.stdout.contains("ids 1..52"), "{}", rot.stdout);
    assert_eq!(env.sealed_files().len(), 1);
    let st = env.run(&["status"]).success();
    assert!(st.stdout.contains(&format!("running (pid {}", server.pid())), "{}", st.stdout);
    server.stop();
    assert!(!env.data.join("ingest.sock").exists(), "socket removed at stop");
    // Without a service, append works directly and the sequence continues.
    let direct = env.run(&["append", "--app", "Console", "--action", "Logout"]).success();
    assert_eq!(direct.stdout.trim(), "54", "52 records + the stop record, then this one");
}

#[test]
fn a_client_that_never_reads_does_not_block_the_others() {
    let env = Env::new();
    let server = env.serve(&env.no_schedules());
    let stuck = server.connect();
    let mut w = stuck.try_clone().unwrap();
    // Write far more than the socket buffers hold, never reading an answer.
    let flood = std::thread::spawn(move || {
        let big = json_records(200_000);
        let _ = w.write_all(&big);
    });
    std::thread::sleep(Duration::from_millis(500));
    let other = server.connect();
    let mut w2 = other.try_clone().unwrap();
    let mut rd = BufReader::new(other);
    for i in 0..20 {
        let started = Instant::now();
        w2.write_all(line(&format!("probe {i}"), "config").as_bytes()).unwrap();
        let mut answer = String::new();
        rd.read_line(&mut answer).expect("the second client gets its answer");
        assert!(answer.contains("\"id\":"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5), "answer took {:?}", started.elapsed());
    }
    drop(stuck);
    server.stop();
    let _ = flood.join();
    env.run(&["verify"]).success();
}

#[test]
fn service_audits_itself_and_refuses_to_switch_auditing_off() {
    // A fresh directory with auditing disabled: nothing to serve, nothing appended.
    let fresh = Env::with_config("host_name = \"pbx01\"\nenabled = false\n");
    let r = fresh.run(&["--schedules", fresh.no_schedules().to_str().unwrap(), "serve"]).failure();
    assert!(r.stderr.contains("auditing is disabled"), "{}", r.stderr);
    let r = fresh.run(&["append", "--app", "A", "--action", "B"]).failure();
    assert!(r.stderr.contains("auditing is disabled"), "{}", r.stderr);

    let env = Env::new();
    env.serve(&env.no_schedules()).stop();
    std::fs::write(&env.config, "host_name = \"pbx01\"\ncapacity = 100\nenabled = false\n").unwrap();
    let server = env.serve(&env.no_schedules());
    assert!(server.stderr().contains("enabled = false is refused"), "{}", server.stderr());
    let answers = submit(server.connect(), line("still recorded", "config").into_bytes());
    assert!(answers[0]["id"].as_u64().is_some(), "auditing goes on: {}", answers[0]);
    server.stop();
    let all = exported(&env);
    let actions: Vec<(&str, &str)> = all.iter().map(|r| (r.3.as_str(), r.1.as_str())).collect();
    let change = actions.iter().find(|a| a.0 == "Change" && a.1.starts_with("configuration changed"));
    assert!(change.is_some_and(|c| c.1.contains("capacity") && c.1.contains("enabled")), "{actions:?}");
    assert!(actions.iter().any(|a| a.0 == "Disable attempt"), "{actions:?}");
    assert!(actions.iter().any(|a| a.1 == "still recorded"));
    assert_eq!(actions.iter().filter(|a| a.0 == "Start").count(), 2);
    assert_eq!(actions.iter().filter(|a| a.0 == "Stop").count(), 2);
}

#[test]
fn sighup_reloads_the_event_mask_and_records_the_change() {
    let env = Env::new();
    let server = env.serve(&env.no_schedules());
    let a = submit(server.connect(), line("read 1", "read").into_bytes());
    assert!(a[0]["dropped"].is_string(), "{}", a[0]);
    std::fs::write(&env.config, "host_name = \"pbx01\"\nevent_mask = \"all\"\n").unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = None;
    while id.is_none() && Instant::now() < deadline {
        let a = submit(server.connect(), line("read 2", "read").into_bytes());
        id = a[0]["id"].as_u64();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(id.is_some(), "after SIGHUP the mask admits `read`:\n{}", server.stderr());
    // A broken configuration is reported and the running one kept.
    std::fs::write(&env.config, "host_name = \"pbx01\"\ncapacity = \"lots\"\n").unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("the running one is kept") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stderr().contains("the running one is kept"), "{}", server.stderr());
    let a = submit(server.connect(), line("read 3", "read").into_bytes());
    assert!(a[0]["id"].is_u64(), "{}", a[0]);
    server.stop();
    std::fs::write(&env.config, "host_name = \"pbx01\"\nevent_mask = \"all\"\n").unwrap();
    let all = exported(&env);
    assert!(all.iter().any(|r| r.3 == "Change" && r.1.contains("event_mask")), "{all:?}");
}

#[test]
fn scheduler_runs_second_level_schedules_and_reports_bad_files() {
    let env = Env::new();
    let dir = env.dir.path().join("schedules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rotate-fast.toml"), "cron = \"*/2 * * * * *\"\njob = \"rotate\"\n").unwrap();
    std::fs::write(dir.join("broken.toml"), "job = \"rotate\"\ncron = \"every day\"\n").unwrap();
    std::fs::write(dir.join("off.toml"), "cron = \"@hourly\"\njob = \"rotate\"\nenabled = false\n").unwrap();
    let server = env.serve(&dir);
    assert!(server.stderr().contains("broken.toml:2"), "{}", server.stderr());
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(5500) {
        submit(server.connect(), line(&format!("tick {i}"), "config").into_bytes());
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let sealed = env.sealed_files().len();
    assert!((2..=4).contains(&sealed), "rotate every 2 s for 5.5 s sealed {sealed} files");
    let st: serde_json::Value =
        serde_json::from_str(&env.run(&["--schedules", dir.to_str().unwrap(), "status", "--json"]).success().stdout)
            .unwrap();
    let fast = st["schedules"].as_array().unwrap().iter().find(|s| s["name"] == "rotate-fast").unwrap().clone();
    assert_eq!(fast["last_run"]["outcome"], "ok", "{fast}");
    assert!(fast["last_run"]["message"].as_str().unwrap().contains("sealed"), "{fast}");
    assert!(st["schedule_errors"][0].as_str().unwrap().contains("broken.toml:2"), "{st}");
    let list = env.run(&["--schedules", dir.to_str().unwrap(), "schedules"]);
    assert_eq!(list.code, Some(2), "a schedule that cannot be loaded makes `schedules` fail");
    assert!(list.stdout.contains("rotate-fast") && list.stdout.contains("disabled"), "{}", list.stdout);
    assert!(list.stdout.contains("broken.toml:2"), "{}", list.stdout);
    server.stop();
    env.run(&["verify"]).success();
}

#[test]
fn runs_missed_while_down_are_caught_up_once() {
    let env = Env::new();
    let dir = env.dir.path().join("schedules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nightly.toml"), "cron = \"0 0 0 * * *\"\njob = \"rotate\"\n").unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();
    // The service last saw this schedule due three days ago.
    std::fs::create_dir_all(env.data.join("state/jobs")).unwrap();
    let long_ago = (chrono::Local::now() - chrono::Duration::days(3)).to_rfc3339();
    std::fs::write(env.data.join("state/jobs/last-due.json"), format!("{{\"nightly\":\"{long_ago}\"}}")).unwrap();
    let server = env.serve(&dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.sealed_files().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    server.stop();
    assert_eq!(env.sealed_files().len(), 1, "three missed nights are caught up by one run");
    let history = std::fs::read_to_string(env.data.join("state/jobs/history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.contains("missed while the service was down"), "{history}");
    // Started again right away: nothing is missed any more.
    env.serve(&dir).stop();
    assert_eq!(env.sealed_files().len(), 1);
}

/// Clients stream records over the socket while the service is killed with
/// SIGKILL again and again: every answered id is there with its record, ids
/// are gap-free, sealed files are well-formed and `verify` passes.
#[test]
fn sigkill_under_socket_load_loses_nothing_answered() {
    let env = Env::with_capacity(250);
    let seed = std::env::var("AUDIT_TRAIL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
    });
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let rounds = 8;
    for round in 0..rounds {
        let inputs: Vec<String> =
            (0..4).map(|c| (0..40_000).map(|i| line(&format!("r{round} c{c} #{i}"), "config")).collect()).collect();
        let server = env.serve(&env.no_schedules());
        let clients: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(c, input)| {
                let stream = server.connect();
                std::thread::spawn(move || {
                    let answers = submit(stream, input.into_bytes());
                    answers
                        .iter()
                        .enumerate()
                        .filter_map(|(i, a)| Some((a["id"].as_u64()?, format!("r{round} c{c} #{i}"))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + next() % 400));
        server.kill9();
        for c in clients {
            for (id, data) in c.join().unwrap() {
                assert!(acked.insert(id, data).is_none(), "id {id} answered twice (seed {seed})");
            }
        }
    }
    eprintln!("{rounds} SIGKILLs under load: {} answered records checked (seed {seed})", acked.len());
    assert!(acked.len() > 1000, "the clients got answers before the kills ({} acked)", acked.len());
    // One more start repairs the last crash; its records are then read.
    env.serve(&env.no_schedules()).stop();
    let all = exported(&env);
    let ids: Vec<u64> = all.iter().map(|r| r.0).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "gap-free (seed {seed})");
    let by_id: HashMap<u64, &str> = all.iter().map(|r| (r.0, r.1.as_str())).collect();
    for (id, data) in &acked {
        assert_eq!(by_id.get(id).copied(), Some(data.as_str()), "answered record {id} (seed {seed})");
    }
    assert!(well_formed_errors(&env.sealed_files()).is_empty(), "seed {seed}");
    env.run(&["verify"]).success();
}

#[test]
fn event_mask_applies_to_direct_appends_too() {
    let env = Env::new();
    let input: String = (0..10).map(|i| line(&format!("r{i}"), if i % 3 == 0 { "read" } else { "config" })).collect();
    let run = env.run_with_input(&["append", "--json", "-"], input.as_bytes()).success();
    assert!(run.stdout.contains("appended 6 records: ids 1..6; 4 dropped by the event mask"), "{}", run.stdout);
    let one = env.run(&["append", "--app", "A", "--action", "Read", "--category", "READ"]).success();
    assert!(one.stdout.is_empty() && one.stderr.contains("not in the event mask"), "{}", one.stderr);
    let none = env.run(&["append", "--app", "A", "--action", "Uncategorised"]).success();
    assert_eq!(none.stdout.trim(), "7", "a record without a category is always recorded");
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    assert_eq!(st["dropped"]["read"].as_u64(), Some(5), "{st}");
    let data: Vec<String> = exported(&env).into_iter().map(|r| r.1).collect();
    assert!(!data.iter().any(|d| d == "r0" || d == "r3"), "{data:?}");
}

/// Backups run every second while clients stream records: runs of the job
/// never overlap, each bundle restores into a new directory that verifies,
/// and the restored history is a gap-free prefix of the live one.
#[test]
fn scheduled_backups_under_live_ingest_restore_cleanly() {
    let env = Env::with_capacity(400);
    let dir = env.dir.path().join("schedules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("backup.toml"), "cron = \"* * * * * *\"\njob = \"backup\"\nkeep = 3\n").unwrap();
    std::fs::write(dir.join("archive.toml"), "cron = \"*/2 * * * * *\"\njob = \"archive\"\n").unwrap();
    let server = env.serve(&dir);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let input: String = (0..200).map(|i| line(&format!("live {sent} {i}"), "config")).collect();
        let answers = submit(server.connect(), input.into_bytes());
        assert!(answers.iter().all(|a| a["id"].is_u64()));
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let runs: Vec<serde_json::Value> = std::fs::read_to_string(env.data.join("state/jobs/history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for name in ["backup", "archive"] {
        let mut spans: Vec<(String, String)> = runs
            .iter()
            .filter(|r| r["schedule"] == name && r["outcome"] != "skipped")
            .map(|r| (r["start"].as_str().unwrap().to_owned(), r["end"].as_str().unwrap().to_owned()))
            .collect();
        assert!(spans.len() >= if name == "backup" { 3 } else { 1 }, "{name} ran: {runs:?}");
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{name} runs overlap: {w:?}");
        }
        let failed: Vec<_> = runs.iter().filter(|r| r["schedule"] == name && r["outcome"] == "failed").collect();
        assert!(failed.is_empty(), "{failed:?}");
    }
    let bundles: Vec<_> = std::fs::read_dir(env.data.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".backup.tar.gz"))
        .collect();
    assert_eq!(bundles.len(), 3, "keep = 3: {bundles:?}");
    let live = exported(&env);
    for (k, b) in bundles.iter().enumerate() {
        let target = Env::new();
        let restored = target.dir.path().join(format!("restored{k}"));
        run_in(&restored, &["restore", b.to_str().unwrap()]).success();
        let out = run_in(&restored, &["export", "--all", "--format", "json"]).success();
        let got: Vec<(u64, String)> = out
            .stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["id"].as_u64().unwrap(), v["action_data"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        // Everything but the record of the restore itself is the live history's prefix.
        let (restore, prefix) = got.split_last().unwrap();
        assert!(restore.1.contains("restored from bundle"), "{restore:?}");
        assert!(prefix.len() > 100, "the bundle holds the records acknowledged before it");
        for (i, (id, data)) in prefix.iter().enumerate() {
            assert_eq!(*id, i as u64 + 1);
            assert_eq!(*data, live[i].1, "record {id} of {}", b.display());
        }
    }
}

#[test]
fn shipped_schedules_all_load() {
    let env = Env::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schedules");
    let run = env.run(&["--schedules", dir, "schedules", "--json"]).success();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v}");
    let jobs: BTreeMap<String, (String, bool)> = v["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().into(), (s["job"].as_str().unwrap().into(), s["enabled"] == true)))
        .collect();
    for job in ["rotate", "archive", "purge", "backup"] {
        assert!(jobs.values().any(|(j, on)| j == job && *on), "an enabled {job} schedule ships: {jobs:?}");
    }
    let uploads: Vec<_> = jobs.values().filter(|(j, _)| j == "upload").collect();
    assert_eq!(uploads.len(), 3, "FTP, FTPS and SFTP examples");
    assert!(uploads.iter().all(|(_, on)| !on), "upload examples ship disabled");
    let purge = v["schedules"].as_array().unwrap().iter().find(|s| s["job"] == "purge").unwrap();
    assert!(purge["next"][0].as_str().unwrap().contains(" 01:30:00"), "{purge}");
}

#[test]
fn after_a_killed_service_append_works_directly_and_the_next_service_recovers() {
    let env = Env::new();
    let server = env.serve(&env.no_schedules());
    let a = submit(server.connect(), line("before the kill", "config").into_bytes());
    assert_eq!(a[0]["id"].as_u64(), Some(2));
    server.kill9();
    assert!(env.data.join("ingest.sock").exists(), "a killed service leaves its socket file behind");
    let run = env.run(&["append", "--app", "A", "--action", "Login", "--category", "presence"]).success();
    assert_eq!(run.stdout.trim(), "3", "the stale socket is not mistaken for a running service");
    let server = env.serve(&env.no_schedules());
    let a = submit(server.connect(), line("after the restart", "config").into_bytes());
    assert_eq!(a[0]["id"].as_u64(), Some(5), "4 is the second start record");
    server.stop();
    env.run(&["verify"]).success();
}
