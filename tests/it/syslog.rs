//! A real syslog receiver for the SIEM-forwarding tests: `rsyslogd` on
//! 127.0.0.1, receiving over UDP, plain TCP, or TLS (imtcp with the GnuTLS
//! stream driver and a test CA), and writing every message it receives, as
//! received, to a file, one per line. Every test starts its own instance
//! with its own configuration, port and files in a temporary directory; an
//! instance that cannot start fails the test with rsyslogd's own output and
//! its configuration (nothing is skipped), and dropping the handle kills it.
//! The process management is the upload servers' ([`Daemon`] in
//! `servers.rs`).
//!
//! TLS uses the GnuTLS driver (`gtls`), not the OpenSSL one (`ossl`): with
//! rsyslog 8.2302's `ossl` driver, about one new TLS 1.3 connection in
//! several thousand, on a busy machine, had its message silently dropped
//! (the client completed the handshake and sent it; rsyslogd logged
//! nothing). The same load test passed with `gtls` over TLS 1.2 and 1.3.
//!
//! Requirements (Debian packages; `.ci/run` installs them): rsyslog,
//! rsyslog-gnutls (the TLS stream driver), openssl (the test CA, and
//! `s_client` for the self-checks). Root is not needed.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::servers::{
    Daemon, Ready, START_TIMEOUT, ServerKind, Since, file_len, make_test_pki, port_refuses, read_from,
    require_executable, server_handle_methods, wait_until,
};

pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// rsyslogd's `maxMessageSize`: the longest message that arrives whole. A
/// longer TCP or TLS message arrives cut to this many bytes, the rest of it
/// is discarded, and rsyslogd logs "received oversize message" (see
/// [`Rsyslog::log`]). A UDP datagram holds at most 65507 bytes. 512 KiB:
/// the hostile records of `siem_interop` (13 values of up to 4 KiB, each up
/// to seven times longer once CEF escapes its control characters) arrive
/// whole.
pub const MAX_MESSAGE_SIZE: usize = 512 << 10;

/// imtcp's `maxFrameSize` (default 200000): an octet-counted frame whose count
/// is larger is a framing error, not a message cut to `maxMessageSize`.
const MAX_FRAME_SIZE: usize = 2 * MAX_MESSAGE_SIZE;

/// The configuration routes messages containing this text to a file of their
/// own instead of `output` (and [`Rsyslog::messages`] leaves out any line
/// containing it): the harness sends such a probe message to see that a new
/// instance receives.
pub const PROBE_MARKER: &str = "audit-trail-harness-probe";

/// How a [`Rsyslog`] receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// RFC 5426: one message per datagram.
    Udp,
    /// RFC 6587: octet-counted (`LEN SP MSG`) and LF-terminated messages,
    /// mixed freely on one connection.
    Tcp,
    /// RFC 5425: the same framing as `Tcp` inside TLS 1.2 or 1.3; the server
    /// is authenticated by `ca_file`, the client is not.
    Tls,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// A running rsyslogd on 127.0.0.1:`port` that writes every message it
/// receives to `output`. Stopping it loses the messages it had received but
/// not yet written ([`wait_for`](Self::wait_for) them first); after a
/// restart it receives on the same port, with the same configuration and
/// certificate, and appends to the same `output`.
pub struct Rsyslog {
    pub port: u16,
    pub transport: Transport,
    /// For TLS: the PEM certificate of the test CA that signed the server
    /// certificate (subjectAltName IP:127.0.0.1 and DNS:localhost).
    pub ca_file: Option<PathBuf>,
    /// Every message received, in the order rsyslogd processed it, exactly as
    /// it arrived (the syslog frame's content: without the octet count or the
    /// terminating LF), each followed by a newline. One trailing LF of a
    /// message is removed on reception; a message that contains newlines
    /// spans several lines.
    pub output: PathBuf,
    server: Daemon,
}

