//! Benchmark of `audit-trail upload` against the tools a cron job would use:
//! OpenSSH `sftp -b` to an OpenSSH server, `curl -T` to vsftpd, and `curl -T
//! --ssl-reqd` to vsftpd FTPS with its defaults (require_ssl_reuse=YES), moving
//! the same archived files to the same servers in the same run.
//!
//! `cargo bench --bench upload` (records: `BENCH_RECORDS`, default 250000,
//! 5000 per file or a third of them when fewer, archived; `BENCH_ROUNDS`,
//! default 5; `BENCH_BIG_MB`, default 200: one more file of that many
//! incompressible bytes, for the transfer rate of large files; 0: none). At smoke size
//! (see `common::smoke`) the defaults are 3000 records, 2 rounds and 2 MB. The servers are the test suite's (sshd
//! and vsftpd on 127.0.0.1 high ports; vsftpd needs root). Each round
//! starts from an empty remote directory and, for audit-trail, an empty
//! ledger; audit-trail also hashes every file, checks its size on the
//! server, renames it into place and records it. Figures are printed, never
//! asserted. Each round runs the four transfers in turn (sftp -b, ours over
//! SFTP, curl -T, ours over FTP), so that load elsewhere on the machine hits
//! them alike; the best and the median round are shown, and a `summary` line
//! per transfer (medians) feeds `benches/suite.sh`'s table.
//! `AUDIT_TRAIL_BIN` runs another build of audit-trail for comparison.

#[path = "../tests/it/support/servers.rs"]
mod servers;

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");

fn audit_trail(data: &Path, args: &[&str]) {
    let bin = std::env::var("AUDIT_TRAIL_BIN").unwrap_or_else(|_| BIN.to_owned());
    let out = Command::new(bin).arg("--data-dir").arg(data).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn reset_dir(dir: &Path, owner: Option<&str>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    if let Some(user) = owner {
        run(Command::new("chown").arg(user).arg(dir), "chown");
    }
}

/// Runs each job once per round, the jobs in turn within a round (so that a
/// burst of load elsewhere hits every side alike); returns each job's best
/// and median time.
fn interleaved(rounds: usize, jobs: &mut [&mut dyn FnMut()]) -> Vec<(Duration, Duration)> {
    let mut times = vec![Vec::with_capacity(rounds); jobs.len()];
    for _ in 0..rounds {
        for (job, t) in jobs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            job();
            t.push(start.elapsed());
        }
    }
    times
        .into_iter()
        .map(|mut v| {
            v.sort();
            (v[0], v[v.len() / 2])
        })
        .collect()
}

fn row(name: &str, bytes: u64, (best, median): (Duration, Duration)) {
    println!(
        "{name:<44} best {:>7.3} s ({:>7.1} MB/s)  median {:>7.3} s",
        best.as_secs_f64(),
        bytes as f64 / 1e6 / best.as_secs_f64(),
        median.as_secs_f64()
    );
}

