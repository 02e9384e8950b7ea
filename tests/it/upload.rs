//! Uploads against real servers on loopback: OpenSSH `sshd` (SFTP) and
//! `vsftpd` (FTP and FTPS), each started by the test with its own
//! configuration (see servers.rs).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::harness::{Env, Run, json_records};
use crate::support::servers::{self, Ftpd, Sshd};

/// A data directory of `capacity` records per file holding `records`
/// records, with the given target sections appended to its configuration.
fn env_with(targets: &str, capacity: u64, records: usize) -> Env {
    let env = Env::with_config(&format!("host_name = \"pbx01\"\ncapacity = {capacity}\n{targets}"));
    if records > 0 {
        env.run_with_input(&["append", "--json", "-"], &json_records(records)).success();
    }
    env
}

/// Test defaults (short timeout, one quick retry) unless `extra` sets the key.
fn with_defaults(extra: &str) -> String {
    let mut out = String::new();
    for line in ["timeout_secs = 5", "retries = 1", "retry_delay_ms = 100"] {
        let key = line.split(' ').next().unwrap();
        if !extra.lines().any(|l| l.starts_with(&format!("{key} "))) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out + extra
}

pub(crate) fn sftp_target(name: &str, sshd: &Sshd, remote_dir: &Path, extra: &str) -> String {
    format!(
        "[targets.{name}]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nkey_file = \"{}\"\n\
         known_hosts = \"{}\"\nremote_dir = \"{}\"\n{}\n",
        sshd.port,
        sshd.user,
        sshd.key_file.display(),
        sshd.known_hosts.display(),
        remote_dir.display(),
        with_defaults(extra)
    )
}

pub(crate) fn ftp_target(name: &str, ftpd: &Ftpd, remote_dir: &str, extra: &str) -> String {
    let protocol = if ftpd.ca_file.is_some() { "ftps" } else { "ftp" };
    format!(
        "[targets.{name}]\nprotocol = \"{protocol}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\n\
         password_file = \"{}\"\nremote_dir = \"{remote_dir}\"\n{}\n",
        ftpd.port,
        ftpd.user,
        ftpd.password_file.display(),
        with_defaults(extra)
    )
}

fn ca_line(ftpd: &Ftpd) -> String {
    format!("ca_file = \"{}\"\n", ftpd.ca_file.as_ref().expect("an FTPS server").display())
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out).expect("a valid gzip file");
    out
}

/// Names and contents of the files in a directory, sorted by name.
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn names(files: &[(String, Vec<u8>)]) -> Vec<String> {
    files.iter().map(|(n, _)| n.clone()).collect()
}

/// The archived files of a data directory, decompressed, by name.
fn local_archive(env: &Env) -> Vec<(String, Vec<u8>)> {
    files_in(&env.data.join("archive")).into_iter().filter(|(n, _)| n.ends_with(".xml.gz")).collect()
}

