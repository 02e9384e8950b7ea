//! Uploads against proftpd with the defaults that matter to a client
//! (`AllowOverwrite off`: a file may not be written over, over FTP, FTPS and
//! SFTP alike): FTP, FTPS through mod_tls and SFTP through mod_sftp. proftpd
//! conflicts with vsftpd as a Debian package, so `.ci/run` unpacks
//! proftpd-core into /opt/audit-trail-ci/proftpd when it is not installed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::{Env, json_records};
use crate::support::servers::{free_port, free_port_range};

const CANDIDATES: [&str; 2] = ["/usr/sbin/proftpd", "/opt/audit-trail-ci/proftpd/usr/sbin/proftpd"];
/// `nobody` / `nogroup` on Debian: the account proftpd serves files as.
const NOBODY: u32 = 65534;

/// What a started proftpd speaks on its port.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Speaks {
    Ftp,
    /// FTPS through mod_tls with its defaults (TLS 1.2 and 1.3, session
    /// reuse required on data connections), a self-signed certificate for
    /// 127.0.0.1 (`cert.pem`) and its log in `tls.log`.
    Ftps,
    /// SFTP only, through mod_sftp with its defaults: an ed25519 host key
    /// made by ssh-keygen (`host_ed25519`), the client key `client_ed25519`
    /// authorised for `audit` by `SFTPAuthorizedUserKeys file:…` (in the RFC
    /// 4716 format mod_sftp reads, from `ssh-keygen -e`), a `known_hosts`
    /// listing the host key, and its log in `sftp.log`.
    Sftp,
}

struct Proftpd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// The account's upload directory on disk (`incoming` in FTP and SFTP
    /// paths: the login is confined to the home directory).
    incoming: PathBuf,
}

