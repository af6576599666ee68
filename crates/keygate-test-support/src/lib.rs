//! Support for tests that need parts from outside the Rust toolchain.
//!
//! Most of the suite needs nothing but cargo. A few tests drive real external programs: Redis
//! servers for shared rate limits, PostgreSQL for the shared store, the official Python SDKs, a
//! llama.cpp server, the Claude Code and Codex CLI agents, headless Chromium for the dashboard. `cargo xtask test` installs those parts and runs the whole suite; a bare
//! `cargo test --workspace` runs every Rust-only test and reports each test whose part is missing
//! in one line (see [`parts`]).
//!
//! [`mmdb`] writes small MaxMind DB files for the IP-intelligence tests.

pub mod backends;
pub mod mmdb;
pub mod parts;
pub mod postgres;
pub mod redis;

pub use backends::{TempDir, TestDatabase};
pub use parts::{require, Missing};
pub use postgres::PostgresServer;
pub use redis::RedisServer;
