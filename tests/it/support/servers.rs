//! Real upload servers for the offboard-upload tests: OpenSSH `sshd`
//! (public-key login, `internal-sftp`) and `vsftpd` (plain FTP, and FTPS with
//! explicit TLS and a test CA). Every test starts its own instance on
//! 127.0.0.1 with its own configuration, keys and ports; a server that cannot
//! start fails the test with the server's own output (nothing is skipped), and
//! dropping the handle kills the server and all its session processes. The
//! process management ([`Daemon`]) also runs the syslog receiver of
//! `syslog.rs`.
//!
//! Requirements (Debian packages; `.ci/run` installs them): openssh-server,
//! openssh-client (`ssh-keygen`, `sftp`), vsftpd, openssl, curl. `vsftpd` must
//! run as root: it logs in the dedicated local account `audittrail-ftp`, which
//! is created when missing and given a random password.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
pub const VSFTPD: &str = "/usr/sbin/vsftpd";
const SETPRIV: &str = "/usr/bin/setpriv";

/// The local account the FTP tests log in as.
pub const FTP_USER: &str = "audittrail-ftp";

/// Linux signal numbers, for [`Sshd::signal_all`] and [`Ftpd::signal_all`].
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;

/// How long a server may take to accept connections, and to stop.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Ports

/// Ports handed out by this process, never handed out twice.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port that is free on 127.0.0.1 (the kernel's choice for `bind(0)`) and
/// that this process has not handed out before.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        if handed_out().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1");
}

/// A port from [`free_port`] that is free for UDP on 127.0.0.1 too: a server
/// that binds its UDP socket with SO_REUSEADDR (rsyslogd does) does not
/// notice a port that is taken already.
pub fn free_udp_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port on 127.0.0.1");
}

/// `len` consecutive ports, all free on 127.0.0.1 right now and not handed out
/// before by this process, for vsftpd's passive data connections. They are
/// taken below the kernel's ephemeral range when there is room, so that the
/// clients' own outgoing connections do not occupy them.
pub fn free_port_range(len: u16) -> (u16, u16) {
    assert!(len > 0 && len < 1000);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_low >= 12000 { (10000, ephemeral_low) } else { (50000, 65000) };
    for _ in 0..1000 {
        let start = low + (random_u64() % u64::from(high - low - len)) as u16;
        let end = start + len - 1;
        let mut taken = handed_out().lock().unwrap();
        if (start..=end).any(|p| taken.contains(&p)) {
            continue;
        }
        if (start..=end).all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()) {
            taken.extend(start..=end);
            return (start, end);
        }
    }
    panic!("no range of {len} free TCP ports on 127.0.0.1");
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
    buf
}

fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes(8).try_into().unwrap())
}

/// 24 random letters and digits.
fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(24).iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

// ---------------------------------------------------------------------------
// Processes

/// Process id → (parent id, state letter), from `/proc/*/stat`.
fn process_table() -> HashMap<i32, (i32, char)> {
    let mut table = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else { return table };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let Some(ppid) = fields.next().and_then(|s| s.parse().ok()) else { continue };
        table.insert(pid, (ppid, state));
    }
    table
}

/// `root` and all its descendants that are still alive (zombies excluded).
fn process_tree(root: i32) -> Vec<i32> {
    let table = process_table();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, &(ppid, _)) in &table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Some(&(_, state)) = table.get(&pid) else { continue };
        if state != 'Z' {
            out.push(pid);
        }
        queue.extend(children.get(&pid).into_iter().flatten());
    }
    out.sort_unstable();
    out
}

/// Whether `pid` is gone or a zombie.
fn is_dead(pid: i32) -> bool {
    process_table().get(&pid).is_none_or(|&(_, state)| state == 'Z')
}

