//! Functional tests of the log (see tests/it/main.rs).
