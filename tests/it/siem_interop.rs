//! Hostile records forwarded to real receivers, rsyslog and syslog-ng, in
//! JSON and CEF, over UDP and over TCP with both framings; what each receiver
//! stored is checked by an independent parser (`data/siem_check.py`: Python's
//! json module and a strict CEF parser written for the tests): every field
//! of every record round-trips (CEF: control characters as the documented
//! `\uXXXX` text; UDP: values may be shortened with the marker, never cut),
//! exactly one event arrives per record, HOSTNAME is the documented one, and
//! no stored message holds a control character.
//!
//! The records: every C0 and C1 character, DEL, U+2028/9, pipes,
//! backslashes, equals signs, line breaks, messages forged inside a value,
//! 4 KiB values, IPv6 and IPv4 sources, nodes syslog-ng refuses as HOSTNAME,
//! records with only the mandatory fields; and random mixtures of these (the
//! seed is printed on failure).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::support::fixtures::TEXT_FIELDS;
use crate::support::harness::{Env, Rng, seed};
use crate::syslog::{Rsyslog, Transport};
use crate::syslogng::SyslogNg;

const CHECKER: &str = include_str!("data/siem_check.py");

fn controls() -> String {
    (0u32..0x20).chain([0x7f]).chain(0x80..0xa0).chain([0x2028, 0x2029]).filter_map(char::from_u32).collect()
}

fn record(pairs: &[(&str, String)]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert((*k).to_owned(), Value::String(v.clone()));
    }
    Value::Object(m)
}

fn hostile_records(seed: u64) -> Vec<Value> {
    let c = controls();
    let forged_cef = "ok\u{0}<156>1 2026-11-30T12:00:00.000+00:00 pbx-test audit-trail - audit - \
                      CEF:0|audit-trail|audit-trail|0.1.0|Delete|Forged: Delete|7|suser=root";
    let forged_json = "x\n<156>1 - pbx01 audit-trail - audit - {\"id\":1,\"app_name\":\"forged\"}\r\n";
    let mut out = vec![
        record(&[
            ("app_name", format!("App{c}|x\\y=z")),
            ("action_type", format!("Act{c}|=\\")),
            ("user_name", format!("u{c}")),
            ("action_data", format!("d{c}|\\=\\n\n\r\r\n end ")),
            ("node", format!("n{c}")),
            ("tenant", c.clone()),
            ("source_ip", "2001:db8::1".into()),
            ("outcome", "failure".into()),
            ("category", "failure".into()),
        ]),
        record(&[
            ("app_name", "PBX|Admin\\Tool".into()),
            ("action_type", "Change=".into()),
            ("action_data", forged_cef.into()),
            ("user_name", "mallory".into()),
            ("source_ip", "10.1.1.10".into()),
            ("category", "config".into()),
        ]),
        record(&[("app_name", "Suite".into()), ("action_type", "Login".into()), ("action_data", forged_json.into())]),
        record(&[("app_name", "Suite".into()), ("action_type", "Login".into())]),
        record(&[
            ("app_name", "VPN".into()),
            ("action_type", "Login".into()),
            ("user_name", "x=\\|".repeat(1024)),
            ("action_data", "é=\\\n".repeat(1024)),
            ("first_name", "f".repeat(4096)),
            ("source_ip", "192.0.2.7".into()),
            ("outcome", "failure".into()),
            ("category", "failure".into()),
        ]),
    ];
    for node in ["sbc:primary", "[pbx01]", "-", "Zürich 1", "fe80::1", "", " ", "pbx01.example.com"] {
        let mut r = record(&[("app_name", "SBC".into()), ("action_type", "Login".into()), ("node", node.into())]);
        if node.is_empty() {
            r.as_object_mut().unwrap().remove("node");
        }
        out.push(r);
    }
    out.push(record(&[("app_name", "SBC".into()), ("action_type", "Login".into()), ("node", "n".repeat(300))]));
    // Random mixtures.
    let atoms: Vec<String> = c
        .chars()
        .map(String::from)
        .chain(
            ["|", "\\", "=", " ", "\n", "\r\n", "CEF:0|", "<14>1 ", "a", "é", "😀", "\u{fffd}", "x=y", "\\n", "'"]
                .into_iter()
                .map(String::from),
        )
        .collect();
    let mut rng = Rng(seed | 1);
    for _ in 0..40 {
        let mut m = Map::new();
        for f in TEXT_FIELDS {
            let mandatory = f == "app_name" || f == "action_type";
            if !mandatory && rng.below(3) == 0 {
                continue;
            }
            let len = if rng.below(20) == 0 { 1000 + rng.below(3000) } else { rng.below(12) };
            let mut v = String::new();
            for _ in 0..len {
                v.push_str(&atoms[rng.below(atoms.len())]);
            }
            if mandatory {
                v.insert(0, 'A');
            }
            if v.len() > 4096 {
                let mut cut = 4096;
                while !v.is_char_boundary(cut) {
                    cut -= 1;
                }
                v.truncate(cut);
            }
            m.insert(f.into(), Value::String(v));
        }
        match rng.below(3) {
            0 => m.insert("source_ip".into(), json!("2001:db8:0:1::42")),
            1 => m.insert("source_ip".into(), json!("198.51.100.9")),
            _ => None,
        };
        if rng.below(2) == 0 {
            m.insert("outcome".into(), json!(if rng.below(2) == 0 { "failure" } else { "success" }));
        }
        out.push(Value::Object(m));
    }
    out
}

