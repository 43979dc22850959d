use std::fmt;

use serde::{Deserialize, Serialize};

/// A `database.table` name, for error messages and lookups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    pub database: String,
    pub table: String,
}

impl TableRef {
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            database: database.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database \"{database}\" does not exist")]
    DatabaseNotFound { database: String },

    #[error("database \"{database}\" already exists")]
    DatabaseExists { database: String },

    #[error(
        "database \"{database}\" is not empty ({tables} tables); drop them first or use CASCADE"
    )]
    DatabaseNotEmpty { database: String, tables: usize },

    #[error("table \"{table}\" does not exist")]
    TableNotFound { table: TableRef },

    #[error("table \"{table}\" already exists")]
    TableExists { table: TableRef },

    #[error("view \"{view}\" does not exist")]
    ViewNotFound { view: TableRef },

    #[error("view \"{view}\" already exists")]
    ViewExists { view: TableRef },

    #[error("crawler \"{crawler}\" does not exist")]
    CrawlerNotFound { crawler: String },

    #[error("crawler \"{crawler}\" already exists")]
    CrawlerExists { crawler: String },

    #[error("invalid crawler option {option}: {reason}")]
    CrawlerOption { option: String, reason: String },

    #[error("invalid partition for table \"{table}\": {reason}")]
    InvalidPartition { table: TableRef, reason: String },

    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("invalid warehouse URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("catalog file {path} is corrupt: {source}")]
    CorruptFile {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("catalog log is missing entry {missing} (found {path} after version {after})")]
    LogGap {
        missing: u64,
        after: u64,
        path: String,
    },

    #[error("catalog entry {path} cannot be applied: {reason}")]
    InvalidEntry { path: String, reason: String },

    #[error("another writer kept committing to the catalog; gave up after {attempts} attempts")]
    TooMuchContention { attempts: usize },

    #[error("object store error at {path}: {source}")]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("invalid configuration {key}: {reason}")]
    Config { key: String, reason: String },

    #[error(
        "store \"{store}\" ({url}) does not enforce create-only writes (If-None-Match: *), so \
         concurrent writers could lose commits; tarn will not write there. If exactly one tarn \
         process writes to it, set {key} = true"
    )]
    NoConditionalWrites {
        store: String,
        url: String,
        key: String,
    },

    #[error("cannot encode catalog entry: {0}")]
    Encode(#[source] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
