//! Forwarding rate of SIEM forwarding over TCP to a real rsyslog receiver
//! (imtcp → omfile, the test suite's), in JSON and in CEF.
//!
//! `cargo bench --bench siem` (records: `BENCH_RECORDS`, default 200000; 3000
//! at smoke size, see `common::smoke`).
//! The service runs with forwarding on; the records are appended over the
//! ingest socket, and the time is taken from the first record appended to
//! the last one written by rsyslog. Ingest alone is timed too, to show that
//! forwarding runs behind it, not in its way. Figures are printed, never
//! asserted; each also goes into a `summary` line for `benches/suite.sh`'s
//! table.
//!
//! Then the same forwarding (JSON) on top of a history of 10 sealed files
//! and of `BENCH_HISTORY_FILES` (default 10000; 200 at smoke size), written
//! by the archiver itself with two records a file: the two rates side by
//! side show whether forwarding costs grow with the history (aim: within 10%).

#[path = "../tests/it/support/servers.rs"]
mod servers;
// Its self-checks (#[test]) are not built here, so some imports go unused.
#[allow(unused_imports)]
#[path = "../tests/it/syslog.rs"]
mod syslog;

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{per_s, secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");

fn main() {
    if common::listing() {
        return;
    }
    let n = common::records(200_000);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("records.jsonl");
    common::generate(n, &input);
    println!(
        "SIEM forwarding benchmark: {n} records over TCP to rsyslog (imtcp -> omfile), on {} cores",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    for format in ["json", "cef"] {
        let rs = syslog::Rsyslog::start(syslog::Transport::Tcp);
        let data = tmp.path().join(format!("data-{format}"));
        std::fs::create_dir_all(&data).unwrap();
        let (ingested, forwarded) = forward(&data, &rs, format, &input, n);
        println!(
            "{format:<5} ingest (fsynced) {:>7.3} s ({:>9.0} records/s); all {n} at the receiver after {:>7.3} s: {:>9.0} records/s forwarded",
            ingested.as_secs_f64(),
            n as f64 / ingested.as_secs_f64(),
            forwarded.as_secs_f64(),
            n as f64 / forwarded.as_secs_f64()
        );
        let upper = format.to_uppercase();
        summary(
            &format!("SIEM forwarding over TCP ({upper}), until all {n} are at rsyslog"),
            &format!("{} ({})", per_s(n as f64, forwarded, "records"), secs(forwarded)),
            "",
            "",
            None,
            "",
        );
        summary(
            &format!("ingest (fsynced) while forwarding {upper}"),
            &format!("{} ({})", per_s(n as f64, ingested, "records"), secs(ingested)),
            "",
            "",
            None,
            "",
        );
    }

    // The same forwarding (JSON) on top of a long history: its cost must not
    // grow with the files already there. The history is written by the
    // archiver itself (`append --json` with `capacity = 2`, so every two
    // records seal a file and the chain holds across all of them), then
    // forwarding is turned on, which starts with the records appended next.
    let big = common::knob("BENCH_HISTORY_FILES", 10_000, 200);
    let mut rates = Vec::new();
    for files in [10, big] {
        let data = tmp.path().join(format!("data-history-{files}"));
        std::fs::create_dir_all(&data).unwrap();
        let old = tmp.path().join(format!("history-{files}.jsonl"));
        common::generate(2 * files, &old);
        std::fs::write(data.join("audit-trail.toml"), "host_name = \"bench\"\nevent_mask = \"all\"\ncapacity = 2\n")
            .unwrap();
        let made = Instant::now();
        let ok = Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(["append", "--json"])
            .arg(&old)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "writing the history failed");
        let sealed = common::files_in(&data.join("audit_trail"), ".xml").len();
        println!("history of {sealed} sealed files written in {:.3} s", made.elapsed().as_secs_f64());
        let rs = syslog::Rsyslog::start(syslog::Transport::Tcp);
        let (_, forwarded) = forward(&data, &rs, "json", &input, n);
        let rate = n as f64 / forwarded.as_secs_f64();
        println!(
            "json  over a history of {sealed:>6} files: all {n} at the receiver after {:>7.3} s: {rate:>9.0} records/s forwarded",
            forwarded.as_secs_f64()
        );
        rates.push((sealed, forwarded, rate));
    }
    let (small, large) = (rates[0], rates[1]);
    println!(
        "forwarding rate with {} files is {:.1}% of the rate with {} files (aim: at least 90%)",
        large.0,
        100.0 * large.2 / small.2,
        small.0
    );
    for (files, took, _) in [small, large] {
        summary(
            &format!("SIEM forwarding over TCP (JSON) with {files} sealed files in the history"),
            &format!("{} ({})", per_s(n as f64, took, "records"), secs(took)),
            "",
            "",
            None,
            if files == large.0 { "within 10% of the small history" } else { "" },
        );
    }
}

/// Runs the service with forwarding (`format`) to `rs` on `data`, appends
/// `input` (`n` records) over the ingest socket, and returns how long the
/// append took and how long until all `n` were written by the receiver.
fn forward(
    data: &std::path::Path,
    rs: &syslog::Rsyslog,
    format: &str,
    input: &std::path::Path,
    n: usize,
) -> (Duration, Duration) {
    std::fs::write(
        data.join("audit-trail.toml"),
        format!(
            "host_name = \"bench\"\nevent_mask = \"all\"\ncapacity = 50000\n[siem]\nenabled = true\nprotocol = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\nformat = \"{format}\"\n",
            rs.port
        ),
    )
    .unwrap();
    let mut child = common::start_serve(BIN, data);
    // Records only: chain anchors (MSGID `anchor`) arrive among them.
    // The receiver's file is followed from where the last look ended, so
    // that watching it costs next to nothing on the cores being measured.
    let mut tail = Tail::default();
    let before = tail.records(&rs.output);
    let start = Instant::now();
    let ok = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(["append", "--json"])
        .arg(input)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "append failed");
    let ingested = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut got = tail.records(&rs.output);
    while got < before + n {
        assert!(Instant::now() < deadline, "{} of {n} records at the receiver after 600 s", got - before);
        std::thread::sleep(Duration::from_millis(10));
        got = tail.records(&rs.output);
    }
    let forwarded = start.elapsed();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(got >= before + n);
    (ingested, forwarded)
}

/// Counts the records (MSGID `audit`) in a growing file, reading only what
/// was added since the last call.
#[derive(Default)]
struct Tail {
    pos: u64,
    partial: Vec<u8>,
    records: usize,
}

impl Tail {
    fn records(&mut self, path: &std::path::Path) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(path) else { return self.records };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return self.records;
        }
        let mut new = Vec::new();
        let Ok(n) = f.read_to_end(&mut new) else { return self.records };
        self.pos += n as u64;
        self.partial.extend_from_slice(&new);
        if let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') {
            let marker = b" - audit - ";
            self.records += self.partial[..end]
                .split(|&b| b == b'\n')
                .filter(|l| memchr::memmem::find(l, marker).is_some())
                .count();
            self.partial.drain(..=end);
        }
        self.records
    }
}
