//! Archive, purge, backup and restore (SPEC §5, §7), through the real binary.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::harness::*;

/// JSON Lines of `n` records with `timestamp` set `days` days in the past;
/// each carries `tag` and its index in `action_data`.
fn records_at(n: usize, days: i64, tag: &str) -> Vec<u8> {
    let t = (chrono::Local::now() - chrono::Duration::days(days)).to_rfc3339();
    let mut out = Vec::new();
    for i in 0..n {
        writeln!(
            out,
            r#"{{"app_name":"System Admin Tool","action_type":"Change","timestamp":"{t}","action_data":"{tag} {i}"}}"#
        )
        .unwrap();
    }
    out
}

/// Appends at a moved clock (see `Env::cmd_at`).
fn append_at(env: &Env, offset: &str, input: &[u8]) -> (u64, u64) {
    let run = env.run_with_input_at(offset, &["append", "--json", "-"], input).success();
    let (_, a, b) = parse_batch_ack(&run.stdout).unwrap_or_else(|| panic!("no ack in {:?}", run.stdout));
    (a, b)
}

fn append(env: &Env, input: &[u8]) -> (u64, u64) {
    let run = env.run_with_input(&["append", "--json", "-"], input).success();
    let (_, a, b) = parse_batch_ack(&run.stdout).unwrap_or_else(|| panic!("no ack in {:?}", run.stdout));
    (a, b)
}

/// The id the next single `append` gets (and appends that record).
fn next_append_id(data: &Path) -> u64 {
    let run = run_in(data, &["append", "--app", "Probe", "--action", "Login"]);
    assert_eq!(run.code, Some(0), "append failed: {}", run.stderr);
    run.stdout.trim().parse().unwrap_or_else(|_| panic!("append printed {:?}", run.stdout))
}

/// The restored history is the backed-up one plus the archiver's record of
/// the restore, after the record of the ids skipped when the replaced
/// directory had handed out more (ids never go back).
#[track_caller]
fn assert_restored(after: &str, before: &str) {
    let extra = after.strip_prefix(before).unwrap_or_else(|| panic!("restored history differs:\n{after}"));
    let lines: Vec<&str> = extra.lines().collect();
    assert!(lines.last().is_some_and(|l| l.contains("\"Restore\"") && l.contains("audit-trail")), "{extra}");
    match lines.len() {
        1 => {}
        2 => assert!(lines[0].contains("were handed out by the data directory this restore replaced"), "{extra}"),
        _ => panic!("unexpected records after the restore:\n{extra}"),
    }
}

fn export_all(data: &Path) -> String {
    let run = run_in(data, &["export", "--all", "--format", "json"]);
    assert_eq!(run.code, Some(0), "export failed: {}", run.stderr);
    run.stdout
}

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    v.retain(|p| p.file_name().unwrap().to_string_lossy().ends_with(suffix));
    v.sort();
    v
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

fn manifest(data: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(data.join("archive/manifest.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad manifest line {l}: {e}"))).collect()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A reader that decodes one gzip member only (CPython's `zlib` with
/// `wbits=31`, as zlib's `inflate`, Java's `Inflater` or a browser's
/// `DecompressionStream` do) gets the whole archived file, and nothing is left
/// over: the archive is one member, however many slices were compressed at once.
#[test]
fn a_multi_megabyte_archive_is_read_whole_by_a_single_stream_reader() {
    let env = Env::with_capacity(3000);
    let mut input = Vec::new();
    for i in 0..3000 {
        let data = format!("Extension {}: COS 1 -> 2; {}", 2000 + i, "call forwarding profile updated ".repeat(10));
        input.extend(
            serde_json::to_vec(
                &serde_json::json!({"app_name": "System Admin Tool", "action_type": "Change", "user_name": format!("op{i}"), "action_data": data}),
            )
            .unwrap(),
        );
        input.push(b'\n');
    }
    append(&env, &input);
    env.run(&["rotate"]).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 1);
    let original = std::fs::read(&sealed[0]).unwrap();
    assert!(original.len() > 3 << 19, "the file spans several 512 KiB slices: {} bytes", original.len());
    env.run(&["archive"]).success();
    let gz = files_in(&env.data.join("archive"), ".xml.gz");
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zlib, hashlib\n\
             data = open(sys.argv[1], 'rb').read()\n\
             d = zlib.decompressobj(wbits=31)\n\
             out = d.decompress(data) + d.flush()\n\
             print(len(out), hashlib.sha256(out).hexdigest(), d.eof, len(d.unused_data))",
        )
        .arg(&gz[0])
        .output()
        .expect("python3 is required by the tests");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = format!("{} {} True 0", original.len(), sha256_hex(&original));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "length, SHA-256, end of stream, bytes after it");
    let t = Command::new("gzip").arg("-t").args(&gz).status().expect("gzip");
    assert!(t.success(), "gzip -t");
}

