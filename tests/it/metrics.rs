//! The Prometheus endpoint of `serve` (`metrics_listen`): exact counts after
//! a known mix of records, the exposition checked by `promtool check metrics`
//! and scraped by a real Prometheus server; the systemd watchdog keep-alives.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::harness::{Env, Server, submit};
use crate::support::servers::free_port;

/// A record of the given category, or `None` for a line without category.
fn record(i: usize, category: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"app_name": "Provisioning", "action_type": "Change", "action_data": format!("r{i}"),
            "category": category})
    )
}

fn env_with_metrics(port: u16, extra: &str) -> Env {
    Env::with_config(&format!(
        "host_name = \"pbx01\"\ncapacity = 10\nevent_mask = \"config+system\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\
         {extra}"
    ))
}

/// One HTTP/1.1 request (connection closed after it): (status, headers, body).
fn http(port: u16, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("status in {head:?}"));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "the endpoint sends a Content-Length: {head}");
    (status, head.to_owned(), body.to_owned())
}

/// Every sample of an exposition: `name{labels}` (as written) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {l:?}"));
            (k.to_owned(), v.parse::<f64>().unwrap_or_else(|e| panic!("bad value in {l:?}: {e}")))
        })
        .collect()
}

fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (status, head, body) = http(port, "GET", "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    samples(&body)
}

