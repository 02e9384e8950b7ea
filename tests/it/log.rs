//! Functional tests of the log (see tests/it/main.rs): the real binary in a
//! temporary data directory, checked against SPEC §2–§4, §8 and §12. Where a
//! result can be read by an independent tool it is: xmllint for
//! well-formedness and the XSD, Python's `xml.etree.ElementTree` for XML text
//! and Python's `csv` module for CSV.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::harness::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// JSON name and XML element of every record field (SPEC §2), in file order.
const FIELDS: [(&str, &str); 16] = [
    ("timestamp", "TimeStamp"),
    ("detail_level", "DetailLevel"),
    ("user_name", "UserName"),
    ("first_name", "FirstName"),
    ("last_name", "LastName"),
    ("tenant", "Tenant"),
    ("source_ip", "SourceIP"),
    ("node", "Node"),
    ("app_name", "AppName"),
    ("app_context", "AppContext"),
    ("action_type", "ActionType"),
    ("action_data", "ActionData"),
    ("category", "Category"),
    ("outcome", "Outcome"),
    ("auth_type", "AuthType"),
    ("session_id", "SessionId"),
];

fn xml_name(field: &str) -> &'static str {
    FIELDS.iter().find(|(j, _)| *j == field).map(|(_, x)| *x).unwrap_or_else(|| panic!("unknown field {field}"))
}

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/audit-trail.xsd")
}

/// Validates a file against schema/audit-trail.xsd with xmllint.
#[track_caller]
fn assert_schema_valid(path: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(path)
        .output()
        .expect("xmllint is required by the tests (Debian package libxml2-utils)");
    assert!(
        out.status.success(),
        "{} does not validate against the schema: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a Python 3 script with `args`, feeding it `stdin`; returns its stdout.
#[track_caller]
fn python(script: &str, args: &[&Path], stdin: &[u8]) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required by the tests");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for python3");
    writer.join().unwrap();
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("python3 output is UTF-8")
}

/// An XML document as Python's ElementTree sees it.
#[derive(Debug, Deserialize)]
struct XmlDoc {
    tag: String,
    root: BTreeMap<String, String>,
    records: Vec<XmlRecord>,
    seal: Option<BTreeMap<String, String>>,
    other: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct XmlRecord {
    attrib: BTreeMap<String, String>,
    fields: Vec<XmlField>,
}

#[derive(Debug, Deserialize)]
struct XmlField {
    tag: String,
    attrib: BTreeMap<String, String>,
    text: String,
}

impl XmlRecord {
    fn id(&self) -> u64 {
        self.attrib.get("id").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("record without id: {self:?}"))
    }

    fn field(&self, tag: &str) -> Option<&XmlField> {
        self.fields.iter().find(|f| f.tag == tag)
    }
}

impl XmlDoc {
    fn ids(&self) -> Vec<u64> {
        self.records.iter().map(XmlRecord::id).collect()
    }

    fn seal_attr(&self, name: &str) -> u64 {
        let seal = self.seal.as_ref().expect("document has a <Seal>");
        seal.get(name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("<Seal> {name}: {seal:?}"))
    }
}

const ELEMENT_TREE: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
doc = {"tag": root.tag, "root": dict(root.attrib), "records": [], "seal": None, "other": []}
for el in root:
    if el.tag == "Record":
        doc["records"].append({
            "attrib": dict(el.attrib),
            "fields": [{"tag": f.tag, "attrib": dict(f.attrib), "text": f.text or ""} for f in el],
        })
    elif el.tag == "Seal":
        doc["seal"] = dict(el.attrib)
    else:
        doc["other"].append(el.tag)
json.dump(doc, sys.stdout)
"#;

/// Parses XML bytes with Python's ElementTree.
#[track_caller]
fn xml_doc_bytes(xml: &[u8]) -> XmlDoc {
    serde_json::from_str(&python(ELEMENT_TREE, &[], xml)).expect("ElementTree summary")
}

#[track_caller]
fn xml_doc(path: &Path) -> XmlDoc {
    xml_doc_bytes(&std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

/// The active file is a document without its end tag: parse it with one added.
#[track_caller]
fn active_doc(path: &Path) -> XmlDoc {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend_from_slice(b"\n</AuditTrail>\n");
    xml_doc_bytes(&bytes)
}

/// Parses a CSV file with Python's csv module (strict mode).
#[track_caller]
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let script = r#"
import csv, json, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    json.dump(list(csv.reader(f, strict=True)), sys.stdout)
"#;
    serde_json::from_str(&python(script, &[path], b"")).expect("csv rows")
}

/// The CSV header SPEC §8 implies: `id`, then the field names of §2.
fn csv_header() -> Vec<String> {
    std::iter::once("id").chain(FIELDS.iter().map(|(j, _)| *j)).map(String::from).collect()
}

/// Parses JSON Lines into objects.
#[track_caller]
fn json_lines(s: &str) -> Vec<Map<String, Value>> {
    s.lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object line: {l:?} ({other:?})"),
        })
        .collect()
}

#[track_caller]
fn ids(recs: &[Map<String, Value>]) -> Vec<u64> {
    recs.iter().map(|r| r["id"].as_u64().unwrap_or_else(|| panic!("record without numeric id: {r:?}"))).collect()
}

/// `export --format json` with extra arguments, parsed.
#[track_caller]
fn export_json(env: &Env, extra: &[&str]) -> Vec<Map<String, Value>> {
    let mut args = vec!["export", "--format", "json"];
    args.extend_from_slice(extra);
    json_lines(&env.run(&args).success().stdout)
}

#[track_caller]
fn export_ids(env: &Env, extra: &[&str]) -> Vec<u64> {
    ids(&export_json(env, extra))
}

