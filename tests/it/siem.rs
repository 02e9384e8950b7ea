//! SIEM forwarding against a real rsyslog receiver on loopback (see
//! syslog.rs), over UDP, TCP and TLS, in JSON and CEF.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{Env, json_records};
use crate::syslog::Rsyslog;

const WAIT: Duration = Duration::from_secs(30);

fn siem_env(rs: &Rsyslog, protocol: &str, format: &str, extra: &str) -> Env {
    Env::with_config(&format!(
        "host_name = \"pbx01\"\nevent_mask = \"all\"\n[siem]\nenabled = true\nprotocol = \"{protocol}\"\n\
         host = \"127.0.0.1\"\nport = {}\nformat = \"{format}\"\ntimeout_secs = 2\n{extra}",
        rs.port
    ))
}

fn no_schedules(env: &Env) -> std::path::PathBuf {
    let d = env.dir.path().join("schedules");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The MSG part of a received RFC 5424 message.
fn msg_of(line: &str) -> &str {
    line.split_once(" - audit - ").map_or("", |(_, m)| m)
}

/// Record id → JSON object, from JSON-format messages (the last copy wins;
/// duplicates are allowed).
fn json_by_id(lines: &[String]) -> BTreeMap<u64, serde_json::Value> {
    let mut out = BTreeMap::new();
    for l in lines {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(msg_of(l))
            && let Some(id) = v["id"].as_u64()
        {
            out.insert(id, v);
        }
    }
    out
}

/// Waits until the receiver holds every id in `ids` (JSON format).
#[track_caller]
fn wait_for_ids(rs: &Rsyslog, ids: std::ops::RangeInclusive<u64>) -> BTreeMap<u64, serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = json_by_id(&rs.messages());
        if ids.clone().all(|id| got.contains_key(&id)) {
            return got;
        }
        if Instant::now() > deadline {
            let missing: Vec<u64> = ids.clone().filter(|id| !got.contains_key(id)).take(10).collect();
            panic!("records missing at the receiver after {WAIT:?}: {missing:?} …");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exported records (id → JSON), to compare with what arrived.
fn exported(env: &Env) -> BTreeMap<u64, serde_json::Value> {
    let out = env.run(&["export", "--all", "--format", "json"]).success();
    out.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_u64().unwrap(), v)
        })
        .collect()
}

#[test]
fn tcp_json_every_record_arrives_with_its_content() {
    let rs = Rsyslog::start_tcp();
    let env = siem_env(&rs, "tcp", "json", "");
    let server = env.serve(&no_schedules(&env));
    let first = env.run(&["status", "--json"]).success();
    let v: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    let start = v["next_id"].as_u64().unwrap();
    let mut input = json_records(300);
    input.extend_from_slice(
        "{\"app_name\":\"Suite\",\"action_type\":\"Change\",\"action_data\":\"caf\u{e9} \\\"quoted\\\"\\ttab\\nline2 <&>\",\"category\":\"config\"}\n"
            .as_bytes(),
    );
    env.run_with_input(&["append", "--json", "-"], &input).success();
    let end = start + 300;
    let got = wait_for_ids(&rs, start..=end);
    server.stop();
    let all = exported(&env);
    for id in start..=end {
        assert_eq!(got[&id], all[&id], "record {id} arrived different from the log");
    }
    assert_eq!(got[&end]["action_data"], "caf\u{e9} \"quoted\"\ttab\nline2 <&>");
    // The header: facility auth (4), severity notice (5) for a config record.
    let line = rs.messages().into_iter().find(|l| l.contains(&format!("{{\"id\":{end},"))).unwrap();
    assert!(line.starts_with("<37>1 "), "{line}");
    assert!(line.contains(" pbx01 audit-trail - audit - "), "{line}");
}

