//! The acknowledgement contract (README "Acknowledgements"): an id or exit 0
//! means stored; an error means nothing stored and says whether a retry
//! helps; ids never repeat; retention follows the archiver's clock.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::harness::{BIN, Env, json_records, submit};

const TEMPORARY: i32 = 75;
const UNKNOWN: i32 = 5;
const INVALID: i32 = 4;
const TAMPERED: i32 = 3;
const CONFIG: i32 = 2;

fn ids_and_users(env: &Env) -> Vec<(u64, String)> {
    env.export_all_lines()
        .into_iter()
        .map(|(id, line)| {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            (id, v["user_name"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A stand-in for a service that misbehaves at its socket: `serve_one` gets
/// each accepted connection.
fn fake_service(env: &Env, serve_one: fn(UnixStream)) -> std::thread::JoinHandle<()> {
    std::fs::create_dir_all(&env.data).unwrap();
    let listener = UnixListener::bind(env.data.join("ingest.sock")).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(1) {
            serve_one(s.unwrap());
        }
    })
}

#[test]
fn append_never_exits_0_without_an_id_when_the_service_refuses_or_vanishes() {
    // Refused ("too many clients"): a temporary failure, nothing stored.
    let env = Env::new();
    let t = fake_service(&env, |mut s| {
        let _ = s.write_all(b"{\"error\":\"too many clients; try again later\",\"retry\":true}\n");
    });
    let run = env.run(&["append", "--app", "A", "--action", "B"]);
    t.join().unwrap();
    assert_eq!(run.code, Some(TEMPORARY), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "no id printed: {}", run.stdout);
    assert!(run.stderr.contains("too many clients"), "{}", run.stderr);

    // Closed without an answer, after reading the request: outcome unknown.
    let env = Env::new();
    let t = fake_service(&env, |s| {
        let mut line = String::new();
        let _ = BufReader::new(&s).read_line(&mut line);
    });
    let run = env.run(&["append", "--app", "A", "--action", "B"]);
    t.join().unwrap();
    assert_eq!(run.code, Some(UNKNOWN), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("may or may not be stored"), "{}", run.stderr);

    // Closed at once, before reading: a broken pipe to the service is not
    // a closed standard output.
    let env = Env::new();
    let t = fake_service(&env, drop);
    let run = env.run_with_input(&["append", "--json", "-"], &json_records(2000));
    t.join().unwrap();
    assert!(matches!(run.code, Some(UNKNOWN)), "{:?} {}", run.code, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    // No answer at all: the timeout ends the wait.
    let env = Env::new();
    let t = fake_service(&env, |s| {
        std::thread::sleep(Duration::from_secs(4));
        drop(s);
    });
    let started = Instant::now();
    let run = env.run(&["--timeout", "1", "append", "--app", "A", "--action", "B"]);
    assert!(started.elapsed() < Duration::from_secs(4), "append waited {:?}", started.elapsed());
    t.join().unwrap();
    assert_eq!(run.code, Some(UNKNOWN), "{}", run.stderr);
    assert!(run.stderr.contains("no answer for 1 s"), "{}", run.stderr);
}

/// Runs `serve` under a small open-file limit, holds many idle clients, and
/// checks that new clients are answered (refused with a retry) instead of
/// hanging, that the service does not spin, and that appends work again
/// once the clients leave.
#[test]
fn idle_clients_beyond_the_descriptors_are_refused_not_left_hanging() {
    let env = Env::new();
    let schedules = env.no_schedules();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {BIN} --data-dir {} --schedules {} serve",
            env.data.display(),
            schedules.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // Stopped when the test ends, also when an assertion fails first.
    struct Service(std::process::Child);
    impl Drop for Service {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(self.0.id().to_string()).status();
            let _ = self.0.wait();
        }
    }
    let child = Service(cmd.spawn().unwrap());
    let sock = env.data.join("ingest.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The idle clients live in a process of their own, so the descriptors
    // of the tests running beside this one never limit how many it holds.
    let mut held = Command::new("python3")
        .arg("-c")
        .arg(
            "import socket, sys\n\
             held = []\n\
             for _ in range(300):\n    \
                 s = socket.socket(socket.AF_UNIX)\n    \
                 s.connect(sys.argv[1])\n    \
                 held.append(s)\n\
             print(len(held), flush=True)\n\
             sys.stdin.read()\n",
        )
        .arg(&sock)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is required by the tests");
    let mut count = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(held.stdout.as_mut().unwrap()), &mut count).unwrap();
    assert_eq!(count.trim(), "300", "the idle clients connected");
    std::thread::sleep(Duration::from_millis(500));
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        rest.split_whitespace().skip(11).take(2).map(|v| v.parse::<u64>().unwrap()).sum()
    };
    let before = ticks(child.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = ticks(child.0.id()) - before;
    assert!(used < 100, "the service used {used} clock ticks in 2 s with only idle clients");
    for i in 0..3 {
        let started = Instant::now();
        let run = env.run(&["--timeout", "10", "append", "--app", "A", "--action", "B", "--user", &format!("p{i}")]);
        assert!(started.elapsed() < Duration::from_secs(8), "append hung for {:?}", started.elapsed());
        assert_eq!(run.code, Some(TEMPORARY), "refused with a retry: {} {}", run.stdout, run.stderr);
        assert!(run.stdout.is_empty());
    }
    drop(held.stdin.take());
    let _ = held.wait();
    std::thread::sleep(Duration::from_millis(500));
    let id = env.run(&["append", "--app", "A", "--action", "B", "--user", "after"]).success();
    assert!(id.stdout.trim().parse::<u64>().is_ok(), "{}", id.stdout);
    drop(child);
    let users: Vec<String> = ids_and_users(&env).into_iter().map(|(_, u)| u).collect();
    assert!(users.contains(&"after".to_owned()));
    assert!(!users.iter().any(|u| u.starts_with('p')), "refused appends stored nothing: {users:?}");
}

#[test]
fn a_too_long_line_is_named_by_its_own_number() {
    let env = Env::new();
    let server = env.serve(&env.no_schedules());
    for before in 0..3 {
        let ok = b"{\"app_name\":\"A\",\"action_type\":\"B\"}\n".repeat(before);
        let mut input = ok.clone();
        input.extend_from_slice(b"{\"app_name\":\"");
        input.extend(std::iter::repeat_n(b'x', 9 << 20));
        input.extend_from_slice(b"\"}\n");
        let answers = submit(server.connect(), input);
        let err = answers.iter().find_map(|a| a["error"].as_str()).expect("an error answer");
        assert!(err.contains(&format!("request line {} ", before + 1)), "{before} lines before: {err}");
        assert_eq!(answers.last().unwrap()["retry"], false);
    }
    server.stop();
}

fn require_root() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts a small tmpfs to fill the disk and must run as root (CI does)"
    );
}

/// A small tmpfs, unmounted when dropped.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "cannot mount a tmpfs on {}", dir.path().display());
        SmallFs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Fills the filesystem to its last byte.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path().join("fill")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let byte = [0u8; 1];
        while f.write_all(&byte).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("fill")).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn batch(prefix: &str, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{{\"app_name\":\"A\",\"action_type\":\"B\",\"user_name\":\"{prefix}{i}\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn disk_full_at_a_rollover_stores_nothing_of_the_batch_and_a_retry_stores_it_once() {
    let fs = SmallFs::new("1m");
    // Batches that end before, at and after one or two rollovers.
    for (k, (before, n)) in [(3usize, 5usize), (0, 5), (4, 1), (2, 12), (1, 3)].into_iter().enumerate() {
        let data = fs.path().join(format!("d{k}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("audit-trail.toml"), "host_name = \"pbx01\"\ncapacity = 5\n").unwrap();
        let run = |args: &[&str], input: &[u8]| {
            let mut c = Command::new(BIN);
            c.arg("--data-dir").arg(&data).args(args).stdin(std::process::Stdio::piped());
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            let mut child = c.spawn().unwrap();
            child.stdin.take().unwrap().write_all(input).unwrap();
            child.wait_with_output().unwrap()
        };
        if before > 0 {
            assert!(run(&["append", "--json", "-"], &batch("pre", before)).status.success());
        }
        fs.fill();
        let out = run(&["append", "--json", "-"], &batch("b", n));
        let stderr = String::from_utf8_lossy(&out.stderr);
        fs.free();
        let env = Env { dir: tempfile::tempdir().unwrap(), data: data.clone(), config: data.join("audit-trail.toml") };
        let users: Vec<String> = ids_and_users(&env).into_iter().map(|(_, u)| u).collect();
        let stored = users.iter().filter(|u| u.starts_with('b')).count();
        if out.status.success() {
            assert_eq!(stored, n, "exit 0 means all {n} stored ({before} before)");
        } else {
            assert_eq!(out.status.code(), Some(TEMPORARY), "disk full is a temporary failure: {stderr}");
            assert_eq!(stored, 0, "an error means nothing stored ({before} before, {n} sent): {users:?}\n{stderr}");
            assert!(run(&["append", "--json", "-"], &batch("b", n)).status.success(), "the retry succeeds");
            let users: Vec<String> = ids_and_users(&env).into_iter().map(|(_, u)| u).collect();
            assert_eq!(users.iter().filter(|u| u.starts_with('b')).count(), n, "stored exactly once: {users:?}");
        }
        let ids: Vec<u64> = ids_and_users(&env).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "ids stay gap-free");
        env.run(&["verify"]).success();
        std::mem::forget(env.dir);
    }
}

#[test]
fn disk_full_under_serve_answers_errors_for_exactly_what_was_not_stored() {
    let fs = SmallFs::new("1m");
    let data = fs.path().join("d");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("audit-trail.toml"), "host_name = \"pbx01\"\ncapacity = 5\n").unwrap();
    let env = Env { dir: tempfile::tempdir().unwrap(), data: data.clone(), config: data.join("audit-trail.toml") };
    let server = env.serve(&env.no_schedules());
    assert_eq!(submit(server.connect(), batch("pre", 1))[0]["id"], 2);
    fs.fill();
    let answers = submit(server.connect(), batch("sock", 5));
    fs.free();
    let acked: Vec<u64> = answers.iter().filter_map(|a| a["id"].as_u64()).collect();
    for a in &answers {
        if a.get("error").is_some() {
            assert_eq!(a["retry"], true, "disk full: a retry helps: {a}");
        }
    }
    // Once space is back, the service takes records again.
    let again = submit(server.connect(), batch("later", 2));
    assert!(again.iter().all(|a| a["id"].is_u64()), "{again:?}");
    server.stop();
    let stored: Vec<(u64, String)> = ids_and_users(&env).into_iter().filter(|(_, u)| u.starts_with("sock")).collect();
    assert_eq!(stored.iter().map(|(id, _)| *id).collect::<Vec<_>>(), acked, "stored exactly the acknowledged ids");
    env.run(&["verify"]).success();
    std::mem::forget(env.dir);
}

#[test]
fn an_active_file_deleted_or_replaced_under_serve_loses_nothing_acknowledged() {
    for replace in [false, true] {
        let env = Env::new();
        let schedules = env.no_schedules();
        let server = env.serve(&schedules);
        let first = env.run(&["append", "--app", "A", "--action", "B", "--user", "before"]).success();
        let active = env.active_files().pop().unwrap();
        std::fs::remove_file(&active).unwrap();
        if replace {
            std::fs::write(&active, "<AuditTrail first-id=\"1\">\n").unwrap();
        }
        let second = env.run(&["append", "--app", "A", "--action", "B", "--user", "after"]).success();
        let second: u64 = second.stdout.trim().parse().unwrap();
        let stderr = server.stop();
        assert!(stderr.contains("audit-trail: warning: ") && stderr.contains("was deleted") != replace, "{stderr}");
        let server = env.serve(&schedules);
        let third: u64 = env
            .run(&["append", "--app", "A", "--action", "B", "--user", "third"])
            .success()
            .stdout
            .trim()
            .parse()
            .unwrap();
        server.stop();
        assert!(third > second, "id {third} after {second}: ids never repeat");
        let rows = ids_and_users(&env);
        let users: Vec<&str> = rows.iter().map(|(_, u)| u.as_str()).collect();
        assert!(users.contains(&"before") && users.contains(&"after"), "{users:?} (first id {})", first.stdout);
        let lines = env.export_all_lines();
        assert!(
            lines.iter().any(|(_, l)| l.contains("\"action_type\":\"Integrity\"") && l.contains("active file")),
            "the incident is recorded"
        );
        if replace {
            let displaced = std::fs::read_dir(env.data.join("state/displaced")).unwrap().count();
            assert_eq!(displaced, 1, "the replacing file is kept aside");
        }
        env.run(&["verify"]).success();
    }
}

#[test]
fn ids_never_go_back_when_the_active_file_is_lost_while_stopped() {
    let env = Env::with_capacity(5);
    env.run_with_input(&["append", "--json", "-"], &json_records(7)).success();
    // The active file holds ids 6..7; lose it while nothing runs.
    for f in env.active_files() {
        std::fs::remove_file(f).unwrap();
    }
    let next: u64 = env.run(&["append", "--app", "A", "--action", "B"]).success().stdout.trim().parse().unwrap();
    assert!(next >= 8, "id {next} was handed out before");
    let lines = env.export_all_lines();
    assert!(lines.iter().any(|(_, l)| l.contains("ids 6..7 were handed out but no file holds them")), "{lines:?}");
    // The records are gone: verify must say so.
    let run = env.run(&["verify"]);
    assert_eq!(run.code, Some(TAMPERED), "{} {}", run.stdout, run.stderr);
    // The circular log is the newest `capacity` records, across the gap.
    let circular = env.run(&["export", "--format", "json"]).success().stdout;
    let ids: Vec<u64> = circular
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 4, 5, 8, next], "{circular}");
}

