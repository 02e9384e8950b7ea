//! What the capability tests share: the harness that runs the binary
//! ([`harness`]), independent readers of its files ([`fixtures`]) and the
//! real servers the tests start on 127.0.0.1 ([`servers`]: OpenSSH, vsftpd,
//! proftpd, pyftpdlib …; benches/ includes the same file).

pub mod fixtures;
pub mod harness;
pub mod servers;
