//! Appending: hostile text round-trips exactly, bad input appends nothing and
//! names every bad line, single records from flags (SPEC §2, §4).

use base64::Engine;
use serde_json::{Map, Value};

use crate::support::fixtures::*;
use crate::support::harness::*;

// Hostile text round-trips exactly

/// Markup, quotes, whitespace of every kind, and Unicode; nothing XML 1.0
/// cannot carry.
const HOSTILE: &str =
    "  <a href=\"x\">&amp; & ]]> \"dq\" 'sq'\ttab\r\nCRLF\rCR\nLF 日本語 😀 e\u{301}\u{327} \u{FFFD} ";

/// Characters XML 1.0 cannot carry at all.
const FORBIDDEN: &str = "\u{1}|\u{1F}|\u{B}|\u{FFFE}|\u{0}|\u{C}|\u{FFFF}";

fn hostile_records() -> Vec<Vec<(&'static str, String)>> {
    let plain: Vec<(&str, String)> = FIELDS
        .iter()
        .map(|(f, _)| {
            let v = match *f {
                "timestamp" => "2026-05-06T07:08:09.123+02:00".to_owned(),
                "source_ip" => "2001:db8::1".to_owned(),
                "outcome" => "failure".to_owned(),
                f => format!("{HOSTILE}{f}{HOSTILE}"),
            };
            (*f, v)
        })
        .collect();
    let controls: Vec<(&str, String)> = FIELDS
        .iter()
        .map(|(f, _)| {
            let v = match *f {
                "timestamp" => "2026-05-06T07:08:10.000+02:00".to_owned(),
                "source_ip" => "192.0.2.1".to_owned(),
                "outcome" => "success".to_owned(),
                f => format!("{FORBIDDEN} {f}{HOSTILE}{FORBIDDEN}"),
            };
            (*f, v)
        })
        .collect();
    // One forbidden character alone in each field, so that each of them on
    // its own has to be noticed.
    let singles: Vec<(&str, String)> = FIELDS
        .iter()
        .enumerate()
        .map(|(k, (f, _))| {
            let v = match *f {
                "timestamp" => "2026-05-06T07:08:11.000+02:00".to_owned(),
                "source_ip" => "192.0.2.2".to_owned(),
                "outcome" => "success".to_owned(),
                f => {
                    let c = FORBIDDEN.split('|').nth(k % 7).unwrap();
                    format!("{f} {c} {HOSTILE}")
                }
            };
            (*f, v)
        })
        .collect();
    vec![plain, controls, singles]
}

/// Checks a document's records against the hostile input, as ElementTree reads them.
#[track_caller]
fn check_hostile_xml(doc: &XmlDoc, input: &[Vec<(&str, String)>], what: &str) {
    assert_eq!(doc.ids(), range(1, input.len() as u64), "{what}");
    let engine = base64::engine::general_purpose::STANDARD;
    for (rec, fields) in doc.records.iter().zip(input) {
        // Log files end each record with its hash chain value; exports do not.
        let tags: Vec<&str> = rec.fields.iter().map(|f| f.tag.as_str()).filter(|t| *t != "Chain").collect();
        let want: Vec<&str> = FIELDS.iter().map(|(_, x)| *x).collect();
        assert_eq!(tags, want, "{what}: record {} elements", rec.id());
        for (name, value) in fields {
            let el = rec.field(xml_name(name)).unwrap();
            let forbidden = value.chars().any(|c| {
                let c = c as u32;
                (c < 0x20 && c != 0x9 && c != 0xA && c != 0xD) || c == 0xFFFE || c == 0xFFFF
            });
            if forbidden {
                assert_eq!(
                    el.attrib.get("encoding").map(String::as_str),
                    Some("base64"),
                    "{what}: record {} <{}> holds characters XML cannot carry",
                    rec.id(),
                    el.tag
                );
                let bytes = engine.decode(el.text.as_bytes()).unwrap_or_else(|e| {
                    panic!("{what}: record {} <{}>: bad base64 {:?}: {e}", rec.id(), el.tag, el.text)
                });
                assert_eq!(String::from_utf8(bytes).unwrap(), *value, "{what}: record {} <{}>", rec.id(), el.tag);
            } else {
                assert!(
                    el.attrib.is_empty(),
                    "{what}: record {} <{}> has attributes {:?}",
                    rec.id(),
                    el.tag,
                    el.attrib
                );
                assert_eq!(el.text, *value, "{what}: record {} <{}>", rec.id(), el.tag);
            }
        }
    }
}

