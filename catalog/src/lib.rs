//! tarn's catalog: databases, tables (external and managed), their Arrow schemas and
//! properties, persisted in the warehouse as a create-only log plus snapshots.
//!
//! Owns: the catalog model, its persistence, and the object-store registry (URL → store).
//! Must not: depend on DataFusion or on any other tarn crate. Readers take an immutable
//! [`CatalogSnapshot`]; only [`Catalog::commit`] changes what the next snapshot says.

mod catalog;
mod error;
mod model;
mod persist;
mod store;

pub use catalog::{Catalog, CatalogConfig};
pub use error::{Error, Result, TableRef};
pub use model::{CatalogSnapshot, Database, Op, Table, TableFormat, TableKind, validate_name};
pub use store::{
    DEFAULT_STORE, ObjectStores, RequestCount, Secret, StoreConfig, StoresConfig,
    ensure_local_folder, parse_location,
};
