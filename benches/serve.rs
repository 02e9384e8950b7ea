//! Benchmark of the service's ingest socket against rsyslog.
//!
//! `cargo bench --bench serve` (records: `BENCH_RECORDS`, default 300000; 3000
//! at smoke size, see `common::smoke`).
//! In the same run, on the same generated records:
//! - audit-trail `serve`: one pipelining client, four pipelining clients
//!   (records/s; every answer means the record was fsynced), and one client
//!   sending one record at a time (answer latency p50/p99/max), including
//!   the latency of the records that start a new file (rollover cost);
//! - rsyslog (`rsyslogd`, Debian package rsyslog) receiving the same lines
//!   over TCP (imtcp) and writing them to a file (omfile, no fsync): time
//!   until the last line is in the file.
//!
//! The throughput figures are medians of `BENCH_ROUNDS` rounds (default 3),
//! each running the 1-client, 4-client and rsyslog measures in turn, so a
//! burst of load elsewhere on the machine hits one round, not one side.
//!
//! Peak memory of `serve` comes from /proc (VmHWM). Figures are printed,
//! never asserted; each also goes into a `summary` line for
//! `benches/suite.sh`'s table. `AUDIT_TRAIL_BIN` runs another build of the service (e.g.
//! `target/baseline/release/audit-trail` from benches/chain-baseline.sh, to
//! see what the hash chain costs on socket ingest).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{mib, per_s, secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");

struct Serve {
    child: Child,
    socket: PathBuf,
}

impl Serve {
    fn start(data: &Path, capacity: u64) -> Serve {
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(
            data.join("audit-trail.toml"),
            format!("host_name = \"bench\"\nevent_mask = \"all\"\ncapacity = {capacity}\n"),
        )
        .unwrap();
        let bin = std::env::var("AUDIT_TRAIL_BIN").unwrap_or_else(|_| BIN.to_owned());
        let child = common::start_serve(&bin, data);
        let socket = data.join("ingest.sock");
        Serve { child, socket }
    }

