//! SIEM forwarding against a real rsyslog receiver on loopback (see
//! syslog.rs), over UDP, TCP and TLS, in JSON and CEF.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::harness::{Env, json_records};
use crate::syslog::{Rsyslog, Transport};

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
    let rs = Rsyslog::start(Transport::Tcp);
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
    let rs = Rsyslog::start(Transport::Udp);
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
    let mut rs = Rsyslog::start(Transport::Tcp);
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
    let mut rs = Rsyslog::start(Transport::Tcp);
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
    let rs = Rsyslog::start(Transport::Tls);
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
    let mut rs = Rsyslog::start(Transport::Tcp);
    let env = siem_env(&rs, "tcp", "json", "");
    env.run(&["siem", "test"]).success();
    rs.stop();
    let refused = env.run(&["siem", "test"]).failure();
    assert!(refused.stderr.contains("connection refused"), "{}", refused.stderr);

    let udp = Rsyslog::start(Transport::Udp);
    let env = siem_env(&udp, "udp", "cef", "");
    let sent = env.run(&["siem", "test"]).success();
    assert!(sent.stdout.contains("cannot be confirmed over UDP"), "{}", sent.stdout);
}

/// The chain anchors received so far: (line index, anchor JSON), in arrival order.
fn anchors(lines: &[String]) -> Vec<(usize, serde_json::Value)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let body = l.split_once(" - anchor - ")?.1;
            Some((i, serde_json::from_str(body).unwrap_or_else(|e| panic!("anchor is not JSON ({e}): {l}"))))
        })
        .collect()
}

/// Index of the (last) line carrying record `id` (JSON format).
fn record_line(lines: &[String], id: u64) -> Option<usize> {
    let want = format!("{{\"id\":{id},");
    lines.iter().rposition(|l| msg_of(l).starts_with(&want))
}

/// Waits for an anchor accepted by `pick`; returns all lines then and the anchor's line index.
#[track_caller]
fn wait_for_anchor(rs: &Rsyslog, pick: impl Fn(&serde_json::Value) -> bool) -> (Vec<String>, usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = rs.messages();
        if let Some((i, _)) = anchors(&lines).into_iter().find(|(_, a)| pick(a)) {
            return (lines, i);
        }
        assert!(Instant::now() < deadline, "no such chain anchor arrived within {WAIT:?}: {:#?}", anchors(&lines));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn verify_json(env: &Env, anchor: &str) -> (bool, serde_json::Value) {
    let run = env.run(&["verify", "--json", "--anchor", anchor]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("verify --json: {e}: {}{}", run.stdout, run.stderr));
    (run.code == Some(0), v)
}

#[test]
fn chain_anchor_reaches_the_siem_after_its_record_and_exposes_removed_newest_files() {
    let rs = Rsyslog::start(Transport::Tcp);
    let env = siem_env(&rs, "tcp", "json", "anchor_interval_secs = 1\n");
    let server = env.serve(&no_schedules(&env));
    // The service's own start record goes into a file of its own, which stays.
    env.run(&["rotate"]).success();
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let start = st["next_id"].as_u64().unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(200)).success();
    let last = start + 199;
    wait_for_ids(&rs, start..=last);

    // An anchor naming one of these records (an earlier one may name the start record).
    let (lines, at) = wait_for_anchor(&rs, |a| a["id"].as_u64().is_some_and(|id| id >= start));
    let line = &lines[at];
    assert!(line.starts_with("<38>1 ") && line.contains(" pbx01 audit-trail - anchor - "), "auth.info: {line}");
    let a = anchors(std::slice::from_ref(line)).remove(0).1;
    let id = a["id"].as_u64().unwrap();
    let value = a["chain"].as_str().unwrap();
    assert!(id <= last, "{a}");
    assert_eq!(a["type"], "chain-anchor");
    assert_eq!(a["host"], "pbx01");
    assert_eq!(value.len(), 64, "{a}");
    let anchor = a["anchor"].as_str().unwrap().to_owned();
    assert_eq!(anchor, format!("{id}:{value}"));
    // The receiver got the record before the anchor that names it.
    let rec_at = record_line(&lines, id).unwrap_or_else(|| panic!("record {id} never arrived"));
    assert!(rec_at < at, "the anchor (line {at}) arrived before record {id} (line {rec_at})");

    // The anchor holds on the data directory as it is.
    let (ok, v) = verify_json(&env, &anchor);
    assert!(ok && v["ok"] == true, "{v}");
    assert_eq!(v["anchors"], 1);

    // Seal the file holding the anchored record, and stop.
    env.run(&["rotate"]).success();
    server.stop();
    // status shows the last anchor sent, the one the receiver got last.
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let shown = &st["siem"]["last_anchor"];
    let shown_anchor = shown["anchor"].as_str().unwrap_or_else(|| panic!("no last_anchor in status: {st}"));
    assert!(shown["id"].as_u64().unwrap() >= id, "{st}");
    assert_eq!(shown_anchor, format!("{}:{}", shown["id"], shown["value"].as_str().unwrap()));
    assert!(shown["time"].is_string(), "{st}");
    wait_for_anchor(&rs, |a| a["anchor"] == shown_anchor);
    let text = env.run(&["status"]).success().stdout;
    assert!(text.contains(&format!("last anchor    {shown_anchor} (")), "{text}");

    // Someone removes the newest sealed file (ids start..) and the active one.
    let sealed = env.sealed_files();
    let newest = sealed.last().expect("sealed files").clone();
    assert_eq!(crate::support::harness::header_first_id(&std::fs::read(&newest).unwrap()), Some(start), "{newest:?}");
    assert!(sealed.len() >= 2, "the file with the start record stays: {sealed:?}");
    std::fs::remove_file(&newest).unwrap();
    for f in env.active_files() {
        std::fs::remove_file(f).unwrap();
    }
    // What is left is consistent in itself; the SIEM's anchor shows what is gone.
    let plain = env.run(&["verify", "--json"]).success();
    assert!(plain.stdout.contains("\"ok\": true"), "{}", plain.stdout);
    let (ok, v) = verify_json(&env, &anchor);
    assert!(!ok && v["ok"] == false, "{v}");
    let kinds: Vec<&str> = v["problems"].as_array().unwrap().iter().filter_map(|p| p["kind"].as_str()).collect();
    assert_eq!(kinds, ["truncated"], "{v}");
    assert_eq!(v["problems"][0]["record"], id, "{v}");
}

