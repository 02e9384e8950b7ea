//! The one integration-test binary: drives the real `audit-trail` binary in
//! temporary data directories.

mod harness;

mod bulk;
mod crash;
mod integrity;
mod log;
mod maintenance;
mod operations;
mod proftpd;
mod restore;
mod schedules;
mod serve;
mod servers;
mod siem;
mod siem_interop;
mod syslog;
mod syslogng;
mod tamper;
mod timeindex;
mod upload;
mod viewer;
mod wellformed;