fn range(a: u64, b: u64) -> Vec<u64> {
    (a..=b).collect()
}

/// `status --json`, parsed.
#[track_caller]
fn status(env: &Env) -> Value {
    let run = env.run(&["status", "--json"]).success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", run.stdout))
}

/// Every file (with its bytes) and directory under `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), None);
                walk(&path, out);
            } else {
                out.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// True when `token` occurs in `text` with no letter or digit right before or after it.
fn has_token(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + token.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// stderr with the temporary directory's path replaced, so that numbers are
/// looked for in messages, not in random directory names.
fn messages(env: &Env, stderr: &str) -> String {
    stderr.replace(env.dir.path().to_str().unwrap(), "<tmp>")
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The `YYYYMMDDHHMMSS` stamp of `pbx01_<stamp><suffix>`; panics when the
/// name does not have that shape.
#[track_caller]
fn stamp_of(path: &Path, suffix: &str) -> chrono::NaiveDateTime {
    let name = file_name(path);
    let stamp = name
        .strip_prefix("pbx01_")
        .and_then(|s| s.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("{name} is not pbx01_YYYYMMDDHHMMSS{suffix}"));
    assert!(stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit()), "{name}: bad stamp");
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S").unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The local time (to the second) of a `created` attribute.
#[track_caller]
fn created_second(doc: &XmlDoc) -> chrono::NaiveDateTime {
    let created = doc.root.get("created").expect("created attribute");
    let t = chrono::DateTime::parse_from_rfc3339(created).unwrap_or_else(|e| panic!("created={created}: {e}"));
    let local = t.naive_local();
    local - chrono::Duration::nanoseconds(i64::from(chrono::Timelike::nanosecond(&local)))
}

/// Builds one JSON Lines line from (field, value) pairs.
fn json_line(fields: &[(&str, String)]) -> Vec<u8> {
    let map: Map<String, Value> = fields.iter().map(|(k, v)| ((*k).to_owned(), Value::String(v.clone()))).collect();
    let mut line = serde_json::to_vec(&map).unwrap();
    line.push(b'\n');
    line
}

// ---------------------------------------------------------------------------
// 1. A large batch: rollover, names, exports, verify, show
// ---------------------------------------------------------------------------

#[test]
fn batch_of_12345_fills_two_sealed_files_and_the_active_one() {
    let env = Env::new();
    let run = env.run_with_input(&["append", "--json", "-"], &json_records(12_345)).success();
    assert!(run.stdout.contains("12345"), "append should report the count: {}", run.stdout);

    // Two sealed files of 5000 records each, one active file with the rest.
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 2, "sealed files: {sealed:?}");
    let active = env.active_files();
    assert_eq!(active.len(), 1, "active files: {active:?}");
    let mut stamps = Vec::new();
    for (k, path) in sealed.iter().enumerate() {
        assert_well_formed(path);
        assert_schema_valid(path);
        let doc = xml_doc(path);
        assert_eq!(doc.tag, "AuditTrail");
        assert!(doc.other.is_empty(), "unexpected top-level elements {:?}", doc.other);
        let first = k as u64 * 5000 + 1;
        assert_eq!(doc.ids(), range(first, first + 4999), "{}", path.display());
        assert_eq!(doc.root.get("host").map(String::as_str), Some("pbx01"));
        assert_eq!(
            (doc.seal_attr("first-id"), doc.seal_attr("last-id"), doc.seal_attr("records")),
            (first, first + 4999, 5000)
        );
        // The records carry what was submitted, in input order.
        let r = &doc.records[1234];
        let i = r.id() - 1;
        assert_eq!(r.field("ActionData").map(|f| f.text.as_str()), Some(format!("record {i}").as_str()));
        assert_eq!(r.field("UserName").map(|f| f.text.as_str()), Some(format!("user{i}").as_str()));
        stamps.push(stamp_of(path, ".xml"));
    }
    // Names unique and in id order (the list is sorted by name).
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "stamps not increasing: {stamps:?}");
    let active_stamp = stamp_of(&active[0], ".xml.open");
    assert!(active_stamp > stamps[1], "active file {} sorts before the sealed ones", active[0].display());
    let act = active_doc(&active[0]);
    assert_eq!(act.ids(), range(10_001, 12_345));
    assert!(act.seal.is_none());

    let st = status(&env);
    assert_eq!(st["next_id"], 12_346, "{st}");
    assert_eq!(st["active_file"]["records"], 2345, "{st}");
    assert_eq!(st["sealed_files"], 2, "{st}");

    // The circular log is the newest 5000 records.
    let circular = export_json(&env, &[]);
    assert_eq!(ids(&circular), range(7346, 12_345));
    let all = export_json(&env, &["--all"]);
    assert_eq!(ids(&all), range(1, 12_345));
    for r in &all {
        let i = r["id"].as_u64().unwrap() - 1;
        assert_eq!(r["action_data"], format!("record {i}"), "{r:?}");
        assert_eq!(r["source_ip"], format!("10.0.{}.{}", (i / 256) % 256, i % 256), "{r:?}");
        assert_eq!(r["app_name"], "System Admin Tool");
        assert_eq!(r["node"], "pbx01", "node defaults to the host name");
        assert_eq!(r["detail_level"], "Low", "detail_level defaults to Low");
    }

    // CSV (RFC 4180) read back by Python's csv module.
    let csv = env.run(&["export", "--all", "--format", "csv"]).success();
    let csv_path = env.dir.path().join("all.csv");
    std::fs::write(&csv_path, &csv.stdout).unwrap();
    let rows = csv_rows(&csv_path);
    assert_eq!(rows.len(), 12_346, "header plus one row per record");
    assert_eq!(rows[0], csv_header());
    for (k, row) in rows[1..].iter().enumerate() {
        assert_eq!(row.len(), 17, "row {k}: {row:?}");
        assert_eq!(row[0], (k + 1).to_string());
        assert_eq!(row[12], format!("record {k}"), "action_data column");
    }

    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("12345 records"), "verify should report 12345 records: {}", v.stdout);

    // `show`: a header line, then the circular log.
    let show = env.run(&["show"]).success();
    let lines: Vec<&str> = show.stdout.lines().collect();
    assert_eq!(lines.len(), 5001, "header plus 5000 rows");
    assert!(lines[0].starts_with("ID"), "header: {}", lines[0]);
    for h in ["Time Stamp", "User Name", "Source IP", "App Name", "App Context", "Action Type", "Action Data"] {
        assert!(lines[0].contains(h), "column {h} missing from {}", lines[0]);
    }
    let shown: Vec<u64> = lines[1..].iter().map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(shown, range(7346, 12_345));
    let show3 = env.run(&["show", "-n", "3"]).success();
    let lines: Vec<&str> = show3.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", show3.stdout);
    let shown: Vec<u64> = lines[1..].iter().map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(shown, [12_343, 12_344, 12_345]);
    assert!(lines[3].contains("record 12344"), "{}", lines[3]);
}

