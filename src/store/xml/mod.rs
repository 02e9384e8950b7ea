//! The XML file format (schema/audit-trail.xsd): [`write`] renders headers,
//! records and seals; [`read`] parses them back, fast and in one pass;
//! [`wellformed`] checks every byte the fast reader does not look at, so that a
//! file verifies only if it is well-formed XML 1.0 of the format's schema.

pub mod read;
pub mod scan;
pub mod wellformed;
pub mod write;
