//! Tamper evidence (SPEC §9): real damage done to real files — edited,
//! reordered, inserted, removed, truncated, forged, foreign — and what
//! `verify` names for each: the kind of damage, the file and the record.
//!
//! Every damage is done to a fresh copy of a data directory (or of its
//! offboard files), and the untouched original is checked first, so each
//! assertion can only pass because of the damage. Assertions use
//! `verify --json` (`ok`, `records`, `problems[] {kind, record, path, what}`).
//!
//! The chain is recomputed here from its published definition (module
//! `chain` below, with the `sha2` crate) to forge records the way an attacker
//! who knows the algorithm would, and the test checks first that its chain
//! is the archiver's, value for value.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::harness::{Env, assert_well_formed, json_records, run_in, submit};
use crate::support::servers::{Ftpd, Sshd};

// ---------------------------------------------------------------------------
// Set-up

/// Small files, every category recorded, and the seal key when given.
fn config(capacity: u64, key: Option<&Path>) -> String {
    let mut c = format!("host_name = \"pbx01\"\ncapacity = {capacity}\nevent_mask = \"all\"\n");
    if let Some(k) = key {
        c.push_str(&format!("hmac_key_file = \"{}\"\n", k.display()));
    }
    c
}

/// A data directory without a seal key holding `records` records.
fn plain_env(capacity: u64, records: usize) -> Env {
    let env = Env::with_config(&config(capacity, None));
    append(&env, records);
    env
}

/// A data directory whose files are sealed with a key made by `keygen`
/// (kept outside the data directory), holding `records` records.
fn keyed_env(capacity: u64, records: usize) -> (Env, PathBuf) {
    let env = Env::new();
    let key = keygen(&env, "seal.key");
    std::fs::write(&env.config, config(capacity, Some(&key))).unwrap();
    append(&env, records);
    (env, key)
}

fn append(env: &Env, records: usize) {
    if records > 0 {
        let run = env.run_with_input(&["append", "--json", "-"], &json_records(records)).success();
        assert!(run.stdout.contains(&format!("appended {records} records")), "{}", run.stdout);
    }
}

/// `keygen` into the test's temporary directory: a 32-byte key, mode 600.
fn keygen(env: &Env, name: &str) -> PathBuf {
    let key = env.dir.path().join(name);
    let run = env.run(&["keygen", key.to_str().unwrap()]).success();
    assert!(run.stdout.contains("key id "), "{}", run.stdout);
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "keygen writes the key readable by its owner only");
    assert_eq!(meta.len(), 32);
    key
}

/// A copy of the whole data directory (`cp -a`), to damage.
fn copy_data(env: &Env, name: &str) -> PathBuf {
    let dst = env.dir.path().join(name);
    let status = Command::new("cp").arg("-a").arg(&env.data).arg(&dst).status().expect("run cp");
    assert!(status.success(), "cp -a {} {}", env.data.display(), dst.display());
    dst
}

/// Where a file of the original data directory is in a copy of it.
fn in_copy(copy: &Path, original: &Path) -> PathBuf {
    copy.join("audit_trail").join(original.file_name().unwrap())
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------
// verify --json

/// `verify --json` in data directory `data` with `args` (paths, keys,
/// anchors). The exit status must agree with `ok`.
#[track_caller]
fn verify(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let run = run_in(data, &all);
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!("`{}` did not print JSON ({e}):\nstdout: {}\nstderr: {}", run.args, run.stdout, run.stderr)
    });
    let ok = v["ok"] == true;
    assert_eq!(run.code == Some(0), ok, "`{}`: exit status {:?} disagrees with the report: {v:#}", run.args, run.code);
    assert_eq!(ok, v["problems"].as_array().is_some_and(Vec::is_empty), "{v:#}");
    v
}

/// The report is clean and covers ids `1..=records`.
#[track_caller]
fn assert_clean(v: &Value, records: u64) {
    assert!(v["ok"] == true, "verify should pass: {v:#}");
    assert_eq!(v["records"].as_u64(), Some(records), "{v:#}");
    assert_eq!(v["last_id"].as_u64(), Some(v["first_id"].as_u64().unwrap() + records - 1), "{v:#}");
}

/// Asserts the first problem's kind, record and file; returns its text.
#[track_caller]
fn assert_first_problem(v: &Value, kind: &str, record: Option<u64>, file: &Path) -> String {
    let p = &v["problems"][0];
    assert!(p.is_object(), "verify should have found `{kind}` damage in {}: {v:#}", file.display());
    assert_eq!(p["kind"].as_str(), Some(kind), "kind of damage: {v:#}");
    assert_eq!(p["record"].as_u64(), record, "record named: {v:#}");
    assert_eq!(Path::new(p["path"].as_str().unwrap()), file, "file named: {v:#}");
    p["what"].as_str().unwrap().to_owned()
}

/// (kind, path) of every problem.
fn problem_kinds(v: &Value) -> Vec<(String, PathBuf)> {
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap().to_owned(), PathBuf::from(p["path"].as_str().unwrap())))
        .collect()
}

// ---------------------------------------------------------------------------
// The chain, from its published definition (docs/tamper-evidence.md), independently.

mod chain {
    use sha2::{Digest as _, Sha256};

    pub type Digest = [u8; 32];

    /// The record fields in XSD order; a field's number is its place here, from 1.
    pub const FIELDS: [&str; 16] = [
        "TimeStamp",
        "DetailLevel",
        "UserName",
        "FirstName",
        "LastName",
        "Tenant",
        "SourceIP",
        "Node",
        "AppName",
        "AppContext",
        "ActionType",
        "ActionData",
        "Category",
        "Outcome",
        "AuthType",
        "SessionId",
    ];

    /// SHA-256 over, for each field present in XSD order, field number
    /// (1 byte) ‖ value length (4 bytes BE) ‖ value; then the id (u64 BE)
    /// and the previous chain value.
    pub fn next(fields: &[(String, String)], id: u64, prev: &Digest) -> Digest {
        let mut h = Sha256::new();
        for (n, name) in FIELDS.iter().enumerate() {
            if let Some((_, value)) = fields.iter().find(|(f, _)| f == name) {
                h.update([n as u8 + 1]);
                h.update((value.len() as u32).to_be_bytes());
                h.update(value.as_bytes());
            }
        }
        for (name, _) in fields {
            assert!(FIELDS.contains(&name.as_str()), "unknown field <{name}>");
        }
        h.update(id.to_be_bytes());
        h.update(prev);
        h.finalize().into()
    }