// ---------------------------------------------------------------------------
// 2. Hostile text round-trips exactly
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 3. Bad input appends nothing and names every bad line
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 4. Single append with flags
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// 5. Rollover with a small capacity; rotate
// ---------------------------------------------------------------------------

/// Checks the sealed files: contiguous ids from 1, seals that match, names
/// that follow the stamp rule. Returns the ids per file.
#[track_caller]
fn check_sealed_files(env: &Env) -> Vec<Vec<u64>> {
    let mut next = 1;
    let mut prev_stamp: Option<chrono::NaiveDateTime> = None;
    let mut out = Vec::new();
    for path in env.sealed_files() {
        assert_well_formed(&path);
        assert_schema_valid(&path);
        let doc = xml_doc(&path);
        let ids = doc.ids();
        assert!(!ids.is_empty(), "{} holds no record", path.display());
        assert_eq!(ids, range(next, next + ids.len() as u64 - 1), "{}", path.display());
        assert_eq!(
            (doc.seal_attr("first-id"), doc.seal_attr("last-id"), doc.seal_attr("records")),
            (ids[0], *ids.last().unwrap(), ids.len() as u64),
            "{}: seal does not match the records",
            path.display()
        );
        assert_eq!(doc.root.get("first-id"), Some(&ids[0].to_string()), "{}", path.display());
        next += ids.len() as u64;
        // The stamp is the start time, bumped past the previous file's stamp.
        let stamp = stamp_of(&path, ".xml");
        let created = created_second(&doc);
        let want = match prev_stamp {
            Some(p) if created <= p => p + chrono::Duration::seconds(1),
            _ => created,
        };
        assert_eq!(stamp, want, "{}: created {:?}", path.display(), doc.root.get("created"));
        prev_stamp = Some(stamp);
        out.push(ids);
    }
    if let Some(active) = env.active_files().first() {
        let stamp = stamp_of(active, ".xml.open");
        assert!(prev_stamp.is_none_or(|p| stamp > p), "active {} does not sort last", active.display());
    }
    out
}

#[test]
fn small_capacity_rolls_over_and_rotate_seals_early() {
    let env = Env::with_capacity(3);
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();

    let files = check_sealed_files(&env);
    assert_eq!(files, [range(1, 3), range(4, 6), range(7, 9)]);
    let active = env.active_files();
    assert_eq!(active.len(), 1, "{active:?}");
    let doc = active_doc(&active[0]);
    assert_eq!(doc.ids(), [10]);
    assert_eq!(doc.root.get("first-id").map(String::as_str), Some("10"));
    // All written within a second or so: names still unique and increasing.
    let names: Vec<String> = env.sealed_files().iter().map(|p| file_name(p)).collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names);
    assert_eq!(export_ids(&env, &[]), [8, 9, 10], "the circular log holds the newest 3");

    // rotate seals the active file early and starts the next one.
    let run = env.run(&["rotate"]).success();
    assert!(run.stdout.contains("sealed"), "{}", run.stdout);
    let files = check_sealed_files(&env);
    assert_eq!(files.len(), 4);
    assert_eq!(files[3], [10]);
    let active = env.active_files();
    assert_eq!(active.len(), 1, "a new active file is started: {active:?}");
    assert!(active_doc(&active[0]).ids().is_empty());
    assert_eq!(status(&env)["next_id"], 11);
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("10 records"), "{}", v.stdout);
    assert_eq!(export_ids(&env, &[]), [8, 9, 10], "an empty active file does not shift the circular log");

    // Nothing to seal the second time; nothing changes.
    let before = snapshot(&env.data);
    let run = env.run(&["rotate"]).success();
    assert!(run.stdout.contains("nothing to seal"), "{}", run.stdout);
    assert!(snapshot(&env.data) == before, "an empty rotate changed files");

    // Ids continue without a gap.
    env.run_with_input(&["append", "--json", "-"], &json_records(4)).success();
    let files = check_sealed_files(&env);
    assert_eq!(files.len(), 5);
    assert_eq!(files[4], range(11, 13));
    assert_eq!(active_doc(&env.active_files()[0]).ids(), [14]);
    assert_eq!(export_ids(&env, &["--all"]), range(1, 14));
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("14 records"), "{}", v.stdout);
}