fn value(s: &BTreeMap<String, f64>, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| panic!("no sample {key} in {s:#?}"))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// A scrape once the writer has published what it committed: answers go
/// out right after the fsync, the next id a moment later. In a fresh data
/// directory every id from 1 was written by this service.
fn settled(port: u16) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(port);
        let written = value(&s, "audit_trail_records_written_total");
        if value(&s, "audit_trail_log_next_id") == written + 1.0 {
            return s;
        }
        assert!(Instant::now() < deadline, "the next id does not follow the records written within 10 s: {s:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a scrape says `key` is `want`; panics with the last scrape.
fn wait_for(port: u16, key: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(port);
        if s.get(key) == Some(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "{key} is not {want} within 10 s: {s:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_what_ingest_accepted_rejected_and_dropped() {
    let port = free_port();
    let env = env_with_metrics(port, "");
    let server = env.serve(&env.no_schedules());
    // Before anything is sent: nothing counted yet, and the counters exist.
    let before = scrape(port);
    assert_eq!(value(&before, "audit_trail_records_accepted_total"), 0.0);
    assert_eq!(value(&before, "audit_trail_records_rejected_total"), 0.0);

    let mut input = String::new();
    let (mut kept, mut read, mut presence, mut invalid) = (0, 0, 0, 0);
    for i in 0..60 {
        match i % 6 {
            0 | 2 | 4 => {
                input.push_str(&record(i, if i % 4 == 0 { "config" } else { "System" }));
                kept += 1;
            }
            1 => {
                input.push_str(&record(i, "read"));
                read += 1;
            }
            3 => {
                input.push_str(&record(i, " Presence "));
                presence += 1;
            }
            _ => {
                input.push_str(if i % 12 == 5 { "{\"app_name\":\"x\"}\n" } else { "not json\n" });
                invalid += 1;
            }
        }
    }
    let answers = submit(server.connect(), input.into_bytes());
    assert_eq!(answers.len(), 60);
    let ids = answers.iter().filter(|a| a["id"].is_u64()).count();
    let dropped = answers.iter().filter(|a| a["dropped"].is_string()).count();
    let errors = answers.iter().filter(|a| a["error"].is_string()).count();
    assert_eq!((ids, dropped, errors), (kept, read + presence, invalid), "{answers:?}");

    let s = settled(port);
    assert_eq!(value(&s, "audit_trail_records_accepted_total"), kept as f64);
    assert_eq!(value(&s, "audit_trail_records_rejected_total"), invalid as f64);
    assert_eq!(value(&s, "audit_trail_records_refused_total"), 0.0);
    assert_eq!(value(&s, "audit_trail_records_dropped_total{category=\"read\"}"), read as f64);
    assert_eq!(value(&s, "audit_trail_records_dropped_total{category=\"presence\"}"), presence as f64);
    assert_eq!(s.keys().filter(|k| k.starts_with("audit_trail_records_dropped_total")).count(), 2, "{s:#?}");
    assert_eq!(value(&s, "audit_trail_ingest_queue_batches"), 0.0);
    // The service's own records (Start, configuration) are written too.
    let written = value(&s, "audit_trail_records_written_total");
    assert!(written > kept as f64, "{written}");
    let commits = value(&s, "audit_trail_fsync_duration_seconds_count");
    assert!(commits >= 1.0 && commits <= written, "{commits}");
    assert_eq!(value(&s, "audit_trail_fsync_duration_seconds_bucket{le=\"+Inf\"}"), commits);
    // capacity 10: the records filled files that were sealed.
    let sealed = dir_bytes(&env.sealed_dir());
    assert!(sealed > 0, "no sealed file");
    assert_eq!(value(&s, "audit_trail_disk_bytes{directory=\"sealed\"}"), sealed as f64);
    assert_eq!(value(&s, "audit_trail_disk_bytes{directory=\"archive\"}"), 0.0);
    assert_eq!(value(&s, "audit_trail_siem_lag_records"), 0.0);
    // The connection has ended.
    wait_for(port, "audit_trail_ingest_clients", 0.0);

    // Another client, held open, is counted.
    let held = server.connect();
    wait_for(port, "audit_trail_ingest_clients", 1.0);
    drop(held);
    wait_for(port, "audit_trail_ingest_clients", 0.0);

    // Only GET /metrics.
    let (status, _, _) = http(port, "GET", "/");
    assert_eq!(status, 404);
    let (status, _, _) = http(port, "GET", "/metrics/x");
    assert_eq!(status, 404);
    let (status, head, _) = http(port, "POST", "/metrics");
    assert_eq!(status, 405, "{head}");
    let (status, head, _) = http(port, "GET", "/metrics?x=1");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    server.stop();
}

#[test]
fn the_exposition_passes_promtool() {
    let promtool = Path::new("/usr/bin/promtool");
    assert!(promtool.exists(), "promtool is needed (Debian package prometheus; .ci/run installs it)");
    let port = free_port();
    // A target and a schedule, so that labelled gauges and counters have samples.
    let env = env_with_metrics(
        port,
        "[targets.offsite]\nprotocol = \"local\"\nremote_dir = \"/nonexistent/audit-trail-metrics\"\n",
    );
    let schedules = env.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("rotate-often.toml"), "cron = \"* * * * * *\"\njob = \"rotate\"\n").unwrap();
    let server = env.serve(&schedules);
    let mut input = String::new();
    for i in 0..30 {
        input.push_str(&record(i, if i % 3 == 0 { "read\\\"x" } else { "config" }));
    }
    input.push_str("nonsense\n");
    submit(server.connect(), input.into_bytes());
    // The schedule has run (every second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !scrape(port).keys().any(|k| k.starts_with("audit_trail_job_runs_total{")) {
        assert!(Instant::now() < deadline, "no job run counted within 10 s:\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _, body) = http(port, "GET", "/metrics");
    assert_eq!(status, 200);
    for family in [
        "audit_trail_records_accepted_total counter",
        "audit_trail_records_dropped_total counter",
        "audit_trail_fsync_duration_seconds histogram",
        "audit_trail_ingest_queue_batches gauge",
        "audit_trail_ingest_clients gauge",
        "audit_trail_siem_lag_records gauge",
        "audit_trail_siem_lag_seconds gauge",
        "audit_trail_siem_errors_total counter",
        "audit_trail_upload_pending_files gauge",
        "audit_trail_disk_bytes gauge",
        "audit_trail_job_runs_total counter",
    ] {
        assert!(body.contains(&format!("# TYPE {family}\n")), "no {family} in\n{body}");
    }
    assert!(body.contains("audit_trail_upload_pending_files{target=\"offsite\"}"), "{body}");
    assert!(
        body.contains("audit_trail_job_runs_total{job=\"rotate\",outcome=\"ok\",schedule=\"rotate-often\"}"),
        "{body}"
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop();
}

/// A Prometheus server on its own port, configuration and storage; killed on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        assert!(bin.exists(), "prometheus is needed (Debian package prometheus; .ci/run installs it)");
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: audit-trail\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Prometheus { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of an instant query's only result, if it has one now.
    fn query(&mut self, q: &str) -> Option<f64> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the Prometheus server exited ({status}):\n{}", self.log());
        }
        TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let enc: String = q
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let (status, _, body) = http(self.port, "GET", &format!("/api/v1/query?query={enc}"));
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits (up to 60 s) until `q` has the value `want`.
    fn wait_for(&mut self, q: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.query(q);
            if last == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Prometheus: {q} is {last:?}, not {want}, after 60 s:\n{}", self.log());
    }
}

#[test]
fn a_prometheus_server_scrapes_the_endpoint() {
    let port = free_port();
    let env = env_with_metrics(port, "");
    let server: Server = env.serve(&env.no_schedules());
    let mut input = String::new();
    for i in 0..17 {
        input.push_str(&record(i, if i % 4 == 1 { "read" } else { "config" }));
    }
    let answers = submit(server.connect(), input.into_bytes());
    let ids = answers.iter().filter(|a| a["id"].is_u64()).count();
    assert_eq!(ids, 13);
    let pdir = env.dir.path().join("prometheus");
    std::fs::create_dir_all(&pdir).unwrap();
    let mut prom = Prometheus::start(&pdir, port);
    prom.wait_for("up{job=\"audit-trail\"}", 1.0);
    prom.wait_for("audit_trail_records_accepted_total{job=\"audit-trail\"}", ids as f64);
    prom.wait_for("audit_trail_records_dropped_total{category=\"read\"}", 4.0);
    // The histogram is usable as one.
    prom.wait_for("audit_trail_fsync_duration_seconds_count > bool 0", 1.0);
    drop(prom);
    server.stop();
}

#[test]
fn an_address_in_use_stops_the_start_with_its_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let env = env_with_metrics(port, "");
    let err = match env.try_serve(&env.no_schedules()) {
        Ok(s) => panic!("serve started although 127.0.0.1:{port} is taken:\n{}", s.stderr()),
        Err(e) => e,
    };
    assert!(err.contains(&format!("cannot listen for metrics on 127.0.0.1:{port} (metrics_listen)")), "{err}");
    // Nothing was left behind: the ingest socket was never created.
    assert!(!env.data.join("ingest.sock").exists());
    // And a bad address is refused by config check.
    let env = Env::with_config("metrics_listen = \"127.0.0.1\"\n");
    let out = env.run(&["config", "check"]).failure();
    assert!(out.stderr.contains("metrics_listen"), "{}", out.stderr);
}

/// Datagrams on a notify socket for `wait`, as strings.
fn notifications(sock: &std::os::unix::net::UnixDatagram, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned()),
            Err(_) => break,
        }
    }
    got
}