/// Runs a tool the tests need and panics with its output when it fails.
fn run_tool(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// proftpd's loadable module `name`, next to the binary used.
fn module_dir(bin: &str, name: &str) -> PathBuf {
    let modules = Path::new(bin).parent().unwrap().join("../lib/proftpd");
    assert!(
        modules.join(name).exists(),
        "proftpd's {name} is missing from {}: install proftpd-mod-crypto, or run .ci/run, which unpacks it",
        modules.display()
    );
    modules
}

impl Proftpd {
    fn start() -> Proftpd {
        Proftpd::start_with(Speaks::Ftp)
    }

    fn start_with(speaks: Speaks) -> Proftpd {
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
        if speaks == Speaks::Ftps {
            let modules = module_dir(bin, "mod_tls.so");
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
        if speaks == Speaks::Sftp {
            let modules = module_dir(bin, "mod_sftp.so");
            let host_key = dir.path().join("host_ed25519");
            let client_key = dir.path().join("client_ed25519");
            for key in [&host_key, &client_key] {
                run_tool(
                    Command::new("ssh-keygen")
                        .args(["-q", "-t", "ed25519", "-N", "", "-C", "audit-trail-test", "-f"])
                        .arg(key),
                    "ssh-keygen (Debian package openssh-client)",
                );
            }
            let authorized = run_tool(
                Command::new("ssh-keygen").arg("-e").arg("-f").arg(client_key.with_extension("pub")),
                "ssh-keygen -e",
            );
            std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
            let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
            let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
            std::fs::write(dir.path().join("known_hosts"), format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")))
                .unwrap();
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(&format!(
                "ModulePath {m}\nLoadModule mod_sftp.c\nSFTPEngine on\nSFTPLog {d}/sftp.log\n\
                 SFTPHostKey {k}\nSFTPAuthorizedUserKeys file:{d}/authorized_keys\n",
                m = modules.display(),
                k = host_key.display()
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

    /// The target for a server started with [`Speaks::Sftp`]: public-key
    /// login, the host key checked against the `known_hosts` the test wrote,
    /// files to `remote_dir` (relative to the login directory).
    fn sftp_target(&self, remote_dir: &str) -> String {
        let d = self.dir.path();
        format!(
            "[targets.auditors]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"audit\"\n\
             key_file = \"{}\"\nknown_hosts = \"{}\"\nremote_dir = \"{remote_dir}\"\ntimeout_secs = 10\n\
             retry_delay_ms = 100\n",
            self.port,
            d.join("client_ed25519").display(),
            d.join("known_hosts").display()
        )
    }

    /// proftpd's and mod_sftp's logs, for failure messages.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("--- proftpd.log ---\n{}--- sftp.log ---\n{}", read("proftpd.log"), read("sftp.log"))
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
    let ftpd = Proftpd::start_with(Speaks::Ftps);
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

/// The archived files of a data directory, by name, with their bytes.
fn archived_files(env: &Env) -> Vec<(String, Vec<u8>)> {
    files_in(&env.data.join("archive")).into_iter().filter(|(n, _)| n.ends_with(".xml.gz")).collect()
}

/// Every file in `dir` (hidden ones included), by name, with its bytes.
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn names(files: &[(String, Vec<u8>)]) -> Vec<&str> {
    files.iter().map(|(n, _)| n.as_str()).collect()
}

/// SFTP to proftpd's mod_sftp with its defaults, public-key login: several
/// files in one run (one login), each on the server byte for byte as in the
/// local archive and under its final name only; a second run sends nothing
/// and leaves the server's files as they were.
#[test]
fn sftp_to_proftpd_mod_sftp_sends_every_file_once_byte_for_byte() {
    let sftpd = Proftpd::start_with(Speaks::Sftp);
    let env =
        Env::with_config(&format!("host_name = \"pbx01\"\ncapacity = 5\n{}", sftpd.sftp_target("incoming/pbx01")));
    env.run_with_input(&["append", "--json", "-"], &json_records(23)).success();
    env.run(&["archive"]).success();
    // And one large file (incompressible bytes), so that many WRITEs are in
    // flight at once and the server answers them while more arrive.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: Vec<u8> = (0..(6 << 20) + 12_345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(env.data.join("archive/pbx01_20260101000000.xml.gz"), &big).unwrap();
    let archived = archived_files(&env);
    let n = archived.len();
    assert!(n >= 3, "{:?}", names(&archived));

    let run = env.run(&["upload"]);
    assert_eq!(run.code, Some(0), "{}{}\n{}", run.stdout, run.stderr, sftpd.logs());
    assert!(run.stdout.contains(&format!("uploaded {n} file(s)")), "{}", run.stdout);
    // remote_dir did not exist: it was created (STAT, then MKDIR).
    let remote_dir = sftpd.incoming.join("pbx01");
    let on_server = files_in(&remote_dir);
    assert_eq!(names(&on_server), names(&archived), "every file under its final name, no .part left");
    for ((name, remote), (_, local)) in on_server.iter().zip(&archived) {
        assert!(
            remote == local,
            "{name}: {} bytes on the server differ from the {} archived",
            remote.len(),
            local.len()
        );
    }
    let logins = |logs: &str| logs.matches("Login successful.").count();
    assert_eq!(logins(&sftpd.logs()), 1, "one login for all files:\n{}", sftpd.logs());
    let ledger = env.data.join("state/uploads/auditors.ledger");
    assert_eq!(std::fs::read_to_string(&ledger).unwrap().lines().count(), n);

    let mtimes = |dir: &Path| -> Vec<std::time::SystemTime> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| (e.as_ref().unwrap().file_name(), e.unwrap().metadata().unwrap().modified().unwrap()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, t)| t).collect()
    };
    let before = mtimes(&remote_dir);
    let again = env.run(&["upload"]);
    assert_eq!(again.code, Some(0), "{}{}\n{}", again.stdout, again.stderr, sftpd.logs());
    assert!(
        again.stdout.contains("uploaded 0 file(s)") && again.stdout.contains(&format!("{n} uploaded earlier")),
        "{}",
        again.stdout
    );
    assert_eq!(files_in(&remote_dir), on_server, "the second run changed the server's files");
    assert_eq!(mtimes(&remote_dir), before, "the second run wrote files again");
    assert_eq!(std::fs::read_to_string(&ledger).unwrap().lines().count(), n);
}

/// A `.part` left on proftpd's mod_sftp by a broken transfer: with
/// `AllowOverwrite off` (proftpd's default, for SFTP too) the server refuses
/// to open it for writing; the run removes it and sends the file whole.
#[test]
fn sftp_to_proftpd_mod_sftp_replaces_a_stale_part_it_may_not_overwrite() {
    let sftpd = Proftpd::start_with(Speaks::Sftp);
    let env = Env::with_config(&format!("host_name = \"pbx01\"\ncapacity = 5\n{}", sftpd.sftp_target("incoming")));
    env.run_with_input(&["append", "--json", "-"], &json_records(15)).success();
    env.run(&["archive"]).success();
    let archived = archived_files(&env);
    let n = archived.len();
    assert!(n >= 2, "{:?}", names(&archived));
    // What an interrupted earlier run leaves: the first 100 bytes of the first file.
    let part = sftpd.incoming.join(format!(".{}.part", archived[0].0));
    std::fs::write(&part, &archived[0].1[..100]).unwrap();
    std::os::unix::fs::chown(&part, Some(NOBODY), Some(NOBODY)).unwrap();

    let run = env.run(&["upload"]);
    assert_eq!(run.code, Some(0), "{}{}\n{}", run.stdout, run.stderr, sftpd.logs());
    assert!(run.stdout.contains(&format!("uploaded {n} file(s)")), "{}", run.stdout);
    assert_eq!(files_in(&sftpd.incoming), archived, "every file whole under its final name, no .part left");
    // The server did refuse to write over the stale file (mod_xfer's STOR
    // check applies AllowOverwrite to SFTP), so the removal was needed.
    let log = std::fs::read_to_string(sftpd.dir.path().join("sftp.log")).unwrap_or_default();
    let refused = format!("OPEN command for 'incoming/.{}.part' blocked by 'STOR' handler", archived[0].0);
    assert!(log.contains(&refused), "mod_sftp did not refuse to write over the .part:\n{}", sftpd.logs());
}