fn main() {
    if common::listing() {
        return;
    }
    let n = common::records(250_000);
    let rounds = common::knob("BENCH_ROUNDS", 5, 2).max(1);
    let big_mb = common::knob("BENCH_BIG_MB", 200, 2);
    let per_file = 5000.min(n / 3).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("records.jsonl");
    common::generate(n, &input);
    let sshd = servers::Sshd::start();
    let ftpd = servers::Ftpd::start_ftp();
    // vsftpd's FTPS with its own defaults (require_ssl_reuse=YES: every data
    // connection must resume the control connection's TLS session).
    let ftpsd = servers::Ftpd::start_ftps();
    let ftps_ca = ftpsd.ca_file.clone().expect("the FTPS server's CA certificate");

    // BENCH_BIG_MB=0: the archived files only.
    let mut sets: Vec<(&str, usize)> = vec![("archived files", 0)];
    if big_mb > 0 {
        sets.push(("one large file", big_mb));
    }
    println!(
        "upload benchmark: {n} records, {rounds} rounds, on {} cores",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    for (label, mb) in sets {
        let data = tmp.path().join(format!("data-{mb}"));
        std::fs::create_dir_all(&data).unwrap();
        let files: Vec<PathBuf> = if mb == 0 {
            std::fs::write(
                data.join("audit-trail.toml"),
                format!("host_name = \"bench\"\nevent_mask = \"all\"\ncapacity = {per_file}\n"),
            )
            .unwrap();
            audit_trail(&data, &["append", "--json", input.to_str().unwrap()]);
            audit_trail(&data, &["archive"]);
            let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("archive"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".xml.gz"))
                .collect();
            v.sort();
            assert!(!v.is_empty(), "no archived files to upload");
            v
        } else {
            std::fs::create_dir_all(data.join("archive")).unwrap();
            let p = data.join("archive/bench_20260101000000.xml.gz");
            let mut rng = common::Rng(0x2545_F491_4F6C_DD1D);
            let bytes: Vec<u8> = (0..mb * 1_000_000 / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
            std::fs::write(&p, bytes).unwrap();
            vec![p]
        };
        let bytes: u64 = files.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
        println!("\n{label}: {} file(s), {:.1} MB", files.len(), bytes as f64 / 1e6);

        let sftp_dir = sshd.root.join(format!("bench-{mb}"));
        let ftp_rel = format!("bench-{mb}");
        let ftp_dir = ftpd.root.join(&ftp_rel);
        let config = format!(
            "host_name = \"bench\"\n\
             [targets.sftp]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nkey_file = \"{}\"\nknown_hosts = \"{}\"\nremote_dir = \"{}\"\n\
             [targets.ftp]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\npassword_file = \"{}\"\nremote_dir = \"{ftp_rel}\"\n\
             [targets.ftps]\nprotocol = \"ftps\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\npassword_file = \"{}\"\nca_file = \"{}\"\nremote_dir = \"{ftp_rel}\"\n",
            sshd.port,
            sshd.user,
            sshd.key_file.display(),
            sshd.known_hosts.display(),
            sftp_dir.display(),
            ftpd.port,
            ftpd.user,
            ftpd.password_file.display(),
            ftpsd.port,
            ftpsd.user,
            ftpsd.password_file.display(),
            ftps_ca.display(),
        );
        std::fs::write(data.join("audit-trail.toml"), config).unwrap();
        let ledgers = data.join("state/uploads");

        let batch = tmp.path().join(format!("sftp-batch-{mb}"));
        let mut script = String::new();
        for f in &files {
            script.push_str(&format!("put {} {}/\n", f.display(), sftp_dir.display()));
        }
        std::fs::write(&batch, script).unwrap();
        let mut openssh = || {
            reset_dir(&sftp_dir, None);
            run(
                Command::new("sftp")
                    .arg("-q")
                    .arg("-b")
                    .arg(&batch)
                    .arg("-i")
                    .arg(&sshd.key_file)
                    .arg("-o")
                    .arg(format!("UserKnownHostsFile={}", sshd.known_hosts.display()))
                    .arg("-o")
                    .arg("StrictHostKeyChecking=yes")
                    .arg("-o")
                    .arg("BatchMode=yes")
                    .arg("-P")
                    .arg(sshd.port.to_string())
                    .arg(format!("{}@127.0.0.1", sshd.user))
                    .stdout(Stdio::null()),
                "sftp -b",
            );
        };
        let mut ours_sftp = || {
            reset_dir(&sftp_dir, None);
            let _ = std::fs::remove_dir_all(&ledgers);
            audit_trail(&data, &["upload", "--target", "sftp"]);
            assert_eq!(std::fs::read_dir(&sftp_dir).unwrap().count(), files.len());
        };

        let netrc = tmp.path().join("netrc");
        std::fs::write(&netrc, format!("machine 127.0.0.1 login {} password {}\n", ftpd.user, ftpd.password)).unwrap();
        let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let mut curl = || {
            reset_dir(&ftp_dir, Some(&ftpd.user));
            run(
                Command::new("curl")
                    .arg("-sS")
                    .arg("--netrc-file")
                    .arg(&netrc)
                    .arg("-T")
                    .arg(format!("{{{}}}", list.join(",")))
                    .arg(format!("ftp://127.0.0.1:{}/{ftp_rel}/", ftpd.port)),
                "curl -T",
            );
        };
        let mut ours_ftp = || {
            reset_dir(&ftp_dir, Some(&ftpd.user));
            let _ = std::fs::remove_dir_all(&ledgers);
            audit_trail(&data, &["upload", "--target", "ftp"]);
            assert_eq!(std::fs::read_dir(&ftp_dir).unwrap().count(), files.len());
        };
        let ftps_dir = ftpsd.root.join(&ftp_rel);
        let netrc_tls = tmp.path().join("netrc-tls");
        std::fs::write(&netrc_tls, format!("machine 127.0.0.1 login {} password {}\n", ftpsd.user, ftpsd.password))
            .unwrap();
        let mut curl_tls = || {
            reset_dir(&ftps_dir, Some(&ftpsd.user));
            run(
                Command::new("curl")
                    .arg("-sS")
                    .arg("--ssl-reqd")
                    .arg("--cacert")
                    .arg(&ftps_ca)
                    .arg("--netrc-file")
                    .arg(&netrc_tls)
                    .arg("-T")
                    .arg(format!("{{{}}}", list.join(",")))
                    .arg(format!("ftp://127.0.0.1:{}/{ftp_rel}/", ftpsd.port)),
                "curl -T --ssl-reqd",
            );
            assert_eq!(std::fs::read_dir(&ftps_dir).unwrap().count(), files.len());
        };
        let mut ours_ftps = || {
            reset_dir(&ftps_dir, Some(&ftpsd.user));
            let _ = std::fs::remove_dir_all(&ledgers);
            audit_trail(&data, &["upload", "--target", "ftps"]);
            assert_eq!(std::fs::read_dir(&ftps_dir).unwrap().count(), files.len());
        };
        let t = interleaved(
            rounds,
            &mut [&mut openssh, &mut ours_sftp, &mut curl, &mut ours_ftp, &mut curl_tls, &mut ours_ftps],
        );
        let (openssh, ours_sftp, curl, ours_ftp, curl_tls, ours_ftps) = (t[0], t[1], t[2], t[3], t[4], t[5]);

        row("OpenSSH sftp -b (put per file)", bytes, openssh);
        row("audit-trail upload (sftp)", bytes, ours_sftp);
        row("curl -T {files} (one connection)", bytes, curl);
        row("audit-trail upload (ftp)", bytes, ours_ftp);
        row("curl -T --ssl-reqd {files} (one connection)", bytes, curl_tls);
        row("audit-trail upload (ftps)", bytes, ours_ftps);
        let ratio = |peer: (Duration, Duration), ours: (Duration, Duration)| {
            (peer.0.as_secs_f64() / ours.0.as_secs_f64(), peer.1.as_secs_f64() / ours.1.as_secs_f64())
        };
        let (b, sftp_median) = ratio(openssh, ours_sftp);
        println!("sftp: audit-trail at {b:.2}x the speed of OpenSSH sftp -b (best), {sftp_median:.2}x (median)");
        let (b, ftp_median) = ratio(curl, ours_ftp);
        println!("ftp:  audit-trail at {b:.2}x the speed of curl -T (best), {ftp_median:.2}x (median)");
        let (b, ftps_median) = ratio(curl_tls, ours_ftps);
        println!("ftps: audit-trail at {b:.2}x the speed of curl -T --ssl-reqd (best), {ftps_median:.2}x (median)");

        let what = if mb == 0 { format!("{} archived files", files.len()) } else { format!("one {mb} MB file") };
        let figure = |(_, median): (Duration, Duration)| {
            format!("{} ({:.0} MB/s)", secs(median), bytes as f64 / 1e6 / median.as_secs_f64())
        };
        summary(
            &format!("upload {what} over SFTP, median of {rounds}"),
            &figure(ours_sftp),
            "OpenSSH sftp -b",
            &figure(openssh),
            Some(sftp_median),
            "≥ 0.8x sftp -b",
        );
        summary(
            &format!("upload {what} over FTP, median of {rounds}"),
            &figure(ours_ftp),
            "curl -T (one connection)",
            &figure(curl),
            Some(ftp_median),
            "≥ 0.8x curl -T",
        );
        summary(
            &format!("upload {what} over FTPS (vsftpd defaults), median of {rounds}"),
            &figure(ours_ftps),
            "curl -T --ssl-reqd (one connection)",
            &figure(curl_tls),
            Some(ftps_median),
            "≥ 0.8x curl -T --ssl-reqd",
        );
    }
}