fn serve_notified(env: &Env, notify: &Path, vars: &[(&str, String)]) -> std::process::Child {
    let dir = env.no_schedules();
    let mut cmd = env.cmd(&["--schedules", dir.to_str().unwrap(), "serve"]);
    cmd.env("NOTIFY_SOCKET", notify).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[test]
fn the_writer_feeds_the_systemd_watchdog_at_half_its_interval() {
    use std::os::unix::net::UnixDatagram;
    let env = Env::new();
    let notify = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut child = serve_notified(&env, &notify, &[("WATCHDOG_USEC", "200000".into())]);
    // 1.5 s at one keep-alive per 100 ms, while records are written too.
    let got = {
        let data = env.data.clone();
        let writer = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !data.join("ingest.sock").exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(s) = std::os::unix::net::UnixStream::connect(data.join("ingest.sock")) {
                let input: String = (0..20).map(|i| record(i, "config")).collect();
                submit(s, input.into_bytes());
            }
        });
        let got = notifications(&sock, Duration::from_millis(1500));
        writer.join().unwrap();
        got
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.iter().any(|m| m == "READY=1"), "{got:?}");
    let keep_alives = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    // At half of 200 ms: about 15 in 1.5 s (a loaded machine may send fewer).
    assert!((5..=20).contains(&keep_alives), "{keep_alives} keep-alives in 1.5 s: {got:?}");
    assert!(got.iter().all(|m| m == "READY=1" || m == "WATCHDOG=1"), "{got:?}");

    // WATCHDOG_PID naming another process: the watchdog is not this service's.
    let env = Env::new();
    let notify = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut child = serve_notified(&env, &notify, &[("WATCHDOG_USEC", "200000".into()), ("WATCHDOG_PID", "1".into())]);
    let got = notifications(&sock, Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, ["READY=1"]);
}

