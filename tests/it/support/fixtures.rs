//! Fixtures shared by the capability tests: independent readers of what the
//! binary writes (xmllint and the XSD, Python's ElementTree and csv), and
//! small helpers over exports and files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::support::harness::*;

/// JSON name and XML element of every record field (SPEC §2), in file order.
pub const FIELDS: [(&str, &str); 16] = [
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

pub fn xml_name(field: &str) -> &'static str {
    FIELDS.iter().find(|(j, _)| *j == field).map(|(_, x)| *x).unwrap_or_else(|| panic!("unknown field {field}"))
}

pub fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/audit-trail.xsd")
}

/// Validates a file against schema/audit-trail.xsd with xmllint.
#[track_caller]
pub fn assert_schema_valid(path: &Path) {
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
pub fn python(script: &str, args: &[&Path], stdin: &[u8]) -> String {
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
pub struct XmlDoc {
    pub tag: String,
    pub root: BTreeMap<String, String>,
    pub records: Vec<XmlRecord>,
    pub seal: Option<BTreeMap<String, String>>,
    pub other: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct XmlRecord {
    pub attrib: BTreeMap<String, String>,
    pub fields: Vec<XmlField>,
}

#[derive(Debug, Deserialize)]
pub struct XmlField {
    pub tag: String,
    pub attrib: BTreeMap<String, String>,
    pub text: String,
}

impl XmlRecord {
    pub fn id(&self) -> u64 {
        self.attrib.get("id").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("record without id: {self:?}"))
    }

    pub fn field(&self, tag: &str) -> Option<&XmlField> {
        self.fields.iter().find(|f| f.tag == tag)
    }
}

impl XmlDoc {
    pub fn ids(&self) -> Vec<u64> {
        self.records.iter().map(XmlRecord::id).collect()
    }

    pub fn seal_attr(&self, name: &str) -> u64 {
        let seal = self.seal.as_ref().expect("document has a <Seal>");
        seal.get(name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("<Seal> {name}: {seal:?}"))
    }
}

pub const ELEMENT_TREE: &str = r#"
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
pub fn xml_doc_bytes(xml: &[u8]) -> XmlDoc {
    serde_json::from_str(&python(ELEMENT_TREE, &[], xml)).expect("ElementTree summary")
}

#[track_caller]
pub fn xml_doc(path: &Path) -> XmlDoc {
    xml_doc_bytes(&std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

/// The active file is a document without its end tag: parse it with one added.
#[track_caller]
pub fn active_doc(path: &Path) -> XmlDoc {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend_from_slice(b"\n</AuditTrail>\n");
    xml_doc_bytes(&bytes)
}

/// Parses a CSV file with Python's csv module (strict mode).
#[track_caller]
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let script = r#"
import csv, json, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    json.dump(list(csv.reader(f, strict=True)), sys.stdout)
"#;
    serde_json::from_str(&python(script, &[path], b"")).expect("csv rows")
}

/// The CSV header SPEC §8 implies: `id`, then the field names of §2.
pub fn csv_header() -> Vec<String> {
    std::iter::once("id").chain(FIELDS.iter().map(|(j, _)| *j)).map(String::from).collect()
}

/// Parses JSON Lines into objects.
#[track_caller]
pub fn json_lines(s: &str) -> Vec<Map<String, Value>> {
    s.lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object line: {l:?} ({other:?})"),
        })
        .collect()
}

#[track_caller]
pub fn ids(recs: &[Map<String, Value>]) -> Vec<u64> {
    recs.iter().map(|r| r["id"].as_u64().unwrap_or_else(|| panic!("record without numeric id: {r:?}"))).collect()
}

/// `export --format json` with extra arguments, parsed.
#[track_caller]
pub fn export_json(env: &Env, extra: &[&str]) -> Vec<Map<String, Value>> {
    let mut args = vec!["export", "--format", "json"];
    args.extend_from_slice(extra);
    json_lines(&env.run(&args).success().stdout)
}

#[track_caller]
pub fn export_ids(env: &Env, extra: &[&str]) -> Vec<u64> {
    ids(&export_json(env, extra))
}

pub fn range(a: u64, b: u64) -> Vec<u64> {
    (a..=b).collect()
}

/// `status --json`, parsed.
#[track_caller]
pub fn status(env: &Env) -> Value {
    let run = env.run(&["status", "--json"]).success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", run.stdout))
}

/// Every file (with its bytes) and directory under `dir`.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
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
pub fn has_token(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + token.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// stderr with the temporary directory's path replaced, so that numbers are
/// looked for in messages, not in random directory names.
pub fn messages(env: &Env, stderr: &str) -> String {
    stderr.replace(env.dir.path().to_str().unwrap(), "<tmp>")
}

pub fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The `YYYYMMDDHHMMSS` stamp of `pbx01_<stamp><suffix>`; panics when the
/// name does not have that shape.
#[track_caller]
pub fn stamp_of(path: &Path, suffix: &str) -> chrono::NaiveDateTime {
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
pub fn created_second(doc: &XmlDoc) -> chrono::NaiveDateTime {
    let created = doc.root.get("created").expect("created attribute");
    let t = chrono::DateTime::parse_from_rfc3339(created).unwrap_or_else(|e| panic!("created={created}: {e}"));
    let local = t.naive_local();
    local - chrono::Duration::nanoseconds(i64::from(chrono::Timelike::nanosecond(&local)))
}

/// Builds one JSON Lines line from (field, value) pairs.
pub fn json_line(fields: &[(&str, String)]) -> Vec<u8> {
    let map: Map<String, Value> = fields.iter().map(|(k, v)| ((*k).to_owned(), Value::String(v.clone()))).collect();
    let mut line = serde_json::to_vec(&map).unwrap();
    line.push(b'\n');
    line
}

/// The JSON names of the record's free-text fields (all but the time stamp,
/// the source address and the outcome), for generated hostile records.
pub const TEXT_FIELDS: [&str; 13] = [
    "user_name",
    "first_name",
    "last_name",
    "tenant",
    "node",
    "app_name",
    "app_context",
    "action_type",
    "action_data",
    "category",
    "auth_type",
    "session_id",
    "detail_level",
];
