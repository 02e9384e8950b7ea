//! The one integration-test binary: drives the real `audit-trail` binary in
//! temporary data directories. One file per capability; what they share
//! (the harness, fixtures, real servers) is under `support/`.

mod support;

// `crate::servers` in the files benches/ include as well (syslog.rs).
use support::servers;

mod append;
mod bulk;
mod config;
mod console;
mod crash;
mod export;
mod integrity;
mod maintenance;
mod metrics;
mod operations;
mod proftpd;
mod recovery;
mod restore;
mod rollover;
mod schedules;
mod serve;
mod siem;
mod siem_interop;
mod syslog;
mod syslogng;
mod tamper;
mod timeindex;
mod upload;
mod verify;
mod viewer;
mod wellformed;
