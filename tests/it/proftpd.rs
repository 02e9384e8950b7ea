//! Uploads against proftpd with the defaults that matter to a client
//! (`AllowOverwrite off`: a file may not be written over). proftpd conflicts
//! with vsftpd as a Debian package, so `.ci/run` unpacks proftpd-core into
//! /opt/audit-trail-ci/proftpd when it is not installed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::{Env, json_records};
use crate::support::servers::{free_port, free_port_range};

const CANDIDATES: [&str; 2] = ["/usr/sbin/proftpd", "/opt/audit-trail-ci/proftpd/usr/sbin/proftpd"];
/// `nobody` / `nogroup` on Debian: the account proftpd serves files as.
const NOBODY: u32 = 65534;

struct Proftpd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// The account's upload directory on disk (`incoming` in FTP paths).
    incoming: PathBuf,
}

impl Proftpd {
    fn start() -> Proftpd {
        Proftpd::start_with(false)
    }

    /// With `tls`: FTPS through mod_tls with its defaults (TLS 1.2 and 1.3,
    /// session reuse required on data connections), a self-signed
    /// certificate for 127.0.0.1 (`cert.pem`) and its log in `tls.log`.
    fn start_with(tls: bool) -> Proftpd {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "proftpd tests run as root (CI does)");
        let bin = CANDIDATES.iter().find(|p| Path::new(p).exists()).unwrap_or_else(|| {
            panic!("proftpd is missing: install proftpd-core, or run .ci/run, which unpacks it into {}", CANDIDATES[1])
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home/audit");
        let incoming = home.join("incoming");
        std::fs::create_dir_all(&incoming).unwrap();
        for p in [dir.path().join("home"), home.clone(), incoming.clone()] {
            std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let hash = Command::new("openssl").args(["passwd", "-6", "pw"]).output().expect("openssl is needed");
        let hash = String::from_utf8(hash.stdout).unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, format!("audit:{}:{NOBODY}:{NOBODY}::{}:/bin/false\n", hash.trim(), home.display()))
            .unwrap();
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("pw"), "pw\n").unwrap();
        let port = free_port();
        let (pasv_min, pasv_max) = free_port_range(20);
        let d = dir.path().display();
        let conf = dir.path().join("proftpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ServerType standalone\nPort {port}\nDefaultAddress 127.0.0.1\nSocketBindTight on\nUser nobody\n\
                 Group nogroup\nPidFile {d}/proftpd.pid\nScoreboardFile {d}/scoreboard\nDelayTable none\n\
                 WtmpLog off\nUseReverseDNS off\nAuthOrder mod_auth_file.c\nAuthUserFile {d}/passwd\n\
                 RequireValidShell off\nDefaultRoot ~\nPassivePorts {pasv_min} {pasv_max}\nAllowOverwrite off\n"
            ),
        )
        .unwrap();
        if tls {
            let modules = Path::new(bin).parent().unwrap().join("../lib/proftpd");
            assert!(
                modules.join("mod_tls.so").exists(),
                "proftpd's mod_tls is missing from {}: install proftpd-mod-crypto, or run .ci/run, which unpacks it",
                modules.display()
            );
            let made = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
                .arg("-keyout")
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(dir.path().join("cert.pem"))
                .output()
                .expect("openssl is needed");
            assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(&format!(
                "ModulePath {m}\nLoadModule mod_tls.c\nTLSEngine on\nTLSLog {d}/tls.log\n\
                 TLSRSACertificateFile {d}/cert.pem\nTLSRSACertificateKeyFile {d}/key.pem\n\
                 TLSProtocol TLSv1.2 TLSv1.3\n",
                m = modules.display()
            ));
            std::fs::write(&conf, text).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("proftpd.log")).unwrap();
        let child = Command::new(bin)
            .arg("-n")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut server = Proftpd { child, port, dir, incoming };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                let log = std::fs::read_to_string(server.dir.path().join("proftpd.log")).unwrap_or_default();
                panic!("proftpd did not start listening on 127.0.0.1:{port}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn target(&self) -> String {
        format!(
            "[targets.auditors]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"audit\"\n\
             password_file = \"{}\"\nremote_dir = \"incoming\"\nretry_delay_ms = 100\n",
            self.port,
            self.dir.path().join("pw").display()
        )
    }
}

