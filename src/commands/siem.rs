//! `siem test`: one test message to the configured receiver.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::app::Ctx;
use crate::cli::{SiemArgs, SiemCommand};
use crate::config::{Framing, SiemFormat, SiemProtocol};
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
        crate::outln!(
            "note: [siem] has enabled = false: the service does not forward records; testing the receiver anyway"
        )?;
    }
    let mut conn = match siem::connect(cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("siem test to {receiver} FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let now = crate::timestamp::format(&ctx.clock.now());
    // Two messages, so that the operator can see at the receiver whether
    // they arrived as two events (framing understood) or as one garbled one.
    let token = format!("{:08x}", std::process::id() ^ (ctx.clock.now().timestamp_subsec_nanos()));
    let text = |n: u32| format!("audit-trail SIEM test message {n} of 2 ({token}) from {} at {now}", ctx.host);
    let mut total = 0;
    let mut first_len = 0;
    for n in 1..=2 {
        let mut r = Record::default();
        r.set(Field::Timestamp, now.clone());
        r.set(Field::Node, ctx.host.clone());
        r.set(Field::AppName, crate::selfaudit::APP_NAME);
        r.set(Field::AppContext, "SIEM");
        r.set(Field::ActionType, "Test");
        r.set(Field::ActionData, text(n));
        r.set(Field::Category, "system");
        let msg = format::message(
            &r,
            cfg.format == SiemFormat::Cef,
            cfg.facility_code(),
            &cfg.app_name,
            &ctx.host,
            conn.max_datagram,
        );
        total += msg.len();
        if n == 1 {
            // The octet count as sent: the message and its closing LF.
            first_len = msg.len() + 1;
        }
        if let Err(e) = conn.send(&msg).and_then(|()| conn.flush()) {
            tracing::error!("siem test to {receiver} FAILED: {}", Conn::reason(&e, cfg));
            return Ok(ExitCode::FAILURE);
        }
    }
    let look = format!(
        "Syslog has no acknowledgement: check that the receiver stored two separate events, \"{}\" and \"{}\"",
        text(1),
        text(2)
    );
    if cfg.protocol == SiemProtocol::Udp {
        crate::outln!(
            "sent 2 test messages to {receiver} ({total} bytes, {}); delivery cannot be confirmed over UDP.\n{look}.",
            cfg.format
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    // A receiver that rejects the connection closes it right away.
    std::thread::sleep(Duration::from_millis(300));
    if !conn.alive() {
        tracing::error!(
            "siem test to {receiver} FAILED: the receiver closed the connection after the message{}",
            if cfg.framing == Framing::Lf {
                " (a receiver that expects octet counting, such as syslog-ng's syslog() source, does that with \
                 framing = \"lf\": try framing = \"octet-counting\")"
            } else {
                ""
            }
        );
        return Ok(ExitCode::FAILURE);
    }
    crate::outln!(
        "sent 2 test messages to {receiver} ({total} bytes, {}, {} framing): the receiver accepted the connection{} and \
         the messages.\n{look}.",
        cfg.format,
        cfg.framing,
        if cfg.protocol == SiemProtocol::Tls { ", its certificate is trusted," } else { "" }
    )?;
    if cfg.framing == Framing::Lf {
        crate::outln!(
            "framing = \"lf\": receivers that expect octet counting (syslog-ng's syslog() source) drop these messages \
             or the connection; there, set framing = \"octet-counting\"."
        )?;
    } else {
        crate::outln!(
            "framing = \"octet-counting\": receivers that read one message per line (syslog-ng's network() source, \
             Splunk and QRadar TCP inputs, Logstash) store each message as its own event but read the octet count \
             as its program or host (a number such as \"{}\") and keep the syslog header in the message text; \
             there, set framing = \"lf\" (see the README's receiver table).",
            first_len
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
