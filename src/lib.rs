//! audit-trail: an audit-trail archiver for telephony and unified-communications
//! systems. Records go into a circular log and hostname-named XML files that are
//! sealed every `capacity` records; see README.md for the whole picture.

pub mod archive;
pub mod backup;
pub mod chain;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod crontab;
pub mod error;
pub mod export;
pub mod fsx;
pub mod history;
pub mod ledger;
pub mod log;
pub mod maintenance;
pub mod mask;
pub mod purge;
pub mod record;
pub mod scheduler;
pub mod selfaudit;
pub mod server;
pub mod siem;
pub mod timestamp;
pub mod tls;
pub mod upload;
pub mod verify;
pub mod xml_read;
pub mod xml_write;

/// The stylesheet shipped next to sealed files (schema/audit-trail.xsl).
pub const STYLESHEET_XSL: &str = include_str!("../schema/audit-trail.xsl");
/// The schema of the file format (schema/audit-trail.xsd).
pub const SCHEMA_XSD: &str = include_str!("../schema/audit-trail.xsd");