    fn put_str(h: &mut Sha256, s: &str) {
        h.update((s.len() as u32).to_be_bytes());
        h.update(s.as_bytes());
    }

    /// Format 3: what the first record continues from, over the header.
    pub fn header_value(
        format: u32,
        host: &str,
        created: &str,
        first_id: u64,
        previous: Option<&str>,
        origin: bool,
        start: &Digest,
    ) -> Digest {
        let mut h = Sha256::new();
        h.update(b"audit-trail header v3\0");
        h.update(format.to_be_bytes());
        put_str(&mut h, host);
        put_str(&mut h, created);
        h.update(first_id.to_be_bytes());
        match previous {
            Some(p) => {
                h.update([1]);
                put_str(&mut h, p);
            }
            None => h.update([0]),
        }
        h.update([origin as u8]);
        h.update(start);
        h.finalize().into()
    }

    /// Format 3: the seal's chain-end, over the seal and the last record's value.
    pub fn seal_value(first: u64, last: u64, records: u64, sealed: &str, last_value: &Digest) -> Digest {
        let mut h = Sha256::new();
        h.update(b"audit-trail seal v3\0");
        for n in [first, last, records] {
            h.update(n.to_be_bytes());
        }
        put_str(&mut h, sealed);
        h.update(last_value);
        h.finalize().into()
    }

    pub fn parse_hex(s: &str) -> Digest {
        let mut d = [0u8; 32];
        hex::decode_to_slice(s, &mut d).unwrap_or_else(|e| panic!("{s:?} is not 64 hex digits: {e}"));
        d
    }
}

/// One record of a log file as written: its fields (element name and the
/// escaped text) in file order, and its chain value.
#[derive(Clone, Debug)]
struct Rec {
    id: u64,
    fields: Vec<(String, String)>,
    chain: String,
}

impl Rec {
    /// Field values as the chain sees them: unescaped.
    fn values(&self) -> Vec<(String, String)> {
        self.fields.iter().map(|(n, raw)| (n.clone(), unescape(raw))).collect()
    }

    fn set(&mut self, name: &str, raw: &str) {
        let f = self.fields.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no <{name}>"));
        f.1 = raw.to_owned();
    }
}

fn unescape(raw: &str) -> String {
    raw.replace("&#13;", "\r").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// A log file split into the text before its records, its records and its seal.
struct LogFile {
    head: String,
    records: Vec<Rec>,
    seal: String,
}

impl LogFile {
    /// Parses the layout the archiver writes (one element a line). Enough
    /// for the plain-text records of these tests; panics on anything else.
    fn parse(text: &str) -> LogFile {
        let seal_at = text.rfind("\n  <Seal ").expect("a sealed file");
        let first = text.find("\n  <Record ").unwrap_or(seal_at);
        let mut records = Vec::new();
        for chunk in text[first..seal_at].split("\n  </Record>").filter(|c| !c.is_empty()) {
            let rest = chunk.strip_prefix("\n  <Record id=\"").unwrap_or_else(|| panic!("record start: {chunk:?}"));
            let (id, rest) = rest.split_once("\">").unwrap();
            let mut rec = Rec { id: id.parse().unwrap(), fields: Vec::new(), chain: String::new() };
            for el in rest.split("\n    <").filter(|e| !e.is_empty()) {
                let (name, rest) = el.split_once('>').unwrap();
                assert!(!name.contains(' '), "attributes are not handled here: {el:?}");
                let raw = rest.strip_suffix(&format!("</{name}>")).unwrap_or_else(|| panic!("element end: {el:?}"));
                if name == "Chain" {
                    rec.chain = raw.to_owned();
                } else {
                    rec.fields.push((name.to_owned(), raw.to_owned()));
                }
            }
            records.push(rec);
        }
        LogFile { head: text[..first].to_owned(), records, seal: text[seal_at..].to_owned() }
    }

    fn render(&self) -> String {
        let mut out = self.head.clone();
        for r in &self.records {
            out.push_str(&format!("\n  <Record id=\"{}\">", r.id));
            for (name, raw) in &r.fields {
                out.push_str(&format!("\n    <{name}>{raw}</{name}>"));
            }
            out.push_str(&format!("\n    <Chain>{}</Chain>\n  </Record>", r.chain));
        }
        out + &self.seal
    }

    /// Numbers the records from the header's first-id, recomputes every
    /// chain value from the header's chain-start, and rewrites the seal's
    /// last-id, records and chain-end to match: all an attacker can do
    /// without the key. The seal's key-id and mac are left as they were.
    fn rechain(&mut self) {
        let first: u64 = attr(&self.head, "first-id").parse().unwrap();
        let start = chain::parse_hex(attr(&self.head, "chain-start"));
        let format3 = attr(&self.head, "format") == "3";
        let mut prev = if format3 {
            let previous = self.head.contains(" previous=\"").then(|| attr(&self.head, "previous"));
            let origin = self.head.contains(" chain-origin=\"new\"");
            let (host, created) = (attr(&self.head, "host"), attr(&self.head, "created"));
            chain::header_value(3, host, created, first, previous, origin, &start)
        } else {
            start
        };
        for (i, r) in self.records.iter_mut().enumerate() {
            r.id = first + i as u64;
            prev = chain::next(&r.values(), r.id, &prev);
            r.chain = hex::encode(prev);
        }
        let last = first + self.records.len() as u64 - 1;
        self.seal = set_attr(&self.seal, "last-id", &last.to_string());
        self.seal = set_attr(&self.seal, "records", &self.records.len().to_string());
        let end = if format3 {
            let (seal_first, sealed) = (attr(&self.seal, "first-id").parse().unwrap(), attr(&self.seal, "sealed"));
            chain::seal_value(seal_first, last, self.records.len() as u64, sealed, &prev)
        } else {
            prev
        };
        self.seal = set_attr(&self.seal, "chain-end", &hex::encode(end));
    }
}

/// The value of attribute `name` in `text` (its first occurrence).
fn attr<'a>(text: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let at = text.find(&key).unwrap_or_else(|| panic!("no {name} in {text:?}")) + key.len();
    &text[at..at + text[at..].find('"').unwrap()]
}