#[test]
fn archive_round_trip() {
    let env = Env::with_capacity(10);
    append(&env, &json_records(35));
    env.run(&["rotate"]).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 4);
    let originals: BTreeMap<String, Vec<u8>> =
        sealed.iter().map(|p| (names(std::slice::from_ref(p))[0].clone(), std::fs::read(p).unwrap())).collect();
    let before = export_all(&env.data);
    let active_before = env.active_files();

    let run = env.run(&["archive"]).success();
    assert!(run.stdout.starts_with("archived 4 file(s)"), "{}", run.stdout);
    assert!(env.sealed_files().is_empty(), "plain files must be gone");
    assert!(env.sealed_dir().join("audit-trail.xsl").exists(), "the stylesheet stays");
    assert_eq!(env.active_files(), active_before, "the active file is not touched");
    let gz = files_in(&env.data.join("archive"), ".xml.gz");
    assert_eq!(gz.len(), 4);
    for p in &gz {
        let plain_name = names(std::slice::from_ref(p))[0].trim_end_matches(".gz").to_owned();
        assert_eq!(gunzip(p), originals[&plain_name], "{} must hold the plain file exactly", p.display());
    }
    // `gzip -t` agrees that the files are valid gzip.
    let t = Command::new("gzip").arg("-t").args(&gz).status().expect("gzip");
    assert!(t.success());

    let m = manifest(&env.data);
    assert_eq!(m.len(), 4);
    let exported: Vec<Value> = before.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, (e, p)) in m.iter().zip(&gz).enumerate() {
        let name = names(std::slice::from_ref(p))[0].clone();
        assert_eq!(e["file"], name.as_str());
        let (first, last) = (i as u64 * 10 + 1, (i as u64 * 10 + 10).min(35));
        assert_eq!((e["first_id"].as_u64(), e["last_id"].as_u64()), (Some(first), Some(last)), "{e}");
        assert_eq!(e["records"].as_u64(), Some(last - first + 1));
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(e["size"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(e["sha256"].as_str(), Some(sha256_hex(&bytes).as_str()));
        assert_eq!(e["plain_size"].as_u64(), Some(originals[name.trim_end_matches(".gz")].len() as u64));
        assert_eq!(e["first_time"], exported[first as usize - 1]["timestamp"]);
        assert_eq!(e["last_time"], exported[last as usize - 1]["timestamp"]);
        assert!(e["archived"].as_str().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()), "{e}");
    }

    assert_eq!(export_all(&env.data), before, "export --all reads the archive the same");
    env.run(&["verify"]).success();
    let manifest_before = std::fs::read(env.data.join("archive/manifest.jsonl")).unwrap();
    let again = env.run(&["archive"]).success();
    assert_eq!(again.stdout.trim(), "nothing to archive");
    assert_eq!(std::fs::read(env.data.join("archive/manifest.jsonl")).unwrap(), manifest_before);
}

