//! tarn's SQL engine: DataFusion sessions over the tarn catalog.
//!
//! Owns: the session factory ([`QueryEngine::session`]), the catalog and table providers (Delta
//! and Parquet / CSV / JSON listings), tarn's own statements (persisted `CREATE EXTERNAL TABLE`,
//! managed `CREATE TABLE [AS]`, `INSERT` as Delta commits, views, databases), and `pg_catalog` /
//! `information_schema`.
//! Must not: know a wire protocol. Errors carry a SQLSTATE ([`Error::sqlstate`]) that the
//! server maps to each protocol.

mod arithmetic;
mod config;
mod crawl;
mod ddl;
mod delivery;
mod engine;
mod error;
mod executor;
mod held;
mod ingest;
mod origins;
pub mod params;
mod pg_catalog;
mod pg_functions;
mod pg_information_schema;
pub mod pg_names;
mod pg_parse;
mod pg_rewrite;
mod provider;
mod stores;
mod stream_table;
mod system;
mod table;
mod view;

pub use config::EngineConfig;
pub use crawl::{CrawlerStatement, crawler_options};
pub use delivery::DeliveryStatement;
pub use engine::{
    CATALOG_NAME, CommandTag, DEFAULT_DATABASE, QueryEngine, QueryEngineArgs, QueryOutput, Session,
    Statement,
};
pub use error::{Error, Result, datafusion_sqlstate};
pub use executor::Executor;
pub use ingest::{IfExists, IfMissing};
pub use origins::{COLUMN_NUMBER, TABLE_OID};
pub use pg_catalog::{PgSetting, numeric_typmod};
pub use pg_functions::{JSON_EXTENSION, PG_SERVER_VERSION, VARCHAR_EXTENSION};
pub use pg_parse::bytea_input;
pub use stores::SYSTEM_SCHEMA;