fn set_attr(text: &str, name: &str, value: &str) -> String {
    let old = attr(text, name);
    text.replacen(&format!(" {name}=\"{old}\""), &format!(" {name}=\"{value}\""), 1)
}

// ---------------------------------------------------------------------------
// Text surgery on one file

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `<Record id="ID">` element, from the newline before it to the end of
/// its end tag.
fn record_span(xml: &str, id: u64) -> std::ops::Range<usize> {
    let start = xml.find(&format!("\n  <Record id=\"{id}\">")).unwrap_or_else(|| panic!("no record {id}"));
    let end = start + xml[start..].find("</Record>").unwrap() + "</Record>".len();
    start..end
}

/// Changes one character of record `id`'s ActionData (`record …` becomes
/// `Record …`); the file stays well-formed.
fn edit_one_char(xml: &str, id: u64) -> String {
    let span = record_span(xml, id);
    let at =
        span.start + xml[span.clone()].find("<ActionData>record ").expect("json_records data") + "<ActionData>".len();
    format!("{}R{}", &xml[..at], &xml[at + 1..])
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip file");
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------
// 1. Damage inside and across files, without a key

#[test]
fn each_kind_of_damage_is_named_with_its_file_and_record() {
    let env = plain_env(5, 27);
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 5, "ids 1..25 in five sealed files, 26 and 27 active");
    assert_clean(&verify(&env.data, &[]), 27);
    let ok = env.run(&["verify"]).success();
    assert!(ok.stdout.contains("OK: 6 files, 27 records, ids 1..27"), "{}", ok.stdout);
    let mid = &sealed[2];
    let orig = read(mid);
    assert_eq!(LogFile::parse(&orig).records.iter().map(|r| r.id).collect::<Vec<_>>(), (11..=15).collect::<Vec<_>>());

    // (a) One character of record 13's ActionData.
    let copy = copy_data(&env, "edited");
    let file = in_copy(&copy, mid);
    std::fs::write(&file, edit_one_char(&orig, 13)).unwrap();
    assert_well_formed(&file);
    let v = verify(&copy, &[]);
    assert_first_problem(&v, "edited", Some(13), &file);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "only that file is damaged: {v:#}");
    // The text report names the same: file, record, kind.
    let run = run_in(&copy, &["verify"]).failure();
    assert!(run.stderr.contains(&format!("{}: record 13: edited", file.display())), "{}", run.stderr);
    // The same damage in an offboard copy, verified by path.
    let v = verify(&copy, &[arg(&copy.join("audit_trail"))]);
    assert_first_problem(&v, "edited", Some(13), &file);

    // (b) Records 12 and 13 swapped, whole elements with their chain values.
    let copy = copy_data(&env, "swapped");
    let file = in_copy(&copy, mid);
    let (r12, r13) = (record_span(&orig, 12), record_span(&orig, 13));
    assert_eq!(r12.end, r13.start);
    let swapped = format!("{}{}{}{}", &orig[..r12.start], &orig[r13.clone()], &orig[r12.clone()], &orig[r13.end..]);
    std::fs::write(&file, swapped).unwrap();
    assert_well_formed(&file);
    let v = verify(&copy, &[]);
    assert_first_problem(&v, "reordered", Some(13), &file);

    // (c) Record 13 copied in a second time after itself.
    let copy = copy_data(&env, "duplicated");
    let file = in_copy(&copy, mid);
    let r13 = record_span(&orig, 13);
    std::fs::write(&file, format!("{}{}{}", &orig[..r13.end], &orig[r13.clone()], &orig[r13.end..])).unwrap();
    let v = verify(&copy, &[]);
    assert_first_problem(&v, "inserted", Some(13), &file);

    // (d) The whole middle file deleted: the next file says what is gone.
    let copy = copy_data(&env, "deleted");
    std::fs::remove_file(in_copy(&copy, mid)).unwrap();
    let v = verify(&copy, &[]);
    let what = assert_first_problem(&v, "missing", Some(16), &in_copy(&copy, &sealed[3]));
    assert!(what.contains("records 11..15 are missing"), "{what}");

    // (e) Cut in the middle of record 13.
    let copy = copy_data(&env, "truncated");
    let file = in_copy(&copy, mid);
    let at = record_span(&orig, 13).start + 60;
    std::fs::write(&file, &orig[..at]).unwrap();
    let v = verify(&copy, &[]);
    assert_first_problem(&v, "truncated", Some(13), &file);

    // (f) The last record removed, the seal kept: the seal counts it.
    let copy = copy_data(&env, "last-removed");
    let file = in_copy(&copy, mid);
    let r15 = record_span(&orig, 15);
    std::fs::write(&file, format!("{}{}", &orig[..r15.start], &orig[r15.end..])).unwrap();
    assert_well_formed(&file);
    let v = verify(&copy, &[]);
    let what = assert_first_problem(&v, "missing", Some(15), &file);
    assert!(what.contains("11..15") && what.contains("11..14"), "{what}");

    // (g) The same, with the seal rewritten to match (chain recomputed): the
    // file is consistent in itself, but the next one starts at 16.
    let copy = copy_data(&env, "last-removed-resealed");
    let file = in_copy(&copy, mid);
    let mut f = LogFile::parse(&orig);
    f.records.pop();
    f.rechain();
    std::fs::write(&file, f.render()).unwrap();
    assert_clean(&verify(&copy, &[arg(&file)]), 4);
    let v = verify(&copy, &[]);
    let what = assert_first_problem(&v, "missing", Some(16), &in_copy(&copy, &sealed[3]));
    assert!(what.contains("15") && what.contains(arg(&file)), "names record 15 and the file before: {what}");

    // The original was never touched.
    assert_clean(&verify(&env.data, &[]), 27);
}

// ---------------------------------------------------------------------------
// 2. Forgery with a recomputed chain, and the seal key