/// `kill -SIG pid...`; processes that vanished meanwhile are ignored.
fn send_signal(sig: &str, pids: &[i32]) {
    if pids.is_empty() {
        return;
    }
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .args(pids.iter().map(i32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    // A partial failure only means that some process exited in between.
    let _ = status;
}

/// Kills `child` and every process descended from it. Everything is stopped
/// first (repeating until no new process appears), so that nothing forks or
/// escapes the tree by being re-parented while it is being killed.
pub fn kill_tree(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let root = child.id() as i32;
    let mut frozen: Vec<i32> = Vec::new();
    loop {
        let new: Vec<i32> = process_tree(root).into_iter().filter(|p| !frozen.contains(p)).collect();
        if new.is_empty() {
            break;
        }
        send_signal("STOP", &new);
        frozen.extend(new);
    }
    send_signal("KILL", &frozen);
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !frozen.iter().all(|&p| is_dead(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns a server, `program` with `args`, with its standard streams (all
/// three: vsftpd writes its fatal startup errors to file descriptor 0)
/// appended to `output`.
///
/// With `setpriv --pdeathsig KILL` (util-linux) the server also dies when the
/// test process dies without running destructors (ctrl-C, abort). The
/// parent-death signal fires when the *thread* that spawned the process
/// exits, so all servers are spawned from one thread that lives as long as
/// the test process.
pub fn spawn_server(program: &str, args: &[&OsStr], env: &[(&str, &OsStr)], output: &Path) -> Result<Child, String> {
    let mut cmd = if Path::new(SETPRIV).exists() {
        let mut c = Command::new(SETPRIV);
        c.args(["--pdeathsig", "KILL", "--", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).envs(env.iter().copied());
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(output)
        .map_err(|e| format!("open {}: {e}", output.display()))?;
    cmd.stdin(file.try_clone().unwrap()).stdout(file.try_clone().unwrap()).stderr(file);
    let shown = format!("{cmd:?}");

    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("test-server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the server-spawning thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).expect("server-spawning thread is gone");
    reply_rx.recv().expect("server-spawning thread is gone").map_err(|e| format!("cannot run {shown}: {e}"))
}

/// Polls `ready` every `interval` while `child` runs: `Ok(true)` once it
/// returns true, `Ok(false)` if it has not after [`START_TIMEOUT`], and an
/// error when `ready` fails or the server exits before or right after it
/// is ready.
pub(crate) fn wait_until(
    child: &mut Child,
    interval: Duration,
    mut ready: impl FnMut() -> Result<bool, String>,
) -> Result<bool, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(format!("the server exited ({status}) before it was ready"));
        }
        if ready()? {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Err(format!("the server exited ({status}) right after starting"));
            }
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(interval);
    }
}

/// Connects to 127.0.0.1:`port` and checks that the first line the server
/// sends starts with `banner`.
pub fn probe_banner(port: u16, banner: &[u8]) -> bool {
    read_banner(port, Duration::from_secs(2)).is_some_and(|line| line.as_bytes().starts_with(banner))
}

/// The first line a server sends on a new connection to 127.0.0.1:`port`,
/// or `None` if the connection fails or nothing arrives within `timeout`.
pub fn read_banner(port: u16, timeout: Duration) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout).ok()?;
    read_line(&mut stream, timeout)
}

/// One line from `stream` (without the line end), read byte by byte.
pub fn read_line(stream: &mut TcpStream, timeout: Duration) -> Option<String> {
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.len() < 1024 {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned())
}

/// Whether a connection to 127.0.0.1:`port` is refused.
pub fn port_refuses(port: u16) -> bool {
    match TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(1)) {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

/// Waits until a connection to 127.0.0.1:`port` is refused, at most
/// `STOP_TIMEOUT`.
pub fn wait_refused(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !port_refuses(port) {
        if Instant::now() > deadline {
            return Err(format!(
                "127.0.0.1:{port} still accepts connections {STOP_TIMEOUT:?} after the server was killed"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until 127.0.0.1:`port` can be bound for UDP (the server's socket is
/// gone), at most `STOP_TIMEOUT`.
pub fn wait_udp_free(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "UDP port 127.0.0.1:{port} is still taken {STOP_TIMEOUT:?} after the server was killed"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The text appended to `path` since byte `offset`.
pub fn read_from(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Runs a setup command and returns its output; panics with its stderr if it fails.
#[track_caller]
fn run_tool(cmd: &mut Command, hint: &str) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {shown}: {e} ({hint})"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[track_caller]
pub(crate) fn require_executable(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: these tests run a real server; install the Debian package {package} \
         (`apt-get install {package}`; .ci/run installs it)"
    );
}

fn is_root() -> bool {
    current_uid() == 0
}

fn current_uid() -> u32 {
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| {
        let out = run_tool(Command::new("id").arg("-u"), "coreutils");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("`id -u` prints a number")
    })
}

/// The name of the user running the tests.
pub fn current_user() -> String {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        let out = run_tool(Command::new("id").arg("-un"), "coreutils");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .clone()
}

// ---------------------------------------------------------------------------
// Server processes

/// What differs between the kinds of server a [`Daemon`] runs.
pub(crate) struct ServerKind {
    /// "sshd", "vsftpd", "rsyslogd": names the server in messages.
    pub(crate) name: &'static str,
    pub(crate) program: &'static str,
    /// The arguments before the configuration file, which comes last.
    pub(crate) args: &'static [&'static str],
    /// The configuration file's name in the temporary directory.
    pub(crate) config: &'static str,
    /// The name of the file there that gets the server's standard streams.
    pub(crate) output: &'static str,
    /// The name of the log file the server writes itself, if it writes one.
    pub(crate) log: Option<&'static str>,
    /// What the server writes to its output when the port is taken (any of
    /// these).
    pub(crate) port_in_use: &'static [&'static str],
    /// Output that points to a known cause of a failed start, and the hint
    /// shown for it.
    pub(crate) hint: Option<(&'static str, &'static str)>,
}

/// How a [`Daemon`] sees that the server it has just started is ready.
pub(crate) trait Ready: Send + Sync {
    /// Waits (with [`wait_until`]) until `server`, just started as `child`,
    /// is ready; says why not when it fails or is not ready within
    /// [`START_TIMEOUT`].
    fn wait(&self, server: &Daemon, child: &mut Child, since: &Since) -> Result<(), String>;
}

/// Where the server's files ended when it was started: what follows is this
/// start's.
pub(crate) struct Since {
    /// In the file that gets its standard streams.
    pub(crate) output: u64,
    /// In its own log file (0 without one).
    pub(crate) log: u64,
}

/// A server that is ready once it has written `listening(port)` to its
/// output (when given) and answers a new TCP connection on its port with a
/// first line starting with `banner`.
pub(crate) struct Banner {
    pub(crate) banner: &'static [u8],
    pub(crate) listening: Option<fn(u16) -> String>,
}

impl Ready for Banner {
    fn wait(&self, server: &Daemon, child: &mut Child, since: &Since) -> Result<(), String> {
        let port = server.port;
        let listening = self.listening.map(|line| line(port));
        let listens = || listening.as_ref().is_none_or(|line| read_from(&server.output, since.output).contains(line));
        if wait_until(child, Duration::from_millis(20), || Ok(listens() && probe_banner(port, self.banner)))? {
            return Ok(());
        }
        Err(format!(
            "the server did not answer with {:?} on 127.0.0.1:{port} within {START_TIMEOUT:?}",
            String::from_utf8_lossy(self.banner)
        ))
    }
}

/// A server process on 127.0.0.1:`port` and the temporary directory holding
/// its configuration and logs: the process management that [`Sshd`],
/// [`Ftpd`] and the syslog receiver share. Stopping or dropping it kills the
/// server and all its session processes.
pub(crate) struct Daemon {
    kind: &'static ServerKind,
    /// Environment variables for the server.
    env: Vec<(&'static str, OsString)>,
    ready: Box<dyn Ready>,
    pub(crate) port: u16,
    /// The server listens on UDP, not TCP: its port is chosen free for UDP,
    /// and once stopped it can be bound for UDP again.
    pub(crate) udp: bool,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Gets the server's standard streams (all starts).
    pub(crate) output: PathBuf,
    /// The log file the server writes itself, if it writes one.
    pub(crate) log: Option<PathBuf>,
    child: Option<Child>,
}

/// Why a server did not start.
struct StartError {
    message: String,
    port_in_use: bool,
}

impl Daemon {
    /// A server of `kind` that is not running yet, with its files in `dir`,
    /// that `ready` tells ready once started.
    pub(crate) fn new(
        kind: &'static ServerKind,
        dir: tempfile::TempDir,
        env: Vec<(&'static str, OsString)>,
        ready: impl Ready + 'static,
    ) -> Daemon {
        let d = dir.path();
        Daemon {
            kind,
            env,
            ready: Box::new(ready),
            port: 0,
            udp: false,
            config: d.join(kind.config),
            output: d.join(kind.output),
            log: kind.log.map(|name| d.join(name)),
            dir,
            child: None,
        }
    }

    /// Starts the server on a free port, with the configuration that
    /// `configure` returns for it (called with `port` set). Panics with the
    /// server's output if it does not start.
    #[track_caller]
    pub(crate) fn start(&mut self, mut configure: impl FnMut(&Daemon) -> String) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = if self.udp { free_udp_port() } else { free_port() };
            let config = configure(self);
            fs::write(&self.config, config).unwrap();
            match self.launch() {
                Ok(()) => return,
                // Another process took the port between free_port() and the bind.
                Err(e) if e.port_in_use && attempt < 5 => continue,
                Err(e) => panic!("{}", e.message),
            }
        }
    }

    /// Runs the server on `port` with the configuration file as it is, and
    /// waits until it is ready; on failure the server is killed.
    fn launch(&mut self) -> Result<(), StartError> {
        let kind = self.kind;
        let since = Since { output: file_len(&self.output), log: self.log.as_deref().map_or(0, file_len) };
        let mut args: Vec<&OsStr> = kind.args.iter().map(OsStr::new).collect();
        args.push(self.config.as_os_str());
        let env: Vec<(&str, &OsStr)> = self.env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let mut shown: String = env.iter().map(|(k, v)| format!("{k}={} ", v.to_string_lossy())).collect();
        shown.push_str(kind.program);
        for arg in &args {
            shown.push(' ');
            shown.push_str(&arg.to_string_lossy());
        }
        let mut child = spawn_server(kind.program, &args, &env, &self.output).unwrap_or_else(|e| panic!("{e}"));
        match self.ready.wait(self, &mut child, &since) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(reason) => {
                kill_tree(&mut child);
                let name = kind.name;
                let output = read_from(&self.output, since.output);
                let mut message = format!(
                    "{name} did not start: {reason}\ncommand: {shown}\n--- {name} output ({}) ---\n{output}\n",
                    self.output.display()
                );
                if let Some(log) = &self.log {
                    message.push_str(&format!(
                        "--- {name} log ({}) ---\n{}\n",
                        log.display(),
                        read_from(log, since.log)
                    ));
                }
                message.push_str(&format!(
                    "--- {} ---\n{}",
                    self.config.display(),
                    fs::read_to_string(&self.config).unwrap_or_default()
                ));
                if let Some((_, hint)) = kind.hint.filter(|(cause, _)| output.contains(cause)) {
                    message.push_str(&format!("\nhint: {hint}"));
                }
                let port_in_use = kind.port_in_use.iter().any(|line| output.contains(line));
                Err(StartError { port_in_use, message })
            }
        }
    }

    #[track_caller]
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(&mut child);
        }
        let freed = if self.udp { wait_udp_free(self.port) } else { wait_refused(self.port) };
        freed.unwrap_or_else(|e| panic!("{}: {e}\n{}", self.kind.name, self.log()));
    }

    #[track_caller]
    pub(crate) fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if e.port_in_use && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("{}", e.message),
            }
        }
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        self.child.as_ref().map(|c| process_tree(c.id() as i32)).unwrap_or_default()
    }

    #[track_caller]
    pub(crate) fn signal_all(&self, sig: i32) {
        let pids = self.pids();
        assert!(!pids.is_empty(), "{} on port {} is not running", self.kind.name, self.port);
        send_signal(&sig.to_string(), &pids);
    }

    /// The server's standard streams, followed by its own log file if it
    /// has one (all starts).
    pub(crate) fn log(&self) -> String {
        let output = fs::read_to_string(&self.output).unwrap_or_default();
        match &self.log {
            None => output,
            Some(log) => format!(
                "--- {name} output ---\n{output}--- {name} log ---\n{}",
                fs::read_to_string(log).unwrap_or_default(),
                name = self.kind.name
            ),
        }
    }

    /// The temporary directory holding the configuration and logs.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(&mut child);
        }
    }
}

/// The public process-management methods of a server handle, delegated to
/// its `server: Daemon` field.
macro_rules! server_handle_methods {
    () => {
        /// Kills the listener and every session process, then waits until the
        /// port is free (refuses TCP connections; for a UDP server, can be
        /// bound).
        #[track_caller]
        pub fn stop(&mut self) {
            self.server.stop();
        }

        /// Starts the server again on the same port with the same
        /// configuration, keys, certificates and password (stopping it first if
        /// it is running).
        #[track_caller]
        pub fn restart(&mut self) {
            self.server.restart();
        }

        /// The listener and all its descendants (session processes); empty when stopped.
        pub fn pids(&self) -> Vec<i32> {
            self.server.pids()
        }

        /// Sends signal number `sig` to the listener and all its descendants.
        #[track_caller]
        pub fn signal_all(&self, sig: i32) {
            self.server.signal_all(sig);
        }

        /// Everything the server has written to its output, and to its own
        /// log file if it has one (all starts), for failure messages.
        pub fn log(&self) -> String {
            self.server.log()
        }

        /// The temporary directory holding the configuration, keys or
        /// certificates, and logs.
        pub fn dir(&self) -> &Path {
            self.server.dir()
        }
    };
}
// For syslog.rs; unused where only this file is built (benches/upload.rs).
#[allow(unused_imports)]
pub(crate) use server_handle_methods;

// ---------------------------------------------------------------------------
// sshd

/// A running OpenSSH server on 127.0.0.1 that accepts one ed25519 client key
/// for the current user and serves SFTP with `internal-sftp`.
pub struct Sshd {
    pub port: u16,
    /// The user the tests log in as: the user running the tests.
    pub user: String,
    /// Client private key (ed25519, no passphrase, OpenSSH format) authorised for `user`.
    pub key_file: PathBuf,
    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`: the server's real host key.
    pub known_hosts: PathBuf,
    /// The same host and port with a different ed25519 key.
    pub wrong_known_hosts: PathBuf,
    /// `SHA256:...` of the host key, as `ssh-keygen -lf` prints it.
    pub host_fingerprint: String,
    /// The host key as `ssh-ed25519 AAAA...` (type and base64, no comment).
    pub host_public_key: String,
    /// An empty directory, writable by `user`; remote paths are absolute, so
    /// uploads go to `root.join(...)`.
    pub root: PathBuf,
    server: Daemon,
}

/// sshd in the foreground (`-D`), logging to its standard error (`-e`).
const SSHD_KIND: ServerKind = ServerKind {
    name: "sshd",
    program: SSHD,
    args: &["-D", "-e", "-f"],
    config: "sshd_config",
    output: "sshd.log",
    log: None,
    port_in_use: &["Address already in use"],
    hint: Some((
        "privilege separation directory",
        "sshd needs the directory /run/sshd (mode 0755, owned by root); creating it needs root",
    )),
};

/// sshd is ready once it has logged that it listens and sends its banner.
const SSHD_READY: Banner =
    Banner { banner: b"SSH-2.0-", listening: Some(|port| format!("Server listening on 127.0.0.1 port {port}.")) };

impl Sshd {
    /// Starts a new server on a free port. Panics with sshd's output if it
    /// is missing or does not start.
    #[track_caller]
    pub fn start() -> Sshd {
        require_executable(SSHD, "openssh-server");
        require_executable("/usr/bin/ssh-keygen", "openssh-client");
        let dir = tempfile::Builder::new().prefix("audit-trail-sshd.").tempdir().expect("create a temporary directory");
        let d = dir.path().to_owned();
        let host_key = d.join("host_ed25519");
        let key_file = d.join("client_ed25519");
        let other_host_key = d.join("other_host_ed25519");
        for key in [&host_key, &key_file, &other_host_key] {
            ssh_keygen(key);
        }
        let authorized_keys = d.join("authorized_keys");
        fs::copy(key_file.with_extension("pub"), &authorized_keys).unwrap();
        let host_public_key = public_key(&host_key);
        let other_public_key = public_key(&other_host_key);
        let out = run_tool(Command::new("ssh-keygen").arg("-lf").arg(host_key.with_extension("pub")), "openssh-client");
        let host_fingerprint = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .filter(|f| f.starts_with("SHA256:"))
            .unwrap_or_else(|| panic!("unexpected `ssh-keygen -lf` output: {}", String::from_utf8_lossy(&out.stdout)))
            .to_owned();
        let root = d.join("root");
        fs::create_dir(&root).unwrap();
        ensure_privsep_dir();

        let known_hosts = d.join("known_hosts");
        let wrong_known_hosts = d.join("wrong_known_hosts");
        let mut server = Daemon::new(&SSHD_KIND, dir, Vec::new(), SSHD_READY);
        server.start(|server| {
            let port = server.port;
            fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_public_key}\n")).unwrap();
            fs::write(&wrong_known_hosts, format!("[127.0.0.1]:{port} {other_public_key}\n")).unwrap();
            sshd_config(port, &host_key, &authorized_keys)
        });
        Sshd {
            port: server.port,
            user: current_user(),
            key_file,
            known_hosts,
            wrong_known_hosts,
            host_fingerprint,
            host_public_key,
            root,
            server,
        }
    }

    server_handle_methods!();
}

fn sshd_config(port: u16, host_key: &Path, authorized_keys: &Path) -> String {
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {}\n\
         PidFile none\n\
         AuthorizedKeysFile {}\n\
         StrictModes no\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         UseDNS no\n\
         PrintMotd no\n\
         MaxStartups 100\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n",
        host_key.display(),
        authorized_keys.display()
    )
}

/// A new ed25519 key pair without passphrase (`path` and `path.pub`).
fn ssh_keygen(path: &Path) {
    run_tool(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "audit-trail-test", "-f"]).arg(path),
        "Debian package openssh-client",
    );
}

/// `ssh-ed25519 AAAA...` of the key pair at `path`.
fn public_key(path: &Path) -> String {
    let text = fs::read_to_string(path.with_extension("pub")).unwrap();
    text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// sshd refuses to start without its privilege-separation directory.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() && fs::create_dir_all(dir).is_ok() {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
}

// ---------------------------------------------------------------------------
// vsftpd

/// A running vsftpd on 127.0.0.1: plain FTP, or FTPS with explicit TLS
/// (`AUTH TLS`) required for login and data.
pub struct Ftpd {
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The password followed by a newline.
    pub password_file: PathBuf,
    /// The login directory (vsftpd's `local_root`), writable by `user`;
    /// remote paths are relative to it.
    pub root: PathBuf,
    /// For FTPS: the PEM certificate of the test CA that signed the server
    /// certificate (subjectAltName IP:127.0.0.1 and DNS:localhost).
    pub ca_file: Option<PathBuf>,
    /// vsftpd's passive data ports (inclusive).
    pub pasv_ports: (u16, u16),
    server: Daemon,
}

/// vsftpd in the foreground (`background=NO` in its configuration). Its
/// standard streams get its fatal errors ("500 OOPS: ..."); its protocol and
/// transfer log is a file of its own.
const VSFTPD_KIND: ServerKind = ServerKind {
    name: "vsftpd",
    program: VSFTPD,
    args: &[],
    config: "vsftpd.conf",
    output: "vsftpd.out",
    log: Some("vsftpd.log"),
    port_in_use: &["could not bind listening"],
    hint: None,
};

/// vsftpd is ready once it greets a new connection (it logs nothing on
/// listening).
const VSFTPD_READY: Banner = Banner { banner: b"220", listening: None };

struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    /// An OpenSSL configuration that limits vsftpd to TLS 1.2.
    openssl_conf: Option<PathBuf>,
}

/// What a new [`Ftpd`] speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Security {
    Plain,
    /// Explicit TLS, TLS 1.2 or 1.3 (TLS 1.3 when the client offers it, like
    /// a stock vsftpd linked with OpenSSL 3).
    Tls,
    /// Explicit TLS, at most TLS 1.2.
    Tls12,
}

impl Ftpd {
    /// Starts a plain FTP server on a free port.
    #[track_caller]
    pub fn start_ftp() -> Ftpd {
        Ftpd::start(Security::Plain)
    }

    /// Starts an FTPS server (explicit TLS, `AUTH TLS`) on a free port. Like
    /// a stock vsftpd 3.0.3 with OpenSSL 3 it negotiates TLS 1.3 when the
    /// client offers it; that vsftpd sends TLS 1.3 session tickets on data
    /// connections, and a client that closes an upload's data connection
    /// without reading them can have the upload rejected with
    /// "426 Failure reading network stream" (curl does, at random, for
    /// uploads of a few hundred KB).
    #[track_caller]
    pub fn start_ftps() -> Ftpd {
        Ftpd::start(Security::Tls)
    }

    /// Like [`start_ftps`](Self::start_ftps), but the server speaks at most
    /// TLS 1.2.
    #[track_caller]
    pub fn start_ftps_tls12() -> Ftpd {
        Ftpd::start(Security::Tls12)
    }

    /// Plain FTP for an upload-only (drop-box) account: DELE is refused.
    pub fn start_ftp_drop_box() -> Ftpd {
        Ftpd::start_with(Security::Plain, "cmds_denied=DELE\n")
    }

    #[track_caller]
    fn start(security: Security) -> Ftpd {
        Ftpd::start_with(security, "")
    }

    #[track_caller]
    fn start_with(security: Security, extra: &str) -> Ftpd {
        let tls = security != Security::Plain;
        require_executable(VSFTPD, "vsftpd");
        assert!(
            is_root(),
            "vsftpd must run as root (it authenticates the local account {FTP_USER} and switches to it); \
             run the tests as root"
        );
        if tls {
            require_executable("/usr/bin/openssl", "openssl");
        }
        let account = ftp_account();
        let dir = tempfile::Builder::new().prefix("audit-trail-ftpd.").tempdir().expect("create a temporary directory");
        let d = dir.path().to_owned();
        // The FTP account must reach its root through this directory.
        set_mode(&d, 0o755);
        let root = d.join("root");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::chown(&root, Some(account.uid), Some(account.gid))
            .unwrap_or_else(|e| panic!("chown {FTP_USER} {}: {e}", root.display()));
        set_mode(&root, 0o755);
        check_reachable(account, &root);
        let empty = d.join("empty");
        fs::create_dir(&empty).unwrap();
        set_mode(&empty, 0o755);
        let password_file = d.join("password");
        fs::write(&password_file, format!("{}\n", account.password)).unwrap();
        set_mode(&password_file, 0o600);
        let (ca_file, tls) = if tls {
            let tls_dir = d.join("tls");
            let (ca, cert, key) = make_test_pki(&tls_dir);
            let openssl_conf = (security == Security::Tls12).then(|| {
                let path = tls_dir.join("openssl-tls12.cnf");
                fs::write(
                    &path,
                    "openssl_conf = openssl_init\n\
                     [openssl_init]\n\
                     ssl_conf = ssl_module\n\
                     [ssl_module]\n\
                     system_default = tls_defaults\n\
                     [tls_defaults]\n\
                     MinProtocol = TLSv1.2\n\
                     MaxProtocol = TLSv1.2\n",
                )
                .unwrap();
                path
            });
            (Some(ca), Some(TlsFiles { cert, key, openssl_conf }))
        } else {
            (None, None)
        };

        let pasv_ports = free_port_range(8);
        let env = match tls.as_ref().and_then(|t| t.openssl_conf.as_ref()) {
            Some(conf) => vec![("OPENSSL_CONF", conf.clone().into_os_string())],
            None => Vec::new(),
        };
        let mut server = Daemon::new(&VSFTPD_KIND, dir, env, VSFTPD_READY);
        server.start(|server| {
            let log = server.log.as_deref().expect("vsftpd has a log file");
            vsftpd_config(server.port, &root, pasv_ports, &empty, log, tls.as_ref()) + extra
        });
        Ftpd {
            port: server.port,
            user: FTP_USER.to_owned(),
            password: account.password.clone(),
            password_file,
            root,
            ca_file,
            pasv_ports,
            server,
        }
    }

    server_handle_methods!();
}

/// vsftpd's configuration; `log` is its protocol and transfer log.
fn vsftpd_config(
    port: u16,
    root: &Path,
    pasv_ports: (u16, u16),
    empty: &Path,
    log: &Path,
    tls: Option<&TlsFiles>,
) -> String {
    let mut conf = format!(
        "listen=YES\n\
         listen_ipv6=NO\n\
         listen_address=127.0.0.1\n\
         listen_port={port}\n\
         background=NO\n\
         anonymous_enable=NO\n\
         local_enable=YES\n\
         write_enable=YES\n\
         local_umask=022\n\
         local_root={root}\n\
         chroot_local_user=NO\n\
         pam_service_name=audit-trail-test\n\
         check_shell=NO\n\
         session_support=NO\n\
         pasv_enable=YES\n\
         pasv_address=127.0.0.1\n\
         pasv_min_port={pasv_min}\n\
         pasv_max_port={pasv_max}\n\
         seccomp_sandbox=NO\n\
         isolate=NO\n\
         isolate_network=NO\n\
         secure_chroot_dir={empty}\n\
         dirmessage_enable=NO\n\
         xferlog_enable=YES\n\
         vsftpd_log_file={log}\n\
         log_ftp_protocol=YES\n\
         use_localtime=NO\n",
        root = root.display(),
        pasv_min = pasv_ports.0,
        pasv_max = pasv_ports.1,
        empty = empty.display(),
        log = log.display(),
    );
    if let Some(tls) = tls {
        conf.push_str(&format!(
            "ssl_enable=YES\n\
             rsa_cert_file={}\n\
             rsa_private_key_file={}\n\
             force_local_logins_ssl=YES\n\
             force_local_data_ssl=YES\n\
             ssl_request_cert=NO\n\
             ssl_sslv2=NO\n\
             ssl_sslv3=NO\n\
             ssl_ciphers=HIGH\n\
             debug_ssl=YES\n",
            tls.cert.display(),
            tls.key.display()
        ));
    }
    conf
}

/// The FTP account: a system account without shell whose password is random.
pub struct FtpAccount {
    pub uid: u32,
    pub gid: u32,
    pub password: String,
}

/// Creates the account `audittrail-ftp` when missing and sets its password,
/// once per test process. Test processes that run at the same time (several
/// checkouts on one machine) share the password instead of resetting it under
/// each other's servers: each holds a shared lock on a file in
/// /run/audit-trail-tests while it runs, and only a process that finds no
/// other holder chooses a new password.
fn ftp_account() -> &'static FtpAccount {
    static ACCOUNT: OnceLock<FtpAccount> = OnceLock::new();
    static USERS_LOCK: OnceLock<File> = OnceLock::new();
    ACCOUNT.get_or_init(|| {
        let state = Path::new("/run/audit-trail-tests");
        fs::create_dir_all(state).unwrap_or_else(|e| panic!("create {}: {e}", state.display()));
        set_mode(state, 0o700);
        let setup = File::create(state.join("ftp-account.lock")).unwrap();
        setup.lock().expect("lock ftp-account.lock");

        if passwd_entry(FTP_USER).is_none() {
            run_tool(
                Command::new("useradd").args([
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/",
                    "--shell",
                    "/usr/sbin/nologin",
                    FTP_USER,
                ]),
                "Debian package passwd",
            );
        }
        let entry = passwd_entry(FTP_USER).unwrap_or_else(|| panic!("account {FTP_USER} missing after useradd"));
        // vsftpd changes into the home directory before local_root: it must exist.
        if !Path::new(&entry.home).is_dir() {
            run_tool(Command::new("usermod").args(["--home", "/", FTP_USER]), "Debian package passwd");
        }

        let users = File::create(state.join("ftp-account.users")).unwrap();
        let password_path = state.join("ftp-password");
        let shared = fs::read_to_string(&password_path).ok().map(|s| s.trim().to_owned()).filter(|s| s.len() >= 16);
        let password = match (users.try_lock(), shared) {
            (Err(std::fs::TryLockError::WouldBlock), Some(shared)) => shared,
            _ => {
                let password = random_password();
                let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&password_path).unwrap();
                f.set_permissions(fs::Permissions::from_mode(0o600)).unwrap();
                f.write_all(format!("{password}\n").as_bytes()).unwrap();
                let _ = users.unlock();
                password
            }
        };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chpasswd (Debian package passwd)");
        chpasswd.stdin.take().unwrap().write_all(format!("{FTP_USER}:{password}\n").as_bytes()).unwrap();
        let out = chpasswd.wait_with_output().unwrap();
        assert!(out.status.success(), "chpasswd for {FTP_USER} failed: {}", String::from_utf8_lossy(&out.stderr));
        // Held until this process exits.
        users.lock_shared().expect("lock ftp-account.users");
        let _ = USERS_LOCK.set(users);
        drop(setup);
        FtpAccount { uid: entry.uid, gid: entry.gid, password }
    })
}

struct PasswdEntry {
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd_entry(name: &str) -> Option<PasswdEntry> {
    let out = Command::new("getent").args(["passwd", name]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).lines().next()?.to_owned();
    let fields: Vec<&str> = line.split(':').collect();
    Some(PasswdEntry {
        uid: fields.get(2)?.parse().ok()?,
        gid: fields.get(3)?.parse().ok()?,
        home: fields.get(5)?.to_string(),
    })
}

/// Checks, as the FTP account, that `root` is reachable and writable (all
/// parent directories must be searchable by others).
#[track_caller]
fn check_reachable(account: &FtpAccount, root: &Path) {
    if !Path::new(SETPRIV).exists() {
        return;
    }
    let status = Command::new(SETPRIV)
        .arg(format!("--reuid={}", account.uid))
        .arg(format!("--regid={}", account.gid))
        .arg("--clear-groups")
        .args(["--", "test", "-w"])
        .arg(root)
        .args(["-a", "-x"])
        .arg(root)
        .status()
        .expect("run setpriv");
    assert!(
        status.success(),
        "the FTP account {FTP_USER} cannot reach or write {}: every parent directory must be searchable by others \
         (check TMPDIR={:?})",
        root.display(),
        std::env::var_os("TMPDIR")
    );
}

/// A test CA and a server certificate it signed (P-256 keys), in `dir`:
/// returns (CA certificate, server certificate, server key).
pub fn make_test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    fs::create_dir(dir).unwrap();
    set_mode(dir, 0o700);
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr, ext) =
        (dir.join("server.pem"), dir.join("server.key"), dir.join("server.csr"), dir.join("server.ext"));
    let hint = "Debian package openssl";
    run_tool(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650"])
            .args(["-subj", "/CN=audit-trail test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca),
        hint,
    );
    run_tool(
        Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        hint,
    );
    fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run_tool(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "3650", "-set_serial"])
            .arg(format!("0x{:016x}", random_u64() >> 1))
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
        hint,
    );
    set_mode(&ca, 0o644);
    (ca, cert, key)
}

// ---------------------------------------------------------------------------
// Self-checks of the servers, with independent clients (OpenSSH sftp, curl).

/// Test data that is not all one byte value.
fn sample_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// `sftp -b` uploading `local` to the absolute remote path `remote`.
fn sftp_put(sshd: &Sshd, known_hosts: &Path, local: &Path, remote: &Path) -> Output {
    sftp_batch(sshd, known_hosts, &format!("put \"{}\" \"{}\"\n", local.display(), remote.display()))
}

/// OpenSSH `sftp -b` running `commands` against the test server, with its
/// key and the given known_hosts.
pub fn sftp_batch(sshd: &Sshd, known_hosts: &Path, commands: &str) -> Output {
    let batch = tempfile::NamedTempFile::new().unwrap();
    fs::write(batch.path(), commands).unwrap();
    Command::new("sftp")
        .arg("-b")
        .arg(batch.path())
        .args(["-F", "/dev/null", "-i"])
        .arg(&sshd.key_file)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .arg("-P")
        .arg(sshd.port.to_string())
        .arg(format!("{}@127.0.0.1", sshd.user))
        .stdin(Stdio::null())
        .output()
        .expect("run sftp (Debian package openssh-client)")
}

#[track_caller]
fn assert_sftp_put_works(sshd: &Sshd, name: &str) {
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join(name);
    let data = sample_bytes(100_000);
    fs::write(&local, &data).unwrap();
    let remote = sshd.root.join(name);
    let out = sftp_put(sshd, &sshd.known_hosts, &local, &remote);
    assert!(
        out.status.success(),
        "sftp upload failed ({}):\n{}\n--- sshd log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert!(fs::read(&remote).unwrap() == data, "{} differs from what was uploaded", remote.display());
}

/// How curl should treat TLS.
#[derive(Clone, Copy)]
enum Tls {
    /// Plain FTP.
    Off,
    /// `--ssl-reqd` with the server's test CA.
    TestCa,
    /// The same, at most TLS 1.2 (`--tls-max 1.2`).
    TestCaMax12,
    /// The same, at least TLS 1.3 (`--tlsv1.3`).
    TestCaMin13,
    /// `--ssl-reqd` with curl's default trust store.
    DefaultRoots,
}

/// curl with the credentials in a netrc file (kept alive by the returned
/// guard), verbose, and the TLS options of `tls`.
fn curl(ftpd: &Ftpd, host: &str, password: &str, tls: Tls) -> (Command, tempfile::NamedTempFile) {
    let netrc = tempfile::NamedTempFile::new().unwrap();
    fs::write(netrc.path(), format!("machine {host} login {} password {password}\n", ftpd.user)).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-v", "-sS", "--max-time", "30", "--netrc-file"]).arg(netrc.path());
    let ca = || ftpd.ca_file.clone().expect("an FTPS server");
    match tls {
        Tls::Off => {}
        Tls::TestCa => {
            cmd.arg("--ssl-reqd").arg("--cacert").arg(ca());
        }
        Tls::TestCaMax12 => {
            cmd.args(["--ssl-reqd", "--tls-max", "1.2", "--cacert"]).arg(ca());
        }
        Tls::TestCaMin13 => {
            cmd.args(["--ssl-reqd", "--tlsv1.3", "--cacert"]).arg(ca());
        }
        Tls::DefaultRoots => {
            cmd.arg("--ssl-reqd");
        }
    }
    cmd.stdin(Stdio::null());
    (cmd, netrc)
}

/// `curl -T local ftp://HOST:PORT/remote`, creating missing directories.
fn curl_put(ftpd: &Ftpd, host: &str, password: &str, tls: Tls, local: &Path, remote: &str) -> Output {
    let (mut cmd, _netrc) = curl(ftpd, host, password, tls);
    cmd.arg("--ftp-create-dirs").arg("-T").arg(local).arg(format!("ftp://{host}:{}/{remote}", ftpd.port));
    cmd.output().expect("run curl (Debian package curl)")
}

/// `curl ftp://127.0.0.1:PORT/`: lists the root (a download over the data
/// connection).
fn curl_list(ftpd: &Ftpd, tls: Tls) -> Output {
    let (mut cmd, _netrc) = curl(ftpd, "127.0.0.1", &ftpd.password, tls);
    cmd.arg(format!("ftp://127.0.0.1:{}/", ftpd.port));
    cmd.output().expect("run curl (Debian package curl)")
}

/// The TLS version curl reports for the (last) connection, e.g. "TLSv1.3".
fn negotiated_tls(out: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().rfind(|l| l.contains("SSL connection using "))?;
    Some(line.split("SSL connection using ").nth(1)?.split_whitespace().next()?.to_owned())
}

/// The password as the tests read it from `password_file`.
fn password_of(ftpd: &Ftpd) -> String {
    let text = fs::read_to_string(&ftpd.password_file).unwrap();
    assert!(text.ends_with('\n'), "password file ends with a newline");
    let password = text.trim_end_matches('\n').to_owned();
    assert_eq!(password, ftpd.password);
    password
}

/// Uploads 200 KB with curl and checks that it arrived intact; returns
/// curl's output.
#[track_caller]
fn assert_curl_put_works(ftpd: &Ftpd, host: &str, tls: Tls, remote: &str) -> Output {
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("upload.bin");
    let data = sample_bytes(200_000);
    fs::write(&local, &data).unwrap();
    let out = curl_put(ftpd, host, &password_of(ftpd), tls, &local, remote);
    assert!(
        out.status.success(),
        "curl upload to {remote} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        ftpd.log()
    );
    let arrived = ftpd.root.join(remote);
    assert!(fs::read(&arrived).unwrap() == data, "{} differs from what was uploaded", arrived.display());
    out
}

#[track_caller]
fn assert_curl_fails(out: &Output, code: i32, what: &str, ftpd: &Ftpd) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected curl exit code {code}:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        ftpd.log()
    );
}