/// SPEC §3: the file rolls over with the record *after* the one that fills it.
#[test]
fn rollover_happens_with_the_record_after_capacity() {
    let env = Env::with_capacity(3);
    env.run_with_input(&["append", "--json", "-"], &json_records(3)).success();
    assert!(env.sealed_files().is_empty(), "a full file is sealed only when the next record comes");
    assert_eq!(active_doc(&env.active_files()[0]).ids(), [1, 2, 3]);
    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "4");
    assert_eq!(check_sealed_files(&env), [range(1, 3)]);
    assert_eq!(active_doc(&env.active_files()[0]).ids(), [4]);
    assert_eq!(export_ids(&env, &[]), [2, 3, 4]);
}

// ---------------------------------------------------------------------------
// 6. Filters
// ---------------------------------------------------------------------------

#[test]
fn export_filters_select_exactly() {
    let env = Env::with_config("host_name = \"pbx01\"\nevent_mask = \"all\"\n");
    let records: [&[&str]; 6] = [
        &["--time", "2026-03-01T10:00:00+01:00", "--tenant", "Acme", "--app", "System Admin Tool"],
        &["--time", "2026-03-01T23:30:00Z", "--tenant", "Acme", "--app", "System Admin Tool 2"],
        &["--time", "2026-03-02T12:00:00+01:00", "--tenant", "Globex", "--app", "Attendant Console"],
        &["--time", "2026-03-03T00:00:00+01:00", "--app", "system admin tool"],
        &["--time", "2026-03-04T08:00:00-05:00", "--tenant", "ACME", "--app", "Attendant Console"],
        &["--time", "2026-03-02T23:59:59.999+01:00", "--tenant", "Acme Corp", "--app", "Provisioning"],
    ];
    let more: [&[&str]; 6] = [
        &["--user", "alice", "--action", "Login", "--category", "presence"],
        &["--user", "bob", "--action", "Login failure", "--category", "failure"],
        &["--user", "Alice", "--action", "Logout", "--category", "presence"],
        &["--user", "alice smith", "--action", "login", "--category", "Config"],
        &["--action", "Change", "--category", "config"],
        &["--user", "carol", "--action", "Add", "--category", "modify"],
    ];
    for (k, (a, b)) in records.iter().zip(&more).enumerate() {
        let mut args = vec!["append"];
        args.extend_from_slice(a);
        args.extend_from_slice(b);
        let run = env.run(&args).success();
        assert_eq!(run.stdout.trim(), (k + 1).to_string());
    }

    let cases: &[(&[&str], &[u64])] = &[
        (&[], &[1, 2, 3, 4, 5, 6]),
        // Dates are local days (Europe/Paris): record 2 is 00:30 on the 2nd there.
        (&["--from", "2026-03-02", "--to", "2026-03-02"], &[2, 3, 6]),
        (&["--to", "2026-03-02"], &[1, 2, 3, 6]),
        (&["--from", "2026-03-03"], &[4, 5]),
        (&["--to", "2026-03-01"], &[1]),
        // RFC 3339 bounds are inclusive.
        (&["--from", "2026-03-01T22:30:00Z", "--to", "2026-03-02T11:00:00Z"], &[2, 3]),
        (&["--from", "2026-03-02T00:30:00+01:00", "--to", "2026-03-02T00:30:00+01:00"], &[2]),
        (&["--from", "2026-03-02T23:59:59.999+01:00"], &[4, 5, 6]),
        (&["--from", "2026-03-04T13:00:00Z"], &[5]),
        (&["--to", "2026-03-01T09:59:59.999Z"], &[1]),
        (&["--to", "2026-03-01T08:59:59.999Z"], &[]),
        // Local date-time form.
        (&["--from", "2026-03-03 00:00:00"], &[4, 5]),
        // Text filters: whole value, any case.
        (&["--tenant", "acme"], &[1, 2, 5]),
        (&["--tenant", "ACME CORP"], &[6]),
        (&["--app", "system admin tool"], &[1, 4]),
        (&["--app", "Attendant Console"], &[3, 5]),
        (&["--user", "alice"], &[1, 3]),
        (&["--user", "Alice Smith"], &[4]),
        (&["--user", "nobody"], &[]),
        (&["--action", "login"], &[1, 4]),
        (&["--action", "LOGIN FAILURE"], &[2]),
        (&["--category", "config"], &[4, 5]),
        (&["--category", "Presence"], &[1, 3]),
        // Filters combine.
        (&["--tenant", "acme", "--category", "presence"], &[1]),
        (&["--app", "attendant console", "--from", "2026-03-03"], &[5]),
        (&["--user", "alice", "--to", "2026-03-01"], &[1]),
    ];
    for (args, want) in cases {
        assert_eq!(export_ids(&env, args), *want, "export {args:?}");
        let mut all = vec!["--all"];
        all.extend_from_slice(args);
        assert_eq!(export_ids(&env, &all), *want, "export --all {args:?}");
    }
    // The filter applies to every format.
    let csv = env.run(&["export", "--format", "csv", "--tenant", "acme"]).success();
    let path = env.dir.path().join("f.csv");
    std::fs::write(&path, &csv.stdout).unwrap();
    let rows = csv_rows(&path);
    let got: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got, ["1", "2", "5"]);
    let xml = env.run(&["export", "--format", "xml", "--user", "alice"]).success();
    assert_eq!(xml_doc_bytes(xml.stdout.as_bytes()).ids(), [1, 3]);

    // Bad bounds are clear errors.
    let run = env.run(&["export", "--format", "json", "--from", "2026-03-03", "--to", "2026-03-02"]).failure();
    assert!(run.stderr.contains("--from") && run.stderr.contains("--to"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let run = env.run(&["export", "--format", "json", "--from", "yesterday"]).failure();
    assert!(run.stderr.contains("--from") && run.stderr.contains("yesterday"), "{}", run.stderr);
    let run = env.run(&["export", "--format", "csv", "--to", "2026-13-45"]).failure();
    assert!(run.stderr.contains("--to"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "no partial output on a bad filter: {}", run.stdout);
}

/// SPEC §8 says CSV is RFC 4180, whose records end with CRLF (§2.1).
#[test]
fn csv_export_ends_records_with_crlf() {
    let env = Env::new();
    env.run_with_input(&["append", "--json", "-"], &json_records(3)).success();
    let csv = env.run(&["export", "--format", "csv"]).success().stdout;
    let lines: Vec<&str> = csv.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 4, "{csv:?}");
    assert!(lines.iter().all(|l| l.ends_with("\r\n")), "records must end with CRLF: {csv:?}");
}

/// Random hostile values (formula starts, separators, quotes, control and
/// full-width characters, made by python3 from a seed it prints) go through
/// the CSV export; python3's csv module reads the file back. By default no
/// cell may start with a character a spreadsheet runs as a formula, every
/// cell but a number (the id) is quoted, and a neutralised cell is the value behind one `'`; with
/// `--csv-raw` every cell is the exact value. JSON stays exact either way.
#[test]
fn csv_export_never_hands_a_spreadsheet_a_formula() {
    let env = Env::new();
    let generator = r#"
import json, random, sys
seed = random.randrange(1 << 32); random.seed(seed); print(seed, file=sys.stderr)
starts = ["=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20", "'", '"', " ", ";", ",", "|", ""]
parts = ["1+1", "HYPERLINK(\"http://x/?\"&A2,\"y\")", "cmd|' /C calc'!A0", "SUM(A1:A9)", ";=2+2", ",=3", "\t=4",
         "\"=5", "\r\n-6", "a", "\u00e9", "\U0001f600", "\x00", "\x1b", "\x7f", "\u0085", "\u2028", " "]
fields = ["user_name", "first_name", "last_name", "tenant", "node", "app_name", "app_context", "action_type",
          "action_data", "category", "auth_type", "session_id", "detail_level"]
for i in range(300):
    rec = {}
    for f in fields:
        if random.random() < 0.8:
            v = random.choice(starts) + "".join(random.choice(parts) for _ in range(random.randrange(4)))
            if v.strip():
                rec[f] = v
    rec.setdefault("app_name", "=App"); rec.setdefault("action_type", "+Act")
    print(json.dumps(rec))
"#;
    let input = python(generator, &[], b"");
    env.run_with_input(&["append", "--json", "-"], input.as_bytes()).success();
    let json = env.run(&["export", "--format", "json"]).success().stdout;
    let safe = env.dir.path().join("safe.csv");
    let raw = env.dir.path().join("raw.csv");
    let exact = env.dir.path().join("exact.jsonl");
    std::fs::write(&exact, &json).unwrap();
    env.run(&["export", "--format", "csv", "--out", safe.to_str().unwrap()]).success();
    env.run(&["export", "--format", "csv", "--csv-raw", "--out", raw.to_str().unwrap()]).success();
    let run = env.run(&["export", "--format", "json", "--csv-raw"]).failure();
    assert!(run.stderr.contains("--csv-raw"), "{}", run.stderr);
    let check = r#"
import csv, json, sys
safe, raw, exact = sys.argv[1:4]
formula = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
records = [json.loads(l) for l in open(exact, encoding="utf-8")]
def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f, strict=True))
s, r = rows(safe), rows(raw)
assert len(s) == len(r) == len(records) + 1, (len(s), len(r), len(records))
header = s[0]
assert header == r[0]
starts = 0
for rec, srow, rrow in zip(records, s[1:], r[1:]):
    assert len(srow) == len(rrow) == len(header), srow
    for name, sv, rv in zip(header, srow, rrow):
        want = str(rec.get(name, ""))
        assert rv == want, ("--csv-raw", rec["id"], name, rv, want)
        assert not sv.startswith(formula), ("formula cell", rec["id"], name, sv)
        if want.startswith(formula):
            starts += 1
            assert sv == "'" + want, (rec["id"], name, sv, want)
        else:
            assert sv == want, (rec["id"], name, sv, want)