#[test]
fn a_recomputed_chain_passes_without_the_key_and_fails_its_seal_mac() {
    let (env, key) = keyed_env(5, 17);
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 3, "ids 1..15 sealed, 16 and 17 active");
    let v = verify(&env.data, &["--key", arg(&key)]);
    assert_clean(&v, 17);
    assert_eq!(v["authenticated"].as_u64(), Some(3), "{v:#}");
    // keygen never replaces a key.
    let before = std::fs::read(&key).unwrap();
    let run = env.run(&["keygen", arg(&key)]).failure();
    assert!(run.stderr.contains(arg(&key)), "{}", run.stderr);
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // The chain computed here is the archiver's, value for value.
    let newest = &sealed[2];
    let orig = read(newest);
    let mut f = LogFile::parse(&orig);
    f.rechain();
    assert_eq!(f.render(), orig, "the published chain algorithm reproduces the file");
    assert!(attr(&f.seal, "key-id").len() == 16 && attr(&f.seal, "mac").len() == 64, "{}", f.seal);

    // A record inserted after record 12, the later ones renumbered, every
    // chain value and the seal recomputed.
    let copy = copy_data(&env, "forged");
    let file = in_copy(&copy, newest);
    let mut forged = f.records[1].clone();
    forged.set("UserName", "mallory");
    forged.set("ActionData", "granted administrator rights to mallory");
    f.records.insert(2, forged);
    f.rechain();
    std::fs::write(&file, f.render()).unwrap();
    assert_well_formed(&file);
    let offboard = copy.join("audit_trail");

    // Without the key, a rewrite of the newest sealed files is consistent
    // in itself: the chain algorithm is public, so anyone can recompute it.
    // That is the documented limit of a plain chain, and what the seal key
    // (or an anchor, or a successor file kept elsewhere) is for.
    assert_clean(&verify(&copy, &[arg(&offboard)]), 16);
    // With the key: the seal MAC no longer matches; that file is named.
    let v = verify(&copy, &["--key", arg(&key), arg(&offboard)]);
    let what = assert_first_problem(&v, "forged", None, &file);
    assert!(what.contains("MAC"), "{what}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "the two older files still authenticate: {v:#}");
    assert_eq!(v["authenticated"].as_u64(), Some(2), "{v:#}");
    // The active file still starts at 16 from the old chain-end: it exposes
    // the rewrite even without the key.
    let v = verify(&copy, &[]);
    assert_first_problem(
        &v,
        "inserted",
        Some(16),
        &copy.join("state/active").join(env.active_files()[0].file_name().unwrap()),
    );

    // Another archiver's key: no file here was sealed with it.
    let other = keygen(&env, "other.key");
    let v = verify(&env.data, &["--key", arg(&other)]);
    assert_first_problem(&v, "foreign", None, &sealed[0]);
    assert_eq!(
        problem_kinds(&v),
        sealed.iter().map(|p| ("foreign".to_owned(), p.clone())).collect::<Vec<_>>(),
        "every sealed file: {v:#}"
    );
    // Both keys (e.g. after a key change): every file authenticates.
    let v = verify(&env.data, &["--key", arg(&other), "--key", arg(&key)]);
    assert_clean(&v, 17);
    assert_eq!(v["authenticated"].as_u64(), Some(3), "{v:#}");

    // Files sealed without a key, checked with one.
    let unkeyed = plain_env(5, 12);
    let v = verify(&unkeyed.data, &["--key", arg(&key)]);
    let unkeyed_sealed = unkeyed.sealed_files();
    assert_first_problem(&v, "unauthenticated", None, &unkeyed_sealed[0]);
    assert_eq!(
        problem_kinds(&v),
        unkeyed_sealed.iter().map(|p| ("unauthenticated".to_owned(), p.clone())).collect::<Vec<_>>(),
        "{v:#}"
    );
    assert_clean(&verify(&unkeyed.data, &[]), 12);
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let (env, key) = keyed_env(5, 7);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret = hex::encode(std::fs::read(&key).unwrap());
    let refused = |run: &crate::support::harness::Run| {
        assert!(
            run.stderr.contains(arg(&key))
                && run.stderr.contains("accessible by group or others")
                && run.stderr.contains("chmod 600"),
            "`{}` should refuse the key file clearly: {}",
            run.args,
            run.stderr
        );
        assert!(!run.stderr.contains(&secret[..16]) && !run.stdout.contains(&secret[..16]), "the key is never shown");
    };
    refused(&env.run(&["verify", "--key", arg(&key)]).failure());
    refused(&env.run(&["append", "--app", "A", "--action", "Login", "--category", "presence"]).failure());
    refused(&env.run_with_input(&["append", "--json", "-"], &json_records(3)).failure());
    // Nothing was appended.
    assert_clean(&verify(&env.data, &[]), 7);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = env.run(&["append", "--app", "A", "--action", "Login", "--category", "presence"]).success();
    assert_eq!(run.stdout.trim(), "8");
    assert_clean(&verify(&env.data, &["--key", arg(&key)]), 8);
}

// ---------------------------------------------------------------------------
// 3. Anchors: the newest end

#[test]
fn an_anchor_reveals_the_newest_file_dropped() {
    let env = plain_env(5, 12);
    let st: Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let anchor = st["chain"]["anchor"].as_str().unwrap_or_else(|| panic!("status --json has chain.anchor: {st:#}"));
    let value = st["chain"]["value"].as_str().unwrap();
    assert_eq!(st["chain"]["id"].as_u64(), Some(12), "{st:#}");
    assert_eq!(anchor, format!("12:{value}"));
    assert_eq!(value.len(), 64);
    let v = verify(&env.data, &["--anchor", anchor]);
    assert_clean(&v, 12);
    assert_eq!(v["anchors"].as_u64(), Some(1), "{v:#}");

    // Records 11 and 12 go to a sealed file of their own; that file and the
    // active file are then deleted.
    env.run(&["rotate"]).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 3, "{sealed:?}");
    assert_eq!(LogFile::parse(&read(&sealed[2])).records.first().map(|r| r.id), Some(11));
    let copy = copy_data(&env, "dropped");
    std::fs::remove_file(in_copy(&copy, &sealed[2])).unwrap();
    for a in std::fs::read_dir(copy.join("state/active")).unwrap() {
        std::fs::remove_file(a.unwrap().path()).unwrap();
    }
    // What is left is consistent in itself: without an anchor verify cannot
    // tell that the newest records were removed.
    let v = verify(&copy, &[]);
    assert_clean(&v, 10);
    // The anchor taken before says record 12 existed.
    let v = verify(&copy, &["--anchor", anchor]);
    let what = assert_first_problem(&v, "truncated", Some(12), &in_copy(&copy, &sealed[1]));
    assert!(what.contains("11..12"), "{what}");
    // A bare value (no id) is missing too.
    let v = verify(&copy, &["--anchor", value]);
    assert_first_problem(&v, "truncated", None, &in_copy(&copy, &sealed[1]));

    // An anchor whose value is not the chain value of that record.
    assert_clean(&verify(&env.data, &["--anchor", anchor]), 12);
    let wrong = format!("5:{value}");
    let v = verify(&env.data, &["--anchor", &wrong]);
    let what = assert_first_problem(&v, "forged", Some(5), &sealed[0]);
    assert!(what.contains(value), "{what}");
}

