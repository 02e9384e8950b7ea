//! Benchmark of the audit log against the tools an operator would use instead.
//!
//! `cargo bench --bench log` (records: `BENCH_RECORDS`, default 300000; 3000
//! at smoke size, see `common::smoke`).
//! Generates realistic records, then measures in fresh temporary data dirs:
//! - bulk `append --json FILE` (records/s, best of 3);
//! - `export --all --format csv` over the resulting files (MB/s of XML, peak
//!   memory), side by side with `xmlstarlet sel` extracting the same columns
//!   from the same files; the same for JSON, XML and HTML.
//!
//! Peak memory comes from GNU time (`/usr/bin/time`, Debian package `time`).
//! Figures are printed, never asserted: speed is not a test. Each figure also
//! goes into a `summary` line for `benches/suite.sh`'s table.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{files_in, measure, mib, per_s, secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");

fn main() {
    if common::listing() {
        return;
    }
    let (tmp, input, n) = common::generated_input(300_000);
    let input_mb = std::fs::metadata(&input).unwrap().len() as f64 / 1e6;
    println!("audit-trail log benchmark: {n} records ({input_mb:.1} MB of JSON Lines)");
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));
    println!();

    // Bulk append, best of three in fresh data dirs.
    let mut best = Duration::MAX;
    let mut best_rss = None;
    let mut data = PathBuf::new();
    for run in 0..3 {
        data = tmp.path().join(format!("data{run}"));
        // Every generated category is recorded, whatever the default event mask.
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("audit-trail.toml"), "event_mask = \"all\"\n").unwrap();
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&data).arg("append").arg("--json").arg(&input);
        let (t, rss) = measure(c, None);
        if t < best {
            best = t;
            best_rss = rss;
        }
    }
    let rate = n as f64 / best.as_secs_f64();
    println!(
        "{:<44} {:>8.3} s {:>12.0} records/s   peak {}",
        "append --json (bulk, fsynced)",
        best.as_secs_f64(),
        rate,
        mib(best_rss)
    );
    let count = if n % 1000 == 0 { format!("{}k records", n / 1000) } else { format!("{n} records") };
    summary(
        &format!("bulk append --json, {count} (fsynced), best of 3"),
        &format!("{} ({})", per_s(n as f64, best, "records"), secs(best)),
        "",
        "",
        None,
        "≥ 500k records/s",
    );
    summary(&format!("bulk append --json, {count}, peak memory"), &mib(best_rss), "", "", None, "");

    // Export over the whole history vs xmlstarlet over the same files; seal
    // the active file first so that every file is a complete document.
    let status = Command::new(BIN).arg("--data-dir").arg(&data).arg("rotate").stdout(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "rotate failed");
    let xml_files = files_in(&data.join("audit_trail"), ".xml");
    let xml_bytes: u64 = xml_files.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    let xml_mb = xml_bytes as f64 / 1e6;
    let out = tmp.path().join("export.out");
    let mut ours = (Duration::MAX, None);
    for _ in 0..3 {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&data).args(["export", "--all", "--format", "csv"]);
        let r = measure(c, Some(&out));
        if r.0 < ours.0 {
            ours = r;
        }
    }
    let rows = std::fs::read(&out).unwrap().iter().filter(|&&b| b == b'\n').count();
    assert_eq!(rows, n + 1, "CSV export: a header row and one row per record");
    println!(
        "{:<44} {:>8.3} s {:>12.1} MB/s of XML  peak {}  ({} lines)",
        "export --all --format csv",
        ours.0.as_secs_f64(),
        xml_mb / ours.0.as_secs_f64(),
        mib(ours.1),
        rows
    );
    let mut exports = vec![("csv", ours.0, ours.1)];
    for fmt in ["json", "xml", "html"] {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&data).args(["export", "--all", "--format", fmt]);
        let (t, rss) = measure(c, Some(&out));
        if fmt == "html" {
            let page = std::fs::read(&out).unwrap();
            let rows = memchr::memmem::find_iter(&page, b"<tbody class=\"r").count();
            assert_eq!(rows, n, "HTML export: one table body per record");
        }
        exports.push((fmt, t, rss));
        println!(
            "{:<44} {:>8.3} s {:>12.1} MB/s of XML  peak {}",
            format!("export --all --format {fmt}"),
            t.as_secs_f64(),
            xml_mb / t.as_secs_f64(),
            mib(rss)
        );
    }

    let xmlstarlet =
        if Command::new("xmlstarlet").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
            let mut c = Command::new("xmlstarlet");
            c.args(["sel", "-T", "-t", "-m", "/AuditTrail/Record", "-v", "@id"]);
            for el in ["TimeStamp", "UserName", "SourceIP", "AppName", "AppContext", "ActionType", "ActionData"] {
                c.args(["-o", ",", "-v", el]);
            }
            c.arg("-n").args(&xml_files);
            let (t, rss) = measure(c, Some(&out));
            let lines = std::fs::read(&out).unwrap().iter().filter(|&&b| b == b'\n').count();
            assert_eq!(lines, n, "xmlstarlet: one line per record");
            println!(
                "{:<44} {:>8.3} s {:>12.1} MB/s of XML  peak {}",
                "xmlstarlet sel (same files, 8 columns)",
                t.as_secs_f64(),
                xml_mb / t.as_secs_f64(),
                mib(rss)
            );
            println!("{:<44} {:>8.1}x", "export csv speed vs xmlstarlet", t.as_secs_f64() / ours.0.as_secs_f64());
            Some((t, rss))
        } else {
            println!("xmlstarlet not installed (apt-get install -y xmlstarlet): no side-by-side figure");
            None
        };

    let peer = "xmlstarlet sel (8 columns)";
    let missing = "not installed";
    let figure = |t: Duration| format!("{} ({:.0} MB/s)", secs(t), xml_mb / t.as_secs_f64());
    for &(fmt, t, _) in &exports {
        let aim = if fmt == "csv" { "≥ 10x xmlstarlet" } else { "" };
        let what = format!("export --all --format {fmt}, {count} ({xml_mb:.0} MB of XML)");
        match xmlstarlet {
            Some((x, _)) => summary(&what, &figure(t), peer, &figure(x), Some(x.as_secs_f64() / t.as_secs_f64()), aim),
            None => summary(&what, &figure(t), peer, missing, None, aim),
        }
    }
    // The largest of the three formats' peaks: the aim holds for any of them.
    let peak = exports.iter().filter_map(|e| e.2).max();
    let what = &format!("export peak memory, {count} (largest of csv/json/xml/html)");
    match xmlstarlet {
        Some((_, x)) => {
            let ratio = x.zip(peak).map(|(x, p)| x as f64 / p as f64);
            summary(what, &mib(peak), peer, &mib(x), ratio, "≤ 50 MiB")
        }
        None => summary(what, &mib(peak), peer, missing, None, "≤ 50 MiB"),
    }
}