assert starts > 300, starts
# Every cell of the default export that is not a plain number is quoted: a
# spreadsheet that splits on ';' or tab still sees one cell per value.
text = open(safe, encoding="utf-8", newline="").read()
i, cells = 0, 0
while i < len(text):
    if text[i] == '"':
        i += 1
        while True:
            j = text.index('"', i)
            if text[j + 1:j + 2] == '"':
                i = j + 2
            else:
                i = j + 1
                break
    else:
        j = i
        while text[j] not in ",\r":
            j += 1
        cell = text[i:j]
        try:
            float(cell)
        except ValueError:
            raise AssertionError(("unquoted cell that is not a number", text[i:i + 40]))
        i = j
    cells += 1
    assert text[i:i + 1] == "," or text[i:i + 2] == "\r\n", text[i:i + 40]
    i += 1 if text[i] == "," else 2
assert cells == len(s) * len(header), (cells, len(s))
print(starts)
"#;
    let out = python(check, &[&safe, &raw, &exact], b"");
    assert!(out.trim().parse::<u32>().is_ok(), "{out}");
}

// ---------------------------------------------------------------------------
// 7. Archived (.xml.gz) files are part of the history
// ---------------------------------------------------------------------------

/// Compresses a sealed file into archive/<name>.xml.gz, and removes the plain
/// one when `remove`.
fn gzip_into_archive(env: &Env, sealed: &Path, remove: bool) -> PathBuf {
    let stem = file_name(sealed).strip_suffix(".xml").unwrap().to_owned();
    let archive = env.data.join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let gz = archive.join(format!("{stem}.xml.gz"));
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(&std::fs::read(sealed).unwrap()).unwrap();
    enc.finish().unwrap().sync_all().unwrap();
    if remove {
        std::fs::remove_file(sealed).unwrap();
    }
    gz
}

