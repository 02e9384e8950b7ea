//! Crash-safety tests: real processes killed with SIGKILL.
