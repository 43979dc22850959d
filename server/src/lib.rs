//! tarn's server: the `tarn` binary and the composition root.
//!
//! Owns: configuration, start-up and shutdown, the Postgres wire (pgwire with tarn's own
//! handlers, one session per connection), HTTP (health, JSON queries, the catalog REST API,
//! the Glue-compatible API), Arrow Flight SQL, the crawler scheduler, the demo data.
//! Only this crate knows a wire protocol and maps errors to SQLSTATE / HTTP status / gRPC status.

mod aws;
mod catalog_api;
mod cbor;
mod config;
mod demo;
mod error;
mod firehose;
mod flight;
mod glue;
mod http;
mod kinesis;
mod pg;
mod scheduler;
mod server;
mod sigv4;

pub use config::{
    AuthConfig, FlightConfig, HttpConfig, Overrides, PgConfig, ShutdownConfig, TarnConfig,
    TlsConfig,
};
pub use error::{Error, Result};
pub use flight::RunningQuery;
pub use pg::{float4_text, float8_text};
pub use server::{BoundAddrs, Server};
