//! A second real syslog receiver for the SIEM-forwarding tests: syslog-ng,
//! which parses messages more strictly than rsyslog (it refuses an RFC 5424
//! HOSTNAME holding `[` or a stray `:`) and ends a newline-framed message at
//! NUL. One instance listens on three ports of 127.0.0.1:
//!
//! - `syslog_tcp`: the `syslog()` source over TCP, RFC 6587 octet counting;
//! - `network_tcp`: the `network()` source over TCP, one message per line
//!   (the usual port-514 source), RFC 5424 parsed (`flags(syslog-protocol)`);
//! - `syslog_udp`: the `syslog()` source over UDP.
//!
//! Each writes what syslog-ng parsed, one message per line, as
//! `SOURCE TAB HOST TAB PROGRAM TAB MSGID TAB MSG` to `output`, so a test sees
//! the message as the receiver understood it (a refused message shows as
//! syslog-ng's own "Error processing log message", a glued one as one line).
//!
//! syslog-ng conflicts with rsyslog as a Debian package, so it runs from the
//! unpacked `syslog-ng-core` package: `.ci/run` puts it in
//! [`DEFAULT_ROOT`] (`apt-get download syslog-ng-core` and `dpkg -x`); the
//! environment variable `AUDIT_TRAIL_SYSLOG_NG_ROOT` names another such
//! directory, and an installed `/usr/sbin/syslog-ng` is used when neither
//! exists. A receiver that cannot start fails the test with syslog-ng's own
//! output (nothing is skipped); dropping the handle kills it.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/run` unpacks the syslog-ng-core package.
pub const DEFAULT_ROOT: &str = "/opt/audit-trail-ci/syslog-ng";

const PROBE_MARKER: &str = "audit-trail-harness-probe";

pub struct SyslogNg {
    pub syslog_tcp: u16,
    pub network_tcp: u16,
    pub syslog_udp: u16,
    pub output: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

/// The syslog-ng program and the library and module directories it needs.
fn program() -> (PathBuf, Option<PathBuf>, Option<PathBuf>) {
    let root = std::env::var_os("AUDIT_TRAIL_SYSLOG_NG_ROOT").map(PathBuf::from);
    let root = root.or_else(|| Some(PathBuf::from(DEFAULT_ROOT)).filter(|r| r.join("usr/sbin/syslog-ng").exists()));
    if let Some(root) = root {
        let bin = root.join("usr/sbin/syslog-ng");
        assert!(
            bin.exists(),
            "{} does not exist: unpack the Debian package syslog-ng-core there (apt-get download syslog-ng-core; \
             dpkg -x syslog-ng-core_*.deb DIR), as .ci/run does",
            bin.display()
        );
        let lib = root.join("usr/lib/syslog-ng");
        let modules = fs::read_dir(&lib)
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.join("libaffile.so").exists()));
        return (bin, Some(lib), modules);
    }
    let bin = PathBuf::from("/usr/sbin/syslog-ng");
    assert!(
        bin.exists(),
        "syslog-ng is needed by the SIEM tests and was not found in {DEFAULT_ROOT}, $AUDIT_TRAIL_SYSLOG_NG_ROOT or \
         /usr/sbin: run .ci/run, which unpacks the Debian package syslog-ng-core into {DEFAULT_ROOT} (it conflicts \
         with rsyslog as an installed package) and installs its libraries (libivykis0, libnet1, libpcre3)"
    );
    (bin, None, None)
}

fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

