//! `upload [--target NAME]`: send pending sealed files to the targets, with
//! a progress bar when standard error is a terminal.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::Ctx;
use crate::cli::UploadArgs;
use crate::upload::{self, Progress};

/// A progress bar per target on standard error.
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new() -> Bar {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bar { bar }
    }
}

impl Progress for Bar {
    fn begin(&self, target: &str, files: usize, bytes: u64) {
        self.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.bar.reset();
        self.bar.set_length(bytes);
        self.bar.set_prefix(format!("{target}: {files} file(s)"));
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }
    fn file(&self, name: &str) {
        self.bar.set_message(name.to_owned());
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn retry(&self, reason: &str, delay: Duration) {
        self.bar.set_message(format!("{reason}; retrying in {:.1} s", delay.as_secs_f64()));
    }
    fn end(&self) {
        self.bar.finish_and_clear();
    }
}

pub fn run(ctx: &Ctx, args: UploadArgs) -> Result<ExitCode> {
    let bar;
    let progress: &dyn Progress = if std::io::stderr().is_terminal() {
        bar = Bar::new();
        &bar
    } else {
        &upload::Quiet
    };
    let reports = upload::run(&ctx.layout, &ctx.config, args.target.as_deref(), ctx.clock.as_ref(), progress)?;
    let (mut ok, mut permanent) = (true, false);
    for r in &reports {
        for n in &r.notes {
            tracing::info!("{n}");
        }
        if r.ok() {
            crate::outln!("{r}")?;
        } else {
            ok = false;
            permanent |= r.permanent || !r.refused.is_empty();
            tracing::error!("upload to {r}");
        }
    }
    // A target that could not be reached is a temporary failure: the files
    // stay pending and the next run sends them.
    Ok(match (ok, permanent) {
        (true, _) => ExitCode::SUCCESS,
        (false, true) => ExitCode::FAILURE,
        (false, false) => ExitCode::from(crate::error::Kind::Temporary.exit_code()),
    })
}