/// `xml` without its chain data: chain-start, previous, chain-origin, every
/// `<Chain>`, chain-end (what someone who edits records without
/// recomputing anything removes).
fn strip_chain(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(at) = rest.find("\n    <Chain>") {
        out.push_str(&rest[..at]);
        let end = at + rest[at..].find("</Chain>").unwrap() + "</Chain>".len();
        rest = &rest[end..];
    }
    out.push_str(rest);
    for name in ["chain-start", "previous", "chain-origin", "chain-end"] {
        if out.contains(&format!(" {name}=\"")) {
            let v = attr(&out, name).to_owned();
            out = out.replacen(&format!(" {name}=\"{v}\""), "", 1);
        }
    }
    out
}

#[test]
fn a_file_stripped_of_its_chain_is_unchained_damage_wherever_it_is() {
    let env = plain_env(3, 10);
    let st: Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    let anchor = st["chain"]["anchor"].as_str().unwrap().to_owned();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 3, "ids 1..9 sealed, 10 active");
    assert!(read(&sealed[0]).contains(" chain-origin=\"new\""), "the first file starts the chain");
    assert!(!read(&sealed[1]).contains(" chain-origin="), "later files continue it");

    // The middle file, its records edited, its chain data gone, the format
    // number kept or set to 1: with and without an anchor.
    for format in ["3", "1"] {
        let copy = copy_data(&env, &format!("stripped-middle-{format}"));
        let file = in_copy(&copy, &sealed[1]);
        let text = strip_chain(&read(&sealed[1])).replace("<UserName>user4<", "<UserName>MALLORY<");
        std::fs::write(&file, text.replace(" format=\"3\"", &format!(" format=\"{format}\""))).unwrap();
        assert!(read(&file).contains("MALLORY"));
        for args in [vec![], vec!["--anchor", anchor.as_str()]] {
            let v = verify(&copy, &args);
            let what = assert_first_problem(&v, "unchained", None, &file);
            assert!(what.contains("chain data was removed"), "{what}");
        }
    }

    // The oldest file made to look like one written before the chain: the
    // file after it continues a chain from it.
    let copy = copy_data(&env, "stripped-oldest");
    let file = in_copy(&copy, &sealed[0]);
    std::fs::write(&file, strip_chain(&read(&sealed[0])).replace(" format=\"3\"", " format=\"1\"")).unwrap();
    let v = verify(&copy, &[]);
    let what = assert_first_problem(&v, "unchained", None, &file);
    assert!(what.contains(sealed[1].file_name().unwrap().to_str().unwrap()), "names the file after it: {what}");

    // Every file stripped, the active one too: consistent without the chain,
    // but an anchor cannot vouch for records it cannot reach.
    let copy = copy_data(&env, "stripped-all");
    let mut files: Vec<PathBuf> = sealed.iter().map(|f| in_copy(&copy, f)).collect();
    files.extend(std::fs::read_dir(copy.join("state/active")).unwrap().map(|e| e.unwrap().path()));
    for f in &files {
        std::fs::write(f, strip_chain(&read(f)).replace(" format=\"3\"", " format=\"1\"")).unwrap();
    }
    assert_clean(&verify(&copy, &[]), 10);
    let v = verify(&copy, &["--anchor", &anchor]);
    assert!(problem_kinds(&v).iter().any(|(k, p)| k == "unchained" && p == &files[0]), "{v:#}");
}

#[test]
fn header_and_seal_attributes_are_bound_into_the_chain() {
    let env = plain_env(3, 10);
    let sealed = env.sealed_files();
    let orig = read(&sealed[1]);
    let f = LogFile::parse(&orig);
    let first_record = f.records[0].id;
    let edits: Vec<(&str, String)> = vec![
        ("host", set_attr(&orig, "host", "pbx99")),
        ("created", set_attr(&orig, "created", "2020-01-01T00:00:00.000+00:00")),
        ("previous", set_attr(&orig, "previous", "pbx01_20200101000000")),
        ("chain-origin", orig.replacen(" first-id=", " chain-origin=\"new\" first-id=", 1)),
    ];
    for (what, text) in edits {
        assert_ne!(text, orig, "{what} changed");
        let copy = copy_data(&env, &format!("header-{what}"));
        let file = in_copy(&copy, &sealed[1]);
        std::fs::write(&file, text).unwrap();
        let v = verify(&copy, &[]);
        assert_first_problem(&v, "edited", Some(first_record), &file);
    }
    // The format number written otherwise than the writer writes it: a
    // reader comparing the text ("3") and verify must not disagree.
    for bad in ["03", "+3", " 3"] {
        let copy = copy_data(&env, &format!("header-format-{}", bad.trim()));
        let file = in_copy(&copy, &sealed[1]);
        std::fs::write(&file, set_attr(&orig, "format", bad)).unwrap();
        let v = verify(&copy, &[]);
        let what = v["problems"][0]["what"].as_str().unwrap_or_default().to_owned();
        assert!(v["ok"] == false && what.contains("format"), "format={bad:?}: {v:#}");
    }
    // The first id: the records no longer follow it.
    let copy = copy_data(&env, "header-first-id");
    let file = in_copy(&copy, &sealed[1]);
    std::fs::write(&file, set_attr(&orig, "first-id", &(first_record + 1).to_string())).unwrap();
    let v = verify(&copy, &[]);
    let kinds = problem_kinds(&v);
    assert!(
        kinds
            .first()
            .is_some_and(|(k, p)| p == &file && ["inserted", "reordered", "missing", "edited"].contains(&k.as_str())),
        "{v:#}"
    );
    // The seal's time: the seal no longer matches its chain-end.
    let seal_at = orig.rfind("<Seal ").unwrap();
    let sealed_time = attr(&orig[seal_at..], "sealed").to_owned();
    let copy = copy_data(&env, "seal-time");
    let file = in_copy(&copy, &sealed[1]);
    let new_seal = orig[seal_at..].replacen(&sealed_time, "2099-01-01T00:00:00.000+00:00", 1);
    std::fs::write(&file, format!("{}{new_seal}", &orig[..seal_at])).unwrap();
    let what = assert_first_problem(&verify(&copy, &[]), "edited", None, &file);
    assert!(what.contains("seal"), "{what}");
    // Rewriting that seal's chain-end to match moves the break to the next
    // file, whose chain-start repeats the old one.
    let mut g = LogFile::parse(&read(&file));
    g.rechain();
    std::fs::write(&file, g.render()).unwrap();
    assert_first_problem(&verify(&copy, &[]), "foreign", None, &in_copy(&copy, &sealed[2]));
}

