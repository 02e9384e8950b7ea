//! Shared test harness: a temporary data directory and a builder for running
//! the real binary against it.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");

/// A temporary data directory with a fixed host name and optional capacity.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        Env::with_config("host_name = \"pbx01\"\n")
    }

    pub fn with_capacity(capacity: u64) -> Env {
        Env::with_config(&format!("host_name = \"pbx01\"\ncapacity = {capacity}\n"))
    }

    pub fn with_config(toml: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = data.join("audit-trail.toml");
        std::fs::write(&config, toml).unwrap();
        Env { dir, data, config }
    }

    /// A command for the binary with `--data-dir` set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&self.data).args(args);
        c.env_remove("AUDIT_TRAIL_DATA").env("TZ", "Europe/Paris");
        c
    }

    /// A command for the binary with the archiver's clock moved by `offset`
    /// (libfaketime's `faketime -f`, e.g. `-40d`), for retention by seal time.
    pub fn cmd_at(&self, offset: &str, args: &[&str]) -> Command {
        let which = Command::new("sh").arg("-c").arg("command -v faketime").output().expect("sh");
        assert!(which.status.success(), "faketime is needed (Debian package faketime; .ci/run installs it)");
        let mut c = Command::new("faketime");
        c.args(["-f", offset, BIN, "--data-dir"]).arg(&self.data).args(args);
        c.env_remove("AUDIT_TRAIL_DATA").env("TZ", "Europe/Paris");
        c
    }

    /// Runs at a moved clock (see [`cmd_at`](Self::cmd_at)).
    pub fn run_at(&self, offset: &str, args: &[&str]) -> Run {
        let out = self.cmd_at(offset, args).stdin(Stdio::null()).output().expect("run faketime audit-trail");
        Run::from(out, args)
    }

    /// Runs at a moved clock with `stdin` as input.
    pub fn run_with_input_at(&self, offset: &str, args: &[&str], stdin: &[u8]) -> Run {
        run_piped(self.cmd_at(offset, args), args, stdin)
    }

    /// Runs with `stdin` as input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Run {
        run_piped(self.cmd(args), args, stdin)
    }
}

fn run_piped(mut c: Command, args: &[&str], stdin: &[u8]) -> Run {
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn audit-trail");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    Run::from(out, args)
}