#[test]
fn interrupted_archive_is_finished_by_the_next_run() {
    let env = Env::with_capacity(5);
    append(&env, &json_records(20));
    env.run(&["rotate"]).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 4);
    let before = export_all(&env.data);
    let archive = env.data.join("archive");
    std::fs::create_dir_all(&archive).unwrap();

    // A crash after the rename of B's .gz, before its manifest line: plain and gz both there.
    let b = &sealed[1];
    let b_gz = archive.join(format!("{}.gz", names(std::slice::from_ref(b))[0]));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&std::fs::read(b).unwrap()).unwrap();
    std::fs::write(&b_gz, enc.finish().unwrap()).unwrap();
    // A crash while C was being compressed: a torn partial file.
    let c_partial = archive.join(format!(".{}.gz.partial", names(std::slice::from_ref(&sealed[2]))[0]));
    std::fs::write(&c_partial, b"\x1f\x8b\x08 torn").unwrap();

    let run = env.run(&["archive"]).success();
    assert!(run.stdout.contains("archived 3 file(s)"), "{}", run.stdout);
    assert!(run.stdout.contains("finished 1 interrupted"), "{}", run.stdout);
    assert!(run.stderr.contains("removed ."), "the partial file is reported: {}", run.stderr);
    assert!(!c_partial.exists());
    assert!(env.sealed_files().is_empty());

    // A crash after the manifest line, before the plain file was removed.
    let a_name = names(std::slice::from_ref(&sealed[0]))[0].clone();
    let a_plain = env.sealed_dir().join(&a_name);
    std::fs::write(&a_plain, gunzip(&archive.join(format!("{a_name}.gz")))).unwrap();
    env.run(&["archive"]).success();
    assert!(!a_plain.exists());

    let m = manifest(&env.data);
    let mut files: Vec<&str> = m.iter().map(|e| e["file"].as_str().unwrap()).collect();
    files.sort();
    files.dedup();
    assert_eq!((m.len(), files.len()), (4, 4), "one manifest line per file: {m:?}");
    let b_entry = m.iter().find(|e| e["file"] == names(std::slice::from_ref(&b_gz))[0].as_str()).unwrap();
    assert_eq!((b_entry["first_id"].as_u64(), b_entry["last_id"].as_u64()), (Some(6), Some(10)));
    env.run(&["verify"]).success();
    assert_eq!(export_all(&env.data), before);

    // A .gz that does not match its plain twin is refused, and nothing changes.
    let d_name = names(std::slice::from_ref(&sealed[3]))[0].clone();
    let d_gz = archive.join(format!("{d_name}.gz"));
    let d_plain = env.sealed_dir().join(&d_name);
    std::fs::write(&d_plain, gunzip(&archive.join(format!("{a_name}.gz")))).unwrap();
    let run = env.run(&["archive"]).failure();
    assert!(run.stderr.contains("does not hold the content"), "{}", run.stderr);
    assert!(d_plain.exists() && d_gz.exists());
}