#[test]
fn export_all_and_verify_read_gzipped_archive() {
    let env = Env::with_capacity(4);
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 2);

    // The archive job's state between writing the .gz and removing the
    // plain file: both exist, and each record is still read once.
    let gz = gzip_into_archive(&env, &sealed[0], false);
    assert_eq!(export_ids(&env, &["--all"]), range(1, 10));
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("10 records"), "{}", v.stdout);

    std::fs::remove_file(&sealed[0]).unwrap();
    // Make sure it really is gzip (read it back independently).
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()).read_to_string(&mut text).unwrap();
    assert!(text.contains("<Record id=\"1\">"));
    assert_eq!(env.sealed_files().len(), 1);

    let all = export_json(&env, &["--all"]);
    assert_eq!(ids(&all), range(1, 10));
    for r in &all {
        assert_eq!(r["action_data"], format!("record {}", r["id"].as_u64().unwrap() - 1));
    }
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("10 records"), "{}", v.stdout);
    let st = status(&env);
    assert_eq!((st["archived_files"].as_u64(), st["sealed_files"].as_u64()), (Some(1), Some(1)), "{st}");
    assert_eq!(st["next_id"], 11);

    // Both sealed files archived; the log goes on.
    gzip_into_archive(&env, &sealed[1], true);
    assert!(env.sealed_files().is_empty());
    assert_eq!(export_ids(&env, &["--all"]), range(1, 10));
    env.run(&["verify"]).success();
    env.run_with_input(&["append", "--json", "-"], &json_records(3)).success();
    assert_eq!(export_ids(&env, &["--all"]), range(1, 13));
    assert_eq!(export_ids(&env, &[]), range(10, 13));
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("13 records"), "{}", v.stdout);
    // verify PATH accepts the compressed file too.
    let v = env.run(&["verify", gz.to_str().unwrap()]).success();
    assert!(v.stdout.contains("4 records"), "{}", v.stdout);
}

// ---------------------------------------------------------------------------
// 8. verify catches damage
// ---------------------------------------------------------------------------

#[test]
fn verify_catches_damage() {
    let env = Env::with_capacity(5);
    env.run_with_input(&["append", "--json", "-"], &json_records(17)).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 3, "ids 1..5, 6..10, 11..15 sealed; 16, 17 active");
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("17 records"), "{}", v.stdout);
    let mid = &sealed[1];
    let mid_name = file_name(mid);
    let orig = std::fs::read(mid).unwrap();

    // (a) cut in the middle.
    std::fs::write(mid, &orig[..orig.len() / 2]).unwrap();
    let run = env.run(&["verify"]).failure();
    assert!(run.stderr.contains(&mid_name), "should name {mid_name}: {}", run.stderr);
    std::fs::write(mid, &orig).unwrap();
    env.run(&["verify"]).success();

    // (b) a record removed from the middle; the file stays well-formed.
    let text = String::from_utf8(orig.clone()).unwrap();
    let start = text.find("\n  <Record id=\"8\">").expect("record 8 is in the middle file");
    let end = start + text[start..].find("</Record>").unwrap() + "</Record>".len();
    let cut = format!("{}{}", &text[..start], &text[end..]);
    std::fs::write(mid, &cut).unwrap();
    assert_well_formed(mid);
    let run = env.run(&["verify"]).failure();
    let err = messages(&env, &run.stderr);
    assert!(err.contains(&mid_name), "should name {mid_name}: {err}");
    assert!(err.lines().any(|l| l.contains("missing") && has_token(l, "8")), "should say that id 8 is missing: {err}");
    std::fs::write(mid, &orig).unwrap();

    // (c) the whole middle file deleted.
    std::fs::remove_file(mid).unwrap();
    let run = env.run(&["verify"]).failure();
    let err = messages(&env, &run.stderr);
    assert!(
        err.lines().any(|l| l.contains("missing") && has_token(l, "6") && has_token(l, "10")),
        "should say that ids 6..10 are missing: {err}"
    );
    assert!(
        err.contains(&file_name(&sealed[0])) || err.contains(&file_name(&sealed[2])),
        "should name a neighbouring file: {err}"
    );
    std::fs::write(mid, &orig).unwrap();
    env.run(&["verify"]).success();

    // (d) offboard copies in another directory.
    let offboard = env.dir.path().join("offboard");
    std::fs::create_dir(&offboard).unwrap();
    let copies: Vec<PathBuf> = sealed
        .iter()
        .map(|p| {
            let c = offboard.join(file_name(p));
            std::fs::copy(p, &c).unwrap();
            c
        })
        .collect();
    let v = env.run(&["verify", offboard.to_str().unwrap()]).success();
    assert!(v.stdout.contains("15 records"), "{}", v.stdout);
    let paths: Vec<&str> = copies.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["verify"];
    args.extend(&paths);
    let v = env.run(&args).success();
    assert!(v.stdout.contains("15 records"), "{}", v.stdout);
    // Older files may have been purged: a gap before the oldest is normal...
    let v = env.run(&["verify", paths[1], paths[2]]).success();
    assert!(v.stdout.contains("10 records"), "{}", v.stdout);
    // ...but not between two files.
    let run = env.run(&["verify", paths[0], paths[2]]).failure();
    let err = messages(&env, &run.stderr);
    assert!(
        err.lines().any(|l| l.contains("missing") && has_token(l, "6") && has_token(l, "10")),
        "should say that ids 6..10 are missing: {err}"
    );

    let bytes = std::fs::read(&copies[2]).unwrap();
    std::fs::write(&copies[2], &bytes[..bytes.len() * 2 / 3]).unwrap();
    for run in [env.run(&["verify", offboard.to_str().unwrap()]), env.run(&args)] {
        let run = run.failure();
        let err = messages(&env, &run.stderr);
        assert!(err.contains("offboard") && err.contains(&file_name(&copies[2])), "should name the copy: {err}");
    }
    // The data directory itself is untouched.
    env.run(&["verify"]).success();
}