fn ledger_lines(env: &Env, target: &str) -> Vec<String> {
    std::fs::read_to_string(env.data.join(format!("state/uploads/{target}.ledger")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every remote file is one of the local archive's, byte for byte, and
/// decompresses to the same records; all local files are there.
#[track_caller]
fn assert_same_as_local(env: &Env, remote: &[(String, Vec<u8>)]) {
    let local = local_archive(env);
    assert!(!local.is_empty(), "nothing was archived");
    assert_eq!(names(remote), names(&local), "remote files differ from the local archive");
    for ((name, r), (_, l)) in remote.iter().zip(&local) {
        assert_eq!(gunzip(r), gunzip(l), "{name}: remote content differs from the local file");
    }
}

#[test]
fn sftp_upload_sends_each_file_once_with_the_same_content() {
    let sshd = Sshd::start();
    let remote_dir = sshd.root.join("incoming/pbx01");
    let env = env_with(&sftp_target("auditors", &sshd, &remote_dir, ""), 10, 35);

    let first = env.run(&["upload"]).success();
    assert!(first.stdout.contains("uploaded 3 file(s)"), "{}", first.stdout);
    let remote = files_in(&remote_dir);
    assert_same_as_local(&env, &remote);
    assert_eq!(ledger_lines(&env, "auditors").len(), 3);
    // The offboard copies verify on their own.
    let paths: Vec<String> = remote.iter().map(|(n, _)| remote_dir.join(n).display().to_string()).collect();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    env.run(&args).success();

    // A second run sends nothing and changes nothing.
    let mtimes: Vec<_> =
        remote.iter().map(|(n, _)| std::fs::metadata(remote_dir.join(n)).unwrap().modified().unwrap()).collect();
    let second = env.run(&["upload", "--target", "auditors"]).success();
    assert!(
        second.stdout.contains("uploaded 0 file(s)") && second.stdout.contains("3 uploaded earlier"),
        "{}",
        second.stdout
    );
    assert_eq!(files_in(&remote_dir), remote);
    let mtimes2: Vec<_> =
        remote.iter().map(|(n, _)| std::fs::metadata(remote_dir.join(n)).unwrap().modified().unwrap()).collect();
    assert_eq!(mtimes, mtimes2, "a second upload rewrote files");
    assert_eq!(ledger_lines(&env, "auditors").len(), 3);

    // New records, sealed: only the new file goes.
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();
    let third = env.run(&["upload"]).success();
    assert!(third.stdout.contains("uploaded 1 file(s)"), "{}", third.stdout);
    assert_same_as_local(&env, &files_in(&remote_dir));
    let status = env.run(&["status", "--json"]).success();
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["uploads"][0]["name"], "auditors");
    assert_eq!(v["uploads"][0]["uploaded"], 4);
    // The active file is not sealed: nothing is pending.
    assert_eq!(v["uploads"][0]["pending"], 0, "{}", status.stdout);
}

#[test]
fn ftp_upload_plain_xml_format_and_second_run_changes_nothing() {
    let ftpd = Ftpd::start_ftp();
    let env = env_with(&ftp_target("ftp1", &ftpd, "in/pbx01", "format = \"xml\"\n"), 10, 25);
    // One file archived first, one still plain: both go as .xml.
    env.run(&["archive"]).success();
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();

    let run = env.run(&["upload"]).success();
    assert!(run.stdout.contains("uploaded 3 file(s)"), "{}", run.stdout);
    let remote = files_in(&ftpd.root.join("in/pbx01"));
    assert_eq!(remote.len(), 3, "{:?}", names(&remote));
    for (name, bytes) in &remote {
        assert!(name.ends_with(".xml"), "{name}");
        let stem = name.trim_end_matches(".xml");
        let plain = env.data.join("audit_trail").join(name);
        let local = if plain.exists() {
            std::fs::read(plain).unwrap()
        } else {
            gunzip(&std::fs::read(env.data.join("archive").join(format!("{stem}.xml.gz"))).unwrap())
        };
        assert_eq!(bytes, &local, "{name}: remote content differs");
    }
    let again = env.run(&["upload"]).success();
    assert!(again.stdout.contains("uploaded 0 file(s)"), "{}", again.stdout);
    assert_eq!(files_in(&ftpd.root.join("in/pbx01")), remote);
}

/// vsftpd with its default `require_ssl_reuse=YES` accepts a data connection
/// only when it resumes the control connection's TLS session: with one
/// login and no retry, eight files in a row still go.
#[test]
fn ftps_data_connections_resume_the_tls_session_file_after_file() {
    let ftpd = Ftpd::start_ftps();
    let env = env_with(&ftp_target("t", &ftpd, "in", &format!("{}retries = 0\n", ca_line(&ftpd))), 2, 18);
    let run = env.run(&["upload"]).success();
    assert!(run.stdout.contains("uploaded 8 file(s)"), "{}{}", run.stdout, run.stderr);
    assert_same_as_local(&env, &files_in(&ftpd.root.join("in")));
    let log = ftpd.log();
    // A 522 answer (not "522" inside a file name stamped at 05:22).
    assert!(!log.contains("\", \"522 "), "a data connection was refused:\n{log}");
    assert_eq!(log.matches("OK LOGIN").count(), 1, "one login for all files:\n{log}");
}

#[test]
fn ftps_upload_trusts_ca_file_and_refuses_an_untrusted_certificate() {
    let ftpd = Ftpd::start_ftps();
    let config = format!(
        "{}{}",
        // By name: resolution, and the certificate's DNS name.
        ftp_target("trusted", &ftpd, "trusted", &ca_line(&ftpd))
            .replace("host = \"127.0.0.1\"", "host = \"localhost\""),
        ftp_target("untrusted", &ftpd, "untrusted", "")
    );
    let env = env_with(&config, 10, 35);

    let run = env.run(&["upload", "--target", "trusted"]).success();
    assert!(run.stdout.contains("uploaded 3 file(s)"), "{}", run.stdout);
    assert_same_as_local(&env, &files_in(&ftpd.root.join("trusted")));

    let started = Instant::now();
    let refused = env.run(&["upload", "--target", "untrusted"]).failure();
    assert!(refused.stderr.contains("untrusted") && refused.stderr.contains("TLS"), "{}", refused.stderr);
    assert!(refused.stderr.contains("UnknownIssuer") || refused.stderr.contains("certificate"), "{}", refused.stderr);
    assert!(!ftpd.root.join("untrusted").exists() || files_in(&ftpd.root.join("untrusted")).is_empty());
    assert!(ledger_lines(&env, "untrusted").is_empty());
    // A trust failure is not retried.
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());

    let probe = env.run(&["test-target", "untrusted"]).failure();
    assert!(probe.stdout.contains("FAILED  TLS"), "{}", probe.stdout);
    let probe = env.run(&["test-target", "trusted"]).success();
    for step in ["connect", "TLS", "login", "remote directory", "write", "rename", "size", "remove"] {
        assert!(probe.stdout.contains(&format!("ok      {step}")), "{step}: {}", probe.stdout);
    }
}

#[test]
fn sftp_wrong_host_key_is_refused_with_the_fingerprint() {
    let sshd = Sshd::start();
    let remote_dir = sshd.root.join("in");
    let target = sftp_target("s", &sshd, &remote_dir, "")
        .replace(&sshd.known_hosts.display().to_string(), &sshd.wrong_known_hosts.display().to_string());
    let env = env_with(&target, 10, 20);
    let run = env.run(&["upload"]).failure();
    assert!(run.stderr.contains("HOST KEY MISMATCH"), "{}", run.stderr);
    assert!(run.stderr.contains(&sshd.host_fingerprint), "no fingerprint: {}", run.stderr);
    assert!(run.stderr.contains("s (sftp 127.0.0.1:"), "the target is not named: {}", run.stderr);
    assert!(!remote_dir.exists());
    assert!(ledger_lines(&env, "s").is_empty());

    // An empty known_hosts: the key is unknown, also refused.
    let empty = env.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace(&sshd.wrong_known_hosts.display().to_string(), &empty.display().to_string()),
    )
    .unwrap();
    let run = env.run(&["test-target", "s"]).failure();
    assert!(run.stdout.contains("FAILED  host key") && run.stdout.contains("unknown host key"), "{}", run.stdout);
    assert!(run.stdout.contains(&sshd.host_fingerprint), "{}", run.stdout);
}