impl Drop for Proftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `.part` left by a broken transfer cannot be written over on proftpd's
/// default: it is removed and the file sent, in the same run.
#[test]
fn a_stale_part_on_a_server_that_refuses_overwrites_is_replaced() {
    let ftpd = Proftpd::start();
    let env = Env::with_config(&format!("host_name = \"pbx01\"\ncapacity = 5\n{}", ftpd.target()));
    env.run_with_input(&["append", "--json", "-"], &json_records(15)).success();
    env.run(&["archive"]).success();
    let mut archived: Vec<String> = std::fs::read_dir(env.data.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml.gz"))
        .collect();
    archived.sort();
    assert!(archived.len() >= 2);
    // What an interrupted earlier run leaves: the first 100 bytes of the first file.
    let first = std::fs::read(env.data.join("archive").join(&archived[0])).unwrap();
    let part = ftpd.incoming.join(format!(".{}.part", archived[0]));
    std::fs::write(&part, &first[..100]).unwrap();
    std::os::unix::fs::chown(&part, Some(NOBODY), Some(NOBODY)).unwrap();
    let run = env.run(&["upload"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let mut on_server: Vec<String> = std::fs::read_dir(&ftpd.incoming)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_server.sort();
    assert_eq!(on_server, archived, "every file under its final name, no .part left");
    assert_eq!(std::fs::read(ftpd.incoming.join(&archived[0])).unwrap(), first);
}

/// FTPS to proftpd with mod_tls's defaults: every data connection must
/// resume the control connection's TLS session, and over TLS 1.3 proftpd
/// sends tickets only on full handshakes (two per login). Many files go in
/// one run with `retries = 0`, and the server refuses no data connection
/// (the login moves to TLS 1.2 before the tickets run out).
#[test]
fn ftps_to_proftpd_defaults_sends_many_files_without_a_refused_data_connection() {
    let ftpd = Proftpd::start_with(true);
    let target = ftpd.target().replace("protocol = \"ftp\"", "protocol = \"ftps\"")
        + &format!("ca_file = \"{}\"\nretries = 0\n", ftpd.dir.path().join("cert.pem").display());
    let env = Env::with_config(&format!("host_name = \"pbx01\"\ncapacity = 5\n{target}"));
    env.run_with_input(&["append", "--json", "-"], &json_records(100)).success();
    env.run(&["archive"]).success();
    let archived = std::fs::read_dir(env.data.join("archive"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".xml.gz"))
        .count();
    assert!(archived >= 15, "{archived} files");
    let started = Instant::now();
    let run = env.run(&["upload"]);
    let took = started.elapsed();
    let tls_log = std::fs::read_to_string(ftpd.dir.path().join("tls.log")).unwrap_or_default();
    assert_eq!(run.code, Some(0), "{}{}\n--- tls.log ---\n{tls_log}", run.stdout, run.stderr);
    let refused = tls_log.lines().filter(|l| l.contains("rejecting data connection")).count();
    assert_eq!(refused, 0, "data connections refused:\n{tls_log}");
    let on_server = std::fs::read_dir(&ftpd.incoming)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
            n.ends_with(".xml.gz") && !n.starts_with('.')
        })
        .count();
    assert_eq!(on_server, archived, "every file under its final name");
    assert!(took < Duration::from_secs(10), "{archived} files took {took:?}: {}", run.stdout);
    // The next run (a new process) starts over TLS 1.3 again and switches again.
    env.run_with_input(&["append", "--json", "-"], &json_records(20)).success();
    env.run(&["archive"]).success();
    let run = env.run(&["upload"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let tls_log = std::fs::read_to_string(ftpd.dir.path().join("tls.log")).unwrap_or_default();
    assert_eq!(tls_log.matches("rejecting data connection").count(), 0, "{tls_log}");
}