// ---------------------------------------------------------------------------
// 9. A torn tail is repaired, and said so
// ---------------------------------------------------------------------------

#[test]
fn torn_tail_is_repaired_on_next_append() {
    let env = Env::new();
    env.run_with_input(&["append", "--json", "-"], &json_records(5)).success();
    let active = env.active_files();
    assert_eq!(active.len(), 1);
    let good = std::fs::read(&active[0]).unwrap();
    let garbage = b"\n  <Record id=\"6\">\n    <TimeStamp>2026-11-22T09:45:37.120+01:00</TimeStamp>\n    <AppName>x";
    std::fs::OpenOptions::new().append(true).open(&active[0]).unwrap().write_all(garbage).unwrap();

    // Readers cope with the torn tail.
    env.run(&["status"]).success();
    let st = status(&env);
    assert_eq!(st["next_id"], 6, "{st}");
    assert_eq!(export_ids(&env, &["--all"]), range(1, 5));

    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "6", "the next id follows the last complete record");
    let err = messages(&env, &run.stderr);
    assert!(err.contains("repaired"), "append should say it repaired the file: {err}");
    assert!(
        has_token(&err, &garbage.len().to_string()) && err.contains("bytes"),
        "the note should say {} bytes were removed: {err}",
        garbage.len()
    );
    assert!(err.contains(&file_name(&active[0])), "the note should name the file: {err}");

    let after = std::fs::read(&active[0]).unwrap();
    assert!(after.starts_with(&good), "records before the torn tail must be kept byte for byte");
    let doc = active_doc(&active[0]);
    assert_eq!(doc.ids(), range(1, 6));
    assert_eq!(doc.records[5].field("AppName").map(|f| f.text.as_str()), Some("A"));
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("6 records"), "{}", v.stdout);
    assert_eq!(export_ids(&env, &["--all"]), range(1, 6));

    // Repaired once: the next append has nothing to say.
    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "7");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// A complete record whose id does not follow on (not something this archiver
/// writes) at the end of the active file is cut by the next writer like a torn
/// tail, with a note, and the ids continue from the last good record.
#[test]
fn out_of_sequence_record_at_end_of_active_file_is_cut() {
    let env = Env::new();
    env.run_with_input(&["append", "--json", "-"], &json_records(2)).success();
    let active = env.active_files();
    let good = std::fs::read(&active[0]).unwrap();
    let stray = b"\n  <Record id=\"99\">\n    <TimeStamp>2026-11-22T09:45:37.120+01:00</TimeStamp>\n    \
                  <DetailLevel>Low</DetailLevel>\n    <Node>pbx01</Node>\n    <AppName>x</AppName>\n    \
                  <ActionType>y</ActionType>\n  </Record>";
    std::fs::OpenOptions::new().append(true).open(&active[0]).unwrap().write_all(stray).unwrap();

    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "3");
    let err = messages(&env, &run.stderr);
    assert!(
        err.contains("repaired") && has_token(&err, &stray.len().to_string()),
        "a note should say what was cut: {err}"
    );
    let after = std::fs::read(&active[0]).unwrap();
    assert!(after.starts_with(&good));
    assert_eq!(active_doc(&active[0]).ids(), [1, 2, 3]);
    assert_eq!(export_ids(&env, &["--all"]), [1, 2, 3]);
    env.run(&["verify"]).success();
}

// ---------------------------------------------------------------------------
// 10. export --out, and closed pipes
// ---------------------------------------------------------------------------

#[test]
fn export_out_writes_whole_file_or_nothing() {
    let env = Env::new();
    env.run_with_input(&["append", "--json", "-"], &json_records(3000)).success();
    let dir = env.dir.path().join("exports");
    std::fs::create_dir(&dir).unwrap();

    for format in ["json", "csv"] {
        let path = dir.join(format!("all.{format}"));
        let run = env.run(&["export", "--all", "--format", format, "--out", path.to_str().unwrap()]).success();
        assert!(run.stdout.is_empty(), "--out writes nothing to stdout: {}", run.stdout.len());
        assert!(has_token(&run.stderr, "3000"), "the count goes to stderr: {}", run.stderr);
        let stdout = env.run(&["export", "--all", "--format", format]).success().stdout;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), stdout, "{format}: file differs from stdout");
    }
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "no temporary files left: {names:?}");

    // A directory that does not exist.
    let missing = env.dir.path().join("missing");
    let run =
        env.run(&["export", "--all", "--format", "json", "--out", missing.join("x.json").to_str().unwrap()]).failure();
    assert!(run.stderr.contains("missing"), "{}", run.stderr);
    assert!(!missing.exists());

    // A read-only directory (only meaningful when not running as root).
    let ro = env.dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&ro, perms).unwrap();
    let probe_ok = std::fs::write(ro.join("probe"), b"").is_ok();
    if probe_ok {
        std::fs::remove_file(ro.join("probe")).unwrap();
    } else {
        let run =
            env.run(&["export", "--all", "--format", "json", "--out", ro.join("x.json").to_str().unwrap()]).failure();
        assert!(run.stderr.contains("ro"), "{}", run.stderr);
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0, "nothing left in the read-only directory");
    }
    // A directory nobody can create files in, root included.
    let run =
        env.run(&["export", "--all", "--format", "json", "--out", "/proc/self/audit-trail-export.json"]).failure();
    assert!(run.stderr.contains("/proc/self"), "{}", run.stderr);
}