#[test]
fn stopped_server_fails_the_run_and_the_next_run_catches_up() {
    let mut sshd = Sshd::start();
    let remote_dir = sshd.root.join("in");
    let env = env_with(&sftp_target("s", &sshd, &remote_dir, ""), 10, 35);
    sshd.stop();
    let run = env.run(&["upload"]).failure();
    assert!(run.stderr.contains("connection refused") && run.stderr.contains("after 2 attempts"), "{}", run.stderr);
    assert!(run.stderr.contains("3 still pending"), "{}", run.stderr);
    let status = env.run(&["status", "--json"]).success();
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["uploads"][0]["pending"], 3);

    sshd.restart();
    env.run(&["upload"]).success();
    assert_same_as_local(&env, &files_in(&remote_dir));
}

#[test]
fn stalled_server_times_out_with_a_clear_reason() {
    let ftpd = Ftpd::start_ftp();
    let env = env_with(&ftp_target("f", &ftpd, "in", "timeout_secs = 1\nretries = 0\n"), 10, 20);
    ftpd.signal_all(servers::SIGSTOP);
    let started = Instant::now();
    let run = env.run(&["upload"]);
    ftpd.signal_all(servers::SIGCONT);
    let run = run.failure();
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    env.run(&["upload"]).success();
    assert_same_as_local(&env, &files_in(&ftpd.root.join("in")));
}

