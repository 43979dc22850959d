//! Opening Delta tables through tarn's object stores, and the cache of their snapshots.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use tarn_catalog::ObjectStores;
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

fn delta_err(location: &Url) -> impl FnOnce(DeltaTableError) -> Error + '_ {
    move |source| Error::Delta {
        location: location.to_string(),
        source: Box::new(source),
    }
}

/// Opens the Delta table at `location` through the store tarn has for it. A location without
/// a Delta log gives a table whose version is `None`. To write, a local folder is created.
pub(crate) async fn open(
    stores: &ObjectStores,
    location: &Url,
    to_write: bool,
) -> Result<DeltaTable> {
    if to_write {
        tarn_catalog::ensure_local_folder(location)?;
    }
    let store = stores.store(location)?;
    let mut table = DeltaTableBuilder::from_url(location.clone())
        .map_err(delta_err(location))?
        .with_storage_backend(store, location.clone())
        .build()
        .map_err(delta_err(location))?;
    match table.load().await {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(table),
        Err(e) => Err(delta_err(location)(e)),
    }
}

/// location → (snapshot, when it was last checked against the log, the table's generation).
type Entries = HashMap<String, (DeltaTable, Instant, i64)>;

/// Opens the Delta table at `location` to read it: a location without a Delta log is an error.
pub(crate) async fn open_existing(stores: &ObjectStores, location: &Url) -> Result<DeltaTable> {
    let table = open(stores, location, false).await?;
    if table.version().is_none() {
        return Err(Error::NotADeltaTable {
            location: location.to_string(),
        });
    }
    Ok(table)
}

/// Delta snapshots by location, reused by queries until they are older than the metadata TTL.
/// Our own commits replace the entry at once.
#[derive(Debug, Default)]
pub(crate) struct DeltaCache {
    tables: Mutex<Entries>,
}

impl DeltaCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached snapshot of the table at `location`, if it is of the same generation (a
    /// table dropped and created again at the same location is a new generation).
    pub(crate) fn get(&self, location: &Url, generation: i64) -> Option<(DeltaTable, Instant)> {
        self.lock()
            .get(location.as_str())
            .filter(|(_, _, g)| *g == generation)
            .map(|(table, checked, _)| (table.clone(), *checked))
    }

    pub(crate) fn put(&self, location: &Url, generation: i64, table: DeltaTable, checked: Instant) {
        let mut tables = self.lock();
        // A slower reader must not replace a newer version with its older one.
        if let Some((cached, _, g)) = tables.get(location.as_str())
            && *g == generation
            && cached.version() > table.version()
        {
            return;
        }
        tables.insert(location.to_string(), (table, checked, generation));
    }

    pub(crate) fn remove(&self, location: &Url) {
        self.lock().remove(location.as_str());
    }
}

/// Reads the table's snapshot, reusing the cached one when it was checked within `max_age`
/// and reading only the log entries written since otherwise.
pub(crate) async fn read(
    stores: &ObjectStores,
    cache: &DeltaCache,
    location: &Url,
    generation: i64,
    max_age: Duration,
) -> Result<DeltaTable> {
    let now = Instant::now();
    let table = match cache.get(location, generation) {
        Some((table, checked)) if now.duration_since(checked) <= max_age => return Ok(table),
        Some((mut table, _)) => {
            table
                .update_incremental(None)
                .await
                .map_err(delta_err(location))?;
            table
        }
        None => open_existing(stores, location).await?,
    };
    cache.put(location, generation, table.clone(), now);
    Ok(table)
}
