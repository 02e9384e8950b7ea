//! Uploads against proftpd with the defaults that matter to a client
//! (`AllowOverwrite off`: a file may not be written over). proftpd conflicts
//! with vsftpd as a Debian package, so `.ci/run` unpacks proftpd-core into
//! /opt/audit-trail-ci/proftpd when it is not installed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Env, json_records};
use crate::servers::{free_port, free_port_range};

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
