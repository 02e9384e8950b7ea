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

    /// Runs with `stdin` as input.
    pub fn run_with_input(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut c = self.cmd(args);
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

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).stdin(Stdio::null()).output().expect("run audit-trail");
        Run::from(out, args)
    }

    pub fn sealed_dir(&self) -> PathBuf {
        self.data.join("audit_trail")
    }

    /// Sealed `*.xml` files, sorted by name.
    pub fn sealed_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.sealed_dir())
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
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
    let out = Command::new("xmllint").arg("--noout").arg(path).output().expect(
        "xmllint is required by the tests (Debian package libxml2-utils; .ci/run installs it)",
    );
    assert!(out.status.success(), "{} is not well-formed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
}
