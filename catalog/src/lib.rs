//! tarn's catalog: databases, tables (external and managed), views, their Arrow schemas, partitions,
//! versions and properties, and crawlers with their runs, persisted in the warehouse as a
//! create-only log plus snapshots; the crawlers themselves; and the object-store registry.
//!
//! Owns: the catalog model, its persistence, and the object-store registry (URL → store).
//! Must not: depend on DataFusion or on any other tarn crate. Readers take an immutable
//! [`CatalogSnapshot`]; only [`Catalog::commit`] changes what the next snapshot says.

mod catalog;
mod crawl;
mod cron;
mod error;
mod model;
mod persist;
mod store;

pub use catalog::{Catalog, CatalogConfig};
pub use crawl::{
    Compression, CrawlOutcome, DeltaSchemas, classify_by_name, file_belongs_to, value_fits,
};
pub use cron::Schedule;
pub use error::{Error, Result, TableRef};
pub use model::{
    CRAWL_RUNS_KEPT, CatalogSnapshot, CrawlRun, Crawler, CrawlerOptions, Database,
    NULL_PARTITION_VALUE, Op, Partition, SchemaChangePolicy, SkippedFile, Table, TableFormat,
    TableKind, TableVersion, View, validate_name,
};
pub use store::{
    DEFAULT_STORE, ObjectStores, RequestCount, Secret, StoreConfig, StoresConfig,
    ensure_local_folder, parse_location,
};