impl SyslogNg {
    #[track_caller]
    pub fn start() -> SyslogNg {
        let (bin, lib, modules) = program();
        let dir = tempfile::Builder::new().prefix("audit-trail-syslog-ng.").tempdir().unwrap();
        let d = dir.path();
        let (syslog_tcp, network_tcp, syslog_udp) = (free_tcp_port(), free_tcp_port(), free_udp_port());
        let output = d.join("messages.log");
        let probes = d.join("probes.log");
        let conf = format!(
            "@version: 3.38\n\
             options {{ keep-hostname(yes); chain-hostnames(no); use-dns(no); dns-cache(no); stats-freq(0);\n  \
               log-msg-size(1048576); flush-lines(1); }};\n\
             source s_syslog_tcp {{ syslog(ip(\"127.0.0.1\") port({syslog_tcp}) transport(\"tcp\") max-connections(50)); }};\n\
             source s_network_tcp {{ network(ip(\"127.0.0.1\") port({network_tcp}) transport(\"tcp\") flags(syslog-protocol) max-connections(50)); }};\n\
             source s_syslog_udp {{ syslog(ip(\"127.0.0.1\") port({syslog_udp}) transport(\"udp\")); }};\n\
             source s_internal {{ internal(); }};\n\
             filter f_probe {{ message(\"{PROBE_MARKER}\" type(string)); }};\n\
             template t_rec {{ template(\"${{SOURCE}}\\t${{HOST}}\\t${{PROGRAM}}\\t${{MSGID}}\\t${{MSG}}\\n\"); template-escape(no); }};\n\
             destination d_out {{ file(\"{out}\" template(t_rec)); }};\n\
             destination d_probe {{ file(\"{probe}\" template(t_rec)); }};\n\
             destination d_internal {{ file(\"{internal}\"); }};\n\
             log {{ source(s_syslog_tcp); source(s_network_tcp); source(s_syslog_udp); filter(f_probe); destination(d_probe); flags(final); }};\n\
             log {{ source(s_syslog_tcp); source(s_network_tcp); source(s_syslog_udp); destination(d_out); }};\n\
             log {{ source(s_internal); destination(d_internal); }};\n",
            out = output.display(),
            probe = probes.display(),
            internal = d.join("internal.log").display(),
        );
        fs::write(d.join("syslog-ng.conf"), &conf).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg("-F").arg("-f").arg(d.join("syslog-ng.conf"));
        cmd.arg("-R").arg(d.join("persist")).arg("-p").arg(d.join("pid")).arg("-c").arg(d.join("ctl")).arg("--no-caps");
        if let Some(m) = &modules {
            cmd.arg(format!("--module-path={}", m.display()));
        }
        if let Some(l) = &lib {
            cmd.env("LD_LIBRARY_PATH", l);
        }
        let log = fs::File::create(d.join("syslog-ng.out")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut sng = SyslogNg { syslog_tcp, network_tcp, syslog_udp, output, dir, child };
        sng.wait_ready(&probes, &conf);
        sng
    }

    /// Ready once a probe over each of the three sources has arrived.
    #[track_caller]
    fn wait_ready(&mut self, probes: &std::path::Path, conf: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("syslog-ng exited ({status}) while starting:\n{}\n--- configuration ---\n{conf}", self.log());
            }
            let got = fs::read_to_string(probes).unwrap_or_default();
            if ["s_syslog_tcp", "s_network_tcp", "s_syslog_udp"].iter().all(|s| got.contains(s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "syslog-ng did not receive its probes within 20 s:\n{got}\n{}\n--- configuration ---\n{conf}",
                self.log()
            );
            let probe = format!("<14>1 - localhost harness - - - {PROBE_MARKER}");
            if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.syslog_tcp)) {
                let _ = s.write_all(format!("{} {probe}", probe.len()).as_bytes());
            }
            if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.network_tcp)) {
                let _ = s.write_all(format!("{probe}\n").as_bytes());
            }
            if let Ok(s) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
                let _ = s.send_to(probe.as_bytes(), (Ipv4Addr::LOCALHOST, self.syslog_udp));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// syslog-ng's own output and its internal messages.
    pub fn log(&self) -> String {
        let d = self.dir.path();
        format!(
            "--- syslog-ng output ---\n{}--- syslog-ng internal messages ---\n{}",
            fs::read_to_string(d.join("syslog-ng.out")).unwrap_or_default(),
            fs::read_to_string(d.join("internal.log")).unwrap_or_default()
        )
    }

    /// The messages stored so far (complete lines).
    pub fn messages(&self) -> Vec<String> {
        let bytes = fs::read(&self.output).unwrap_or_default();
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
        bytes[..end].split(|&b| b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned()).collect()
    }
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn syslog_ng_receives_on_its_three_sources() {
    let sng = SyslogNg::start();
    let m = "<14>1 2026-01-01T00:00:00Z pbx01 app - audit - hello";
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, sng.syslog_tcp)).unwrap();
    s.write_all(format!("{} {m} 1", m.len() + 2).as_bytes()).unwrap();
    drop(s);
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, sng.network_tcp)).unwrap();
    s.write_all(format!("{m} 2\n").as_bytes()).unwrap();
    drop(s);
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .send_to(format!("{m} 3").as_bytes(), (Ipv4Addr::LOCALHOST, sng.syslog_udp))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sng.messages().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut got = sng.messages();
    got.sort();
    assert_eq!(
        got,
        [
            "s_network_tcp\tpbx01\tapp\taudit\thello 2",
            "s_syslog_tcp\tpbx01\tapp\taudit\thello 1",
            "s_syslog_udp\tpbx01\tapp\taudit\thello 3"
        ],
        "{}",
        sng.log()
    );
}