#[test]
fn hostile_text_round_trips_exactly() {
    let env = Env::with_config("host_name = \"pbx01\"\nevent_mask = \"all\"\n");
    let input = hostile_records();
    let mut jsonl = Vec::new();
    for rec in &input {
        jsonl.extend(json_line(rec));
    }
    env.run_with_input(&["append", "--json", "-"], &jsonl).success();

    // JSON export gives back exactly what went in (plus the id).
    let check_json = |what: &str, extra: &[&str]| {
        let out = export_json(&env, extra);
        assert_eq!(ids(&out), range(1, input.len() as u64), "{what}");
        for (got, want) in out.iter().zip(&input) {
            let mut got = got.clone();
            got.remove("id");
            let want: Map<String, Value> =
                want.iter().map(|(k, v)| ((*k).to_owned(), Value::String(v.clone()))).collect();
            assert_eq!(got, want, "{what}");
        }
    };
    check_json("export from the active file", &[]);

    let rot = env.run(&["rotate"]).success();
    assert!(rot.stdout.contains("sealed"), "{}", rot.stdout);
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 1);
    assert_well_formed(&sealed[0]);
    assert_schema_valid(&sealed[0]);
    // CR must be written as a character reference: a raw CR would read back as LF.
    let raw = std::fs::read(&sealed[0]).unwrap();
    assert!(!raw.contains(&b'\r'), "raw CR in the sealed file");
    let doc = xml_doc(&sealed[0]);
    check_hostile_xml(&doc, &input, "sealed file");
    assert_eq!((doc.seal_attr("first-id"), doc.seal_attr("last-id"), doc.seal_attr("records")), (1, 3, 3));
    check_json("export --all from the sealed file", &["--all"]);
    check_json("export of the circular log from the sealed file", &[]);

    // XML export: well-formed, valid, and the same text.
    let xml = env.run(&["export", "--format", "xml"]).success();
    let xml_path = env.dir.path().join("export.xml");
    std::fs::write(&xml_path, &xml.stdout).unwrap();
    assert_well_formed(&xml_path);
    assert_schema_valid(&xml_path);
    let doc = xml_doc(&xml_path);
    assert!(doc.seal.is_none(), "an export is not a sealed log file");
    check_hostile_xml(&doc, &input, "XML export");

    // CSV export, read back by Python's csv module.
    let csv = env.run(&["export", "--all", "--format", "csv"]).success();
    let csv_path = env.dir.path().join("export.csv");
    std::fs::write(&csv_path, &csv.stdout).unwrap();
    let rows = csv_rows(&csv_path);
    assert_eq!(rows.len(), 1 + input.len(), "{rows:?}");
    assert_eq!(rows[0], csv_header());
    for (k, (row, rec)) in rows[1..].iter().zip(&input).enumerate() {
        assert_eq!(row[0], (k + 1).to_string());
        for (name, value) in rec {
            let col = 1 + FIELDS.iter().position(|(f, _)| f == name).unwrap();
            assert_eq!(row[col], *value, "CSV record {} field {name}", k + 1);
        }
    }

    // `show` never passes control characters through to the terminal.
    let show = env.run(&["show", "--wide"]).success();
    let bad: Vec<char> = show.stdout.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "show printed control characters {bad:?}");
    assert!(show.stdout.contains("日本語 😀"), "{}", show.stdout);
}

// Bad input appends nothing and names every bad line

