//! `siem test`: one test message to the configured receiver.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use super::Ctx;
use crate::cli::{SiemArgs, SiemCommand};
use crate::record::{Field, Record};
use crate::siem::{self, Conn, format};

pub fn run(ctx: &Ctx, args: SiemArgs) -> Result<ExitCode> {
    match args.command {
        SiemCommand::Test => test(ctx),
    }
}

fn test(ctx: &Ctx) -> Result<ExitCode> {
    let Some(cfg) = &ctx.config.siem else {
        bail!("no [siem] section in the configuration {}", ctx.config_path.display());
    };
    let receiver = cfg.describe();
    if !cfg.enabled {
        println!("note: [siem] has enabled = false: the service does not forward records; testing the receiver anyway");
    }
    let mut conn = match siem::connect(cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("audit-trail: siem test to {receiver} FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let now = crate::timestamp::format(&ctx.clock.now());
    let mut r = Record::default();
    r.set(Field::Timestamp, now.clone());
    r.set(Field::Node, ctx.host.clone());
    r.set(Field::AppName, crate::selfaudit::APP_NAME);
    r.set(Field::AppContext, "SIEM");
    r.set(Field::ActionType, "Test");
    r.set(Field::ActionData, format!("audit-trail SIEM test message from {} at {now}", ctx.host));
    r.set(Field::Category, "system");
    let msg =
        format::message(&r, cfg.format == "cef", cfg.facility_code(), &cfg.app_name, &ctx.host, conn.max_datagram);
    if let Err(e) = conn.send(&msg).and_then(|()| conn.flush()) {
        eprintln!("audit-trail: siem test to {receiver} FAILED: {}", Conn::reason(&e, cfg));
        return Ok(ExitCode::FAILURE);
    }
    if cfg.protocol == "udp" {
        println!(
            "sent a test message to {receiver} ({} bytes, {}); delivery cannot be confirmed over UDP: check the receiver",
            msg.len(),
            cfg.format
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A receiver that rejects the connection closes it right away.
    std::thread::sleep(Duration::from_millis(300));
    if !conn.alive() {
        eprintln!("audit-trail: siem test to {receiver} FAILED: the receiver closed the connection after the message");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "sent a test message to {receiver} ({} bytes, {}, {} framing): the receiver accepted the connection{} and the message",
        msg.len(),
        cfg.format,
        cfg.framing,
        if cfg.protocol == "tls" { ", its certificate is trusted," } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
