//! The data directory: everything that holds records and proves they were not
//! altered. Nothing here knows about the service, the client or the command
//! line; those call into the store.
//!
//! - [`layout`]: every path of the data directory and the one parser of file
//!   names;
//! - [`writer`]: the active file and the circular log, appends, seals and
//!   crash recovery (one writer per data directory, under `state/lock`);
//! - [`reader`]: every record of the history in id order, from active, sealed
//!   and archived files;
//! - [`xml`]: the file format (writing, the fast reader, the strict
//!   well-formedness check);
//! - [`chain`]: the hash chain and its seals;
//! - [`verify`]: checking a set of files against their chain;
//! - [`index`]: the earliest and latest event time of each sealed file, so a
//!   time-range export reads only the files that can hold a match;
//! - [`gzread`]: reading `.xml.gz` archives exactly (single member, no trailing
//!   bytes).

pub mod chain;
pub mod gzread;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod reader;
pub mod verify;
pub mod writer;
pub mod xml;