#[test]
fn a_damaged_sealed_file_is_left_in_place_and_every_other_one_is_archived() {
    let env = Env::with_capacity(5);
    append(&env, &json_records(40));
    env.run(&["rotate"]).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 8);
    let archive = env.data.join("archive");
    // The third file cut short (no seal), and a .gz beside the sixth that holds something else.
    let cut = &sealed[2];
    let bytes = std::fs::read(cut).unwrap();
    std::fs::write(cut, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::create_dir_all(&archive).unwrap();
    let sixth = names(std::slice::from_ref(&sealed[5]))[0].clone();
    std::fs::write(archive.join(format!("{sixth}.gz")), b"\x1f\x8b\x08 not this file").unwrap();
    // A FIFO under a sealed file's name (opening it would wait forever) and a dangling link.
    let fifo = env.sealed_dir().join("pbx01_20000101000000.xml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let link = env.sealed_dir().join("pbx01_20000101000001.xml");
    std::os::unix::fs::symlink("/nonexistent", &link).unwrap();
    // A bulk append's spool file in state/tmp is not a leftover of an interrupted archive.
    std::fs::create_dir_all(env.data.join("state/tmp")).unwrap();
    let spool = env.data.join("state/tmp/.append-input.0123456789abcdef.tmp");
    std::fs::write(&spool, b"{}\n").unwrap();
    for round in 0..2 {
        let run = env.run(&["archive"]);
        assert_eq!(run.code, Some(3), "round {round}: {} {}", run.stdout, run.stderr);
        assert!(run.stderr.contains("4 file(s) left in place, damaged"), "{}", run.stderr);
        assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
        assert!(run.stderr.contains(&names(std::slice::from_ref(cut))[0]), "{}", run.stderr);
        assert!(run.stderr.contains(&sixth) && run.stderr.contains("does not hold the content"), "{}", run.stderr);
        let left: Vec<PathBuf> = env.sealed_files().into_iter().filter(|p| *p != fifo && *p != link).collect();
        assert_eq!(left, vec![cut.clone(), sealed[5].clone()], "round {round}");
        assert_eq!(manifest(&env.data).len(), 6, "round {round}: the six others are archived once");
        assert_eq!(files_in(&env.data.join("state/tmp"), ""), vec![spool.clone()], "only the append's spool is left");
    }
}

#[test]
fn purge_removes_old_files_and_ids_continue() {
    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 5\nretention_days = 30\n");
    // Sealed and archived 60 days ago by the archiver's clock.
    append_at(&env, "-60d", &records_at(10, 60, "old"));
    env.run_at("-60d", &["rotate"]).success();
    env.run_at("-60d", &["archive"]).success(); // archived only: the manifest's archive time is used
    let (a, b) = append(&env, &records_at(3, 1, "recent"));
    assert_eq!((a, b), (11, 13));
    env.run(&["rotate"]).success();
    append(&env, &records_at(2, 0, "active"));
    let recent_sealed = env.sealed_files();
    assert_eq!(recent_sealed.len(), 1);
    let active = env.active_files();

    let run = env.run(&["purge"]).success();
    assert!(run.stdout.contains("removed 2 file(s)"), "{}", run.stdout);
    assert!(files_in(&env.data.join("archive"), ".xml.gz").is_empty());
    assert!(manifest(&env.data).is_empty(), "entries of purged files are dropped");
    assert_eq!(env.sealed_files(), recent_sealed, "recent sealed file kept");
    assert_eq!(env.active_files(), active, "active file kept");
    let records: Vec<Value> = export_all(&env.data).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    // 11..15 kept; 16 is the archiver's own record of the purge, naming what went.
    assert_eq!(ids, (11..=16).collect::<Vec<_>>());
    let purge = &records[5];
    assert_eq!((purge["app_name"].as_str(), purge["action_type"].as_str()), (Some("audit-trail"), Some("Delete")));
    assert!(purge["action_data"].as_str().unwrap().contains("removed 2 file(s)"), "{purge}");
    assert_eq!(next_append_id(&env.data), 17);
    env.run(&["verify"]).success();
    assert!(env.run(&["purge"]).success().stdout.contains("removed 0 file(s)"));

    // Everything sealed is old: all of it goes, and the ids still continue.
    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 4\nretention_days = 30\n");
    append_at(&env, "-60d", &records_at(9, 60, "old"));
    env.run_at("-60d", &["rotate"]).success();
    env.run(&["purge"]).success();
    assert!(env.sealed_files().is_empty());
    // Id 10 is the record of the purge; ids are never reused.
    assert_eq!(next_append_id(&env.data), 11);
}

/// Retention acts on what the files say, never on the manifest alone: a
/// fresh archived file the manifest was edited to call old stays, and so
/// does an old one whose records were edited.
#[test]
fn purge_does_not_act_on_an_edited_manifest_or_file() {
    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 5\nretention_days = 30\n");
    append(&env, &records_at(10, 0, "fresh"));
    env.run(&["rotate"]).success();
    env.run(&["archive"]).success();
    let gz = files_in(&env.data.join("archive"), ".xml.gz");
    assert_eq!(gz.len(), 2);
    let path = env.data.join("archive/manifest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines[0]["sealed"] = Value::String("2020-01-01T00:00:00.000+00:00".into());
    let edited: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, edited).unwrap();
    let run = env.run(&["purge"]).success();
    assert!(run.stdout.contains("removed 0 file(s)"), "{}", run.stdout);
    let name = names(&gz[..1])[0].clone();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains(&name) && all.contains("by its own seal element") && all.contains("left in place"), "{all}");
    assert_eq!(files_in(&env.data.join("archive"), ".xml.gz"), gz);

    // A seal that only looks like one (inside a comment after the root) does
    // not make a fresh file old.
    let env2 = Env::with_config("host_name = \"pbx01\"\ncapacity = 5\nretention_days = 30\n");
    append(&env2, &records_at(10, 0, "fresh"));
    env2.run(&["rotate"]).success();
    let sealed = env2.sealed_files();
    let mut text = std::fs::read_to_string(&sealed[0]).unwrap();
    text.push_str(
        "<!-- <Seal first-id=\"1\" last-id=\"5\" records=\"5\" sealed=\"2000-01-01T00:00:00.000+00:00\"/> -->\n",
    );
    std::fs::write(&sealed[0], text).unwrap();
    env2.run(&["verify"]).success();
    let run = env2.run(&["purge"]).success();
    assert!(run.stdout.contains("removed 0 file(s)"), "{}{}", run.stdout, run.stderr);
    assert_eq!(env2.sealed_files(), sealed);

    // An old seal rewritten with a matching chain-end: the next file's
    // chain-start no longer agrees, and the file stays.
    let env3 = Env::with_config("host_name = \"pbx01\"\ncapacity = 5\nretention_days = 30\n");
    append(&env3, &records_at(10, 0, "fresh"));
    env3.run(&["rotate"]).success();
    let sealed = env3.sealed_files();
    let text = std::fs::read_to_string(&sealed[0]).unwrap();
    let at = text.rfind("<Seal ").unwrap();
    let seal_time = text[at..].split("sealed=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let first_chain = |t: &str| t.split("<Chain>").last().unwrap().split('<').next().unwrap().to_owned();
    let last_value = first_chain(&text[..at]);
    let old = "2000-01-01T00:00:00.000+00:00";
    let end = audit_trail_seal_value(1, 5, 5, old, &last_value);
    let old_end = text[at..].split("chain-end=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let forged = format!("{}{}", &text[..at], text[at..].replacen(&seal_time, old, 1).replacen(&old_end, &end, 1));
    std::fs::write(&sealed[0], forged).unwrap();
    let run = env3.run(&["purge"]).success();
    assert!(run.stdout.contains("removed 0 file(s)"), "{}{}", run.stdout, run.stderr);
    assert!(format!("{}{}", run.stdout, run.stderr).contains("does not verify (foreign"), "{}", run.stderr);
    assert_eq!(env3.sealed_files(), sealed);

    // Old by its own seal, but its records were edited: it stays too.
    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 5\nretention_days = 30\n");
    append_at(&env, "-60d", &records_at(5, 60, "old"));
    env.run_at("-60d", &["rotate"]).success();
    let sealed = env.sealed_files();
    let text = std::fs::read_to_string(&sealed[0]).unwrap();
    std::fs::write(&sealed[0], text.replacen("old", "odd", 1)).unwrap();
    let run = env.run(&["purge"]).success();
    assert!(run.stdout.contains("removed 0 file(s)"), "{}", run.stdout);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("does not verify (edited"), "{all}");
    assert_eq!(env.sealed_files(), sealed);
}

/// The seal's `chain-end` of format 3 (docs/tamper-evidence.md), from the
/// last record's chain value in hex: what someone rewriting a seal computes.
fn audit_trail_seal_value(first: u64, last: u64, records: u64, sealed: &str, last_hex: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"audit-trail seal v3\0");
    for n in [first, last, records] {
        h.update(n.to_be_bytes());
    }
    h.update((sealed.len() as u32).to_be_bytes());
    h.update(sealed.as_bytes());
    h.update(hex::decode(last_hex).unwrap());
    hex::encode(h.finalize())
}

