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
        std::fs::write(
            data.join("audit-trail.toml"),
            format!(
                "host_name = \"bench\"\nevent_mask = \"all\"\ncapacity = 50000\n[siem]\nenabled = true\nprotocol = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\nformat = \"{format}\"\n",
                rs.port
            ),
        )
        .unwrap();
        let mut child = common::start_serve(BIN, &data);
        // Records only: chain anchors (MSGID `anchor`) arrive among them.
        // The receiver's file is followed from where the last look ended, so
        // that watching it costs next to nothing on the cores being measured.
        let mut tail = Tail::default();
        let before = tail.records(&rs.output);
        let start = Instant::now();
        let ok = Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(["append", "--json"])
            .arg(&input)
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