#[test]
fn bad_json_lines_append_nothing_and_are_all_named() {
    let env = Env::with_capacity(4);
    env.run_with_input(&["append", "--json", "-"], &json_records(6)).success();
    assert_eq!(env.sealed_files().len(), 1);
    let before = snapshot(&env.data);
    assert_eq!(status(&env)["next_id"], 7);

    let ok = br#"{"app_name":"System Admin Tool","action_type":"Login","action_data":"fine"}"#.to_vec();
    let big = format!(r#"{{"app_name":"A","action_type":"Import","action_data":"{}"}}"#, "x".repeat((1 << 20) + 1));
    // (line content, the field the message must name; None = whole line)
    let lines: Vec<(Vec<u8>, Option<&str>)> = vec![
        (ok.clone(), None),
        (br#"{"app_name":"A","action_type":"Login","colour":"red"}"#.to_vec(), Some("colour")),
        (br#"{"action_type":"Login","user_name":"bob"}"#.to_vec(), Some("app_name")),
        (ok.clone(), None),
        (br#"{"app_name":"A","user_name":"bob"}"#.to_vec(), Some("action_type")),
        (br#"{"app_name":"A","action_type":"Login","source_ip":"10.0.0.256"}"#.to_vec(), Some("source_ip")),
        (br#"{"app_name":"A","action_type":"Login","timestamp":"2026-02-30T10:00:00Z"}"#.to_vec(), Some("timestamp")),
        (
            b"{\"app_name\":\"A\",\"action_type\":\"Login\",\"action_data\":\"bad \xff\xfe bytes\"}".to_vec(),
            Some("action_data"),
        ),
        (ok.clone(), None),
        (big.into_bytes(), Some("action_data")),
        (br#"{"id":42,"app_name":"A","action_type":"Login"}"#.to_vec(), Some("id")),
        (br#"{"app_name":"A","action_type":"Login","session_id":10}"#.to_vec(), Some("session_id")),
        (b"this is not JSON at all".to_vec(), None),
        (ok.clone(), None),
    ];
    let valid = [1, 4, 9, 14];
    let mut input = Vec::new();
    for (l, _) in &lines {
        input.extend_from_slice(l);
        input.push(b'\n');
    }
    assert!(input.len() > 1 << 20, "the input is over 1 MiB");

    let run = env.run_with_input(&["append", "--json", "-"], &input).failure();
    let err = messages(&env, &run.stderr);
    assert!(err.len() < 16 * 1024, "error output should not echo the input ({} bytes)", err.len());
    for (k, (_, field)) in lines.iter().enumerate() {
        let n = k + 1;
        let tag = format!("line {n}");
        let named: Vec<&str> = err.lines().filter(|l| has_token(l, &tag)).collect();
        if valid.contains(&n) {
            assert!(named.is_empty(), "valid line {n} reported as bad: {named:?}");
            continue;
        }
        assert!(!named.is_empty(), "bad line {n} not reported:\n{err}");
        if let Some(f) = field {
            assert!(named.iter().any(|l| has_token(l, f)), "line {n}: message should name `{f}`: {named:?}");
        }
    }
    assert!(!run.stdout.contains("appended"), "stdout claims an append: {}", run.stdout);

    assert!(snapshot(&env.data) == before, "a rejected input changed the data directory");
    assert_eq!(status(&env)["next_id"], 7);
    assert_eq!(export_ids(&env, &["--all"]), range(1, 6));

    // The limit itself is allowed, and such a record round-trips.
    let max = format!(r#"{{"app_name":"A","action_type":"Import","action_data":"{}"}}"#, "é".repeat(1 << 19));
    env.run_with_input(&["append", "--json", "-"], max.as_bytes()).success();
    let recs = export_json(&env, &["--all"]);
    assert_eq!(ids(&recs), range(1, 7));
    assert_eq!(recs[6]["action_data"].as_str().map(str::len), Some(1 << 20));
    assert!(recs[6]["action_data"].as_str().unwrap().chars().all(|c| c == 'é'));
    let before = snapshot(&env.data);

    // The same input from a file behaves the same.
    let path = env.dir.path().join("bad.jsonl");
    std::fs::write(&path, &input).unwrap();
    let run = env.run(&["append", "--json", path.to_str().unwrap()]).failure();
    assert!(has_token(&run.stderr, "line 13"), "{}", run.stderr);
    assert!(snapshot(&env.data) == before, "a rejected input file changed the data directory");
}

// Single append with flags

#[test]
fn append_flags_map_to_fields() {
    let env = Env::new();
    let flags: [(&str, &str, &str); 16] = [
        ("--time", "2026-05-06T07:08:09.123+02:00", "timestamp"),
        ("--detail-level", "High", "detail_level"),
        ("--user", "alice", "user_name"),
        ("--first-name", "Alice", "first_name"),
        ("--last-name", "Liddell", "last_name"),
        ("--tenant", "Acme", "tenant"),
        ("--source-ip", "192.0.2.7", "source_ip"),
        ("--node", "node7", "node"),
        ("--app", "System Admin Tool", "app_name"),
        ("--context", "User Session", "app_context"),
        ("--action", "Login failure", "action_type"),
        ("--data", "bad password\nsecond line", "action_data"),
        ("--category", "failure", "category"),
        ("--outcome", "failure", "outcome"),
        ("--auth-type", "LDAP", "auth_type"),
        ("--session-id", "S-42", "session_id"),
    ];
    let mut args = vec!["append"];
    for (flag, value, _) in &flags {
        args.extend([*flag, *value]);
    }
    let run = env.run(&args).success();
    assert_eq!(run.stdout.trim(), "1", "append prints the id");

    let run = env.run(&["append", "--app", "Attendant Console", "--action", "Logout"]).success();
    assert_eq!(run.stdout.trim(), "2");

    let recs = export_json(&env, &[]);
    assert_eq!(ids(&recs), [1, 2]);
    let full = &recs[0];
    for (flag, value, field) in &flags {
        assert_eq!(full.get(*field).and_then(Value::as_str), Some(*value), "{flag} should set `{field}`");
    }
    assert_eq!(full.len(), 17, "id plus the 16 fields: {full:?}");
    // Defaults of SPEC §2 for a minimal record.
    let min = &recs[1];
    assert_eq!(min["app_name"], "Attendant Console");
    assert_eq!(min["action_type"], "Logout");
    assert_eq!(min["detail_level"], "Low");
    assert_eq!(min["node"], "pbx01");
    let ts = min["timestamp"].as_str().expect("timestamp is filled in");
    let t = chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
    assert!((chrono::Utc::now() - t.to_utc()).num_seconds().abs() < 600, "acceptance time {ts}");
    assert_eq!(ts.len(), "2026-11-22T09:45:37.120+01:00".len(), "millisecond precision with offset: {ts}");
    for absent in ["user_name", "tenant", "source_ip", "outcome", "session_id"] {
        assert!(!min.contains_key(absent), "{absent} should be absent: {min:?}");
    }

    // Errors name the flag and append nothing.
    let run = env.run(&["append", "--action", "Login"]).failure();
    assert!(run.stderr.contains("--app"), "{}", run.stderr);
    let run = env.run(&["append", "--app", "A"]).failure();
    assert!(run.stderr.contains("--action"), "{}", run.stderr);
    for bad_ip in ["300.1.1.1", "not-an-ip", "10.0.0", "2001:db8::g"] {
        let run = env.run(&["append", "--app", "A", "--action", "B", "--source-ip", bad_ip]).failure();
        assert!(run.stderr.contains("--source-ip"), "{bad_ip}: {}", run.stderr);
    }
    let run = env.run(&["append", "--app", "A", "--action", "B", "--time", "yesterday"]).failure();
    assert!(run.stderr.contains("--time"), "{}", run.stderr);
    assert_eq!(status(&env)["next_id"], 3, "failed appends must not consume ids");

    // Times are stored with the server's offset at that instant (TZ=Europe/Paris).
    for (given, stored) in [
        ("2026-01-02T03:04:05Z", "2026-01-02T04:04:05.000+01:00"),
        ("2026-07-01T12:00:00.5Z", "2026-07-01T14:00:00.500+02:00"),
        ("2026-01-02T03:04:05.678-05:00", "2026-01-02T09:04:05.678+01:00"),
    ] {
        let run = env.run(&["append", "--app", "A", "--action", "B", "--time", given]).success();
        let id: u64 = run.stdout.trim().parse().unwrap();
        let recs = export_json(&env, &[]);
        let rec = recs.iter().find(|r| r["id"] == id).unwrap();
        assert_eq!(rec["timestamp"], stored, "--time {given}");
    }
}