/// The Python check printed in docs/tamper-evidence.md agrees with `verify`
/// on a file this archiver wrote, and refuses it once a header attribute changed.
#[test]
fn the_documented_python_check_reproduces_the_chain() {
    let doc = include_str!("../../docs/tamper-evidence.md");
    let script = doc.split("```python\n").nth(1).and_then(|s| s.split("```").next()).expect("a python block");
    let env = plain_env(3, 7);
    let sealed = env.sealed_files();
    let check = |path: &Path| {
        Command::new("python3").arg("-c").arg(script).arg(path).output().expect("python3 is required by the tests")
    };
    for f in &sealed {
        let out = check(f);
        assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
        let last = LogFile::parse(&read(f)).records.last().unwrap().chain.clone();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("OK {last}"));
    }
    let edited = env.dir.path().join("edited.xml");
    std::fs::write(&edited, set_attr(&read(&sealed[1]), "host", "pbx99")).unwrap();
    assert!(!check(&edited).status.success(), "a changed host fails the documented check");
}

/// A data directory holding a file both plain and archived (as a crash
/// between archiving and removing the plain file leaves it): verify reads
/// both, and a twin that differs is damage, whichever of the two it is.
#[test]
fn an_archived_twin_that_differs_from_its_plain_file_is_found() {
    let env = plain_env(3, 10);
    let sealed = env.sealed_files();
    let plain = read(&sealed[1]);
    let archive = env.data.join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let twin = archive.join(format!("{}.gz", sealed[1].file_name().unwrap().to_str().unwrap()));
    std::fs::write(&twin, gzip(plain.as_bytes())).unwrap();
    let v = verify(&env.data, &[]);
    assert_clean(&v, 10);
    assert!(v["notes"].to_string().contains("holds the same records"), "{v:#}");
    // Edited, chain recomputed to its end: the plain file still links on.
    let mut f = LogFile::parse(&plain);
    f.records[1].set("UserName", "MALLORY");
    f.rechain();
    std::fs::write(&twin, gzip(f.render().as_bytes())).unwrap();
    assert_first_problem(&verify(&env.data, &[]), "edited", None, &twin);
    std::fs::write(&twin, b"not gzip at all").unwrap();
    assert!(verify(&env.data, &[])["ok"] == false);
}

/// Files of format 2 (`data/format2`, written by an earlier version: two
/// sealed files and an active one, ids 1..7) verify as what they are; the
/// log continues them, the active file in its own format, and the next file
/// in format 3 chained to it; a stripped format-2 file is still found.
#[test]
fn format_2_files_verify_and_the_log_continues_them_in_format_3() {
    let env = Env::with_capacity(3);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/format2");
    let (sealed_dir, active_dir) = (env.data.join("audit_trail"), env.data.join("state/active"));
    std::fs::create_dir_all(&sealed_dir).unwrap();
    std::fs::create_dir_all(&active_dir).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&fixture).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    for name in &names {
        let dir = if name.ends_with(".open") { &active_dir } else { &sealed_dir };
        let text = std::fs::read_to_string(fixture.join(name)).unwrap();
        assert!(text.contains(" format=\"2\""), "{name} is a format 2 file");
        std::fs::write(dir.join(name), text).unwrap();
    }
    assert_clean(&verify(&env.data, &[]), 7);
    append(&env, 5);
    let v = verify(&env.data, &[]);
    assert_clean(&v, 12);
    let files = env.sealed_files();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(read(&files[2]).contains(" format=\"2\""), "the active file keeps its format when sealed");
    let active = std::fs::read_dir(&active_dir).unwrap().next().unwrap().unwrap().path();
    let newest = read(&active);
    assert!(newest.contains(" format=\"3\"") && !newest.contains("chain-origin"), "continues the chain: {newest}");
    let st: Value = serde_json::from_str(&env.run(&["status", "--json"]).success().stdout).unwrap();
    assert_clean(&verify(&env.data, &["--anchor", st["chain"]["anchor"].as_str().unwrap()]), 12);

    let copy = copy_data(&env, "format2-stripped");
    let file = in_copy(&copy, &files[1]);
    std::fs::write(&file, strip_chain(&read(&files[1])).replace(" format=\"2\"", " format=\"1\"")).unwrap();
    assert_first_problem(&verify(&copy, &[]), "unchained", None, &file);
}

// ---------------------------------------------------------------------------
// 4. Crashes and restore keep the chain whole

/// One JSON line per record for the socket.
fn socket_batch(tag: &str, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"app_name": "Provisioning", "action_type": "Change", "action_data": format!("{tag} #{i}"), "category": "config"})
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// Submits batches on new connections until the service goes away; returns
/// every id it answered.
/// `answered` counts the answers so far.
fn feed_until_killed(socket: PathBuf, round: usize, answered: &AtomicUsize) -> Vec<u64> {
    let mut ids = Vec::new();
    for batch in 0.. {
        let Ok(stream) = UnixStream::connect(&socket) else { break };
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let answers = submit(stream, socket_batch(&format!("round {round} batch {batch}"), 40));
        let got: Vec<u64> = answers.iter().filter_map(|a| a["id"].as_u64()).collect();
        let complete = got.len() == 40;
        ids.extend(got);
        answered.store(ids.len(), Ordering::Relaxed);
        if !complete {
            break;
        }
    }
    ids
}

