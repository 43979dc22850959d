//! Opening Delta tables for writing.

use deltalake::DeltaTable;
use url::Url;

use crate::error::{Error, Result};

/// Whether a write creates a new table or appends to an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create the table; fail if one already exists at the location.
    Create,
    /// Append to the table at the location.
    Append,
}

pub(crate) async fn open(location: &Url) -> Result<DeltaTable> {
    // Local Delta tables need their folder to exist; opening the store creates it.
    tarn_catalog::open_store(location)?;
    DeltaTable::try_from_url(location.clone())
        .await
        .map_err(|source| Error::Delta {
            location: location.to_string(),
            source: Box::new(source),
        })
}