    fn peak_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// Sends `input` and reads one answer per line at the same time.
fn pipelined(socket: &Path, input: &[u8]) -> usize {
    let stream = UnixStream::connect(socket).unwrap();
    let mut w = stream.try_clone().unwrap();
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    std::thread::scope(|s| {
        s.spawn(move || {
            w.write_all(input).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut rd = BufReader::with_capacity(1 << 20, &stream);
        let mut buf = Vec::new();
        let mut ids = 0;
        while ids < lines {
            buf.clear();
            if rd.read_until(b'\n', &mut buf).unwrap() == 0 {
                break;
            }
            assert!(buf.starts_with(b"{\"id\":"), "unexpected answer {}", String::from_utf8_lossy(&buf));
            ids += 1;
        }
        ids
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// rsyslog imtcp → omfile on the same lines; the time until all are in the
/// file, or `None` when rsyslogd is not installed.
fn rsyslog(lines: &[&[u8]], dir: &Path) -> Option<Duration> {
    let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|p| Path::new(p).exists())?;
    let port = free_port();
    let out = dir.join("rsyslog.out");
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" \
             port=\"{port}\")\ntemplate(name=\"raw\" type=\"string\" string=\"%msg%\\n\")\naction(type=\"omfile\" \
             file=\"{}\" template=\"raw\")\n",
            work.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break c;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            println!("rsyslogd did not start listening on 127.0.0.1:{port}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut payload = Vec::with_capacity(lines.iter().map(|l| l.len() + 40).sum());
    for l in lines {
        payload.extend_from_slice(b"<110>1 2026-11-22T09:45:37.120+01:00 bench app - - - ");
        payload.extend_from_slice(l);
        payload.push(b'\n');
    }
    let start = Instant::now();
    conn.write_all(&payload).unwrap();
    // Time until every line is in the output file.
    let mut seen = 0;
    let mut pos = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < lines.len() && Instant::now() < deadline {
        if let Ok(mut f) = std::fs::File::open(&out) {
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(pos)).unwrap();
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).unwrap();
            pos += buf.len() as u64;
            seen += buf.iter().filter(|&&b| b == b'\n').count();
        }
        if seen < lines.len() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let took = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    if seen < lines.len() {
        println!("rsyslog wrote {seen} of {} lines within 120 s", lines.len());
        return None;
    }
    Some(took)
}

fn main() {
    if common::listing() {
        return;
    }
    let n = common::records(300_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input_path = tmp.path().join("records.jsonl");
    common::generate(n, &input_path);
    let input = std::fs::read(&input_path).unwrap();
    let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    println!("audit-trail serve benchmark: {n} records ({:.1} MB of JSON Lines)", input.len() as f64 / 1e6);
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));
    println!();

    // Throughput, in rounds that alternate between audit-trail and rsyslog
    // so that both see the same machine; medians are reported.
    let rounds = common::knob("BENCH_ROUNDS", 3, 1).max(1);
    let mut parts: Vec<Vec<u8>> = vec![Vec::new(); 4];
    for (i, l) in lines.iter().enumerate() {
        parts[i % 4].extend_from_slice(l);
        parts[i % 4].push(b'\n');
    }
    let (mut ones, mut fours, mut syslogs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut idle, mut peak, mut peak4) = (None, None, None);
    for round in 0..rounds {
        let dir = tmp.path().join(format!("round{round}"));

        // One pipelining client.
        let server = Serve::start(&dir.join("one"), 5000);
        idle = idle.max(server.peak_kib());
        let start = Instant::now();
        let got = pipelined(&server.socket, &input);
        let one = start.elapsed();
        assert_eq!(got, n);
        peak = peak.max(server.peak_kib());
        server.stop();
        ones.push(one);

        // Four pipelining clients, a quarter each.
        let server = Serve::start(&dir.join("four"), 5000);
        let start = Instant::now();
        let total: usize = std::thread::scope(|s| {
            let hs: Vec<_> = parts.iter().map(|p| s.spawn(|| pipelined(&server.socket, p))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let four = start.elapsed();
        assert_eq!(total, n);
        peak4 = peak4.max(server.peak_kib());
        server.stop();
        fours.push(four);

        std::fs::create_dir_all(&dir).unwrap();
        let syslog = rsyslog(&lines, &dir);
        if let Some(t) = syslog {
            syslogs.push(t);
        }
        println!(
            "round {}: 1 client {:>8.0} records/s, 4 clients {:>8.0} records/s, rsyslog {}",
            round + 1,
            n as f64 / one.as_secs_f64(),
            n as f64 / four.as_secs_f64(),
            syslog.map_or("n/a".to_owned(), |t| format!("{:.0} records/s", n as f64 / t.as_secs_f64()))
        );
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let one = median(&mut ones);
    let four = median(&mut fours);
    let syslog = (!syslogs.is_empty()).then(|| median(&mut syslogs));
    println!();
    println!("medians of {rounds} round(s):");
    let one_rate = n as f64 / one.as_secs_f64();
    println!(
        "{:<52} {:>8.3} s {:>10.0} records/s  serve peak {} (idle {})",
        "socket ingest, 1 pipelining client (fsynced)",
        one.as_secs_f64(),
        one_rate,
        mib(peak),
        mib(idle)
    );
    println!(
        "{:<52} {:>8.3} s {:>10.0} records/s  serve peak {}",
        "socket ingest, 4 pipelining clients (fsynced)",
        four.as_secs_f64(),
        n as f64 / four.as_secs_f64(),
        mib(peak4)
    );

    // One record at a time: answer latency, with a rollover every 5000 records.
    let single = 20_000.min(n);
    let server = Serve::start(&tmp.path().join("single"), 5000);
    let stream = UnixStream::connect(&server.socket).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut rd = BufReader::new(stream);
    let mut lat = Vec::with_capacity(single);
    let mut rollover = Vec::new();
    let mut answer = String::new();
    for l in &lines[..single] {
        let t = Instant::now();
        w.write_all(l).unwrap();
        w.write_all(b"\n").unwrap();
        answer.clear();
        rd.read_line(&mut answer).unwrap();
        let d = t.elapsed();
        let id: u64 = answer.trim().trim_start_matches("{\"id\":").trim_end_matches('}').parse().expect("an id");
        // Id 1 is the service's start record; every 5000th record after that starts a file.
        if id > 1 && id % 5000 == 1 {
            rollover.push(d);
        }
        lat.push(d);
    }
    server.stop();
    lat.sort();
    println!(
        "{:<52} p50 {}  p99 {}  max {}",
        format!("single-record latency ({single} records, 1 client)"),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
    if !rollover.is_empty() {
        rollover.sort();
        println!(
            "{:<52} median {}  max {}  ({} rollovers)",
            "latency of the record that starts a new file",
            ms(percentile(&rollover, 0.5)),
            ms(*rollover.last().unwrap()),
            rollover.len()
        );
    }

    match syslog {
        Some(t) => {
            let r = n as f64 / t.as_secs_f64();
            println!(
                "{:<52} {:>8.3} s {:>10.0} records/s",
                "rsyslog imtcp -> omfile (same lines, no fsync)",
                t.as_secs_f64(),
                r
            );
            println!("{:<52} {:>8.2}x", "socket ingest (1 client) vs rsyslog", one_rate / r);
        }
        None => println!("rsyslog not available (apt-get install -y rsyslog): no side-by-side figure"),
    }

    let peer = "rsyslog imtcp -> omfile (no fsync)";
    let peer_figure = syslog.map_or("not available".to_owned(), |t| per_s(n as f64, t, "records"));
    let ratio = |ours: Duration| syslog.map(|t| t.as_secs_f64() / ours.as_secs_f64());
    let figure = |t: Duration| format!("{} ({})", per_s(n as f64, t, "records"), secs(t));
    summary(
        &format!("socket ingest, 1 pipelining client (fsynced), median of {rounds}"),
        &figure(one),
        peer,
        &peer_figure,
        ratio(one),
        "≥ 1.0x rsyslog",
    );
    summary(
        &format!("socket ingest, 4 pipelining clients (fsynced), median of {rounds}"),
        &figure(four),
        peer,
        &peer_figure,
        ratio(four),
        "",
    );
    summary("serve peak memory, idle", &mib(idle), "", "", None, "");
    summary("serve peak memory, 1 pipelining client", &mib(peak), "", "", None, "");
    summary("serve peak memory, 4 pipelining clients", &mib(peak4), "", "", None, "");
    summary(
        &format!("single-record latency, 1 client ({single} records)"),
        &format!("p50 {}, p99 {}", ms(percentile(&lat, 0.50)), ms(percentile(&lat, 0.99))),
        "",
        "",
        None,
        "",
    );
    if !rollover.is_empty() {
        summary(
            "latency of the record that starts a new file",
            &format!("median {}", ms(percentile(&rollover, 0.5))),
            "",
            "",
            None,
            "",
        );
    }
}