#[test]
fn purge_keeps_files_pending_upload_and_retention_off() {
    let env = Env::with_config(
        "host_name = \"pbx01\"\ncapacity = 5\nretention_days = 30\n[targets.x]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nuser = \"audit\"\nkey_file = \"/etc/audit-trail/id\"\nenabled = true\n[targets.off]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nuser = \"audit\"\npassword_env = \"FTP_PW\"\nenabled = false\n",
    );
    append_at(&env, "-60d", &records_at(10, 60, "old"));
    env.run_at("-60d", &["rotate"]).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 2);
    let run = env.run(&["purge"]).success();
    for name in names(&sealed) {
        assert!(run.stdout.contains(&format!("kept audit_trail/{name}: waiting for upload to x")), "{}", run.stdout);
    }
    assert!(!run.stdout.contains("off"), "a disabled target is not waited for: {}", run.stdout);
    assert_eq!(env.sealed_files(), sealed);

    // Once the ledger says the first reached x (as .gz), it can go.
    let first = names(&sealed)[0].clone();
    let uploads = env.data.join("state/uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    std::fs::write(uploads.join("x.ledger"), format!("{first}.gz\t123\tabc\t2026-01-01T00:00:00.000+01:00\n")).unwrap();
    let run = env.run(&["purge"]).success();
    assert!(run.stdout.contains(&format!("removed audit_trail/{first}")), "{}", run.stdout);
    assert_eq!(env.sealed_files(), sealed[1..]);

    let off = Env::with_config("host_name = \"pbx01\"\ncapacity = 5\n");
    append(&off, &records_at(10, 60, "old"));
    off.run(&["rotate"]).success();
    let run = off.run(&["purge"]).success();
    assert_eq!(run.stdout.trim(), "retention is off (retention_days = 0); nothing removed");
    assert_eq!(off.sealed_files().len(), 2);
}