/// Writes `len` bytes of incompressible data as a fake archived file.
fn big_archive_file(env: &Env, len: usize) -> PathBuf {
    let dir = env.data.join("archive");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pbx01_20260101000000.xml.gz");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = vec![0u8; len];
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// Starts an upload of a large file, kills the server (and its sessions)
/// once the temporary file is on the server, and checks that no file ever
/// appears under the final name; the next run completes it.
fn killed_mid_transfer(remote_dir: &Path, env: &Env, kill: &mut dyn FnMut(), restart: &mut dyn FnMut()) {
    let big = big_archive_file(env, 256 << 20);
    let name = big.file_name().unwrap().to_string_lossy().into_owned();
    let part = remote_dir.join(format!(".{name}.part"));
    let mut child =
        env.cmd(&["upload"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::fs::metadata(&part).is_ok_and(|m| m.len() > 0) {
            break;
        }
        assert!(!remote_dir.join(&name).exists(), "the upload finished before the server could be killed");
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the upload ended ({status}) before the transfer was seen: {err}");
        }
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "upload succeeded although the server was killed: {stderr}");
    assert!(!remote_dir.join(&name).exists(), "a partial file appeared under its final name");
    assert!(ledger_lines(env, "t").is_empty(), "a broken transfer was recorded");

    restart();
    env.run(&["upload"]).success();
    assert_eq!(std::fs::read(remote_dir.join(&name)).unwrap(), std::fs::read(&big).unwrap());
    assert!(!part.exists(), "the temporary file was left behind");
    assert_eq!(ledger_lines(env, "t").len(), 1);
}

#[test]
fn sftp_server_killed_mid_transfer_leaves_no_final_file() {
    let sshd = std::cell::RefCell::new(Sshd::start());
    let remote_dir = sshd.borrow().root.join("in");
    let env = env_with(&sftp_target("t", &sshd.borrow(), &remote_dir, "retries = 0\n"), 10, 0);
    killed_mid_transfer(&remote_dir, &env, &mut || sshd.borrow_mut().stop(), &mut || sshd.borrow_mut().restart());
}

#[test]
fn ftp_server_killed_mid_transfer_leaves_no_final_file() {
    let ftpd = std::cell::RefCell::new(Ftpd::start_ftp());
    let remote_dir = ftpd.borrow().root.join("in");
    let env = env_with(&ftp_target("t", &ftpd.borrow(), "in", "retries = 0\n"), 10, 0);
    killed_mid_transfer(&remote_dir, &env, &mut || ftpd.borrow_mut().stop(), &mut || ftpd.borrow_mut().restart());
}

#[test]
fn no_secret_appears_in_any_output() {
    let ftpd = Ftpd::start_ftps();
    let sshd = Sshd::start();
    let config = format!(
        "{}{}{}",
        ftp_target("good", &ftpd, "in", &ca_line(&ftpd)),
        ftp_target("env", &ftpd, "in2", &ca_line(&ftpd)).replace(
            &format!("password_file = \"{}\"", ftpd.password_file.display()),
            "password_env = \"AUDIT_TEST_FTP_PASSWORD\""
        ),
        sftp_target("s", &sshd, &sshd.root.join("in"), ""),
    );
    let env = env_with(&config, 10, 20);
    let wrong = "Wr0ng-secret-9f2c";
    let key = std::fs::read_to_string(&sshd.key_file).unwrap();
    let key_body: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).collect();
    assert!(!key_body.is_empty());
    let mut outputs: Vec<Run> = Vec::new();
    let with_env = |pw: &str, args: &[&str]| {
        let out = env.cmd(args).env("AUDIT_TEST_FTP_PASSWORD", pw).output().unwrap();
        Run {
            args: args.join(" "),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    outputs.push(with_env(&ftpd.password, &["upload"]).success());
    outputs.push(with_env(&ftpd.password, &["test-target", "env"]).success());
    outputs.push(with_env(wrong, &["test-target", "env"]).failure());
    // A new sealed file, so that the upload has to log in.
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();
    outputs.push(with_env(wrong, &["upload", "--target", "env"]).failure());
    outputs.push(with_env(wrong, &["status"]).success());
    outputs.push(with_env(wrong, &["status", "--json"]).success());
    outputs.push(with_env(wrong, &["test-target", "s"]).success());
    assert!(outputs[3].stderr.contains("login refused"), "{}", outputs[3].stderr);
    // The login step names the cipher negotiated.
    assert!(outputs[6].stdout.contains("cipher ") && !outputs[6].stdout.contains("cipher ?"), "{}", outputs[6].stdout);
    let failed_login = &outputs[2];
    assert!(
        failed_login.stdout.contains("FAILED  login") && failed_login.stdout.contains("login refused"),
        "{}",
        failed_login.stdout
    );
    for r in &outputs {
        for secret in [ftpd.password.as_str(), wrong] {
            assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret), "`{}` printed a password", r.args);
        }
        for line in &key_body {
            assert!(!r.stdout.contains(line) && !r.stderr.contains(line), "`{}` printed the private key", r.args);
        }
    }
    // Nor in anything the archiver keeps.
    for entry in walkdir::WalkDir::new(&env.data).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file())
    {
        let bytes = std::fs::read(entry.path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(ftpd.password.as_str()), "{} holds the password", entry.path().display());
    }
}

