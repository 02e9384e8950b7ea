//! Benchmark of tamper evidence: what the hash chain costs on bulk ingest,
//! and how fast `verify` proves a history intact.
//!
//! `cargo bench --bench chain` (records: `BENCH_RECORDS`, default 300000; 3000
//! at smoke size, see `common::smoke`).
//!
//! * Chain cost: bulk `append --json` with this build, side by side with a
//!   build of the last release before the chain (format 1), on the same
//!   input, alternating runs. `benches/chain-baseline.sh` builds that
//!   baseline into `target/baseline/`; `BASELINE_BIN` may name another
//!   binary. Without it, only this build's figures are printed.
//! * `verify` over the resulting files (plain, and with `--key` on a data
//!   directory sealed with a MAC key), in MB/s of XML, side by side with the
//!   tools an operator would otherwise use on the same files: `sha256sum`
//!   (comparing against a checksum list) and `xmllint --noout` (well-formed).
//!
//! Figures are printed, never asserted: speed is not a test. Each figure also
//! goes into a `summary` line for `benches/suite.sh`'s table.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{files_in, measure, mib, per_s, secs, summary};

const BIN: &str = env!("CARGO_BIN_EXE_audit-trail");
const ROUNDS: usize = 5;

fn baseline() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BASELINE_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/baseline/release/audit-trail");
    p.exists().then_some(p)
}

/// A fresh data directory recording every category, with `extra` configuration.
fn data_dir(root: &Path, name: &str, extra: &str) -> PathBuf {
    let data = root.join(name);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("audit-trail.toml"), format!("event_mask = \"all\"\n{extra}")).unwrap();
    data
}

fn append(bin: &Path, data: &Path, input: &Path) -> (Duration, Option<u64>) {
    let mut c = Command::new(bin);
    c.arg("--data-dir").arg(data).arg("append").arg("--json").arg(input);
    measure(c, None)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn row(what: &str, t: Duration, rate: String, rss: Option<u64>) {
    println!("{what:<48} {:>8.3} s {rate:>24}   peak {}", t.as_secs_f64(), mib(rss));
}

fn main() {
    if common::listing() {
        return;
    }
    let (tmp, input, n) = common::generated_input(300_000);
    println!("audit-trail chain benchmark: {n} records");
    println!("machine: {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));
    println!();

    // Bulk append with and without the chain, alternating, same input.
    let base = baseline();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_rss, mut their_rss) = (None, None);
    for _ in 0..ROUNDS {
        let d = data_dir(tmp.path(), "ours", "");
        let (t, rss) = append(Path::new(BIN), &d, &input);
        ours.push(t);
        our_rss = our_rss.max(rss);
        if let Some(b) = &base {
            let d = data_dir(tmp.path(), "base", "");
            let (t, rss) = append(b, &d, &input);
            theirs.push(t);
            their_rss = their_rss.max(rss);
        }
    }
    let rate = |t: Duration| format!("{:.0} records/s", n as f64 / t.as_secs_f64());
    let our_med = median(&mut ours);
    row("append --json, hash chain (median)", our_med, rate(our_med), our_rss);
    row("append --json, hash chain (best)", ours[0], rate(ours[0]), our_rss);
    let figure = |t: Duration| format!("{} ({})", secs(t), per_s(n as f64, t, "records"));
    let what = format!("bulk append --json with the hash chain, median of {ROUNDS}");
    let peer = "format 1 build (no chain)";
    if base.is_some() {
        let their_med = median(&mut theirs);
        row("append --json, no chain: format 1 (median)", their_med, rate(their_med), their_rss);
        row("append --json, no chain: format 1 (best)", theirs[0], rate(theirs[0]), their_rss);
        let ratio = their_med.as_secs_f64() / our_med.as_secs_f64();
        summary(&what, &figure(our_med), peer, &figure(their_med), Some(ratio), "");
        println!(
            "{:<48} {:>+7.1}% median, {:+.1}% best",
            "cost of the chain",
            (our_med.as_secs_f64() / their_med.as_secs_f64() - 1.0) * 100.0,
            (ours[0].as_secs_f64() / theirs[0].as_secs_f64() - 1.0) * 100.0
        );
    } else {
        println!("no baseline build: run benches/chain-baseline.sh (or set BASELINE_BIN) for the side-by-side cost");
        summary(&what, &figure(our_med), peer, "not built (benches/chain-baseline.sh)", None, "");
    }
    println!();

    // verify, plain and with a key, against sha256sum and xmllint on the same files.
    let key = tmp.path().join("mac.key");
    let status = Command::new(BIN).arg("keygen").arg(&key).stdout(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "keygen failed");
    let data = data_dir(tmp.path(), "keyed", &format!("hmac_key_file = {:?}\n", key.display().to_string()));
    append(Path::new(BIN), &data, &input);
    let status = Command::new(BIN).arg("--data-dir").arg(&data).arg("rotate").stdout(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "rotate failed");
    let files = files_in(&data.join("audit_trail"), ".xml");
    let mb = files.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum::<u64>() as f64 / 1e6;
    println!("verify over {} sealed files, {mb:.1} MB of XML", files.len());
    let mb_s = |t: Duration| format!("{:.1} MB/s", mb / t.as_secs_f64());
    let best =
        |make: &dyn Fn() -> Command| (0..3).map(|_| measure(make(), None)).min_by_key(|r| r.0).expect("three runs");
    let (plain, rss) = best(&|| {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&data).arg("verify");
        c
    });
    row("verify (ids, seals, hash chain)", plain, mb_s(plain), rss);
    let (keyed, rss) = best(&|| {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&data).arg("verify").arg("--key").arg(&key);
        c
    });
    row("verify --key (and every seal MAC)", keyed, mb_s(keyed), rss);
    let (sums, rss) = best(&|| {
        let mut c = Command::new("sha256sum");
        c.args(&files);
        c
    });
    row("sha256sum (same files)", sums, mb_s(sums), rss);
    println!("{:<48} {:>8.2}x", "verify speed vs sha256sum", sums.as_secs_f64() / plain.as_secs_f64());
    let figure = |t: Duration| format!("{} ({})", secs(t), mb_s(t));
    let plural = if files.len() == 1 { "" } else { "s" };
    let what = format!("verify {} sealed file{plural} ({mb:.0} MB of XML)", files.len());
    let ratio = |peer: Duration| Some(peer.as_secs_f64() / plain.as_secs_f64());
    summary(&what, &figure(plain), "sha256sum", &figure(sums), ratio(sums), "");
    if Command::new("xmllint").arg("--version").stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
        let (lint, rss) = best(&|| {
            let mut c = Command::new("xmllint");
            c.arg("--noout").args(&files);
            c
        });
        row("xmllint --noout (well-formed only)", lint, mb_s(lint), rss);
        println!("{:<48} {:>8.2}x", "verify speed vs xmllint --noout", lint.as_secs_f64() / plain.as_secs_f64());
        summary(&what, &figure(plain), "xmllint --noout", &figure(lint), ratio(lint), "");
    } else {
        println!("xmllint not installed (apt-get install -y libxml2-utils): no side-by-side figure");
        summary(&what, &figure(plain), "xmllint --noout", "not installed", None, "");
    }
    summary("verify --key (and every seal MAC)", &figure(keyed), "", "", None, "");
}
