//! Benchmark of the web interface over a large history.
//!
//! `cargo bench --bench console` (records: `BENCH_RECORDS`, default
//! 1,000,000 over one year of event times, 5000 to a file, all but the
//! newest archived; 3000 at smoke size, see `common::smoke`). In one run:
//!
//! - `view` of the data directory: time to read and verify, peak memory;
//! - the records page: the first page, and pages of a one-day time filter
//!   at random days and offsets (median of `BENCH_ROUNDS` × 20 requests;
//!   aim: under 100 ms);
//! - full-text search over the whole history, next to `export --all
//!   --format json` (what the search must be at least as fast as) and
//!   `zcat archive/*.gz | grep -c` (what a user would run instead);
//! - ingest with and without the console: records/s of one pipelining
//!   client into `serve` on a copy of the whole history, alternating rounds, while a signed-in client
//!   loads the records page every 100 ms in the rounds with the console.
//!
//! Figures are printed, never asserted; each also goes into a `summary`
//! line for `benches/suite.sh`'s table.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, mib, secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");
/// One year of event times, in seconds.
const SPAN: i64 = 365 * 86_400;
const START: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

fn stamp(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

/// `common::generate`'s records with event times spread evenly over [`SPAN`].
fn generate(n: usize, path: &Path) {
    common::generate(n, path);
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::with_capacity(text.len() + n * 48);
    for (i, line) in text.lines().enumerate() {
        let t = START + (i as i64) * SPAN / n.max(1) as i64;
        out.push_str(&format!("{{\"timestamp\":\"{}\",", stamp(t)));
        out.push_str(&line[1..]);
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn peak_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// GET `path`; returns the time to the whole answer and the body.
fn get(addr: &str, path: &str) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let took = t.elapsed();
    assert!(all.starts_with("HTTP/1.1 200"), "{path}: {}", all.lines().next().unwrap_or(""));
    (took, all)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(t: Duration) -> String {
    format!("{:.1} ms", t.as_secs_f64() * 1000.0)
}

/// The number the records page says matched ("<strong>N</strong> of").
fn matched(page: &str) -> u64 {
    let at = page.find("<p class=\"summary\"><strong>").expect("a summary") + 27;
    page[at..at + page[at..].find('<').unwrap()].parse().unwrap()
}

/// One pipelining client sending `input` to `serve` on `data`; returns the time.
fn ingest(data: &Path, input: &[u8], web_port: Option<u16>) -> Duration {
    std::fs::create_dir_all(data).unwrap();
    let mut cfg = "host_name = \"bench\"\nevent_mask = \"all\"\n".to_string();
    if let Some(p) = web_port {
        cfg.push_str(&format!("[web]\nlisten = \"127.0.0.1:{p}\"\n"));
    }
    std::fs::write(data.join("audit-trail.toml"), cfg).unwrap();
    if web_port.is_some() {
        let mut add = Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .args(["user", "add", "bench", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        add.stdin.take().unwrap().write_all(b"bench-password\n").unwrap();
        assert!(add.wait().unwrap().success());
    }
    let server = Proc(common::start_serve(BIN, data));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A signed-in reader of the records page while records arrive: each
    // load takes in the records written since the last one.
    let reader = web_port.map(|p| {
        let stop = stop.clone();
        let addr = format!("127.0.0.1:{p}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the console did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        let cookie = sign_in(&addr);
        std::thread::spawn(move || {
            let mut loads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut s = TcpStream::connect(&addr).unwrap();
                write!(s, "GET / HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").unwrap();
                let mut answer = String::new();
                s.read_to_string(&mut answer).unwrap();
                assert!(answer.starts_with("HTTP/1.1 200"), "{}", answer.lines().next().unwrap_or(""));
                loads += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            loads
        })
    });
    let stream = UnixStream::connect(data.join("ingest.sock")).unwrap();
    let mut w = stream.try_clone().unwrap();
    let t = Instant::now();
    let n = std::thread::scope(|s| {
        s.spawn(move || {
            w.write_all(input).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        BufReader::new(stream).lines().count()
    });
    let took = t.elapsed();
    assert_eq!(n, input.iter().filter(|&&b| b == b'\n').count());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(r) = reader {
        assert!(r.join().unwrap() > 0 || took < Duration::from_millis(200), "the reader loaded no page");
    }
    let _ = Command::new("kill").arg("-TERM").arg(server.0.id().to_string()).status();
    took
}

/// Signs in as `bench`; returns the session cookie.
fn sign_in(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let token = answer.split("at_login=").nth(1).unwrap().split(';').next().unwrap().to_string();
    let body = format!("csrf={token}&user=bench&password=bench-password");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nCookie: at_login={token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let session = answer.split("at_session=").nth(1).expect("signed in").split(';').next().unwrap();
    format!("at_session={session}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn main() {
    if common::listing() {
        return;
    }
    let n = common::records(1_000_000);
    let rounds = common::knob("BENCH_ROUNDS", 3, 1).max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("records.jsonl");
    generate(n, &input);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("audit-trail.toml"), "host_name = \"bench\"\nevent_mask = \"all\"\ncapacity = 5000\n")
        .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).arg("--data-dir").arg(&data).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let t = Instant::now();
    run(&["append", "--json", input.to_str().unwrap()]);
    run(&["archive"]);
    let archived = common::files_in(&data.join("archive"), ".xml.gz").len();
    println!(
        "audit-trail console benchmark: {n} records over one year, {archived} archived files (history written in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));
    println!();

    // view: read, verify, serve.
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .arg("view")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("view printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("open http://") {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let view = Proc(child);
    let ready = t.elapsed();
    println!("view: read and verified in {}, peak memory {}", secs(ready), mib(view.peak_kib()));

    let mut rng = Rng(0x5eed);
    let requests = 20 * rounds;
    let first: Vec<Duration> = (0..requests).map(|_| get(&addr, "/").0).collect();
    let mut day_pages = Vec::new();
    for _ in 0..requests {
        let day = START + (rng.next() % 364) as i64 * 86_400;
        let (from, to) = (stamp(day), stamp(day + 86_399));
        let path = format!("/?from={}&to={}&page={}", enc(&from), enc(&to), rng.next() % 20);
        day_pages.push(get(&addr, &path).0);
    }
    let (first, day_page) = (median(first), median(day_pages));
    println!("records page, first page:            median {} of {requests}", ms(first));
    println!("records page, one day, random page:  median {} of {requests}", ms(day_page));

    // Full-text search over everything, against export --all and zcat | grep.
    let needle = "New Name 4242'";
    let mut searches = Vec::new();
    let mut hits = 0;
    for _ in 0..rounds {
        let (t, body) = get(&addr, &format!("/?q={}", enc(needle)));
        hits = matched(&body);
        searches.push(t);
    }
    let search = median(searches);
    let mut exports = Vec::new();
    let mut greps = Vec::new();
    for _ in 0..rounds {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&data).args(["export", "--all", "--format", "json"]);
        exports.push(common::measure(c, None).0);
        let t = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("zcat {}/archive/*.xml.gz | grep -c -F \"{needle}\"", data.display()))
            .output()
            .unwrap();
        greps.push(t.elapsed());
        let _ = out;
    }
    let (export, grep) = (median(exports), median(greps));
    println!("full-text search ({hits} records match): median {}", ms(search));
    println!("export --all --format json:             median {}", secs(export));
    println!("zcat archive/*.gz | grep -c:            median {}", secs(grep));
    drop(view);

    // Ingest with and without the console.
    let ingest_n = common::knob("BENCH_INGEST_RECORDS", 200_000, 3000).min(n);
    let text = std::fs::read(&input).unwrap();
    let cut =
        text.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(ingest_n - 1).map_or(text.len(), |(i, _)| i + 1);
    let part = &text[..cut];
    let (mut without, mut with) = (Vec::new(), Vec::new());
    // Each round starts from a copy of the whole history, so the console
    // holds all of it while records arrive.
    let copy = |name: String| {
        let to = tmp.path().join(name);
        let ok = Command::new("cp").arg("-a").arg(&data).arg(&to).status().unwrap().success();
        assert!(ok, "cp -a {}", data.display());
        to
    };
    for r in 0..rounds {
        without.push(ingest(&copy(format!("plain{r}")), part, None));
        with.push(ingest(&copy(format!("web{r}")), part, Some(free_port())));
    }
    let (without, with) = (median(without), median(with));
    let rate = |t: Duration| ingest_n as f64 / t.as_secs_f64();
    println!(
        "ingest, 1 pipelining client, {ingest_n} records: {:.0} records/s without the console, {:.0} with it (read every 100 ms)",
        rate(without),
        rate(with)
    );
    println!();
    summary(&format!("console first page, {n} records"), &ms(first), "", "", None, "< 100 ms");
    summary(&format!("console one-day page, {n} records"), &ms(day_page), "", "", None, "< 100 ms");
    summary(
        &format!("console full-text search, {n} records"),
        &ms(search),
        "export --all --format json",
        &secs(export),
        Some(export.as_secs_f64() / search.as_secs_f64()),
        ">= 1x",
    );
    summary(
        &format!("console full-text search, {n} records"),
        &ms(search),
        "zcat | grep -c",
        &secs(grep),
        Some(grep.as_secs_f64() / search.as_secs_f64()),
        "-",
    );
    summary(
        "ingest with the console on",
        &format!("{:.0} records/s", rate(with)),
        "console off",
        &format!("{:.0} records/s", rate(without)),
        Some(without.as_secs_f64() / with.as_secs_f64()),
        "~1x",
    );
    summary(&format!("view read + verify, {n} records"), &secs(ready), "", "", None, "-");
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}
