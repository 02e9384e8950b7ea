//! Benchmark of `audit-trail archive` against `gzip -6` on the same sealed
//! files, and against `pigz -6` (all cores) when it is installed.
//!
//! `cargo bench --bench archive` (records: `BENCH_RECORDS`, default 250000,
//! 3000 at smoke size (see `common::smoke`); 5000 per file, the product's
//! default `capacity`, or a sixth of them when fewer, so that there are
//! always several files: 50 files at the default size). Both sides read
//! the files from the page cache; archive also fsyncs, verifies each `.gz` by
//! decompressing it, writes the manifest and removes the plain files.
//! Figures are printed, never asserted; each also goes into a `summary` line
//! for `benches/suite.sh`'s table.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{files_in, secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");

fn generate(n: usize, path: &Path) {
    let apps = ["System Admin Tool", "Group Administration Tool", "Desktop Tool", "Attendant Console"];
    let actions = ["Login", "Logout", "Login failure", "Add", "Change", "Delete", "Submit"];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::with_capacity(n * 300);
    for i in 0..n {
        let action = actions[(next() % 7) as usize];
        let data = if action.starts_with("Log") {
            format!("Session ID: {i} User Authenticated: True Session Availability: True")
        } else {
            format!("Extension {}: Display Name changed from 'Old Name {i}' to 'New Name {i}'", 1000 + next() % 9000)
        };
        out.push_str(&format!(
            "{{\"user_name\":\"user{}\",\"tenant\":\"acme\",\"source_ip\":\"10.{}.{}.{}\",\"app_name\":\"{}\",\"app_context\":\"User Session\",\"action_type\":\"{action}\",\"action_data\":\"{data}\",\"category\":\"config\"}}\n",
            next() % 500,
            next() % 256,
            next() % 256,
            1 + next() % 254,
            apps[(next() % 4) as usize],
        ));
    }
    std::fs::write(path, out).expect("write input");
}

fn size(files: &[PathBuf]) -> u64 {
    files.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status().is_ok_and(|s| s.success());
    assert!(ok, "cp -a failed");
}

/// Compresses each file with `tool -6 -c` into `out`, one file at a time, best
/// of three; returns the time and the total output size.
fn compress_each(tool: &str, files: &[PathBuf], out: &Path) -> (Duration, u64) {
    std::fs::create_dir_all(out).unwrap();
    let (mut best, mut bytes) = (Duration::MAX, 0);
    for _ in 0..3 {
        let start = Instant::now();
        for p in files {
            let file = std::fs::File::create(out.join(p.file_name().unwrap())).unwrap();
            let ok = Command::new(tool).arg("-6").arg("-c").arg(p).stdout(file).status();
            assert!(ok.is_ok_and(|s| s.success()), "{tool} failed");
        }
        best = best.min(start.elapsed());
        bytes = size(&files_in(out, ".xml"));
    }
    (best, bytes)
}

fn installed(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn main() {
    if common::listing() {
        return;
    }
    let n = common::records(250_000);
    let per_file = 5_000.min(n.div_ceil(6)).max(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("records.jsonl");
    generate(n, &input);
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("audit-trail.toml"), format!("host_name = \"bench\"\ncapacity = {per_file}\n")).unwrap();
    for args in [vec!["append", "--json", input.to_str().unwrap()], vec!["rotate"]] {
        let ok = Command::new(BIN).arg("--data-dir").arg(&seed).args(&args).stdout(Stdio::null()).status();
        assert!(ok.is_ok_and(|s| s.success()), "{args:?} failed");
    }
    let plain = files_in(&seed.join("audit_trail"), ".xml");
    let plain_bytes = size(&plain);
    println!("archive benchmark: {} sealed files, {:.1} MB", plain.len(), plain_bytes as f64 / 1e6);
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));

    let (gzip_best, gzip_size) = compress_each("gzip", &plain, &tmp.path().join("gzip"));
    let pigz = installed("pigz").then(|| compress_each("pigz", &plain, &tmp.path().join("pigz")));

    let (mut ours_best, mut ours_size) = (Duration::MAX, 0);
    for run in 0..3 {
        let data = tmp.path().join(format!("data{run}"));
        copy_dir(&seed, &data);
        let start = Instant::now();
        let ok = Command::new(BIN).arg("--data-dir").arg(&data).arg("archive").stdout(Stdio::null()).status();
        let took = start.elapsed();
        assert!(ok.is_ok_and(|s| s.success()), "archive failed");
        ours_best = ours_best.min(took);
        let archived = files_in(&data.join("archive"), ".xml.gz");
        assert_eq!(archived.len(), plain.len(), "one archive file per sealed file");
        ours_size = size(&archived);
    }
    let mb = plain_bytes as f64 / 1e6;
    println!(
        "{:<32} {:>7.3} s {:>8.1} MB/s  output {:>10} bytes",
        "gzip -6 (one file at a time)",
        gzip_best.as_secs_f64(),
        mb / gzip_best.as_secs_f64(),
        gzip_size
    );
    match pigz {
        Some((t, bytes)) => println!(
            "{:<32} {:>7.3} s {:>8.1} MB/s  output {:>10} bytes",
            "pigz -6 (all cores, file by file)",
            t.as_secs_f64(),
            mb / t.as_secs_f64(),
            bytes
        ),
        None => println!("pigz not installed (apt-get install -y pigz): no figure for it"),
    }
    println!(
        "{:<32} {:>7.3} s {:>8.1} MB/s  output {:>10} bytes",
        "audit-trail archive",
        ours_best.as_secs_f64(),
        mb / ours_best.as_secs_f64(),
        ours_size
    );
    println!(
        "archive vs gzip -6: {:.2}x faster, output {:.3}x the size",
        gzip_best.as_secs_f64() / ours_best.as_secs_f64(),
        ours_size as f64 / gzip_size as f64
    );
    if let Some((t, bytes)) = pigz {
        println!(
            "archive vs pigz -6: {:.2}x faster, output {:.3}x the size",
            t.as_secs_f64() / ours_best.as_secs_f64(),
            ours_size as f64 / bytes as f64
        );
    }

    let what = format!("archive: compress {} sealed files ({mb:.0} MB), wall time", plain.len());
    let size_measure = "archive: output size";
    let out_mb = |b: u64| format!("{:.2} MB", b as f64 / 1e6);
    let speed = |peer: Duration| Some(peer.as_secs_f64() / ours_best.as_secs_f64());
    let smaller = |peer: u64| Some(peer as f64 / ours_size as f64);
    let ours = secs(ours_best);
    summary(&what, &ours, "gzip -6", &secs(gzip_best), speed(gzip_best), "≥ 2x gzip -6");
    summary(
        size_measure,
        &out_mb(ours_size),
        "gzip -6",
        &out_mb(gzip_size),
        smaller(gzip_size),
        "≤ 1.02x gzip -6's size (ratio ≥ 0.98x)",
    );
    let peer = "pigz -6 (all cores)";
    match pigz {
        Some((t, bytes)) => {
            summary(&what, &ours, peer, &secs(t), speed(t), "");
            summary(size_measure, &out_mb(ours_size), peer, &out_mb(bytes), smaller(bytes), "");
        }
        None => summary(&what, &ours, peer, "not installed", None, ""),
    }
}
