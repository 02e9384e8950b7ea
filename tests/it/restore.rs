//! Restore and the data directory against hostile files (issue 15 §5):
//! bundles outside the documented layout, a bundle's configuration, symbolic
//! links planted in the data directory, a restore killed at any step, a
//! symlinked data directory, permissions under any umask, and backups of
//! more files than the open-file limit.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::*;

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Appends `n` records (one batch).
fn append_n(data: &Path, n: usize, tag: &str) {
    let mut input = Vec::new();
    for i in 0..n {
        input.extend_from_slice(
            format!("{{\"app_name\":\"A\",\"action_type\":\"B\",\"user_name\":\"{tag}{i}\"}}\n").as_bytes(),
        );
    }
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(["append", "--json", "-"])
        .env_remove("AUDIT_TRAIL_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "append failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The ids `export --all` lists, in order.
fn ids(data: &Path) -> Vec<u64> {
    let run = run_in(data, &["export", "--all", "--format", "json"]).success();
    run.stdout
        .lines()
        .map(|l| l.strip_prefix("{\"id\":").and_then(|r| r.split([',', '}']).next()?.parse().ok()).unwrap())
        .collect()
}

/// Writes a backup of `data` into `out` and returns the bundle.
fn backup(data: &Path, out: &Path) -> PathBuf {
    run_in(data, &["backup", "--out", arg(out), "--keep", "100"]).success();
    let mut v: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".backup.tar.gz"))
        .collect();
    v.sort();
    v.pop().expect("a bundle")
}

/// Entries of a bundle: (path, type, body).
fn read_bundle(bundle: &Path) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(bundle).unwrap()));
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type(), body)
        })
        .collect()
}

fn write_bundle(path: &Path, entries: &[(String, tar::EntryType, Vec<u8>)]) {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, kind, body) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_size(body.len() as u64);
        b.append_data(&mut h, name, body.as_slice()).unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap().finish().unwrap()).unwrap();
}

/// Names in a directory (empty when it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn leftovers(parent: &Path) -> Vec<String> {
    listing(parent).into_iter().filter(|n| n.contains(".restore-") || n.contains(".replaced-")).collect()
}