/// Entry names of a bundle.
fn bundle_entries(bundle: &Path) -> Vec<String> {
    let f = std::fs::File::open(bundle).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn backup_restore_round_trip_and_refusals() {
    let env = Env::with_capacity(5);
    append(&env, &json_records(12));
    env.run(&["rotate"]).success();
    env.run(&["archive"]).success();
    append(&env, &json_records(8)); // one sealed plain file (ids 13..17) and three in the active file
    let schedules = env.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("nightly.toml"), "cron = \"0 30 1 * * *\"\njob = \"purge\"\nenabled = true\n")
        .unwrap();
    let before = export_all(&env.data);
    let out = env.dir.path().join("bundles");
    let sched = schedules.to_str().unwrap();
    let run = env.run(&["--schedules", sched, "backup", "--out", out.to_str().unwrap()]).success();
    let bundles = files_in(&out, ".backup.tar.gz");
    assert_eq!(bundles.len(), 1, "{}", run.stdout);
    let bundle = &bundles[0];
    assert!(names(&bundles)[0].starts_with("pbx01_"), "{bundles:?}");
    assert!(files_in(&out, ".partial").is_empty());

    let entries = bundle_entries(bundle);
    for want in ["audit-trail.toml", "schedules/nightly.toml", "archive/manifest.jsonl"] {
        assert!(entries.iter().any(|e| e == want), "{want} missing from {entries:?}");
    }
    assert_eq!(entries.iter().filter(|e| e.starts_with("archive/") && e.ends_with(".xml.gz")).count(), 3);
    assert_eq!(entries.iter().filter(|e| e.starts_with("audit_trail/") && e.ends_with(".xml")).count(), 1);
    assert_eq!(entries.iter().filter(|e| e.starts_with("state/active/")).count(), 1);
    assert!(entries.iter().all(|e| !e.starts_with('/') && !e.contains("..")), "{entries:?}");

    // Restore into a new, empty directory.
    let restored = env.dir.path().join("restored");
    let run = run_in(&restored, &["restore", bundle.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "restore failed: {}", run.stderr);
    assert!(run.stdout.contains("verify OK"), "{}", run.stdout);
    assert!(run.stdout.contains("next id 21"), "{}", run.stdout);
    assert!(run.stdout.contains("recorded the restore as id 21"), "{}", run.stdout);
    assert_eq!(run_in(&restored, &["verify"]).code, Some(0));
    assert_restored(&export_all(&restored), &before);
    assert!(restored.join("schedules/nightly.toml").exists());
    // The bundle's configuration is set beside for review, never put in effect.
    assert!(!restored.join("audit-trail.toml").exists());
    assert_eq!(std::fs::read(restored.join("audit-trail.toml.restored")).unwrap(), std::fs::read(&env.config).unwrap());
    assert_eq!(next_append_id(&restored), 22);
    assert_eq!(next_append_id(&env.data), 21, "the original goes on independently");

    // A data directory that is not empty is refused without --force, and left as it was.
    let state_before = export_all(&restored);
    let run = run_in(&restored, &["restore", bundle.to_str().unwrap()]);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("not empty") && run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(export_all(&restored), state_before);
    let run = run_in(&restored, &["restore", "--force", bundle.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("replaced the previous contents"), "{}", run.stdout);
    assert!(run.stdout.contains("records up to id 22"), "says what it replaced: {}", run.stdout);
    assert_restored(&export_all(&restored), &before);
    // Ids 21..22 of the replaced directory are never handed out again: the
    // gap is recorded as 23, the restore as 24.
    assert_eq!(next_append_id(&restored), 25);
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary directories left behind: {leftovers:?}");
}

/// A tar.gz with raw entry names, as a hostile tool could write it.
fn hostile_bundle(path: &Path) {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut add = |name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                g.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_cksum();
        b.append(&h, body).unwrap();
    };
    add(b"audit-trail.toml", tar::EntryType::Regular, None, b"host_name = \"x\"\n");
    add(b"../evil", tar::EntryType::Regular, None, b"evil");
    add(b"/tmp/audit-trail-abs-evil", tar::EntryType::Regular, None, b"evil");
    add(b"state/link", tar::EntryType::Symlink, Some(b"../../../etc/passwd"), b"");
    let gz = b.into_inner().unwrap().finish().unwrap();
    std::fs::write(path, gz).unwrap();
}

#[test]
fn hostile_bundle_is_refused_and_writes_nothing() {
    let env = Env::new();
    let bundle = env.dir.path().join("hostile.backup.tar.gz");
    hostile_bundle(&bundle);
    let target = env.dir.path().join("sub/restored");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file("/tmp/audit-trail-abs-evil");
    let run = run_in(&target, &["restore", bundle.to_str().unwrap()]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    for what in ["\"../evil\"", "\"/tmp/audit-trail-abs-evil\" is an absolute path", "\"state/link\" is a link"] {
        assert!(run.stderr.contains(what), "{what} not named in: {}", run.stderr);
    }
    assert!(!target.exists());
    assert!(!env.dir.path().join("sub/evil").exists() && !env.dir.path().join("evil").exists());
    assert!(!Path::new("/tmp/audit-trail-abs-evil").exists());
    assert_eq!(std::fs::read_dir(env.dir.path().join("sub")).unwrap().count(), 0, "nothing written");
}

#[test]
fn backups_keep_only_the_newest() {
    let env = Env::with_config("host_name = \"pbx01\"\nkeep_backups = 2\n");
    append(&env, &json_records(3));
    for _ in 0..3 {
        env.run(&["backup"]).success();
    }
    let dir = env.data.join("backups");
    let all = files_in(&dir, ".backup.tar.gz");
    assert_eq!(all.len(), 2, "{all:?}");
    let run = env.run(&["backup", "--keep", "1"]).success();
    assert!(run.stdout.contains("removed older bundle"), "{}", run.stdout);
    let left = files_in(&dir, ".backup.tar.gz");
    assert_eq!(left.len(), 1);
    assert!(names(&left)[0] > names(&all)[1], "the newest is kept: {left:?} after {all:?}");
    let run = env.run(&["backup", "--keep", "0"]).failure();
    assert!(run.stderr.contains("at least 1"), "{}", run.stderr);
    assert_eq!(files_in(&dir, ".backup.tar.gz"), left, "a refused backup changes nothing");
}