/// A read error half-way through (a damaged sealed file) fails the export and
/// leaves no file behind.
#[test]
fn export_out_failing_midway_leaves_nothing() {
    let env = Env::with_capacity(1000);
    env.run_with_input(&["append", "--json", "-"], &json_records(3000)).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 2);
    let bytes = std::fs::read(&sealed[1]).unwrap();
    std::fs::write(&sealed[1], &bytes[..bytes.len() / 2]).unwrap();
    let dir = env.dir.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    for format in ["json", "csv", "xml"] {
        let out = dir.join(format!("all.{format}"));
        let run = env.run(&["export", "--all", "--format", format, "--out", out.to_str().unwrap()]).failure();
        assert!(run.stderr.contains(&file_name(&sealed[1])), "{format}: should name the damaged file: {}", run.stderr);
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.is_empty(), "{format}: a failed export left {names:?}");
        // To stdout it fails too (what was written cannot be taken back).
        let run = env.run(&["export", "--all", "--format", format]).failure();
        assert!(run.stderr.contains(&file_name(&sealed[1])), "{format}: {}", run.stderr);
    }
}

/// `--out` names an existing directory: creating the temporary file works but
/// the final rename fails. Nothing may be left behind.
#[test]
fn export_out_failed_rename_leaves_no_partial_file() {
    let env = Env::new();
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();
    let dir = env.dir.path().join("exports");
    let taken = dir.join("taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("keep"), b"x").unwrap();
    let run = env.run(&["export", "--all", "--format", "json", "--out", taken.to_str().unwrap()]).failure();
    assert!(run.stderr.contains("taken"), "{}", run.stderr);
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["taken"], "a failed export left files behind");
}

#[test]
fn export_to_closed_pipe_exits_zero() {
    let env = Env::new();
    // Far more than a pipe buffer of output.
    env.run_with_input(&["append", "--json", "-"], &json_records(3000)).success();
    for format in ["json", "csv", "xml"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"{ "$0" --data-dir "$1" export --all --format "$2"; echo "exit=$?" >&2; } | head -1"#)
            .arg(BIN)
            .arg(&env.data)
            .arg(format)
            .env("TZ", "Europe/Paris")
            .env_remove("AUDIT_TRAIL_DATA")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stdout.lines().count(), 1, "{format}: head -1 output: {stdout}");
        assert!(stderr.contains("exit=0"), "{format}: export should exit 0 on a closed pipe: {stderr}");
        assert!(!stderr.contains("error"), "{format}: a closed pipe is not an error: {stderr}");
    }
}

// ---------------------------------------------------------------------------
// 11. Configuration errors
// ---------------------------------------------------------------------------

#[test]
fn config_errors_are_named() {
    let env = Env::with_config("host_name = \"pbx01\"\ncolour = \"red\"\n");
    for args in [&["status"][..], &["append", "--app", "A", "--action", "B"]] {
        let run = env.run(args).failure();
        assert!(run.stderr.contains("colour"), "{args:?}: should name the unknown key: {}", run.stderr);
    }
    let run = env.run_with_input(&["append", "--json", "-"], &json_records(2)).failure();
    assert!(run.stderr.contains("colour"), "{}", run.stderr);
    let names: Vec<_> = std::fs::read_dir(&env.data).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["audit-trail.toml"], "nothing may be written under a bad configuration");

    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 0\n");
    let run = env.run(&["append", "--app", "A", "--action", "B"]).failure();
    assert!(run.stderr.contains("capacity"), "{}", run.stderr);
    let run = env.run(&["status"]).failure();
    assert!(run.stderr.contains("capacity"), "{}", run.stderr);

    let env = Env::with_config("capacity = \"ten\"\n");
    let run = env.run(&["status"]).failure();
    assert!(run.stderr.contains("capacity"), "{}", run.stderr);
}

/// A crash right after a new active file was created can leave its header
/// cut short: readers skip it, and the next writer removes it and says so.
#[test]
fn active_file_with_torn_header_is_skipped_then_removed() {
    let env = Env::with_capacity(3);
    env.run_with_input(&["append", "--json", "-"], &json_records(3)).success();
    env.run(&["rotate"]).success();
    let active = env.active_files();
    assert_eq!(active.len(), 1);
    // Replace the fresh active file by one whose header was torn.
    std::fs::remove_file(&active[0]).unwrap();
    let torn = env.data.join("state/active/pbx01_20991231235959.xml.open");
    std::fs::write(&torn, b"<?xml version=\"1.0\" encod").unwrap();

    assert_eq!(export_ids(&env, &["--all"]), vec![1, 2, 3]);
    env.run(&["show"]).success();
    let run = env.run(&["append", "--app", "a", "--action", "b"]).success();
    assert_eq!(run.stdout.trim(), "4", "ids continue from the sealed file");
    assert!(run.stderr.contains("removed") && run.stderr.contains("header"), "note: {}", run.stderr);
    assert!(!torn.exists());
    env.run(&["verify"]).success();
}