impl Env {
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).stdin(Stdio::null()).output().expect("run audit-trail");
        Run::from(out, args)
    }

    pub fn sealed_dir(&self) -> PathBuf {
        self.data.join("audit_trail")
    }

    /// Sealed `*.xml` files, sorted by name.
    pub fn sealed_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<_> =
            std::fs::read_dir(self.sealed_dir()).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "xml"));
        v.sort();
        v
    }

    /// Active files (normally exactly one).
    pub fn active_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.data.join("state/active"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Runs the binary on a data directory other than an [`Env`]'s.
pub fn run_in(data: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("AUDIT_TRAIL_DATA")
        .env("TZ", "Europe/Paris")
        .stdin(Stdio::null())
        .output()
        .expect("run audit-trail");
    Run::from(out, args)
}

/// The result of one run.
pub struct Run {
    pub args: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output, args: &[&str]) -> Run {
        Run {
            args: args.join(" "),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn success(self) -> Run {
        assert_eq!(self.code, Some(0), "`{}` failed:\nstdout: {}\nstderr: {}", self.args, self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn failure(self) -> Run {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "`{}` should have failed:\nstdout: {}\nstderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// JSON Lines of `n` simple, valid records; record `i` carries `i` in its data.
pub fn json_records(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        writeln!(
            out,
            r#"{{"user_name":"user{i}","source_ip":"10.0.{}.{}","app_name":"System Admin Tool","app_context":"User Session","action_type":"Login","action_data":"record {i}","category":"presence"}}"#,
            (i / 256) % 256,
            i % 256
        )
        .unwrap();
    }
    out
}

/// Parses a file with xmllint (an independent, standard parser); panics with
/// its message if the file is not well-formed.
#[track_caller]
pub fn assert_well_formed(path: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg(path)
        .output()
        .expect("xmllint is required by the tests (Debian package libxml2-utils; .ci/run installs it)");
    assert!(out.status.success(), "{} is not well-formed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}

/// Runs xmllint over many files (a few hundred per run) and returns one
/// message per file that is not well-formed; empty when all are.
pub fn well_formed_errors(paths: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for chunk in paths.chunks(200) {
        let out = Command::new("xmllint")
            .arg("--noout")
            .args(chunk)
            .output()
            .expect("xmllint is required by the tests (Debian package libxml2-utils; .ci/run installs it)");
        if out.status.success() {
            continue;
        }
        // Find the culprits one by one (rare: only when something is wrong).
        for p in chunk {
            let out = Command::new("xmllint").arg("--noout").arg(p).output().expect("xmllint");
            if !out.status.success() {
                errors.push(format!("{} is not well-formed: {}", p.display(), String::from_utf8_lossy(&out.stderr)));
            }
        }
    }
    errors
}

/// Parses `appended N records: ids A..B` from `append --json` output.
pub fn parse_batch_ack(stdout: &str) -> Option<(u64, u64, u64)> {
    stdout.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("appended ")?;
        let (n, rest) = rest.split_once(" records: ids ")?;
        let (a, b) = rest.split_once("..")?;
        Some((n.parse().ok()?, a.parse().ok()?, b.trim().parse().ok()?))
    })
}

/// The ids of the `<Record id="…">` elements of an XML file, in file order.
pub fn record_ids_in(xml: &[u8]) -> Vec<u64> {
    const TAG: &[u8] = b"<Record id=\"";
    memchr::memmem::find_iter(xml, TAG)
        .filter_map(|pos| {
            let rest = &xml[pos + TAG.len()..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if rest.get(digits) != Some(&b'"') {
                return None;
            }
            std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
        })
        .collect()
}

/// The `first-id` attribute of the root element, read from the raw bytes.
pub fn header_first_id(xml: &[u8]) -> Option<u64> {
    let head = &xml[..xml.len().min(1024)];
    let s = String::from_utf8_lossy(head);
    let root = &s[s.find("<AuditTrail ")?..];
    let root = &root[..root.find('>')?];
    let v = &root[root.find(" first-id=\"")? + " first-id=\"".len()..];
    v[..v.find('"')?].parse().ok()
}

impl Env {
    /// `export --all --format json`: each record's id and its exact JSON line,
    /// in output order. Panics if the export fails.
    #[track_caller]
    pub fn export_all_lines(&self) -> Vec<(u64, String)> {
        self.try_export_all_lines().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`export_all_lines`](Self::export_all_lines), but a failed export
    /// is returned as an error message.
    pub fn try_export_all_lines(&self) -> Result<Vec<(u64, String)>, String> {
        let run = self.run(&["export", "--all", "--format", "json"]);
        if run.code != Some(0) {
            return Err(format!("`{}` failed ({:?}): {}", run.args, run.code, run.stderr.trim_end()));
        }
        run.stdout
            .lines()
            .map(|line| {
                // Every line starts with the id (`{"id":N,`); the callers parse the rest.
                let id = line
                    .strip_prefix("{\"id\":")
                    .and_then(|rest| rest.split([',', '}']).next()?.parse().ok())
                    .ok_or_else(|| format!("export line does not start with a numeric id: {line}"))?;
                Ok((id, line.to_owned()))
            })
            .collect()
    }
}

/// A running `audit-trail serve` on an [`Env`]'s data directory.
pub struct Server {
    pub child: std::process::Child,
    pub stderr_path: PathBuf,
    pub socket: PathBuf,
}

impl Env {
    /// An empty schedules directory for services that need no schedules.
    pub fn no_schedules(&self) -> PathBuf {
        let d = self.dir.path().join("no-schedules");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Starts `serve` with the given schedules directory and waits until its
    /// ingest socket answers. Panics (with the service's stderr) if it does
    /// not come up.
    #[track_caller]
    pub fn serve(&self, schedules: &Path) -> Server {
        self.try_serve(schedules).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_serve(&self, schedules: &Path) -> Result<Server, String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let stderr_path = self.dir.path().join(format!("serve-{}.err", N.fetch_add(1, Ordering::Relaxed)));
        let err = std::fs::File::create(&stderr_path).unwrap();
        let child = self
            .cmd(&["--schedules", schedules.to_str().unwrap(), "serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn audit-trail serve");
        let mut server = Server { child, stderr_path, socket: self.data.join("ingest.sock") };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("serve exited ({status}) before listening:\n{}", server.stderr()));
            }
            if server.stderr().contains("audit-trail: serving ")
                && std::os::unix::net::UnixStream::connect(&server.socket).is_ok()
            {
                return Ok(server);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("serve did not start listening within 20 s:\n{}", server.stderr()));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Server {
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> std::os::unix::net::UnixStream {
        let s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect to the ingest socket");
        s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        s
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// SIGKILL, then waits for the process.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, waits for a clean exit (at most 30 s) and returns stderr.
    #[track_caller]
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let err = self.stderr();
                assert!(status.success(), "serve did not stop cleanly ({status}):\n{err}");
                return err;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("serve did not stop within 30 s of SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `input` on a socket while reading the answers (one per non-blank
/// line), like a pipelining client. Returns the answers as JSON values; stops
/// early (returning what it got) if the connection breaks.
pub fn submit(stream: std::os::unix::net::UnixStream, input: Vec<u8>) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let expected = input.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
    let mut w = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&input);
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let mut answers = Vec::new();
    let mut rd = std::io::BufReader::new(stream);
    let mut line = String::new();
    while answers.len() < expected {
        line.clear();
        match rd.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => answers.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad answer {line:?}: {e}"))),
        }
    }
    let _ = writer.join();
    answers
}

/// A small deterministic generator (xorshift64*) for generated test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The seed of a generated test: `AUDIT_TRAIL_TEST_SEED`, else the clock
/// (the tests print it on failure so a run can be repeated).
pub fn seed() -> u64 {
    std::env::var("AUDIT_TRAIL_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    })
}