#[test]
fn udp_cef_escapes_pipes_equals_backslashes_and_newlines() {
    let rs = Rsyslog::start_udp();
    let env = siem_env(&rs, "udp", "cef", "");
    let server = env.serve(&no_schedules(&env));
    let rec = "{\"app_name\":\"PBX|Admin\\\\Tool\",\"action_type\":\"Login failure\",\"user_name\":\"eve\",\"source_ip\":\"10.1.1.10\",\"outcome\":\"failure\",\"category\":\"failure\",\"action_data\":\"a|b = c \\\\ d\\nline2\\r\"}\n";
    let run = env.run_with_input(&["append", "--json", "-"], rec.as_bytes()).success();
    let id: u64 = run.stdout.split("ids ").nth(1).and_then(|s| s.split("..").next()).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + WAIT;
    let line = loop {
        if let Some(l) = rs.messages().into_iter().find(|l| l.contains(&format!("externalId={id} "))) {
            break l;
        }
        assert!(Instant::now() < deadline, "the CEF record never arrived: {:?}", rs.messages());
        std::thread::sleep(Duration::from_millis(100));
    };
    server.stop();
    let cef = msg_of(&line);
    // Header: `|` and `\` escaped; severity 7 for a failure.
    assert!(
        cef.starts_with(r"CEF:0|audit-trail|audit-trail|")
            && cef.contains(r"|Login failure|PBX\|Admin\\Tool: Login failure|7|"),
        "{cef}"
    );
    // Extension: `=` and `\` escaped, line breaks as \n and \r, pipes as they are.
    assert!(cef.contains(r"msg=a|b \= c \\ d\nline2\r "), "{cef}");
    assert!(cef.contains("suser=eve") && cef.contains("src=10.1.1.10") && cef.contains("outcome=failure"), "{cef}");
    assert!(line.starts_with("<36>1 "), "failure is a warning (auth.warning = 36): {line}");
}

#[test]
fn receiver_down_then_back_gets_the_backlog() {
    let mut rs = Rsyslog::start_tcp();
    let env = siem_env(&rs, "tcp", "json", "");
    let server = env.serve(&no_schedules(&env));
    let v: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let start = v["next_id"].as_u64().unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(100)).success();
    wait_for_ids(&rs, start..=start + 99);

    rs.stop();
    // Records keep coming while the receiver is away; ingestion is not held up.
    let t = Instant::now();
    env.run_with_input(&["append", "--json", "-"], &json_records(2000)).success();
    assert!(t.elapsed() < Duration::from_secs(10), "ingestion waited for the receiver");
    let deadline = Instant::now() + WAIT;
    loop {
        let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
        if st["siem"]["last_error"].is_string() {
            assert!(st["siem"]["lag"].as_u64().unwrap() > 0, "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "the failure never showed in status: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }

    rs.restart();
    let got = wait_for_ids(&rs, start..=start + 2099);
    server.stop();
    let all = exported(&env);
    for id in start..=start + 2099 {
        assert_eq!(got[&id], all[&id]);
    }
}

#[test]
fn serve_killed_with_a_backlog_loses_nothing_after_restart() {
    let mut rs = Rsyslog::start_tcp();
    rs.stop();
    let env = siem_env(&rs, "tcp", "json", "");
    let server = env.serve(&no_schedules(&env));
    let v: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let start = v["next_id"].as_u64().unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(500)).success();
    server.kill9();

    rs.restart();
    let server = env.serve(&no_schedules(&env));
    let got = wait_for_ids(&rs, start..=start + 499);
    server.stop();
    assert!(got.len() >= 500);
}

#[test]
fn tls_with_ca_file_delivers_and_an_untrusted_certificate_is_refused() {
    let rs = Rsyslog::start_tls();
    let ca = rs.ca_file.clone().expect("a TLS receiver has a CA");
    let env = siem_env(&rs, "tls", "json", &format!("ca_file = \"{}\"\n", ca.display()));
    let ok = env.run(&["siem", "test"]).success();
    assert!(ok.stdout.contains("certificate is trusted"), "{}", ok.stdout);
    let deadline = Instant::now() + WAIT;
    while !rs.messages().iter().any(|l| l.contains("SIEM test message")) {
        assert!(Instant::now() < deadline, "the test message never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = env.serve(&no_schedules(&env));
    let v: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let start = v["next_id"].as_u64().unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(50)).success();
    wait_for_ids(&rs, start..=start + 49);
    server.stop();

    // Without ca_file the system roots do not trust the test CA.
    let untrusted = siem_env(&rs, "tls", "json", "");
    let refused = untrusted.run(&["siem", "test"]).failure();
    assert!(refused.stderr.contains("TLS failure") && refused.stderr.contains("UnknownIssuer"), "{}", refused.stderr);
}

#[test]
fn siem_test_reports_refused_and_udp_unconfirmed() {
    let mut rs = Rsyslog::start_tcp();
    let env = siem_env(&rs, "tcp", "json", "");
    env.run(&["siem", "test"]).success();
    rs.stop();
    let refused = env.run(&["siem", "test"]).failure();
    assert!(refused.stderr.contains("connection refused"), "{}", refused.stderr);

    let udp = Rsyslog::start_udp();
    let env = siem_env(&udp, "udp", "cef", "");
    let sent = env.run(&["siem", "test"]).success();
    assert!(sent.stdout.contains("cannot be confirmed over UDP"), "{}", sent.stdout);
}