#[test]
fn the_upload_job_of_the_service_sends_sealed_files() {
    let sshd = Sshd::start();
    let remote_dir = sshd.root.join("job");
    let env = env_with(&sftp_target("s", &sshd, &remote_dir, ""), 10, 25);
    let schedules = env.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("upload.toml"), "cron = \"*/1 * * * * *\"\njob = \"upload\"\ntarget = \"s\"\n")
        .unwrap();
    let server = env.serve(&schedules);
    let deadline = Instant::now() + Duration::from_secs(20);
    while files_in(&remote_dir).len() < 2 {
        assert!(Instant::now() < deadline, "the upload job did not send the sealed files: {}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    assert_same_as_local(&env, &files_in(&remote_dir));
    let history = std::fs::read_to_string(env.data.join("state/jobs/history.jsonl")).unwrap();
    assert!(
        history.lines().any(|l| l.contains("\"outcome\":\"ok\"") && l.contains("uploaded 2 file(s)")),
        "no successful upload run in the job history:\n{history}"
    );
}

#[test]
fn ftps_large_file_arrives_intact() {
    let ftpd = Ftpd::start_ftps();
    let env = env_with(&ftp_target("t", &ftpd, "big", &ca_line(&ftpd)), 10, 0);
    let big = big_archive_file(&env, 8 << 20);
    env.run(&["upload"]).success();
    let name = big.file_name().unwrap();
    assert_eq!(std::fs::read(ftpd.root.join("big").join(name)).unwrap(), std::fs::read(&big).unwrap());
}

#[test]
fn an_archived_file_altered_after_archiving_is_not_uploaded() {
    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 10\n");
    let share = env.dir.path().join("share/in");
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("{cfg}[targets.share]\nprotocol = \"local\"\nremote_dir = \"{}\"\n", share.display()),
    )
    .unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(35)).success();
    env.run(&["archive"]).success();
    let archived = local_archive(&env);
    assert_eq!(archived.len(), 3);
    // Flip one byte of the middle file (same size).
    let victim = env.data.join("archive").join(&archived[1].0);
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();

    let run = env.run(&["upload"]).failure();
    assert!(run.stderr.contains("no longer matches the archive manifest"), "{}", run.stderr);
    let sent = names(&files_in(&share));
    assert_eq!(sent, [archived[0].0.clone(), archived[2].0.clone()], "only the intact files go");
    assert_eq!(ledger_lines(&env, "share").len(), 2);
}