#[test]
fn sigkill_mid_stream_keeps_the_chain_and_backup_restore_keeps_the_seals() {
    let (env, key) = keyed_env(30, 0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut acked = BTreeSet::new();
    for round in 0..3 {
        let server = env.serve(&env.no_schedules());
        let socket = server.socket.clone();
        let answered = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&answered);
        let feeder = std::thread::spawn(move || feed_until_killed(socket, round, &counter));
        // Killed while records stream in: after the first answers, at a varying moment.
        let deadline = Instant::now() + Duration::from_secs(20);
        while answered.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50 + (nanos >> (round * 8)) % 250));
        server.kill9();
        let ids = feeder.join().unwrap();
        assert!(!ids.is_empty(), "round {round}: records were acknowledged before the kill");
        for id in ids {
            assert!(acked.insert(id), "id {id} acknowledged twice");
        }
        // The next start repairs what the kill tore; more records follow.
        let server = env.serve(&env.no_schedules());
        for a in submit(server.connect(), socket_batch(&format!("after kill {round}"), 7)) {
            assert!(acked.insert(a["id"].as_u64().unwrap_or_else(|| panic!("{a}"))));
        }
        let err = server.stop();
        let v = verify(&env.data, &["--key", arg(&key)]);
        assert!(v["ok"] == true, "round {round}: verify after the kill and restart: {v:#}\nservice: {err}");
        let records = v["records"].as_u64().unwrap();
        assert_eq!(v["first_id"].as_u64(), Some(1), "{v:#}");
        assert_eq!(v["last_id"].as_u64(), Some(records), "ids 1..{records} without a gap: {v:#}");
        assert!(records >= acked.len() as u64, "{records} records < {} acknowledged", acked.len());
        assert!(acked.last().is_some_and(|&max| max <= records), "every acknowledged id is there: {v:#}");
    }
    let sealed = env.sealed_files().len();
    assert!(sealed >= 3, "rollovers happened under load ({sealed} sealed files)");
    let v = verify(&env.data, &["--key", arg(&key)]);
    assert_eq!(v["authenticated"].as_u64(), Some(sealed as u64), "{v:#}");
    let records = v["records"].as_u64().unwrap();

    // A backup restored into a new data directory verifies, seals included.
    let out = env.dir.path().join("bundles");
    env.run(&["--schedules", arg(&env.no_schedules()), "backup", "--out", arg(&out)]).success();
    let bundles: Vec<PathBuf> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    let [bundle] = bundles.as_slice() else { panic!("one bundle expected: {bundles:?}") };
    let restored = env.dir.path().join("restored");
    let run = run_in(&restored, &["restore", arg(bundle)]).success();
    assert!(run.stdout.contains("verify OK"), "{}", run.stdout);
    let v = verify(&restored, &["--key", arg(&key)]);
    assert_clean(&v, records + 1);
    // The restore's own record may have started a new file.
    let restored_sealed = std::fs::read_dir(restored.join("audit_trail"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".xml"))
        .count() as u64;
    assert!(restored_sealed >= sealed as u64, "{restored_sealed} sealed files restored of {sealed}");
    assert_eq!(v["authenticated"].as_u64(), Some(restored_sealed), "{v:#}");
}

// ---------------------------------------------------------------------------
// 5. Offboard copies fetched back from real servers

fn targets(sshd: &Sshd, sftp_dir: &Path, ftpd: &Ftpd, ftp_dir: &str) -> String {
    crate::upload::sftp_target("vault", sshd, sftp_dir, "timeout_secs = 10")
        + &crate::upload::ftp_target("ftpvault", ftpd, ftp_dir, "timeout_secs = 10")
}

/// OpenSSH `sftp -b`: every file of `remote_dir` into `local`.
fn sftp_get_all(sshd: &Sshd, remote_dir: &Path, local: &Path) {
    let get = format!("get {}/* {}/\n", remote_dir.display(), local.display());
    let out = crate::support::servers::sftp_batch(sshd, &sshd.known_hosts, &get);
    assert!(out.status.success(), "sftp download failed: {}\n{}", String::from_utf8_lossy(&out.stderr), sshd.log());
}

/// curl: lists `remote_dir` on the FTP server and downloads every
/// `*.xml.gz` in it into `local`.
fn ftp_get_all(ftpd: &Ftpd, remote_dir: &str, local: &Path) {
    let netrc = local.with_extension("netrc");
    std::fs::write(&netrc, format!("machine 127.0.0.1 login {} password {}\n", ftpd.user, ftpd.password)).unwrap();
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--netrc-file", arg(&netrc)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run curl (Debian package curl)");
        assert!(out.status.success(), "curl {args:?} failed: {}\n{}", String::from_utf8_lossy(&out.stderr), ftpd.log());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = format!("ftp://127.0.0.1:{}/{remote_dir}/", ftpd.port);
    let listing = curl(&["--list-only", &base]);
    let names: Vec<&str> = listing.lines().map(str::trim).filter(|n| n.ends_with(".xml.gz")).collect();
    assert!(!names.is_empty(), "nothing to download from {base}: {listing:?}");
    for name in names {
        curl(&["-o", arg(&local.join(name)), &format!("{base}{name}")]);
    }
}