/// Every kind of entry outside the documented layout refuses the whole
/// bundle, naming the entry, and writes nothing (a new directory is not
/// created, an existing one is left exactly as it was, even with --force).
#[test]
fn entries_outside_the_layout_refuse_the_bundle() {
    let env = Env::with_capacity(3);
    append_n(&env.data, 7, "u");
    let good = backup(&env.data, &env.dir.path().join("b"));
    let base = read_bundle(&good);
    let active = base.iter().find(|e| e.0.starts_with("state/active/")).unwrap().0.clone();
    let sealed = base.iter().find(|e| e.0.starts_with("audit_trail/") && e.0.ends_with(".xml")).unwrap().0.clone();
    let stem = sealed.trim_start_matches("audit_trail/").trim_end_matches(".xml").to_owned();
    use tar::EntryType::{Char, Directory as D, Fifo, Regular as F};
    let hostile: Vec<(String, tar::EntryType, &str)> = vec![
        ("state/serve.lock".into(), F, "not part of"),
        ("state/config.seen".into(), F, "not part of"),
        ("state/lock".into(), F, "not part of"),
        ("state/maintenance.lock".into(), F, "not part of"),
        ("state/jobs/history.jsonl".into(), F, "not part of"),
        ("state/siem.json".into(), F, "not part of"),
        ("state/tmp/x".into(), F, "not part of"),
        ("audit_trail/evil.sh".into(), F, "not part of"),
        (format!("audit_trail/.{stem}.xml"), F, "not part of"),
        ("audit_trail/x_2026.xml".into(), F, "not part of"),
        (format!("archive/{stem}.xml"), F, "not part of"),
        (format!("state/active/{stem}.xml"), F, "not part of"),
        ("state/uploads/../x.ledger".into(), F, "leaves the data directory"),
        ("backups/x.backup.tar.gz".into(), F, "not part of"),
        ("ingest.sock".into(), F, "not part of"),
        ("evil.sh".into(), F, "not part of"),
        ("state/active/zz.xml.open".into(), D, "directory where a file belongs"),
        (format!("state/active/{stem}9.xml.open"), D, "directory where a file belongs"),
        (format!("audit_trail/{stem}.xml.d"), D, "not part of"),
        ("archive/manifest.jsonl".into(), D, "directory where a file belongs"),
        ("audit-trail.toml".into(), D, "directory where a file belongs"),
        ("state/jobs".into(), D, "not part of"),
        ("state/uploads".into(), F, "file where a directory belongs"),
        ("schedules/x.toml".into(), Fifo, "not a regular file"),
        ("schedules/y.toml".into(), Char, "not a regular file"),
        (active.clone(), F, "twice in the bundle"),
    ];
    let existing = env.dir.path().join("existing");
    append_n(&existing, 2, "keep");
    let existing_before = ids(&existing);
    let existing_files = listing(&existing.join("state/active"));
    for (i, (name, kind, why)) in hostile.iter().enumerate() {
        let mut entries = base.clone();
        let body = if *kind == F && name == &active {
            base.iter().find(|e| &e.0 == name).unwrap().2.clone()
        } else {
            b"x\n".to_vec()
        };
        entries.push((
            name.clone(),
            *kind,
            if kind.is_dir() || *kind == Fifo || *kind == Char { Vec::new() } else { body },
        ));
        let bundle = env.dir.path().join(format!("hostile{i}.backup.tar.gz"));
        if name.contains("..") {
            // tar refuses to write `..`; a raw header does.
            let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
            for (n, k, body) in &base {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(*k);
                h.set_size(body.len() as u64);
                b.append_data(&mut h, n, body.as_slice()).unwrap();
            }
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(F);
            h.set_size(2);
            h.set_cksum();
            b.append(&h, &b"x\n"[..]).unwrap();
            std::fs::write(&bundle, b.into_inner().unwrap().finish().unwrap()).unwrap();
        } else {
            write_bundle(&bundle, &entries);
        }
        let parent = env.dir.path().join(format!("new{i}"));
        std::fs::create_dir_all(&parent).unwrap();
        let target = parent.join("data");
        let run = run_in(&target, &["restore", arg(&bundle)]).failure();
        let shown = name.trim_end_matches('/');
        assert!(
            run.stderr.contains(&format!("\"{shown}")) && run.stderr.contains(why),
            "{name} ({kind:?}): expected {why:?} naming it, got: {}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
        assert!(listing(&parent).is_empty(), "{name}: something was written: {:?}", listing(&parent));

        let run = run_in(&existing, &["restore", "--force", arg(&bundle)]).failure();
        assert!(run.stderr.contains(why), "{}", run.stderr);
        assert_eq!(ids(&existing), existing_before, "{name}: the existing data directory changed");
        assert_eq!(listing(&existing.join("state/active")), existing_files);
        assert!(leftovers(env.dir.path()).is_empty());
    }
    // The untouched bundle restores, and the restored log takes appends.
    let target = env.dir.path().join("good");
    run_in(&target, &["restore", arg(&good)]).success();
    run_in(&target, &["append", "--app", "A", "--action", "B"]).success();
    assert_eq!(ids(&target), (1..=9).collect::<Vec<_>>());
}

/// A bundle's configuration never becomes the configuration in effect: it is
/// set beside (0600) and restore says so; with --force the configuration in
/// effect is kept. The next serve binds its socket inside the data
/// directory, and the file the bundle's configuration pointed at survives.
#[test]
fn a_bundles_configuration_is_never_put_in_effect() {
    let env = Env::new();
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let hostile_cfg = format!("ingest_socket = \"{}\"\nsocket_mode = \"0777\"\n", victim.display());
    std::fs::write(&env.config, &hostile_cfg).unwrap();
    append_n(&env.data, 3, "u");
    let bundle = backup(&env.data, &env.dir.path().join("b"));

    let target = env.dir.path().join("restored");
    let run = run_in(&target, &["restore", arg(&bundle)]).success();
    assert!(run.stdout.contains("audit-trail.toml.restored") && run.stdout.contains("NOT in effect"), "{}", run.stdout);
    assert!(!target.join("audit-trail.toml").exists());
    let restored_cfg = target.join("audit-trail.toml.restored");
    assert_eq!(std::fs::read_to_string(&restored_cfg).unwrap(), hostile_cfg);
    assert_eq!(std::fs::metadata(&restored_cfg).unwrap().mode() & 0o777, 0o600);

    let r = Env { dir: tempfile::tempdir().unwrap(), data: target.clone(), config: target.join("audit-trail.toml") };
    let server = r.serve(&env.no_schedules());
    assert!(server.stderr().contains(&format!("on {}", target.join("ingest.sock").display())), "{}", server.stderr());
    server.stop();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

    // --force keeps the configuration in effect of the replaced directory.
    let own = "host_name = \"pbx02\"\n";
    std::fs::write(target.join("audit-trail.toml"), own).unwrap();
    let run = run_in(&target, &["restore", "--force", arg(&bundle)]).success();
    assert!(run.stdout.contains("kept the configuration in effect"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(target.join("audit-trail.toml")).unwrap(), own);
    assert_eq!(std::fs::read_to_string(&restored_cfg).unwrap(), hostile_cfg);
}

/// serve never replaces a path that is not a socket (file, directory, link),
/// and at stop removes only the socket it created.
#[test]
fn serve_replaces_only_its_own_sockets() {
    let env = Env::new();
    append_n(&env.data, 1, "u");
    let victim = env.dir.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let dir_victim = env.dir.path().join("victim-dir");
    std::fs::create_dir_all(&dir_victim).unwrap();
    let link = env.dir.path().join("link.sock");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for path in [&victim, &dir_victim, &link] {
        std::fs::write(&env.config, format!("host_name = \"pbx01\"\ningest_socket = \"{}\"\n", path.display()))
            .unwrap();
        let err = env.try_serve(&env.no_schedules()).err().expect("serve must refuse");
        assert!(err.contains("is not a socket"), "{}: {err}", path.display());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(dir_victim.is_dir());
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }
    // The control socket too.
    std::fs::write(&env.config, "host_name = \"pbx01\"\n").unwrap();
    let control = env.data.join("state/control.sock");
    std::fs::write(&control, "not a socket\n").unwrap();
    let err = env.try_serve(&env.no_schedules()).err().expect("serve must refuse");
    assert!(err.contains("control.sock exists and is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&control).unwrap(), "not a socket\n");
    assert!(!env.data.join("ingest.sock").exists(), "the ingest socket bound before is removed");
    std::fs::remove_file(&control).unwrap();

    // A stale socket is replaced; a file put in the socket's place while it
    // runs is left alone at stop.
    let stale = std::os::unix::net::UnixListener::bind(env.data.join("ingest.sock")).unwrap();
    drop(stale);
    let server = env.serve(&env.no_schedules());
    let sock = env.data.join("ingest.sock");
    let swapped = env.data.join("swapped");
    std::fs::write(&swapped, "operator file\n").unwrap();
    std::fs::rename(&swapped, &sock).unwrap();
    server.stop();
    assert!(!control.exists(), "its own control socket is removed");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "operator file\n");
}

/// A data directory that is a symbolic link stays one: the directory it
/// points to holds the restored history and nothing of the replaced one.
#[test]
fn a_symlinked_data_directory_stays_a_link() {
    let env = Env::new();
    let volume = env.dir.path().join("volume/audit");
    std::fs::create_dir_all(&volume).unwrap();
    let link = env.dir.path().join("audit-data");
    std::os::unix::fs::symlink(&volume, &link).unwrap();
    append_n(&link, 3, "before");
    run_in(&link, &["rotate"]).success();
    let bundle = backup(&link, &env.dir.path().join("b"));
    append_n(&link, 2, "after-backup");
    let run = run_in(&link, &["restore", "--force", arg(&bundle)]).success();
    assert!(run.stdout.contains("replaced the previous contents"), "{}", run.stdout);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), volume);
    // Ids 4..5 of the replaced directory stay used: the gap is record 6, the restore 7.
    assert_eq!(ids(&link), vec![1, 2, 3, 6, 7], "the bundle's records, the recorded gap and the restore's own");
    let all = run_in(&link, &["export", "--all", "--format", "json"]).success().stdout;
    assert!(!all.contains("after-backup"), "records of the replaced directory remain: {all}");
    assert!(leftovers(volume.parent().unwrap()).is_empty(), "{:?}", listing(volume.parent().unwrap()));
    assert!(leftovers(env.dir.path()).is_empty());
    // The bundles of the replaced directory's backups/ are kept.
    run_in(&link, &["backup"]).success();
    let run = run_in(&link, &["restore", "--force", arg(&bundle)]).success();
    assert!(run.stdout.contains("kept the 1 bundle(s)"), "{}", run.stdout);
    assert_eq!(listing(&volume.join("backups")).len(), 1);
}

fn has_strace() -> bool {
    Command::new("strace").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// After a restore was killed: the path holds a complete data directory,
/// either the previous one (`old`) or the restored one (`new`, possibly
/// with the restore's own record).
#[track_caller]
fn assert_complete(data: &Path, old: &[u64], new: &[u64], what: &str) {
    assert!(std::fs::symlink_metadata(data).is_ok_and(|m| m.is_dir()), "{what}: no data directory at the path");
    let v = run_in(data, &["verify"]);
    assert_eq!(v.code, Some(0), "{what}: verify failed: {}{}", v.stdout, v.stderr);
    let got = ids(data);
    // A completed restore adds its own record, after the record of the ids
    // the replaced directory had handed out beyond the bundle (never reused).
    let top = old.iter().chain(new).max().copied().unwrap_or(0);
    let restored = got.starts_with(new) && got[new.len()..].len() <= 2 && got[new.len()..].iter().all(|&id| id > top);
    let fresh = got.len() == new.len() + 1 && got.starts_with(new) && got[new.len()] == new.len() as u64 + 1;
    assert!(got == old || got == new || restored || fresh, "{what}: the path holds neither directory: ids {got:?}");
}

/// Restore killed at every kind of step (strace fault injection at the
/// exchange, at directory creation, at file syncs, during the removal of the
/// previous contents), and at spread-out times: the path always holds a
/// complete data directory, and the next restore cleans up what was left.
#[test]
fn a_restore_killed_at_any_step_leaves_a_complete_data_directory() {
    let env = Env::with_capacity(10);
    let template = env.dir.path().join("template");
    std::fs::create_dir_all(&template).unwrap();
    std::fs::write(template.join("audit-trail.toml"), "capacity = 3\n").unwrap();
    append_n(&template, 45, "old");
    let bundle = backup(&template, &env.dir.path().join("b"));
    append_n(&template, 12, "old-after");
    let old: Vec<u64> = (1..=57).collect();
    let new: Vec<u64> = (1..=45).collect();
    let parent = env.dir.path().join("p");
    let data = parent.join("data");
    let reset = || {
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(&parent).unwrap();
        let ok = Command::new("cp").arg("-a").arg(&template).arg(&data).status().unwrap();
        assert!(ok.success());
    };
    let finish = |what: &str| {
        // The next restore cleans up and succeeds.
        let run = run_in(&data, &["restore", "--force", arg(&bundle)]);
        assert_eq!(run.code, Some(0), "{what}: the next restore failed: {}", run.stderr);
        assert!(leftovers(&parent).is_empty(), "{what}: leftovers after the next restore: {:?}", listing(&parent));
        assert_complete(&data, &[], &new, what);
    };

    let mut kills = 0;
    assert!(has_strace(), "strace is needed to place kills at each step (Debian package strace; .ci/run installs it)");
    {
        let points = [
            // Every kind of rename: a restore made of two renames dies between them at #2.
            ("rename,renameat,renameat2", 1),
            ("rename,renameat,renameat2", 2),
            ("mkdir,mkdirat", 1),
            ("mkdir,mkdirat", 3),
            ("fsync", 2),
            ("fsync", 12),
            ("unlinkat", 1),
            ("unlinkat", 6),
            ("flock", 1),
        ];
        for (call, when) in points {
            reset();
            let out = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e", &format!("trace={call}")])
                .arg("-e")
                .arg(format!("inject={call}:signal=KILL:when={when}"))
                .arg(BIN)
                .arg("--data-dir")
                .arg(&data)
                .args(["restore", "--force", arg(&bundle)])
                .env_remove("AUDIT_TRAIL_DATA")
                .output()
                .unwrap();
            let what = format!("killed at {call} #{when}");
            if !out.status.success() {
                kills += 1;
            }
            assert_complete(&data, &old, &new, &what);
            finish(&what);
        }
        assert!(kills >= 6, "the injected kills did not happen ({kills})");
    }

    // Timed kills spread over a whole restore.
    reset();
    let t = Instant::now();
    run_in(&data, &["restore", "--force", arg(&bundle)]).success();
    let full = t.elapsed();
    let n = 16u32;
    for i in 0..n {
        reset();
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(["restore", "--force", arg(&bundle)])
            .env_remove("AUDIT_TRAIL_DATA")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full * i / n);
        let _ = child.kill();
        let _ = child.wait();
        let what = format!("killed after {:?}", full * i / n);
        assert_complete(&data, &old, &new, &what);
        finish(&what);
    }

    // serve cleans up after an interrupted restore too.
    if has_strace() {
        reset();
        let _ = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=unlinkat", "-e", "inject=unlinkat:signal=KILL:when=2"])
            .arg(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(["restore", "--force", arg(&bundle)])
            .output()
            .unwrap();
        assert_eq!(leftovers(&parent).len(), 1, "{:?}", listing(&parent));
        let r = Env { dir: tempfile::tempdir().unwrap(), data: data.clone(), config: data.join("audit-trail.toml") };
        let server = r.serve(&env.no_schedules());
        let err = server.stop();
        assert!(err.contains("left by an interrupted restore"), "{err}");
        assert!(leftovers(&parent).is_empty(), "{:?}", listing(&parent));
    }
}

/// Symbolic links planted where audit-trail writes its state are never
/// followed: the files they point at stay as they were.
#[test]
fn planted_links_are_never_followed() {
    let env = Env::with_capacity(2);
    append_n(&env.data, 5, "u");
    let victims = env.dir.path().join("victims");
    std::fs::create_dir_all(&victims).unwrap();
    let victim = |n: &str| {
        let p = victims.join(n);
        std::fs::write(&p, "ORIGINAL\n").unwrap();
        p
    };
    let plant = |at: &Path, to: &Path| {
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(at);
        std::os::unix::fs::symlink(to, at).unwrap();
    };
    let history = victim("history");
    plant(&env.data.join("state/jobs/history.jsonl"), &history);
    let xsl = victim("xsl");
    std::fs::remove_file(env.data.join("audit_trail/audit-trail.xsl")).unwrap();
    plant(&env.data.join("audit_trail/.audit-trail.xsl.tmp"), &xsl);
    let partial = victim("partial");
    for s in 0..5 {
        let stamp = (chrono::Local::now() + chrono::Duration::seconds(s)).format("%Y%m%d%H%M%S");
        plant(&env.data.join(format!("backups/.pbx01_{stamp}.backup.tar.gz.partial")), &partial);
    }
    let sched = env.dir.path().join("sched");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(sched.join("b.toml"), "cron = \"* * * * * *\"\njob = \"backup\"\n").unwrap();
    let server = env.serve(&sched);
    std::thread::sleep(Duration::from_millis(2500));
    let err = server.stop();
    assert!(err.contains("schedule b (backup): ok"), "{err}");
    assert!(err.contains("history.jsonl"), "the refused history is reported: {err}");
    for v in [&history, &xsl, &partial] {
        assert_eq!(std::fs::read_to_string(v).unwrap(), "ORIGINAL\n", "{} was written through a link", v.display());
    }
    assert!(env.data.join("audit_trail/audit-trail.xsl").is_file(), "the stylesheet is installed");

    // The instance lock: serve refuses rather than truncating the target.
    let lock = victim("serve_lock");
    plant(&env.data.join("state/serve.lock"), &lock);
    let e = env.try_serve(&env.no_schedules()).err().expect("serve must refuse a linked serve.lock");
    assert!(e.contains("serve.lock"), "{e}");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "ORIGINAL\n");
    std::fs::remove_file(env.data.join("state/serve.lock")).unwrap();

    // The maintenance lock and the manifest: archive refuses.
    let mlock = victim("maintenance_lock");
    plant(&env.data.join("state/maintenance.lock"), &mlock);
    env.run(&["archive"]).failure();
    assert_eq!(std::fs::read_to_string(&mlock).unwrap(), "ORIGINAL\n");
    std::fs::remove_file(env.data.join("state/maintenance.lock")).unwrap();
    let manifest = victim("manifest");
    plant(&env.data.join("archive/manifest.jsonl"), &manifest);
    env.run(&["archive"]).failure();
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), "ORIGINAL\n");
    std::fs::remove_file(env.data.join("archive/manifest.jsonl")).unwrap();

    // A sealed file replaced by a link to a secret: backup refuses, nothing
    // of the secret reaches a bundle.
    let secret = victims.join("secret");
    std::fs::write(&secret, "TOP SECRET\n").unwrap();
    let sealed = env.sealed_files().pop().unwrap();
    std::fs::remove_file(&sealed).unwrap();
    plant(&sealed, &secret);
    let out = env.dir.path().join("out");
    let run = env.run(&["backup", "--out", arg(&out)]).failure();
    assert!(run.stderr.contains(arg(&sealed)), "{}", run.stderr);
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