#[test]
fn a_target_busy_with_another_upload_is_refused_not_uploaded_twice() {
    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 10\n");
    let share = env.dir.path().join("share");
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("{cfg}[targets.share]\nprotocol = \"local\"\nremote_dir = \"{}\"\n", share.display()),
    )
    .unwrap();
    env.run_with_input(&["append", "--json", "-"], &json_records(15)).success();
    let lock = env.data.join("state/uploads/share.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // Another upload holds the target's lock (an flock, as audit-trail takes it).
    let holder = std::fs::File::create(&lock).unwrap();
    holder.lock().unwrap();
    let busy = env.run(&["upload"]).failure();
    drop(holder);
    assert!(busy.stderr.contains("another upload to this target is running"), "{}", busy.stderr);
    assert!(files_in(&share).is_empty());
    env.run(&["upload"]).success();
    assert_eq!(files_in(&share).len(), 1);
}

#[test]
fn ftp_active_mode_uploads_too() {
    let ftpd = Ftpd::start_ftp();
    let env = env_with(&ftp_target("active", &ftpd, "act", "passive = false\n"), 10, 15);
    let run = env.run(&["upload"]).success();
    assert!(run.stdout.contains("uploaded 1 file(s)"), "{}", run.stdout);
    assert_same_as_local(&env, &files_in(&ftpd.root.join("act")));
}

/// An upload-only (drop-box) account may write and rename but not delete:
/// `test-target` says the target works, names the probe it could not remove,
/// and `upload` works against it.
#[test]
fn test_target_passes_on_an_account_that_may_not_delete() {
    let ftpd = Ftpd::start_ftp_drop_box();
    let env = Env::with_config(&format!("host_name = \"pbx01\"\n{}", ftp_target("dropbox", &ftpd, "in", "")));
    env.run(&["append", "--app", "A", "--action", "B"]).success();
    env.run(&["rotate"]).success();
    let run = env.run(&["test-target", "dropbox"]).success();
    assert!(run.stdout.contains("target dropbox works"), "{}", run.stdout);
    assert!(run.stdout.contains("remove (note)") && run.stdout.contains("stays on the server"), "{}", run.stdout);
    env.run(&["upload"]).success();
}