/// rsyslogd in the foreground (`-n`), without pid file (`-iNONE`). Its
/// standard streams get only the problems it reports; its own messages go
/// to a log file, written by its default ruleset.
const RSYSLOGD_KIND: ServerKind = ServerKind {
    name: "rsyslogd",
    program: RSYSLOGD,
    args: &["-n", "-iNONE", "-f"],
    config: "rsyslog.conf",
    output: "rsyslogd.out",
    log: Some("rsyslogd.log"),
    port_in_use: &["Address already in use", "Could not create tcp listener"],
    hint: Some((
        "lmnsd_gtls",
        "the TLS stream driver is missing: install the Debian package rsyslog-gnutls (.ci/run installs it)",
    )),
};

impl Rsyslog {
    /// Starts a receiver for syslog over `transport` on a free port; for TLS
    /// with a new test CA (`ca_file`) and a server certificate it signed.
    #[track_caller]
    pub fn start(transport: Transport) -> Rsyslog {
        require_executable(RSYSLOGD, "rsyslog");
        let dir =
            tempfile::Builder::new().prefix("audit-trail-rsyslog.").tempdir().expect("create a temporary directory");
        let d = dir.path().to_owned();
        let work = d.join("work");
        fs::create_dir(&work).unwrap();
        let tls = (transport == Transport::Tls).then(|| {
            require_executable("/usr/bin/openssl", "openssl");
            make_test_pki(&d.join("tls"))
        });
        let ca_file = tls.as_ref().map(|(ca, _, _)| ca.clone());
        let output = d.join("messages.log");
        let probe = Probe { transport, ca_file: ca_file.clone(), probes: d.join("probes.log") };
        let config = |server: &Daemon| {
            let tls_files = tls.as_ref().map(|(ca, cert, key)| (ca.as_path(), cert.as_path(), key.as_path()));
            config_text(server, &probe, &work, &output, tls_files)
        };
        let mut server = Daemon::new(&RSYSLOGD_KIND, dir, Vec::new(), probe.clone());
        server.udp = transport == Transport::Udp;
        server.start(config);
        Rsyslog { port: server.port, transport, ca_file, output, server }
    }

    server_handle_methods!();

    /// The messages in `output` so far, one per line (lines not yet
    /// terminated by a newline are left out). Bytes that are not UTF-8 show
    /// as U+FFFD.
    pub fn messages(&self) -> Vec<String> {
        let bytes = fs::read(&self.output).unwrap_or_default();
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
        bytes[..end]
            .split(|&b| b == b'\n')
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .filter(|line| !line.contains(PROBE_MARKER))
            .collect()
    }

