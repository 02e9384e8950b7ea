//! audit-trail: an audit-trail archiver for telephony and unified-communications
//! systems. Records go into a circular log and hostname-named XML files that are
//! sealed every `capacity` records; see README.md for the whole picture.

mod archive;
mod backup;
mod chain;
pub mod cli;
mod client;
pub mod commands;
mod config;
mod crontab;
pub mod error;
mod export;
pub mod fsx;
#[cfg(test)]
mod fuzz;
mod gzread;
mod history;
mod html;
mod ledger;
mod log;
mod maintenance;
mod mask;
mod purge;
mod record;
mod scheduler;
mod selfaudit;
mod server;
mod siem;
mod timestamp;
mod tls;
mod upload;
mod verify;
mod xml_read;
mod xml_wf;
mod xml_write;

/// The stylesheet shipped next to sealed files (schema/audit-trail.xsl).
pub const STYLESHEET_XSL: &str = include_str!("../schema/audit-trail.xsl");
/// The schema of the file format (schema/audit-trail.xsd).
pub const SCHEMA_XSD: &str = include_str!("../schema/audit-trail.xsd");
