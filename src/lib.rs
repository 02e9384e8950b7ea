//! audit-trail: an audit-trail archiver for telephony and unified-communications
//! systems. Records go into a circular log and hostname-named XML files that are
//! sealed every `capacity` records; see README.md for the whole picture and
//! ARCHITECTURE.md for how the modules below fit together.

pub mod cli;
mod client;
pub mod commands;
mod config;
pub mod error;
mod export;
pub mod fsx;
#[cfg(test)]
mod fuzz;
mod maintenance;
mod record;
mod schedules;
mod selfaudit;
mod service;
mod siem;
mod store;
mod timestamp;
mod tls;
mod upload;

/// The stylesheet shipped next to sealed files (schema/audit-trail.xsl).
pub const STYLESHEET_XSL: &str = include_str!("../schema/audit-trail.xsl");
/// The schema of the file format (schema/audit-trail.xsd).
pub const SCHEMA_XSD: &str = include_str!("../schema/audit-trail.xsd");
