//! tarn's ingest: everything that puts data into the lake.
//!
//! Owns: writing managed Delta tables from Arrow batches (batch loads, the demo data), and
//! removing a managed table's data when it is dropped; stream logs (Kinesis-style shards in a
//! local write-ahead log, [`stream::Streams`]); deliveries from streams into Delta tables
//! ([`delivery::Deliveries`], Firehose). Replication and compaction will live here too.
//! Must not: build a DataFusion `SessionContext` or depend on `tarn-sql` / `tarn-server`.

pub mod delivery;
mod delta;
mod error;
pub mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_schema::SchemaRef;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use futures::{StreamExt, TryStreamExt};
use tarn_catalog::ObjectStores;
use url::Url;

use crate::delta::DeltaCache;
pub use delta::WriteMode;
pub use error::{Error, Result};

/// Writes data into the lake, and keeps the Delta snapshots queries read.
#[derive(Debug)]
pub struct Ingester {
    stores: Arc<ObjectStores>,
    delta: DeltaCache,
}

impl Ingester {
    pub fn new(stores: Arc<ObjectStores>) -> Self {
        Self {
            stores,
            delta: DeltaCache::default(),
        }
    }

    /// The object stores every read and write goes through.
    pub fn stores(&self) -> &Arc<ObjectStores> {
        &self.stores
    }

    /// Writes `batches` into the Delta table at `location` as one commit; returns its version.
    /// With [`WriteMode::Create`] and no batches, creates an empty table with `schema`.
    pub async fn write_batches(
        &self,
        location: &Url,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        partition_columns: &[String],
        mode: WriteMode,
    ) -> Result<u64> {
        let table = self.open_delta_for_write(location).await?;
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
        self.delta.remove(location);
        Ok(table.version().unwrap_or_default())
    }

    /// Opens the Delta table at `location` to write to it: its latest version (or `None` where
    /// there is no table yet; local folders are created). Fails if the store does not keep
    /// concurrent writers apart (see [`ObjectStores::check_writable`]).
    pub async fn open_delta_for_write(&self, location: &Url) -> Result<DeltaTable> {
        self.stores.check_writable(location).await?;
        delta::open(&self.stores, location, true).await
    }

    /// The latest version of the Delta table at `location`, read now (not cached). A location
    /// without a Delta log is an error.
    pub async fn load_delta(&self, location: &Url) -> Result<DeltaTable> {
        delta::open_existing(&self.stores, location).await
    }

    /// The Delta table at `location` for reading: a snapshot at most `max_age` old (our own
    /// commits are seen at once). `generation` tells apart tables created at the same location
    /// (the catalog's creation time). A location without a Delta log is an error.
    pub async fn read_delta(
        &self,
        location: &Url,
        generation: i64,
        max_age: Duration,
    ) -> Result<DeltaTable> {
        delta::read(&self.stores, &self.delta, location, generation, max_age).await
    }

    /// Records `table`, just committed by this process, as the latest snapshot of its location.
    pub fn committed_delta(&self, location: &Url, generation: i64, table: &DeltaTable) {
        self.delta
            .put(location, generation, table.clone(), Instant::now());
    }

    /// Forgets the cached snapshot of `location` (`REFRESH TABLE`).
    pub fn forget_delta(&self, location: &Url) {
        self.delta.remove(location);
    }

    /// Removes every object under `location` (a managed table's folder).
    pub async fn remove_data(&self, location: &Url) -> Result<usize> {
        self.delta.remove(location);
        let remove_err = |source| Error::Remove {
            location: location.to_string(),
            source,
        };
        let (store, prefix) = self.stores.resolve(location)?;
        let paths = store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let removed: Vec<_> = store
            .delete_stream(paths)
            .try_collect()
            .await
            .map_err(remove_err)?;
        Ok(removed.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .expect("batch")
    }

    #[tokio::test]
    async fn create_append_and_remove_a_delta_table() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = Url::from_directory_path(dir.path().join("t")).expect("url");
        let ingester = Ingester::new(Arc::new(ObjectStores::default()));
        let b = batch();
        let v0 = ingester
            .write_batches(&location, b.schema(), vec![], &[], WriteMode::Create)
            .await?;
        assert_eq!(v0, 0);
        let err = ingester
            .write_batches(&location, b.schema(), vec![], &[], WriteMode::Create)
            .await
            .expect_err("exists");
        assert!(matches!(err, Error::LocationNotEmpty { .. }), "{err}");
        let v1 = ingester
            .write_batches(
                &location,
                b.schema(),
                vec![b.clone()],
                &[],
                WriteMode::Append,
            )
            .await?;
        assert_eq!(v1, 1);
        assert!(dir.path().join("t/_delta_log").is_dir());
        let removed = ingester.remove_data(&location).await?;
        assert!(removed >= 3, "log entries and a data file, got {removed}");
        assert!(
            !dir.path()
                .join("t/_delta_log/00000000000000000000.json")
                .exists()
        );
        Ok(())
    }
}
