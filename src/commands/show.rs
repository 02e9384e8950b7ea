//! `show`: the circular log as a table.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;
use crate::cli::ShowArgs;
use crate::record::{Field, Record};
use crate::store::reader::{self, Records};

const COLUMNS: [(Field, usize); 7] = [
    (Field::Timestamp, 29),
    (Field::UserName, 16),
    (Field::SourceIp, 15),
    (Field::AppName, 20),
    (Field::AppContext, 16),
    (Field::ActionType, 14),
    (Field::ActionData, 60),
];

/// A value fit for one table cell: control characters made visible, and
/// shortened to `width` characters unless `wide`.
fn cell(v: &str, width: usize, wide: bool) -> String {
    let mut s: String = v
        .chars()
        .map(|c| match c {
            '\n' => '⏎',
            '\t' => '→',
            c if c.is_control() => '·',
            c => c,
        })
        .collect();
    if !wide && s.chars().count() > width {
        s = s.chars().take(width - 1).collect::<String>() + "…";
    }
    s
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width { s.to_owned() } else { format!("{s}{}", " ".repeat(width - n)) }
}

fn row(out: &mut impl Write, id: &str, r: Option<&Record<'_>>, wide: bool) -> std::io::Result<()> {
    let mut line = pad(id, 8);
    for (i, (f, w)) in COLUMNS.iter().enumerate() {
        let v = match r {
            Some(r) => cell(r.get(*f).unwrap_or(""), *w, wide),
            None => f.spec().title.to_owned(),
        };
        line.push_str("  ");
        if i + 1 == COLUMNS.len() { line.push_str(&v) } else { line.push_str(&pad(&v, *w)) }
    }
    writeln!(out, "{}", line.trim_end())
}

pub fn run(ctx: &Ctx, args: ShowArgs) -> Result<ExitCode> {
    let (files, mut from, last) = reader::circular(&ctx.layout, ctx.config.capacity)?;
    if let Some(n) = args.last {
        from = from.max(last.saturating_sub(n.max(1) - 1));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    row(&mut out, "ID", None, args.wide)?;
    let mut shown = 0;
    for r in Records::new(&ctx.layout, files, from) {
        let r = r?;
        row(&mut out, &r.id.to_string(), Some(&r), args.wide)?;
        shown += 1;
    }
    out.flush()?;
    if shown == 0 {
        tracing::info!("the audit log is empty");
    }
    Ok(ExitCode::SUCCESS)
}