    /// Waits until `output` holds at least `n` messages and returns them
    /// all; panics with what arrived and rsyslogd's log after `timeout`.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() > deadline {
                panic!(
                    "rsyslogd ({} on 127.0.0.1:{}) received {} of the {n} expected messages within {timeout:?}:\n\
                     {messages:#?}\n{}",
                    self.transport.name(),
                    self.port,
                    messages.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The configuration: only the input of the probe's transport is loaded (no
/// imuxsock, no imklog), so this instance neither reads nor writes the
/// system log. Received messages go to `output`, the probe messages to
/// `probe.probes`, rsyslogd's own messages to its log file.
fn config_text(
    server: &Daemon,
    probe: &Probe,
    work: &Path,
    output: &Path,
    tls: Option<(&Path, &Path, &Path)>,
) -> String {
    let port = server.port;
    let internal_log = server.log.as_deref().expect("rsyslogd has a log file");
    let mut global = format!(
        "    workDirectory={}\n    \
             processInternalMessages=\"on\"\n    \
             maxMessageSize=\"{MAX_MESSAGE_SIZE}\"\n    \
             net.enableDNS=\"off\"\n    \
             parser.escapeControlCharactersOnReceive=\"off\"\n    \
             parser.escape8BitCharactersOnReceive=\"off\"\n",
        quoted(work)
    );
    if let Some((ca, cert, key)) = tls {
        global.push_str(&format!(
            "    defaultNetstreamDriverCAFile={}\n    \
                 defaultNetstreamDriverCertFile={}\n    \
                 defaultNetstreamDriverKeyFile={}\n",
            quoted(ca),
            quoted(cert),
            quoted(key)
        ));
    }
    let tcp_input = format!(
        "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"received\"\n      \
               supportOctetCountedFraming=\"on\" discardTruncatedMsg=\"on\"\n      \
               maxFrameSize=\"{MAX_FRAME_SIZE}\")\n"
    );
    let input = match probe.transport {
        Transport::Udp => format!(
            "module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"received\")\n"
        ),
        Transport::Tcp => format!("module(load=\"imtcp\")\n{tcp_input}"),
        Transport::Tls => format!(
            "# gnutlsPriorityString: GnuTLS's defaults, TLS 1.2 and 1.3 (without it: TLS 1.2 only).\n\
             module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\"\n       \
                    gnutlsPriorityString=\"NORMAL\")\n\
             {tcp_input}"
        ),
    };
    let file_action = |file: &Path| {
        format!(
            "action(type=\"omfile\" file={} template=\"audit_trail_raw\"\n           \
                    flushOnTXEnd=\"on\" asyncWriting=\"off\")",
            quoted(file)
        )
    };
    format!(
        "# rsyslogd for the audit-trail tests: syslog over {transport} on 127.0.0.1:{port}.\n\
         # global() comes first: maxMessageSize must be set before an input is loaded.\n\
         global(\n{global})\n\
         \n\
         # The message as received, without any change, and a newline.\n\
         template(name=\"audit_trail_raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
         \n\
         ruleset(name=\"received\") {{\n    \
             if $rawmsg contains \"{PROBE_MARKER}\" then {{\n        \
                 {probes}\n        \
                 stop\n    \
             }}\n    \
             {output}\n\
         }}\n\
         \n\
         {input}\
         \n\
         # rsyslogd's own messages.\n\
         action(type=\"omfile\" file={internal})\n",
        transport = probe.transport.name(),
        probes = file_action(&probe.probes),
        output = file_action(output),
        internal = quoted(internal_log),
    )
}

/// How rsyslogd is seen to receive: it is ready once it has logged its
/// start without reporting any problem, and a probe message sent to it over
/// `transport` (again every 200 ms) has arrived in `probes`.
#[derive(Clone)]
struct Probe {
    transport: Transport,
    /// For TLS: the test CA that the probe's client trusts.
    ca_file: Option<PathBuf>,
    /// Where the configuration writes the probe messages.
    probes: PathBuf,
}

impl Ready for Probe {
    fn wait(&self, server: &Daemon, child: &mut Child, since: &Since) -> Result<(), String> {
        let pid = child.id();
        let started = format!("x-pid=\"{pid}\"");
        let probe = format!("<14>1 - localhost audit-trail-test - - - {PROBE_MARKER} pid={pid}");
        let internal_log = server.log.as_deref().expect("rsyslogd has a log file");
        // Nothing has sent this start a probe yet.
        let probes_offset = file_len(&self.probes);
        let mut next_probe = Instant::now();
        let mut probe_error = None;
        let ready = wait_until(child, Duration::from_millis(10), || {
            let log = read_from(internal_log, since.log);
            if !log.lines().any(|line| line.contains(&started) && line.ends_with("] start")) {
                return Ok(false);
            }
            if !read_from(&server.output, since.output).is_empty() {
                return Err("rsyslogd reported problems while starting".into());
            }
            if read_from(&self.probes, probes_offset).lines().any(|line| line == probe) {
                return Ok(true);
            }
            if Instant::now() >= next_probe {
                probe_error = self.send(server.port, &probe).err();
                next_probe = Instant::now() + Duration::from_millis(200);
            }
            Ok(false)
        })?;
        if ready {
            return Ok(());
        }
        let mut reason = format!(
            "no probe message sent over {} to 127.0.0.1:{} arrived within {START_TIMEOUT:?}",
            self.transport.name(),
            server.port
        );
        if let Some(e) = probe_error {
            reason.push_str(&format!(" (last attempt: {e})"));
        }
        Err(reason)
    }
}

impl Probe {
    fn send(&self, port: u16, probe: &str) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        match self.transport {
            Transport::Udp => {
                let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
                socket.send_to(probe.as_bytes(), addr).map_err(|e| format!("send: {e}"))?;
                Ok(())
            }
            Transport::Tcp => {
                let mut stream =
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
                stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                stream.write_all(&octet_counted(probe)).map_err(|e| format!("send: {e}"))
            }
            Transport::Tls => {
                let ca = self.ca_file.as_deref().expect("a TLS receiver has a CA file");
                tls_send(port, ca, &octet_counted(probe))
            }
        }
    }
}

/// `path` as an rsyslog configuration string constant.
fn quoted(path: &Path) -> String {
    let text = path.to_str().unwrap_or_else(|| panic!("{} is not UTF-8", path.display()));
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `msg` framed with octet counting (RFC 6587): its length in bytes, a space, the message.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    format!("{} {msg}", msg.len()).into_bytes()
}

/// Sends `data` over TLS (rustls) to 127.0.0.1:`port`, trusting only the
/// certificates in `ca_file` and checking the server's name 127.0.0.1, then
/// closes the connection with close_notify and waits for the server to
/// close its side.
pub fn tls_send(port: u16, ca_file: &Path, data: &[u8]) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("read {}: {e}", ca_file.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| format!("TLS setup: {e}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(data).and_then(|()| tls.flush()).map_err(|e| format!("TLS send: {e}"))?;
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).map_err(|e| format!("TLS close: {e}"))?;
    // Reading what the server still sends (TLS 1.3 session tickets, its
    // close_notify) until it closes: a socket closed with unread data ends
    // the connection with a reset instead of a normal close.
    let mut buf = [0u8; 4096];
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Self-checks of the receiver, with independent clients (std sockets,
// `openssl s_client`).

const WAIT: Duration = Duration::from_secs(10);

/// Sends `data` over one TCP connection to 127.0.0.1:`port` and closes it.
fn tcp_send(port: u16, data: &[u8]) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.write_all(data).unwrap();
}

fn udp_send(port: u16, msg: &str) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.send_to(msg.as_bytes(), (Ipv4Addr::LOCALHOST, port)).unwrap();
}

/// `openssl s_client` to 127.0.0.1:`port` that sends `input` and closes the
/// connection at its end; trusts `ca_file`, or OpenSSL's default store if it
/// is `None`, and fails when the certificate does not verify.
fn s_client(port: u16, ca_file: Option<&Path>, extra: &[&str], input: &[u8]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-verify_return_error", "-nocommands"])
        .args(extra);
    if let Some(ca) = ca_file {
        cmd.arg("-CAfile").arg(ca);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client (Debian package openssl)");
    // s_client may fail before reading its input.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// The PEM certificate that the server on 127.0.0.1:`port` presents, as
/// `s_client` prints it (it sends no message).
fn served_certificate(port: u16, ca_file: &Path) -> String {
    let out = s_client(port, Some(ca_file), &["-verify_ip", "127.0.0.1"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "s_client: {}", show(&out));
    let begin = stdout.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("no certificate: {}", show(&out)));
    let end = stdout.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    stdout[begin..end].to_owned()
}

fn show(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn rsyslog_udp_receives_a_datagram() {
    let rsyslog = Rsyslog::start(Transport::Udp);
    assert_eq!(rsyslog.transport, Transport::Udp);
    assert!(rsyslog.ca_file.is_none());
    let msg = "<134>1 2025-01-02T03:04:05.678Z pbx01 audit-trail 4242 AUDIT [meta sequenceId=\"1\"] \
               user=r\u{e9}ception\taction=login \u{20ac}";
    udp_send(rsyslog.port, msg);
    assert_eq!(rsyslog.wait_for(1, WAIT), [msg]);
    // The file holds the datagram byte for byte, and no probe message.
    assert_eq!(fs::read(&rsyslog.output).unwrap(), format!("{msg}\n").into_bytes());
}

#[test]
fn rsyslog_tcp_octet_counting_and_lf() {
    let rsyslog = Rsyslog::start(Transport::Tcp);
    let first = "<134>1 2025-01-02T03:04:05.678Z pbx01 audit-trail 4242 AUDIT - octet-counted caf\u{e9}\tone";
    // An escaped newline (backslash, n) and a trailing space arrive unchanged.
    let second = "<134>1 2025-01-02T03:04:05.679Z pbx01 audit-trail 4242 AUDIT - second \\n escaped ";
    let third = "<134>1 2025-01-02T03:04:05.680Z pbx01 audit-trail 4242 AUDIT - LF-terminated";
    let mut data = octet_counted(first);
    data.extend(octet_counted(second));
    data.extend(format!("{third}\n").into_bytes());
    tcp_send(rsyslog.port, &data);
    assert_eq!(rsyslog.wait_for(3, WAIT), [first, second, third]);
    assert_eq!(fs::read_to_string(&rsyslog.output).unwrap(), format!("{first}\n{second}\n{third}\n"));
}

#[test]
fn rsyslog_tcp_message_size_limit() {
    let rsyslog = Rsyslog::start(Transport::Tcp);
    let header = "<134>1 2025-01-02T03:04:05.678Z pbx01 audit-trail 4242 AUDIT - ";
    let largest = format!("{header}{}", "a".repeat(MAX_MESSAGE_SIZE - header.len()));
    let oversize = format!("{header}{}", "b".repeat(MAX_MESSAGE_SIZE + 1000 - header.len()));
    let next = format!("{header}after the oversize message");
    let mut data = octet_counted(&largest);
    data.extend(octet_counted(&oversize));
    data.extend(octet_counted(&next));
    tcp_send(rsyslog.port, &data);
    let got = rsyslog.wait_for(3, WAIT);
    let lengths: Vec<usize> = got.iter().map(String::len).collect();
    assert_eq!(lengths, [MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE, next.len()]);
    assert!(got[0] == largest, "the largest message arrived changed");
    assert!(got[1] == oversize[..MAX_MESSAGE_SIZE], "the oversize message is not its first {MAX_MESSAGE_SIZE} bytes");
    assert_eq!(got[2], next);
    assert!(rsyslog.log().contains("received oversize message"), "{}", rsyslog.log());
}

#[test]
fn rsyslog_tls_requires_tls() {
    let rsyslog = Rsyslog::start(Transport::Tls);
    let port = rsyslog.port;
    let ca = rsyslog.ca_file.clone().expect("a TLS receiver has a CA file");

    // TLS 1.3 by default.
    let first = "<134>1 2025-01-02T03:04:05.678Z pbx01 audit-trail 4242 AUDIT - over TLS to 127.0.0.1 caf\u{e9}\tok";
    let out = s_client(port, Some(&ca), &["-verify_ip", "127.0.0.1"], &octet_counted(first));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "s_client: {}", show(&out));
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{}", show(&out));
    assert!(stdout.contains("New, TLSv1.3,"), "{}", show(&out));
    assert_eq!(rsyslog.wait_for(1, WAIT), [first]);

    // TLS 1.2 too; the certificate also names localhost.
    let second = "<134>1 2025-01-02T03:04:05.679Z pbx01 audit-trail 4242 AUDIT - over TLS 1.2 to localhost";
    let args = ["-tls1_2", "-servername", "localhost", "-verify_hostname", "localhost"];
    let out = s_client(port, Some(&ca), &args, &octet_counted(second));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "s_client: {}", show(&out));
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{}", show(&out));
    assert!(stdout.contains("New, TLSv1.2,"), "{}", show(&out));
    assert_eq!(rsyslog.wait_for(2, WAIT), [first, second]);

    // Without the test CA the certificate does not verify, and nothing is sent.
    let untrusted = "<134>1 - pbx01 audit-trail - - - sent without trusting the test CA";
    let out = s_client(port, None, &["-verify_ip", "127.0.0.1"], &octet_counted(untrusted));
    assert!(!out.status.success(), "s_client trusted the server without the test CA: {}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate verify failed"), "{}", show(&out));

    // Plain TCP: the server drops the connection and the message.
    let plain = "<134>1 - pbx01 audit-trail - - - sent without TLS";
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.write_all(&octet_counted(plain)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("the TLS port kept a plain TCP connection open for {WAIT:?}")
            }
            Err(_) => break,
        }
    }