enum Receiver<'a> {
    Rsyslog(&'a Rsyslog),
    SyslogNg(&'a SyslogNg),
}

impl Receiver<'_> {
    fn lines(&self) -> Vec<String> {
        match self {
            Receiver::Rsyslog(r) => r.messages(),
            Receiver::SyslogNg(s) => s.messages(),
        }
    }
    fn log(&self) -> String {
        match self {
            Receiver::Rsyslog(r) => r.log(),
            Receiver::SyslogNg(s) => s.log(),
        }
    }
}

/// Forwards the hostile records with one configuration and checks what `rx` stored.
fn forward_and_check(rx: Receiver<'_>, port: u16, protocol: &str, framing: &str, format: &str, seed: u64) {
    let app = format!("at{protocol}{}{format}", if framing == "lf" { "lf" } else { "oc" });
    let what = format!(
        "{protocol} {framing} {format} to {} (seed {seed})",
        match rx {
            Receiver::Rsyslog(_) => "rsyslog",
            Receiver::SyslogNg(_) => "syslog-ng",
        }
    );
    let env = Env::with_config(&format!(
        "host_name = \"pbx01\"\nevent_mask = \"all\"\n[siem]\nenabled = true\nprotocol = \"{protocol}\"\n\
         host = \"127.0.0.1\"\nport = {port}\nformat = \"{format}\"\nframing = \"{framing}\"\napp_name = \"{app}\"\n\
         timeout_secs = 2\n"
    ));
    let schedules = env.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    let server = env.serve(&schedules);
    let records = hostile_records(seed);
    let mut input = Vec::new();
    for r in &records {
        input.extend(serde_json::to_vec(r).unwrap());
        input.push(b'\n');
    }
    let run = env.run_with_input(&["append", "--json", "-"], &input).success();
    let ids = run.stdout.split("ids ").nth(1).unwrap_or_else(|| panic!("{}", run.stdout));
    let (first, last) = ids.trim().split_once("..").unwrap();
    let (first, last): (u64, u64) = (first.parse().unwrap(), last.trim().parse().unwrap());
    assert_eq!(last - first + 1, records.len() as u64, "{what}: every record accepted");
    let tag = format!(" {app} ");
    let ours =
        |lines: &[String]| lines.iter().filter(|l| l.contains(&tag) || l.contains(&format!("\t{app}\t"))).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ours(&rx.lines()) < records.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    let export = env.run(&["export", "--all", "--format", "json"]).success().stdout;
    let exported: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lines = rx.lines();
    let cfg = json!({
        "mode": if matches!(rx, Receiver::SyslogNg(_)) { "sng" } else { "raw" },
        "format": format,
        "udp": protocol == "udp",
        "app": app,
        "host": "pbx01",
        "records": exported,
        "expect": (first..=last).collect::<Vec<u64>>(),
        "lines": lines,
    });
    let input_path = env.dir.path().join("check.json");
    std::fs::write(&input_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(CHECKER)
        .arg(&input_path)
        .output()
        .expect("python3 is required by the tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what}: the checker failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim().is_empty(), "{what}: the receiver's copy differs:\n{stdout}\n{}", rx.log());
}

#[test]
fn hostile_records_reach_rsyslog_whole_in_every_format_and_framing() {
    let seed = seed();
    let tcp = Rsyslog::start(Transport::Tcp);
    let udp = Rsyslog::start(Transport::Udp);
    for format in ["json", "cef"] {
        for framing in ["lf", "octet-counting"] {
            forward_and_check(Receiver::Rsyslog(&tcp), tcp.port, "tcp", framing, format, seed);
        }
        forward_and_check(Receiver::Rsyslog(&udp), udp.port, "udp", "octet-counting", format, seed);
    }
}

#[test]
fn hostile_records_reach_syslog_ng_whole_in_every_format_and_framing() {
    let seed = seed();
    let sng = SyslogNg::start();
    for format in ["json", "cef"] {
        forward_and_check(Receiver::SyslogNg(&sng), sng.network_tcp, "tcp", "lf", format, seed);
        forward_and_check(Receiver::SyslogNg(&sng), sng.syslog_tcp, "tcp", "octet-counting", format, seed);
        forward_and_check(Receiver::SyslogNg(&sng), sng.syslog_udp, "udp", "octet-counting", format, seed);
    }
}

/// The default framing (octet counting) into syslog-ng's `network()` source,
/// which reads one message per line: each frame's message ends with a LF
/// counted in its length, so every record is its own event there too (not
/// all of a connection's records glued into one), with the record whole in
/// the message text. (The header is not parsed as syslog there: the octet
/// count stands where the priority belongs; README's receiver table says to
/// use `framing = "lf"` for such receivers.)
#[test]
fn octet_counting_into_syslog_ng_network_source_stores_one_event_per_record() {
    let sng = SyslogNg::start();
    let env = Env::with_config(&format!(
        "host_name = \"pbx01\"\nevent_mask = \"all\"\n[siem]\nenabled = true\nprotocol = \"tcp\"\n\
         host = \"127.0.0.1\"\nport = {}\nformat = \"json\"\napp_name = \"atnetoc\"\ntimeout_secs = 2\n\
         anchor_interval_secs = 0\n",
        sng.network_tcp
    ));
    let schedules = env.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    let server = env.serve(&schedules);
    let records: Vec<Value> = (0..20)
        .map(|i| record(&[("app_name", "PBX".into()), ("action_type", "Login".into()), ("user_name", format!("u{i}"))]))
        .collect();
    let mut input = Vec::new();
    for r in &records {
        input.extend(serde_json::to_vec(r).unwrap());
        input.push(b'\n');
    }
    env.run_with_input(&["append", "--json", "-"], &input).success();
    let ours = |sng: &SyslogNg| -> Vec<String> {
        sng.messages().into_iter().filter(|l| l.starts_with("s_network_tcp\t") && l.contains("atnetoc")).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while ours(&sng).len() < records.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    std::thread::sleep(Duration::from_millis(300));
    let export = env.run(&["export", "--all", "--format", "json"]).success().stdout;
    let exported: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lines = ours(&sng);
    // The service's own records (start, stop) go too: every exported record
    // arrives as exactly one event holding its JSON, and nothing else does.
    let mut got: Vec<Value> = Vec::new();
    for line in &lines {
        let json = line.find('{').map(|at| &line[at..]).unwrap_or_else(|| panic!("no JSON in {line:?}"));
        let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: one record per event: {line:?}"));
        got.push(v);
    }
    let ids = |v: &[Value]| -> Vec<u64> {
        let mut ids: Vec<u64> = v.iter().map(|r| r["id"].as_u64().unwrap()).collect();
        ids.sort();
        ids
    };
    let sent: Vec<Value> = exported.into_iter().filter(|r| ids(&got).contains(&r["id"].as_u64().unwrap())).collect();
    assert!(ids(&got).len() >= records.len(), "every record is an event: {lines:#?}\n{}", sng.log());
    assert_eq!(ids(&got), ids(&sent), "each record once: {lines:#?}");
    got.sort_by_key(|r| r["id"].as_u64());
    for (g, s) in got.iter().zip(sent.iter()) {
        assert_eq!(g["id"], s["id"]);
        assert_eq!(g["user_name"], s["user_name"], "{g} / {s}");
    }
    for i in 0..records.len() {
        assert!(got.iter().any(|g| g["user_name"] == format!("u{i}")), "u{i} missing: {lines:#?}");
    }
}
