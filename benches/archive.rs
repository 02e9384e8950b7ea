//! Benchmark of `audit-trail archive` against `gzip -6` on the same sealed files.
//!
//! `cargo bench --bench archive` (records: `BENCH_RECORDS`, default 300000,
//! 50000 per file). Both sides read the files from the page cache; archive
//! also fsyncs, verifies each `.gz` by decompressing it, writes the manifest
//! and removes the plain files. Figures are printed, never asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(suffix));
    v.sort();
    v
}

fn size(files: &[PathBuf]) -> u64 {
    files.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status().is_ok_and(|s| s.success());
    assert!(ok, "cp -a failed");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("records.jsonl");
    generate(n, &input);
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("audit-trail.toml"), "host_name = \"bench\"\ncapacity = 50000\n").unwrap();
    for args in [vec!["append", "--json", input.to_str().unwrap()], vec!["rotate"]] {
        let ok = Command::new(BIN).arg("--data-dir").arg(&seed).args(&args).stdout(Stdio::null()).status();
        assert!(ok.is_ok_and(|s| s.success()), "{args:?} failed");
    }
    let plain = files_in(&seed.join("audit_trail"), ".xml");
    let plain_bytes = size(&plain);
    println!("archive benchmark: {} sealed files, {:.1} MB", plain.len(), plain_bytes as f64 / 1e6);
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));

    let (mut gzip_best, mut gzip_size) = (Duration::MAX, 0);
    let gz_dir = tmp.path().join("gzip");
    std::fs::create_dir_all(&gz_dir).unwrap();
    for _ in 0..3 {
        let start = Instant::now();
        for p in &plain {
            let out = std::fs::File::create(gz_dir.join(p.file_name().unwrap())).unwrap();
            let ok = Command::new("gzip").arg("-6").arg("-c").arg(p).stdout(out).status();
            assert!(ok.is_ok_and(|s| s.success()), "gzip failed");
        }
        gzip_best = gzip_best.min(start.elapsed());
        gzip_size = size(&files_in(&gz_dir, ".xml"));
    }

    let (mut ours_best, mut ours_size) = (Duration::MAX, 0);
    for run in 0..3 {
        let data = tmp.path().join(format!("data{run}"));
        copy_dir(&seed, &data);
        let start = Instant::now();
        let ok = Command::new(BIN).arg("--data-dir").arg(&data).arg("archive").stdout(Stdio::null()).status();
        let took = start.elapsed();
        assert!(ok.is_ok_and(|s| s.success()), "archive failed");
        ours_best = ours_best.min(took);
        ours_size = size(&files_in(&data.join("archive"), ".xml.gz"));
    }
    let mb = plain_bytes as f64 / 1e6;
    println!(
        "{:<32} {:>7.3} s {:>8.1} MB/s  output {:>10} bytes",
        "gzip -6 (one file at a time)",
        gzip_best.as_secs_f64(),
        mb / gzip_best.as_secs_f64(),
        gzip_size
    );
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
}