/// Names and contents of the `*.xml.gz` files in a directory, by name.
fn gz_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".xml.gz"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn offboard_copies_downloaded_from_sftp_and_ftp_verify_with_the_key() {
    let sshd = Sshd::start();
    let ftpd = Ftpd::start_ftp();
    let sftp_dir = sshd.root.join("offboard/pbx01");
    let (env, key) = keyed_env(5, 0);
    let mut cfg = read(&env.config);
    cfg.push_str(&targets(&sshd, &sftp_dir, &ftpd, "offboard/pbx01"));
    std::fs::write(&env.config, cfg).unwrap();
    append(&env, 23);
    let run = env.run(&["archive"]).success();
    assert!(env.sealed_files().is_empty(), "archive compressed every sealed file: {}", run.stdout);
    let local = gz_files(&env.data.join("archive"));
    assert_eq!(local.len(), 4, "ids 1..20 in four archived files");
    env.run(&["upload"]).success();
    let local_report = verify(&env.data, &["--key", arg(&key), arg(&env.data.join("archive"))]);
    assert_clean(&local_report, 20);

    for (via, dl) in [("sftp", env.dir.path().join("from-sftp")), ("ftp", env.dir.path().join("from-ftp"))] {
        std::fs::create_dir(&dl).unwrap();
        if via == "sftp" {
            sftp_get_all(&sshd, &sftp_dir, &dl);
        } else {
            ftp_get_all(&ftpd, "offboard/pbx01", &dl);
        }
        let got = gz_files(&dl);
        assert_eq!(got, local, "{via}: the downloaded files are the local archive, byte for byte");
        let v = verify(&env.data, &["--key", arg(&key), arg(&dl)]);
        assert_clean(&v, 20);
        assert_eq!(v["records"], local_report["records"], "{via}");
        assert_eq!(v["authenticated"].as_u64(), Some(4), "{via}: {v:#}");

        // One character of record 8, in the second downloaded file.
        let file = dl.join(&got[1].0);
        let xml = String::from_utf8(gunzip(&got[1].1)).unwrap();
        std::fs::write(&file, gzip(edit_one_char(&xml, 8).as_bytes())).unwrap();
        let v = verify(&env.data, &["--key", arg(&key), arg(&dl)]);
        assert_first_problem(&v, "edited", Some(8), &file);
        assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{via}: {v:#}");
    }
}

// ---------------------------------------------------------------------------
// 6. Damage to the compressed data of archived files

/// `.gz` files made of several members (as archive writes large files) with
/// the plain text split at `cuts`.
fn gzip_members(plain: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([plain.len()].iter()) {
        out.extend(gzip(&plain[from..to]));
        from = to;
    }
    out
}

/// Every record a report names is one the file holds (`ids`), or none.
#[track_caller]
fn names_only_records_in(v: &Value, ids: std::ops::RangeInclusive<u64>) {
    for p in v["problems"].as_array().unwrap() {
        if let Some(id) = p["record"].as_u64() {
            assert!(ids.contains(&id), "names record {id}, which the file (ids {ids:?}) does not hold: {v:#}");
        }
    }
}

#[test]
fn bytes_after_the_gzip_data_are_named_as_such_apart_from_a_file_cut_short() {
    let env = plain_env(3, 7);
    env.run(&["archive"]).success();
    let archived = gz_files(&env.data.join("archive"));
    assert_eq!(archived.len(), 2, "ids 1..3 and 4..6 archived, 7 active");
    let (name, gz) = &archived[0];
    let plain = gunzip(gz);
    let dir = env.dir.path().join("offboard");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join(name);
    let check = |bytes: &[u8]| -> Value {
        std::fs::write(&file, bytes).unwrap();
        verify(&env.data, &[arg(&file)])
    };
    assert_clean(&check(gz), 3);
    // Several members read as one stream, as gzip -d reads them.
    let members = gzip_members(&plain, &[100, 101, plain.len() / 2]);
    assert_clean(&check(&members), 3);

    for (what, base) in [("one member", gz.clone()), ("four members", members)] {
        let end = base.len();
        for (tail, words) in [
            (vec![0u8], "1 byte after the end of the gzip data, from offset {end}: a zero byte (padding)"),
            (vec![0u8; 4096], "4096 bytes after the end of the gzip data, from offset {end}: all zero (padding)"),
            (b"trailing text\n".to_vec(), "14 bytes after the end of the gzip data, from offset {end}: not gzip data"),
            (vec![0x1f], "1 byte after the end of the gzip data, from offset {end}: not gzip data"),
        ] {
            let v = check(&[&base[..], &tail].concat());
            let said = assert_first_problem(&v, "trailing", None, &file);
            assert_eq!(said, words.replace("{end}", &end.to_string()), "{what}: {v:#}");
            assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{what}: the records are intact: {v:#}");
            assert_eq!(v["records"].as_u64(), Some(3), "{what}: {v:#}");
            // The text report says the same, and not that the file was cut short.
            let run = run_in(&env.data, &["verify", arg(&file)]).failure();
            assert!(run.stderr.contains(&format!("{}: trailing: ", file.display())), "{}", run.stderr);
            assert!(!run.stderr.contains("truncated") && !run.stderr.contains("record 4"), "{}", run.stderr);
        }
    }

    // Cut short inside the gzip data: truncated, naming a record the file holds.
    for cut in [gz.len() - 4, gz.len() / 2, 30] {
        let v = check(&gz[..cut]);
        assert_eq!(v["problems"][0]["kind"], "truncated", "cut at {cut}: {v:#}");
        assert!(v["problems"][0]["what"].as_str().unwrap().contains("cut short"), "{v:#}");
        names_only_records_in(&v, 1..=3);
    }
    // The second member's header destroyed: the XML ends early, and what
    // follows the first member is not gzip data.
    let members = gzip_members(&plain, &[plain.len() / 2]);
    let second = gzip(&plain[..plain.len() / 2]).len();
    let mut broken = members.clone();
    broken[second] = b'X';
    let v = check(&broken);
    let kinds: Vec<_> = problem_kinds(&v).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["truncated", "trailing"], "{v:#}");
    assert!(v["problems"][1]["what"].as_str().unwrap().contains(&format!("from offset {second}: not gzip data")));
    names_only_records_in(&v, 1..=3);

    // In the data directory itself the same words, and export refuses the file naming them.
    let in_archive = env.data.join("archive").join(name);
    std::fs::write(&in_archive, [&gz[..], &[0u8]].concat()).unwrap();
    let v = verify(&env.data, &[]);
    assert_first_problem(&v, "trailing", None, &in_archive);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v:#}");
    let run = env.run(&["export", "--all", "--format", "csv"]).failure();
    assert!(run.stderr.contains("1 byte after the end of the gzip data"), "{}", run.stderr);
}