#[test]
fn retention_follows_the_seal_time_not_the_event_times() {
    let env = Env::with_config("host_name = \"pbx01\"\nretention_days = 30\n");
    // Sealed 40 days ago by the archiver's clock, with an event time in the future.
    env.run_at("-40d", &["append", "--app", "A", "--action", "B", "--user", "old", "--time", "2099-01-01T00:00:00Z"])
        .success();
    env.run_at("-40d", &["rotate"]).success();
    // Sealed now, holding an event stamped 1999 by a device with a reset clock.
    env.run(&["append", "--app", "A", "--action", "B", "--user", "today"]).success();
    env.run(&["append", "--app", "A", "--action", "B", "--user", "reset", "--time", "1999-12-31T23:00:00Z"]).success();
    env.run(&["rotate"]).success();
    env.run(&["append", "--app", "A", "--action", "B", "--user", "active"]).success();
    let run = env.run(&["purge"]).success();
    assert!(run.stdout.contains("removed 1 file(s)"), "{}", run.stdout);
    let users: Vec<String> = ids_and_users(&env).into_iter().map(|(_, u)| u).collect();
    assert!(!users.contains(&"old".to_owned()), "{users:?}");
    for kept in ["today", "reset", "active"] {
        assert!(users.contains(&kept.to_owned()), "{kept} kept: {users:?}");
    }
    // The archived copy is judged the same way.
    env.run(&["archive"]).success();
    assert!(env.run(&["purge"]).success().stdout.contains("removed 0 file(s)"));
}