#[test]
fn sshd_accepts_key_login_and_sftp() {
    let sshd = Sshd::start();
    assert_sftp_put_works(&sshd, "upload.bin");

    // The known_hosts files name this server, with the right and a wrong key.
    let listed = |file: &Path| {
        let out = run_tool(Command::new("ssh-keygen").arg("-lf").arg(file), "openssh-client");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let right = listed(&sshd.known_hosts);
    assert!(right.contains(&sshd.host_fingerprint), "{right}");
    assert!(right.contains(&format!("[127.0.0.1]:{}", sshd.port)), "{right}");
    let wrong = listed(&sshd.wrong_known_hosts);
    assert!(!wrong.contains(&sshd.host_fingerprint) && wrong.contains(&format!("[127.0.0.1]:{}", sshd.port)));

    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("second.bin");
    fs::write(&local, b"second").unwrap();
    let remote = sshd.root.join("second.bin");
    let out = sftp_put(&sshd, &sshd.wrong_known_hosts, &local, &remote);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sftp with the wrong host key succeeded:\n{stderr}");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    assert!(!remote.exists());
}

#[test]
fn vsftpd_ftp_accepts_password_login() {
    let ftpd = Ftpd::start_ftp();
    assert!(ftpd.ca_file.is_none());
    assert_curl_put_works(&ftpd, "127.0.0.1", Tls::Off, "sub/upload.bin");

    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("f");
    fs::write(&local, b"x").unwrap();
    let out = curl_put(&ftpd, "127.0.0.1", "wrong-password", Tls::Off, &local, "denied.bin");
    assert_curl_fails(&out, 67, "wrong password", &ftpd);
    assert!(!ftpd.root.join("denied.bin").exists());
}

#[test]
fn vsftpd_ftps_requires_trusted_tls() {
    let ftpd = Ftpd::start_ftps();
    // Uploads at TLS 1.2: curl's TLS 1.3 uploads to this vsftpd fail at
    // random (see Ftpd::start_ftps).
    let out = assert_curl_put_works(&ftpd, "127.0.0.1", Tls::TestCaMax12, "tls/upload.bin");
    assert_eq!(negotiated_tls(&out).as_deref(), Some("TLSv1.2"));
    // The certificate also names localhost.
    assert_curl_put_works(&ftpd, "localhost", Tls::TestCaMax12, "tls/by-name.bin");
    // TLS 1.3 on the control and data connections.
    let out = curl_list(&ftpd, Tls::TestCa);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "TLS 1.3 listing failed:\n{stderr}\n{}", ftpd.log());
    assert_eq!(negotiated_tls(&out).as_deref(), Some("TLSv1.3"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls"));

    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("f");
    fs::write(&local, b"x").unwrap();
    let password = password_of(&ftpd);
    // 60: the peer certificate cannot be authenticated with known CA certificates.
    let out = curl_put(&ftpd, "127.0.0.1", &password, Tls::DefaultRoots, &local, "untrusted.bin");
    assert_curl_fails(&out, 60, "TLS without the test CA", &ftpd);
    // 67: login denied; vsftpd answers USER without TLS with 530.
    let out = curl_put(&ftpd, "127.0.0.1", &password, Tls::Off, &local, "plain.bin");
    assert_curl_fails(&out, 67, "login without TLS", &ftpd);
    assert!(ftpd.log().contains("530 Non-anonymous sessions must use encryption."), "{}", ftpd.log());
    assert!(!ftpd.root.join("untrusted.bin").exists() && !ftpd.root.join("plain.bin").exists());
}

#[test]
fn vsftpd_ftps_tls12_speaks_at_most_tls12() {
    let ftpd = Ftpd::start_ftps_tls12();
    let out = assert_curl_put_works(&ftpd, "127.0.0.1", Tls::TestCa, "upload.bin");
    assert_eq!(negotiated_tls(&out).as_deref(), Some("TLSv1.2"));
    // 35: TLS handshake failed.
    let out = curl_list(&ftpd, Tls::TestCaMin13);
    assert_curl_fails(&out, 35, "TLS 1.3 only", &ftpd);
}

#[test]
fn stop_and_restart() {
    // A server with an open session, so that there is a session process to kill.
    fn open_session(port: u16, banner: &str) -> TcpStream {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let line = read_line(&mut s, Duration::from_secs(10)).expect("banner");
        assert!(line.starts_with(banner), "{line}");
        s
    }
    #[track_caller]
    fn assert_all_dead(pids: &[i32]) {
        let alive: Vec<_> = pids.iter().filter(|&&p| !is_dead(p)).collect();
        assert!(alive.is_empty(), "still alive after stop(): {alive:?}");
    }

    let mut sshd = Sshd::start();
    let session = open_session(sshd.port, "SSH-2.0-");
    let before = sshd.pids();
    assert!(before.len() >= 2, "listener and a session process: {before:?}");
    sshd.stop();
    assert!(port_refuses(sshd.port));
    assert!(sshd.pids().is_empty());
    assert_all_dead(&before);
    drop(session);
    sshd.restart();
    assert_sftp_put_works(&sshd, "after-restart.bin");

    let mut ftpd = Ftpd::start_ftps_tls12();
    let session = open_session(ftpd.port, "220");
    let before = ftpd.pids();
    assert!(before.len() >= 2, "listener and a session process: {before:?}");
    ftpd.stop();
    assert!(port_refuses(ftpd.port));
    assert!(ftpd.pids().is_empty());
    assert_all_dead(&before);
    drop(session);
    ftpd.restart();
    assert_curl_put_works(&ftpd, "127.0.0.1", Tls::TestCa, "after-restart.bin");

    // Dropping a handle kills the server too.
    let (sshd_port, ftpd_port) = (sshd.port, ftpd.port);
    let pids: Vec<i32> = sshd.pids().into_iter().chain(ftpd.pids()).collect();
    drop(sshd);
    drop(ftpd);
    assert_all_dead(&pids);
    assert!(port_refuses(sshd_port) && port_refuses(ftpd_port));
}

#[test]
fn signal_all_freezes_and_resumes() {
    let sshd = Sshd::start();
    sshd.signal_all(SIGSTOP);
    // The kernel completes the connection, but the stopped server does not answer.
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, sshd.port)).unwrap();
    assert_eq!(read_line(&mut s, Duration::from_millis(500)), None);
    sshd.signal_all(SIGCONT);
    let line = read_line(&mut s, Duration::from_secs(10)).expect("banner after SIGCONT");
    assert!(line.starts_with("SSH-2.0-"), "{line}");
}