    // The harness's own TLS client (rustls) gets through; the messages
    // before it did not.
    let last = "<134>1 2025-01-02T03:04:05.680Z pbx01 audit-trail 4242 AUDIT - over TLS with rustls";
    tls_send(port, &ca, &octet_counted(last)).unwrap_or_else(|e| panic!("{e}\n{}", rsyslog.log()));
    assert_eq!(rsyslog.wait_for(3, WAIT), [first, second, last]);
}

#[test]
fn rsyslog_stop_and_restart_keeps_output() {
    let mut tcp = Rsyslog::start(Transport::Tcp);
    let (port, output) = (tcp.port, tcp.output.clone());
    let before = "<134>1 - pbx01 audit-trail - - - before the restart";
    tcp_send(port, &octet_counted(before));
    assert_eq!(tcp.wait_for(1, WAIT), [before]);
    tcp.stop();
    assert!(port_refuses(port));
    tcp.restart();
    assert_eq!((tcp.port, &tcp.output), (port, &output));
    let after = "<134>1 - pbx01 audit-trail - - - after the restart";
    tcp_send(port, &octet_counted(after));
    assert_eq!(tcp.wait_for(2, WAIT), [before, after]);
    assert_eq!(fs::read_to_string(&output).unwrap(), format!("{before}\n{after}\n"));

    let mut udp = Rsyslog::start(Transport::Udp);
    udp_send(udp.port, before);
    assert_eq!(udp.wait_for(1, WAIT), [before]);
    udp.stop();
    assert!(UdpSocket::bind((Ipv4Addr::LOCALHOST, udp.port)).is_ok(), "the UDP port is still taken after stop()");
    udp.restart();
    udp_send(udp.port, after);
    assert_eq!(udp.wait_for(2, WAIT), [before, after]);

    // TLS: the same certificate after the restart.
    let mut tls = Rsyslog::start(Transport::Tls);
    let ca = tls.ca_file.clone().unwrap();
    let certificate = fs::read_to_string(tls.dir().join("tls/server.pem")).unwrap();
    assert_eq!(served_certificate(tls.port, &ca), certificate.trim_end());
    tls_send(tls.port, &ca, &octet_counted(before)).unwrap();
    assert_eq!(tls.wait_for(1, WAIT), [before]);
    tls.restart();
    assert_eq!(served_certificate(tls.port, &ca), certificate.trim_end());
    tls_send(tls.port, &ca, &octet_counted(after)).unwrap_or_else(|e| panic!("{e}\n{}", tls.log()));
    assert_eq!(tls.wait_for(2, WAIT), [before, after]);

    // Dropping the handle kills rsyslogd.
    let tls_port = tls.port;
    drop(tcp);
    drop(tls);
    assert!(port_refuses(port) && port_refuses(tls_port));
}
