//! `export`: the circular log (default) or the whole history (`--all`) as
//! CSV, JSON Lines or XML, filtered. With `--out`, the file appears complete
//! or not at all.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::ExportArgs;
use crate::export::{self, Filter, Writer};
use crate::history::{self, Records};
use crate::timestamp;

pub fn run(ctx: &Ctx, args: ExportArgs) -> Result<ExitCode> {
    let filter = Filter::from_args(&args.filter)?;
    let (files, from_id) = if args.all {
        (history::list(&ctx.layout)?, 0)
    } else {
        let (files, from, _) = history::circular(&ctx.layout, ctx.config.capacity)?;
        (files, from)
    };
    let records = Records::new(&ctx.layout, files, from_id);
    let created = timestamp::format(&ctx.clock.now());
    match &args.out {
        None => {
            let stdout = std::io::stdout();
            let out = BufWriter::with_capacity(256 * 1024, stdout.lock());
            let mut w = Writer::new(args.format, out, &ctx.host, &created)?;
            export::run(records, &filter, &mut w)?;
            w.finish()?;
        }
        Some(path) => {
            let name = path.file_name().context("--out needs a file name")?.to_string_lossy();
            let tmp = path.with_file_name(format!(".{name}.partial"));
            let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let result = (|| -> Result<u64> {
                let mut w = Writer::new(args.format, BufWriter::with_capacity(256 * 1024, file), &ctx.host, &created)?;
                let n = export::run(records, &filter, &mut w)?;
                let mut out = w.finish()?;
                out.flush()?;
                out.get_ref().sync_all()?;
                Ok(n)
            })();
            match result {
                Ok(n) => {
                    std::fs::rename(&tmp, path).with_context(|| format!("cannot create {}", path.display()))?;
                    eprintln!("exported {n} records to {}", path.display());
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
