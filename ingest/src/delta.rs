//! Writing managed Delta tables from Arrow batches.

use arrow::array::RecordBatch;
use arrow_schema::SchemaRef;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
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

/// Writes `batches` (possibly none) as one Delta commit and returns the new table version.
pub(crate) async fn write_batches(
    location: &Url,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    partition_columns: &[String],
    mode: WriteMode,
) -> Result<u64> {
    let table = open(location).await?;
    if mode == WriteMode::Create && table.version().is_some() {
        return Err(Error::LocationNotEmpty {
            location: location.to_string(),
        });
    }
    // An empty batch carries the schema, so creating an empty table works the same way.
    let batches = if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    };
    let save_mode = match mode {
        WriteMode::Create => SaveMode::ErrorIfExists,
        WriteMode::Append => SaveMode::Append,
    };
    let mut write = table.write(batches).with_save_mode(save_mode);
    if !partition_columns.is_empty() {
        write = write.with_partition_columns(partition_columns.to_vec());
    }
    let table = write.await.map_err(|source| Error::Delta {
        location: location.to_string(),
        source: Box::new(source),
    })?;
    Ok(table.version().unwrap_or_default())
}