#[test]
fn siem_lag_and_errors_follow_the_receiver() {
    let port = free_port();
    let siem_port = free_port();
    let env = env_with_metrics(
        port,
        &format!("[siem]\nenabled = true\nprotocol = \"tcp\"\nhost = \"127.0.0.1\"\nport = {siem_port}\n"),
    );
    let server = env.serve(&env.no_schedules());
    let input: String = (0..9).map(|i| record(i, "config")).collect();
    let answers = submit(server.connect(), input.into_bytes());
    assert_eq!(answers.iter().filter(|a| a["id"].is_u64()).count(), 9);
    // Nobody listens: the records wait, the failures are counted.
    settled(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = settled(port);
        if value(&s, "audit_trail_siem_errors_total") >= 1.0 && value(&s, "audit_trail_siem_lag_seconds") > 0.0 {
            break s;
        }
        assert!(Instant::now() < deadline, "no SIEM error or lag within 10 s: {s:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let next = value(&s, "audit_trail_log_next_id");
    let lag = value(&s, "audit_trail_siem_lag_records");
    // Every record since the start (the service's own included) waits.
    assert!(lag >= 9.0 && lag < next, "lag {lag}, next id {next}");
    assert_eq!(value(&s, "audit_trail_siem_records_sent_total"), 0.0);
    // A receiver comes up: everything is sent and the lag goes back to zero.
    let listener = std::net::TcpListener::bind(("127.0.0.1", siem_port)).unwrap();
    let reader = std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(port);
        if value(&s, "audit_trail_siem_lag_records") == 0.0 {
            assert_eq!(value(&s, "audit_trail_siem_lag_seconds"), 0.0);
            assert_eq!(value(&s, "audit_trail_siem_records_sent_total"), lag);
            break;
        }
        assert!(Instant::now() < deadline, "the SIEM lag did not go back to 0 within 20 s: {s:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let _ = reader.join();
}

#[test]
fn hostile_clients_of_the_endpoint_never_stop_the_service_or_ingest() {
    let port = free_port();
    let env = env_with_metrics(port, "");
    let server = env.serve(&env.no_schedules());
    let send = |raw: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(raw);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    // A body announced far larger than memory: never read, never allocated.
    for method in ["GET /x", "POST /metrics", "GET /metrics"] {
        let a = send(format!("{method} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n").as_bytes());
        assert!(a.starts_with("HTTP/1.1 "), "{method}: {a:?}");
    }
    // An endless header, HTTP/0.9, and garbage get 400.
    let long = format!("GET /metrics HTTP/1.1\r\nX-a: {}\r\n\r\n", "a".repeat(100_000));
    assert!(send(long.as_bytes()).starts_with("HTTP/1.1 400"));
    assert!(send(b"GET /metrics\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(send(b"\x00\x01\x02\r\n\r\n").starts_with("HTTP/1.1 400"));

    // Many idle connections that never finish their request: ingest keeps
    // its descriptors and the endpoint answers again once they are gone.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let idle: Vec<TcpStream> = (0..600)
        .map_while(|_| {
            // Past the listen backlog a connect waits: stop there.
            let mut c = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
            let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nX-a: ");
            Some(c)
        })
        .collect();
    assert!(idle.len() > 100, "the kernel backlog took {} connections", idle.len());
    let ack = submit(server.connect(), record(1, "config").into_bytes());
    assert!(ack[0]["id"].as_u64().is_some(), "ingest while the endpoint is held: {ack:?}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = http(port, "GET", "/metrics");
        if status == 200 && body.contains("audit_trail_records_accepted_total") {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint did not come back: {status}");
    }
    let stderr = server.stop();
    assert!(stderr.lines().all(|l| l.starts_with("audit-trail: ")), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("memory allocation"), "{stderr}");
}