/// archive/ and backups/ only ever hold complete files: temporaries live in
/// state/tmp/ and what an interrupted run left there is removed by the next.
#[test]
fn archive_and_backups_hold_only_complete_files() {
    let env = Env::with_capacity(50);
    append_n(&env.data, 2000, "u");
    run_in(&env.data, &["rotate"]).success();
    let watch = |dir: PathBuf, stop: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for n in listing(&dir) {
                    seen.insert(n);
                }
            }
            seen
        })
    };
    for dir in ["archive", "backups"] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = watch(env.data.join(dir), stop.clone());
        env.run(&[if dir == "archive" { "archive" } else { "backup" }]).success();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = w.join().unwrap();
        assert!(seen.iter().all(|n| !n.starts_with('.') && !n.contains("partial")), "{dir} showed {seen:?}");
    }
    // Leftovers of a killed run are cleaned by the next.
    std::fs::write(env.data.join("state/tmp/.pbx01_20260101000000.backup.tar.gz.0123.partial"), "half").unwrap();
    std::fs::write(env.data.join("state/tmp/.pbx01_20260101000000.xml.gz.0123.partial"), "half").unwrap();
    let run = env.run(&["archive"]).success();
    assert!(listing(&env.data.join("state/tmp")).is_empty(), "{}", run.stdout);
    std::fs::write(env.data.join("state/tmp/.x.partial"), "half").unwrap();
    env.run(&["backup"]).success();
    assert!(listing(&env.data.join("state/tmp")).is_empty());
}