#[test]
fn chain_anchor_at_stop_names_the_newest_record_sent_and_zero_turns_anchors_off() {
    let rs = Rsyslog::start(Transport::Tcp);
    // A long interval: the first anchor goes with the first records, the next only at stop.
    let env = siem_env(&rs, "tcp", "cef", "anchor_interval_secs = 3600\n");
    let server = env.serve(&no_schedules(&env));
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let start = st["next_id"].as_u64().unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(20)).success();
    let last = start + 19;
    let deadline = Instant::now() + WAIT;
    while !rs.messages().iter().any(|l| l.contains(&format!("externalId={last} "))) {
        assert!(Instant::now() < deadline, "record {last} never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let cef_anchors = |lines: &[String]| -> Vec<(usize, u64)> {
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let cef = l.split_once(" - anchor - ")?.1;
                assert!(cef.starts_with("CEF:0|audit-trail|audit-trail|") && cef.contains("|chain-anchor|"), "{cef}");
                let id = cef.split("externalId=").nth(1)?.split(' ').next()?.parse().ok()?;
                Some((i, id))
            })
            .collect()
    };
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let shown = st["siem"]["last_anchor"]["id"].as_u64().unwrap_or_else(|| panic!("{st}"));
    assert!(shown >= last, "the anchor at stop names the newest record sent: {st}");
    let deadline = Instant::now() + WAIT;
    let lines = loop {
        let lines = rs.messages();
        if cef_anchors(&lines).iter().any(|(_, id)| *id == shown) {
            break lines;
        }
        assert!(Instant::now() < deadline, "the anchor at stop never arrived: {lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let found = cef_anchors(&lines);
    assert!(found.len() <= 2, "one anchor at the start, one at stop: {found:?}");
    let (at, id) = *found.last().unwrap();
    let line = &lines[at];
    let value = line.split(" cs1=").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(format!("{id}:{value}"), st["siem"]["last_anchor"]["anchor"].as_str().unwrap());
    assert!(line.contains(&format!(" cs2={id}:{value} ")), "{line}");
    let rec_at = lines.iter().rposition(|l| l.contains(&format!("externalId={id} ")) && l.contains(" - audit - "));
    assert!(rec_at.is_some_and(|r| r < at), "record {id} arrives before its anchor: {lines:#?}");
    let (ok, v) = verify_json(&env, &format!("{id}:{value}"));
    assert!(ok, "{v}");

    // anchor_interval_secs = 0: no anchors at all, not even at stop.
    let rs = Rsyslog::start(Transport::Tcp);
    let env = siem_env(&rs, "tcp", "json", "anchor_interval_secs = 0\n");
    let server = env.serve(&no_schedules(&env));
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let start = st["next_id"].as_u64().unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(20)).success();
    wait_for_ids(&rs, start..=start + 19);
    server.stop();
    std::thread::sleep(Duration::from_millis(500));
    assert!(anchors(&rs.messages()).is_empty(), "{:#?}", rs.messages());
    let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    assert!(st["siem"]["last_anchor"].is_null(), "{st}");
}