/// Servers without SIZE (RFC 959 only), or refusing it with 550: the size
/// check falls back to MLST or LIST, so files still go, checked. A server
/// that reports the wrong size is still refused.
#[test]
fn servers_without_size_still_receive_checked_files() {
    let python = "/usr/bin/python3";
    let ok = std::process::Command::new(python).args(["-c", "import pyftpdlib"]).status().is_ok_and(|s| s.success());
    assert!(ok, "python3-pyftpdlib is needed (Debian package python3-pyftpdlib; .ci/run installs it)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/ftpd_modes.py");
    for (mode, works) in [("nosize", true), ("size550", true), ("sizewrong", false)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let port = servers::free_port();
        let (lo, hi) = servers::free_port_range(10);
        let mut server = std::process::Command::new(python)
            .arg(&script)
            .args([port.to_string(), root.display().to_string(), lo.to_string(), hi.to_string(), mode.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the {mode} FTP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
        let env = Env::with_config(&format!(
            "host_name = \"pbx01\"\n[targets.old]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             user = \"audit\"\npassword_file = \"{}\"\nremote_dir = \"in\"\nretries = 0\n",
            dir.path().join("pw").display()
        ));
        env.run(&["append", "--app", "A", "--action", "B"]).success();
        env.run(&["rotate"]).success();
        env.run(&["archive"]).success();
        let run = env.run(&["upload"]);
        let _ = server.kill();
        let _ = server.wait();
        let archived = files_in(&env.data.join("archive"));
        let sent = files_in(&root.join("in"));
        if works {
            assert_eq!(run.code, Some(0), "{mode}: {}{}", run.stdout, run.stderr);
            let gz: Vec<_> = archived.iter().filter(|(n, _)| n.ends_with(".xml.gz")).cloned().collect();
            assert_eq!(sent, gz, "{mode}: the file arrives whole under its name");
        } else {
            assert_ne!(run.code, Some(0), "{mode}: a wrong size is refused: {}", run.stdout);
            assert!(!sent.iter().any(|(n, _)| n.ends_with(".xml.gz") && !n.starts_with('.')), "{mode}: {sent:?}");
        }
    }
}

/// An asyncssh SFTP server (a second SFTP implementation besides OpenSSH's)
/// serving `root`, that refuses one kind of request with SSH_FX_FAILURE and
/// a text: `write` once 100 bytes were written (a disk filling up), or
/// every `open`, `close`, `rename`, `mkdir` or `stat`.
const ASYNCSSH_SERVER: &str = r#"
import asyncio, sys, asyncssh
port, root, host_key, client_pub, mode, text, budget = sys.argv[1:8]
left = [int(budget)]
class S(asyncssh.SFTPServer):
    def __init__(self, chan):
        super().__init__(chan, chroot=root)
    def refuse(self, op):
        if mode == op:
            raise asyncssh.SFTPFailure(text)
    def write(self, f, offset, data):
        if mode == 'write':
            left[0] -= len(data)
            if left[0] < 0:
                raise asyncssh.SFTPFailure(text)
        return super().write(f, offset, data)
    def open(self, path, pflags, attrs):
        self.refuse('open'); return super().open(path, pflags, attrs)
    def close(self, f):
        self.refuse('close'); return super().close(f)
    def rename(self, a, b):
        self.refuse('rename'); return super().rename(a, b)
    def mkdir(self, path, attrs):
        self.refuse('mkdir'); return super().mkdir(path, attrs)
    def stat(self, path):
        self.refuse('stat'); return super().stat(path)
async def main():
    await asyncssh.create_server(asyncssh.SSHServer, '127.0.0.1', int(port), server_host_keys=[host_key],
        authorized_client_keys=client_pub, sftp_factory=S)
    await asyncio.Future()
asyncio.run(main())
"#;

/// A Python with asyncssh: Debian's (package python3-asyncssh, which
/// .ci/run installs), else the first `python3` on PATH.
fn python_with_asyncssh() -> &'static str {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = std::process::Command::new(python)
            .args(["-c", "import asyncssh"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python;
        }
    }
    panic!("asyncssh is needed (Debian package python3-asyncssh, or pip install asyncssh; .ci/run installs it)");
}

/// The server's reason for refusing an SFTP request reaches the operator
/// whichever request it refused (libssh2's SFTP layer kept only "failure"):
/// a disk filling up during the WRITEs, and refused OPEN, CLOSE, RENAME,
/// MKDIR and STAT, against asyncssh's SFTP server. Nothing is left under the
/// final name, and once the server accepts, the next run uploads the file.
#[test]
fn sftp_server_reasons_reach_the_operator_for_every_request() {
    let python = python_with_asyncssh();
    let keys = tempfile::tempdir().unwrap();
    for k in ["host", "client"] {
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(keys.path().join(k))
            .status()
            .expect("run ssh-keygen (Debian package openssh-client)");
        assert!(st.success());
    }
    let host_pub = std::fs::read_to_string(keys.path().join("host.pub")).unwrap();
    let host_key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let cases = [
        ("write", "No space left on device", "writing in/."),
        ("open", "Quota exceeded for user audit", "cannot create in/."),
        ("close", "Input/output error while flushing", "cannot complete in/."),
        ("rename", "Target volume is read-only", "cannot rename in/."),
        ("mkdir", "Directory creation disabled by policy", "cannot create remote directory in"),
        ("stat", "Stale file handle", "cannot check in"),
    ];
    for (mode, text, what) in cases {
        let root = tempfile::tempdir().unwrap();
        if mode != "mkdir" {
            std::fs::create_dir(root.path().join("in")).unwrap();
        }
        let port = servers::free_port();
        let mut server = start_asyncssh(python, port, root.path(), keys.path(), mode, text);
        std::fs::write(keys.path().join("known_hosts"), format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")))
            .unwrap();
        let env = env_with(
            &format!(
                "[targets.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"audit\"\n\
                 key_file = \"{}\"\nknown_hosts = \"{}\"\nremote_dir = \"in\"\nretries = 0\n\
                 timeout_secs = 10\n",
                keys.path().join("client").display(),
                keys.path().join("known_hosts").display()
            ),
            10,
            0,
        );
        // Files larger than the write budget.
        let big: Vec<u8> = (0..30)
            .flat_map(|i| format!("{{\"app_name\":\"PBX\",\"action_type\":\"Change\",\"user_name\":\"u{i}\",\"action_data\":\"{}\"}}\n", "x".repeat(300)).into_bytes())
            .collect();
        env.run_with_input(&["append", "--json", "-"], &big).success();
        env.run(&["rotate"]).success();
        env.run(&["archive"]).success();
        let run = env.run(&["upload"]);
        let _ = server.kill();
        let _ = server.wait();
        assert_ne!(run.code, Some(0), "{mode}: the upload must fail: {}", run.stdout);
        assert!(run.stderr.contains(text), "{mode}: the server's reason is not in the error: {}", run.stderr);
        assert!(run.stderr.contains(what), "{mode}: the failed step is not named: {}", run.stderr);
        assert!(run.stderr.contains("SSH_FX 4 \"failure\""), "{mode}: the status is not named: {}", run.stderr);
        let sent = files_in(&root.path().join("in"));
        assert!(sent.iter().all(|(n, _)| n.starts_with('.')), "{mode}: a final name exists: {sent:?}");
        // The same server, refusing nothing now: the next run sends the file.
        let mut server = start_asyncssh(python, port, root.path(), keys.path(), "none", "");
        let run = env.run(&["upload"]);
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(run.code, Some(0), "{mode}: the next run must upload: {}{}", run.stdout, run.stderr);
        let sent = files_in(&root.path().join("in"));
        let archived = local_archive(&env);
        assert!(!archived.is_empty());
        for (name, content) in &archived {
            assert!(sent.contains(&(name.clone(), content.clone())), "{mode}: {name} did not arrive whole: {sent:?}");
        }
    }
}

/// Starts [`ASYNCSSH_SERVER`] on `port` (see there for `mode`), with the
/// host key `keys/host` and the client key `keys/client.pub`; ready once it
/// listens.
fn start_asyncssh(python: &str, port: u16, root: &Path, keys: &Path, mode: &str, text: &str) -> std::process::Child {
    let mut server = std::process::Command::new(python)
        .args(["-c", ASYNCSSH_SERVER, &port.to_string()])
        .arg(root)
        .arg(keys.join("host"))
        .arg(keys.join("client.pub"))
        .args([mode, text, "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.try_wait() {
            let mut err = String::new();
            let _ = server.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the asyncssh SFTP server exited ({status}) while starting:\n{err}");
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            panic!("the asyncssh SFTP server did not listen on port {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}
