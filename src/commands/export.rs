//! `export`: the circular log (default) or the whole history (`--all`) as
//! CSV, JSON Lines, XML or an HTML page, filtered. With `--out`, the file appears complete
//! or not at all.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::Ctx;
use crate::cli::ExportArgs;
use crate::export;
use crate::store::reader;
use crate::timestamp;

pub fn run(ctx: &Ctx, args: ExportArgs) -> Result<ExitCode> {
    let filter = args.filter.filter()?;
    if args.csv_raw && !matches!(args.format, crate::cli::ExportFormat::Csv) {
        anyhow::bail!("--csv-raw applies to --format csv only (JSON, XML and HTML exports are always exact)");
    }
    let cells = if args.csv_raw { export::CsvCells::Raw } else { export::CsvCells::Safe };
    let (files, from_id, last_id) = if args.all {
        let (from, to) = filter.time_range();
        if from.is_some() || to.is_some() {
            // Only files whose event times can meet the range (see `store::index`).
            let s = crate::store::index::select(&ctx.layout, from, to)?;
            (s.files, s.first_id, s.last_id)
        } else {
            let files = reader::list(&ctx.layout)?;
            let first = files.first().map_or(1, |f| f.first_id);
            let last = reader::last_id(&ctx.layout, &files)?;
            (files, first, last)
        }
    } else {
        reader::circular(&ctx.layout, ctx.config.capacity)?
    };
    // Progress on a terminal only, and only when the data is not going there too.
    let bar = if args.out.is_some() && std::io::stderr().is_terminal() {
        ProgressBar::new((last_id + 1).saturating_sub(from_id))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let created = timestamp::format(&ctx.clock.now());
    let f = &args.filter;
    let head = export::Head {
        host: &ctx.host,
        created: &created,
        selection: if args.all {
            "the whole history (--all): archived, sealed and active files".to_owned()
        } else {
            format!("the circular log (the newest {} records)", ctx.config.capacity)
        },
        filters: [
            ("from", &f.from),
            ("to", &f.to),
            ("tenant", &f.tenant),
            ("app", &f.app),
            ("user", &f.user),
            ("action", &f.action),
            ("category", &f.category),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.clone().map(|v| (flag, v)))
        .collect(),
        ids: (last_id >= from_id && last_id > 0).then_some((from_id, last_id)),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let progress = |n: u64| bar.set_position(n);
    let export = |out: &mut dyn Write| {
        export::run_files(
            &ctx.layout,
            files,
            from_id,
            &filter,
            args.format.into(),
            cells,
            &head,
            threads,
            out,
            &progress,
        )
    };
    match &args.out {
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
            export(&mut out)?;
        }
        Some(path) => {
            let name = path.file_name().context("--out needs a file name")?.to_string_lossy();
            let tmp = path.with_file_name(format!(".{name}.partial"));
            let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let result = (|| -> Result<u64> {
                let mut out = BufWriter::with_capacity(256 * 1024, file);
                let n = export(&mut out)?;
                out.flush()?;
                out.get_ref().sync_all()?;
                Ok(n)
            })();
            match result {
                Ok(n) => {
                    bar.finish_and_clear();
                    if let Err(e) = std::fs::rename(&tmp, path) {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e).with_context(|| format!("cannot create {}", path.display()));
                    }
                    tracing::info!("exported {n} records to {}", path.display());
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