/// Runs the binary under a given umask.
fn run_umask(umask: &str, data: &Path, args: &[&str]) -> Run {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("AUDIT_TRAIL_DATA")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        args: args.join(" "),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// Every file and directory audit-trail creates is closed to others and not
/// writable by the group, whatever the umask it was started with.
#[test]
fn created_files_are_owner_and_group_only_under_any_umask() {
    for umask in ["000", "022"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = run_umask(umask, &data, &["append", "--app", "A", "--action", "B"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        std::fs::write(data.join("audit-trail.toml"), "capacity = 2\n").unwrap();
        std::fs::set_permissions(data.join("audit-trail.toml"), std::fs::Permissions::from_mode(0o640)).unwrap();
        for args in [
            &["append", "--app", "A", "--action", "B"][..],
            &["append", "--app", "A", "--action", "B"],
            &["append", "--app", "A", "--action", "B"],
            &["rotate"],
            &["archive"],
            &["append", "--app", "A", "--action", "B"],
            &["backup"],
        ] {
            let r = run_umask(umask, &data, args);
            assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
        }
        let bundle = listing(&data.join("backups")).pop().unwrap();
        let restored = dir.path().join("restored");
        let r = run_umask(umask, &restored, &["restore", arg(&data.join("backups").join(bundle))]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let mut checked = 0;
        for root in [&data, &restored] {
            for e in walkdir::WalkDir::new(root).min_depth(1) {
                let e = e.unwrap();
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                if m.file_type().is_socket() {
                    continue;
                }
                let mode = m.mode() & 0o777;
                assert_eq!(mode & 0o027, 0, "umask {umask}: {} is {mode:o}", e.path().display());
                checked += 1;
            }
        }
        assert!(checked > 10, "{checked}");
        for f in ["audit_trail", "archive", "backups", "state/active"] {
            assert!(!listing(&data.join(f)).is_empty(), "nothing in {f}");
        }
    }
}

/// backup holds only a few files open at a time: it works on more files
/// than the open-file limit.
#[test]
fn backup_works_beyond_the_open_file_limit() {
    let env = Env::with_capacity(1);
    append_n(&env.data, 300, "u");
    run_in(&env.data, &["rotate"]).success();
    assert!(env.sealed_files().len() >= 300);
    let out = env.dir.path().join("out");
    let run = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("--data-dir")
        .arg(&env.data)
        .args(["backup", "--out", arg(&out)])
        .env_remove("AUDIT_TRAIL_DATA")
        .output()
        .unwrap();
    assert!(run.status.success(), "backup failed under 64 descriptors: {}", String::from_utf8_lossy(&run.stderr));
    let bundle = listing(&out).pop().unwrap();
    let entries = read_bundle(&out.join(bundle));
    assert!(entries.iter().filter(|e| e.0.starts_with("audit_trail/") && e.0.ends_with(".xml")).count() >= 300);
    let restored = env.dir.path().join("restored");
    run_in(&restored, &["restore", arg(&out.join(listing(&out).pop().unwrap()))]).success();
    assert_eq!(ids(&restored), (1..=301).collect::<Vec<_>>());
}