#[test]
fn leap_seconds_are_kept_when_real_and_refused_when_impossible() {
    let env = Env::new();
    env.run_with_input(
        &["append", "--json", "-"],
        b"{\"app_name\":\"A\",\"action_type\":\"setup\",\"timestamp\":\"2016-12-31T23:59:59.900Z\"}\n\
          {\"app_name\":\"A\",\"action_type\":\"release\",\"timestamp\":\"2016-12-31T23:59:60.500Z\"}\n",
    )
    .success();
    let out = env
        .run(&["export", "--format", "csv", "--from", "2016-12-31T23:59:59.600Z", "--to", "2017-01-01T00:00:00Z"])
        .success()
        .stdout;
    assert!(out.contains("release") && out.contains(":60.500+01:00"), "{out}");
    for bad in ["2026-11-30T10:17:60Z", "2016-12-30T23:59:60Z", "2015-06-30T23:58:60Z"] {
        let run = env.run(&["append", "--app", "A", "--action", "B", "--time", bad]);
        assert_eq!(run.code, Some(INVALID), "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("no leap second"), "{}", run.stderr);
    }
    env.run(&["rotate"]).success();
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/audit-trail.xsd");
    for f in env.sealed_files() {
        let ok = Command::new("xmllint").arg("--noout").arg("--schema").arg(&xsd).arg(&f).output().unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    }
}

#[test]
fn export_bounds_in_the_repeated_hour_cover_both_passes() {
    let env = Env::new();
    let mut input = Vec::new();
    for (i, t) in
        ["02:10:00+02:00", "02:40:00+02:00", "02:10:00+01:00", "02:40:00+01:00", "03:10:00+01:00"].iter().enumerate()
    {
        input.extend(
            format!(
                "{{\"app_name\":\"A\",\"action_type\":\"B\",\"user_name\":\"r{i}\",\"timestamp\":\"2026-10-25T{t}\"}}\n"
            )
            .bytes(),
        );
    }
    env.run_with_input(&["append", "--json", "-"], &input).success();
    for tz in ["Europe/Berlin", "Europe/Paris"] {
        let out = env
            .cmd(&["export", "--all", "--format", "csv", "--from", "2026-10-25 02:00", "--to", "2026-10-25 02:59"])
            .env("TZ", tz)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 4, "{tz}: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    // The hour that does not exist is refused with a way out.
    let out = env
        .cmd(&["export", "--format", "csv", "--from", "2026-03-29 02:30"])
        .env("TZ", "Europe/Berlin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give an offset"));
}

#[test]
fn exit_status_tells_tampering_configuration_input_and_unreachable_targets_apart() {
    let env = Env::with_capacity(2);
    env.run_with_input(&["append", "--json", "-"], &json_records(3)).success();
    let sealed = env.sealed_files().pop().unwrap();
    let text = std::fs::read_to_string(&sealed).unwrap().replacen("record 1", "record X", 1);
    std::fs::write(&sealed, text).unwrap();
    assert_eq!(env.run(&["verify"]).code, Some(TAMPERED));
    assert_eq!(env.run(&["--config", "/nonexistent/audit-trail.toml", "status"]).code, Some(CONFIG));
    assert_eq!(env.run(&["append", "--app", "", "--action", "B"]).code, Some(INVALID));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = Env::with_config(&format!(
        "host_name = \"pbx01\"\n[targets.down]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"u\"\n\
         password_env = \"NOPE\"\nretries = 0\nenabled = true\n"
    ));
    env.run(&["append", "--app", "A", "--action", "B"]).success();
    env.run(&["rotate"]).success();
    let run = env.cmd(&["upload"]).env("NOPE", "pw").output().unwrap();
    assert_eq!(run.status.code(), Some(TEMPORARY), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn the_archivers_own_records_cannot_be_forged_from_outside() {
    let env = Env::with_config("host_name = \"pbx01\"\nevent_mask = \"security\"\nretention_days = 30\n");
    env.run_at("-60d", &["append", "--app", "A", "--action", "B", "--category", "security"]).success();
    env.run_at("-60d", &["rotate"]).success();
    let server = env.serve(&env.no_schedules());
    let forged: String = ["audit-trail", "Audit-Trail", " AUDIT_TRAIL ", "audit trail", "Audit.Trail"]
        .iter()
        .map(|app| {
            format!("{{\"app_name\":{app:?},\"app_context\":\"Service\",\"action_type\":\"Stop\",\"category\":\"system\"}}\n")
        })
        .collect();
    let answers = submit(server.connect(), forged.into_bytes());
    assert_eq!(answers.len(), 5);
    for a in &answers {
        assert!(a["error"].as_str().is_some_and(|e| e.contains("reserved")), "{a}");
        assert_eq!(a["retry"], false);
    }
    let run = env.run(&["append", "--app", "audit-trail", "--action", "Stop"]);
    assert_eq!(run.code, Some(INVALID), "{}", run.stderr);
    // The archiver's own records still reach the log through the control
    // socket while the service runs (here: a purge).
    assert!(env.run(&["purge"]).success().stdout.contains("removed 1 file(s)"));
    server.stop();
    let own: Vec<String> = env
        .export_all_lines()
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| l.contains("\"app_name\":\"audit-trail\""))
        .collect();
    let stops = own.iter().filter(|l| l.contains("\"action_type\":\"Stop\"")).count();
    assert_eq!(stops, 1, "only the service's own Stop record: {own:?}");
    assert!(own.iter().any(|l| l.contains("\"action_type\":\"Delete\"")), "the purge is recorded: {own:?}");
    for variant in ["Audit-Trail", "AUDIT_TRAIL", "audit trail", "Audit.Trail"] {
        assert!(!env.export_all_lines().iter().any(|(_, l)| l.contains(variant)), "{variant} stored");
    }
}

#[test]
fn an_active_file_cut_in_place_under_serve_stops_acknowledgements_and_ids_go_on() {
    for cut in [0u64, 200, 900] {
        let env = Env::new();
        let schedules = env.no_schedules();
        let server = env.serve(&schedules);
        let mut acked = Vec::new();
        for i in 0..3 {
            let run = env.run(&["append", "--app", "A", "--action", "B", "--user", &format!("u{i}")]).success();
            acked.push(run.stdout.trim().parse::<u64>().unwrap());
        }
        let active = env.active_files().pop().unwrap();
        std::fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(cut).unwrap();
        let refused = env.run(&["append", "--app", "A", "--action", "B", "--user", "cut"]);
        assert_eq!(refused.code, Some(TEMPORARY), "cut to {cut}: {} {}", refused.stdout, refused.stderr);
        assert!(refused.stdout.is_empty());
        let after: u64 = env
            .run(&["append", "--app", "A", "--action", "B", "--user", "after"])
            .success()
            .stdout
            .trim()
            .parse()
            .unwrap();
        assert!(after > *acked.iter().max().unwrap(), "cut to {cut}: id {after} after {acked:?}");
        let stderr = server.stop();
        assert!(stderr.contains("audit-trail: warning: ") && stderr.contains("was cut to"), "{stderr}");
        let lines = env.export_all_lines();
        assert!(lines.iter().any(|(_, l)| l.contains("was cut to")), "the incident is recorded");
        assert!(!lines.iter().any(|(_, l)| l.contains("\"user_name\":\"cut\"")), "the refused record is not stored");
        let ids: Vec<u64> = lines.iter().map(|(id, _)| *id).collect();
        let mut sorted = ids.clone();
        sorted.dedup();
        assert_eq!(ids, sorted, "no id twice");
    }
}

#[test]
fn ids_stop_at_the_top_of_the_range_instead_of_wrapping() {
    let env = Env::new();
    env.run(&["append", "--app", "A", "--action", "B"]).success();
    let max = i64::MAX as u64;
    // The record of the gap takes max - 1, the append the last id.
    std::fs::write(env.data.join("state/next-id"), format!("{}\n", max - 1)).unwrap();
    let top: u64 = env.run(&["append", "--app", "A", "--action", "B"]).success().stdout.trim().parse().unwrap();
    assert_eq!(top, max);
    let run = env.run(&["append", "--app", "A", "--action", "B"]);
    assert_ne!(run.code, Some(0));
    assert!(run.stdout.is_empty() && run.stderr.contains("every id"), "{}", run.stderr);
    // A mark beyond the range is not believed: ids come from the files.
    let env = Env::new();
    env.run(&["append", "--app", "A", "--action", "B"]).success();
    std::fs::write(env.data.join("state/next-id"), "18446744073709551615\n").unwrap();
    let run = env.run(&["append", "--app", "A", "--action", "B"]).success();
    assert_eq!(run.stdout.trim(), "2");
    assert!(run.stderr.contains("out of range"), "{}", run.stderr);
}

#[test]
fn a_failed_batch_never_moves_the_high_water_mark() {
    let fs = SmallFs::new("2m");
    for (k, free) in [0usize, 1500, 4000, 8000, 16000, 60000].into_iter().enumerate() {
        let data = fs.path().join(format!("d{k}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("audit-trail.toml"), "host_name = \"pbx01\"\ncapacity = 5\n").unwrap();
        let env = Env { dir: tempfile::tempdir().unwrap(), data: data.clone(), config: data.join("audit-trail.toml") };
        env.run_with_input(&["append", "--json", "-"], &batch("pre", 3)).success();
        fs.fill();
        // Give back `free` bytes.
        let fill = fs.path().join("fill");
        let len = std::fs::metadata(&fill).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&fill).unwrap().set_len(len.saturating_sub(free as u64)).unwrap();
        let run = env.run_with_input(&["append", "--json", "-"], &batch("b", 20));
        fs.free();
        let users: Vec<String> = ids_and_users(&env).into_iter().map(|(_, u)| u).collect();
        let stored = users.iter().filter(|u| u.starts_with('b')).count();
        assert!(stored == 0 || stored == 20, "free {free}: {stored} of 20 stored");
        assert_eq!(run.code == Some(0), stored == 20, "free {free}: exit {:?} with {stored} stored", run.code);
        env.run(&["append", "--app", "A", "--action", "B", "--user", "after"]).success();
        let lines = env.export_all_lines();
        assert!(!lines.iter().any(|(_, l)| l.contains("Integrity")), "free {free}: a gap was recorded: {lines:?}");
        let ids: Vec<u64> = lines.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "free {free}: ids gap-free");
        env.run(&["verify"]).success();
        std::mem::forget(env.dir);
    }
}

#[test]
fn a_restore_over_a_newer_log_never_hands_its_ids_out_again() {
    let env = Env::new();
    for i in 0..3 {
        env.run(&["append", "--app", "A", "--action", "B", "--user", &format!("old{i}")]).success();
    }
    let bundles = env.dir.path().join("bundles");
    env.run(&["backup", "--out", bundles.to_str().unwrap()]).success();
    for i in 3..6 {
        env.run(&["append", "--app", "A", "--action", "B", "--user", &format!("old{i}")]).success();
    }
    let bundle = std::fs::read_dir(&bundles).unwrap().next().unwrap().unwrap().path();
    env.run(&["restore", "--force", bundle.to_str().unwrap()]).success();
    let next: u64 = env.run(&["append", "--app", "A", "--action", "B"]).success().stdout.trim().parse().unwrap();
    assert!(next > 6, "id {next}: ids up to 6 were handed out before the restore");
    let lines = env.export_all_lines();
    assert!(lines.iter().any(|(_, l)| l.contains("ids 4..6 were handed out by the data directory")), "{lines:?}");
    env.run(&["verify"]).success();
}

#[test]
fn an_archive_run_while_the_clock_was_behind_does_not_make_a_fresh_file_old() {
    let env = Env::with_config("host_name = \"pbx01\"\nretention_days = 30\n");
    env.run(&["append", "--app", "A", "--action", "B", "--user", "fresh"]).success();
    env.run(&["rotate"]).success();
    // The hourly archive job runs once before NTP has set the clock.
    env.run_at("-59d", &["archive"]).success();
    env.run(&["append", "--app", "A", "--action", "B"]).success();
    assert!(env.run(&["purge"]).success().stdout.contains("removed 0 file(s)"));
    let users: Vec<String> = ids_and_users(&env).into_iter().map(|(_, u)| u).collect();
    assert!(users.contains(&"fresh".to_owned()));
}