#[test]
fn purge_keeps_records_the_receiver_has_not_got_and_a_gap_is_reported() {
    let mut rs = Rsyslog::start(Transport::Tcp);
    rs.stop();
    let env = siem_env(&rs, "tcp", "json", "");
    std::fs::write(&env.config, format!("retention_days = 30\n{}", std::fs::read_to_string(&env.config).unwrap()))
        .unwrap();
    // The receiver is away for longer than the retention: the forwarder's
    // position stays at the first record.
    let server = env.serve(&no_schedules(&env));
    env.run_with_input(&["append", "--json", "-"], &json_records(20)).success();
    server.stop();
    env.run_at("-60d", &["rotate"]).success();
    env.run(&["append", "--app", "A", "--action", "B"]).success();
    let run = env.run(&["purge"]).success();
    assert!(run.stdout.contains("removed 0 file(s)"), "{}", run.stdout);
    assert!(run.stdout.contains("waiting for the SIEM receiver"), "{}", run.stdout);
    assert_eq!(env.sealed_files().len(), 1);

    // Records removed by hand before they were forwarded: the forwarder says
    // so, in status and in the log, and goes on with the rest.
    let sealed = env.sealed_files().pop().unwrap();
    std::fs::remove_file(&sealed).unwrap();
    rs.restart();
    let server = env.serve(&no_schedules(&env));
    let deadline = Instant::now() + WAIT;
    let st = loop {
        let st: serde_json::Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
        if st["siem"]["lost"].as_u64().unwrap_or(0) > 0 && st["siem"]["lag"] == 0 {
            break st;
        }
        assert!(Instant::now() < deadline, "the gap never showed in status: {st}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st["siem"]["lost"], 22, "ids 1..22 (Start, 20 records, Stop) were in the removed file: {st}");
    let stderr = server.stop();
    assert!(stderr.contains("audit-trail: warning: siem: records 1..22"), "{stderr}");
    let lines = env.export_all_lines();
    assert!(
        lines.iter().any(|(_, l)| l.contains("\"app_context\":\"SIEM\"") && l.contains("never forwarded")),
        "the gap is recorded"
    );
}

/// A self-signed server certificate (as `openssl req -x509` makes it, marked
/// CA:TRUE) given as `ca_file` is trusted as the server's own certificate,
/// still only for the name it carries and while it is valid; any other
/// certificate is refused.
#[test]
fn a_self_signed_server_certificate_in_ca_file_is_pinned() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, ip: &str| {
        let (cert, key) = (dir.path().join(format!("{name}.pem")), dir.path().join(format!("{name}.key")));
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={ip}"))
            .arg("-addext")
            .arg(format!("subjectAltName=IP:{ip}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl is needed (Debian package openssl)");
        assert!(ok.success());
        (cert, key)
    };
    let (good, good_key) = make("good", "127.0.0.1");
    let (other_name, other_name_key) = make("other-name", "127.0.0.2");
    let (stranger, _) = make("stranger", "127.0.0.1");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let serve = |cert: &std::path::Path, key: &std::path::Path| {
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    };
    let siem_test = |ca: &std::path::Path, offset: Option<&str>| {
        let env = Env::with_config(&format!(
            "host_name = \"pbx01\"\n[siem]\nenabled = true\nprotocol = \"tls\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             ca_file = \"{}\"\ntimeout_secs = 3\n",
            ca.display()
        ));
        match offset {
            Some(o) => env.run_at(o, &["siem", "test"]),
            None => env.run(&["siem", "test"]),
        }
    };
    let mut server = serve(&good, &good_key);
    let run = siem_test(&good, None);
    assert_eq!(run.code, Some(0), "the pinned self-signed certificate: {}{}", run.stdout, run.stderr);
    for (why, run) in
        [("another certificate", siem_test(&stranger, None)), ("expired by then", siem_test(&good, Some("+3d")))]
    {
        assert_ne!(run.code, Some(0), "{why}: accepted: {}", run.stdout);
    }
    let _ = server.kill();
    let _ = server.wait();
    // The pinned certificate names another address than the one connected to.
    let mut server = serve(&other_name, &other_name_key);
    let run = siem_test(&other_name, None);
    assert_ne!(run.code, Some(0), "a certificate for 127.0.0.2 used at 127.0.0.1: {}", run.stdout);
    let _ = server.kill();
    let _ = server.wait();
}
