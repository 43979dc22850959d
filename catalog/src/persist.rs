//! The catalog as files in the warehouse: a log of create-only entries plus periodic snapshots.
//!
//! ```text
//! <warehouse>/_tarn/catalog/log/00000000000000000001.json   one entry per commit
//! <warehouse>/_tarn/catalog/snapshot-00000000000000000010.json
//! ```
//! Entries are written with `PutMode::Create`: two writers racing for the same version cannot
//! both win, and the loser re-reads the log and tries the next version.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{CatalogSnapshot, Op};

/// One committed change set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    pub(crate) version: u64,
    pub(crate) committed_at: DateTime<Utc>,
    pub(crate) ops: Vec<Op>,
}

/// Reads and writes the catalog files under one prefix.
#[derive(Debug)]
pub(crate) struct CatalogFiles {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    log_dir: Path,
}

/// What a create-only write found.
pub(crate) enum Written {
    Created,
    AlreadyExists,
}

impl CatalogFiles {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, warehouse: &Path) -> Self {
        let dir = warehouse.clone().join("_tarn").join("catalog");
        let log_dir = dir.clone().join("log");
        Self {
            store,
            dir,
            log_dir,
        }
    }

    fn log_path(&self, version: u64) -> Path {
        self.log_dir.clone().join(format!("{version:020}.json"))
    }

    fn snapshot_path(&self, version: u64) -> Path {
        self.dir
            .clone()
            .join(format!("snapshot-{version:020}.json"))
    }

    /// Loads the newest snapshot and every log entry after it.
    pub(crate) async fn load(&self) -> Result<CatalogSnapshot> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.dir))
            .await
            .map_err(|source| Error::ObjectStore {
                path: self.dir.to_string(),
                source,
            })?;
        let newest = listing
            .objects
            .iter()
            .filter_map(|o| {
                let name = o.location.filename()?;
                let version = name.strip_prefix("snapshot-")?.strip_suffix(".json")?;
                Some((version.parse::<u64>().ok()?, o.location.clone()))
            })
            .max_by_key(|(v, _)| *v);
        let base = match newest {
            Some((version, path)) => {
                let snapshot: CatalogSnapshot = self.read_json(&path).await?;
                if snapshot.version != version {
                    return Err(Error::InvalidEntry {
                        path: path.to_string(),
                        reason: format!("holds version {}, expected {version}", snapshot.version),
                    });
                }
                snapshot
            }
            None => CatalogSnapshot::default(),
        };
        self.catch_up(base).await
    }

    /// Applies every log entry newer than `snapshot.version`, in order.
    pub(crate) async fn catch_up(&self, mut snapshot: CatalogSnapshot) -> Result<CatalogSnapshot> {
        let offset = self.log_path(snapshot.version);
        let mut entries: Vec<(u64, Path)> = self
            .store
            .list_with_offset(Some(&self.log_dir), &offset)
            .map_err(|source| Error::ObjectStore {
                path: self.log_dir.to_string(),
                source,
            })
            .try_filter_map(|meta| async move {
                let Some(name) = meta.location.filename() else {
                    return Ok(None);
                };
                let Some(stem) = name.strip_suffix(".json") else {
                    return Ok(None);
                };
                match stem.parse::<u64>() {
                    Ok(v) => Ok(Some((v, meta.location.clone()))),
                    Err(_) => Err(Error::InvalidEntry {
                        path: meta.location.to_string(),
                        reason: "not a catalog log entry name".to_owned(),
                    }),
                }
            })
            .try_collect()
            .await?;
        entries.sort_by_key(|(v, _)| *v);
        for (version, path) in entries {
            if version <= snapshot.version {
                continue;
            }
            if version != snapshot.version + 1 {
                return Err(Error::LogGap {
                    missing: snapshot.version + 1,
                    after: snapshot.version,
                    path: path.to_string(),
                });
            }
            let entry: LogEntry = self.read_json(&path).await?;
            if entry.version != version {
                return Err(Error::InvalidEntry {
                    path: path.to_string(),
                    reason: format!("holds version {}, expected {version}", entry.version),
                });
            }
            for op in &entry.ops {
                snapshot.apply(op).map_err(|e| Error::InvalidEntry {
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
            }
            snapshot.version = version;
        }
        Ok(snapshot)
    }

    pub(crate) async fn write_entry(&self, entry: &LogEntry) -> Result<Written> {
        self.create(&self.log_path(entry.version), entry).await
    }

    pub(crate) async fn write_snapshot(&self, snapshot: &CatalogSnapshot) -> Result<Written> {
        self.create(&self.snapshot_path(snapshot.version), snapshot)
            .await
    }

    async fn create<T: Serialize>(&self, path: &Path, value: &T) -> Result<Written> {
        let body = serde_json::to_vec_pretty(value).map_err(Error::Encode)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(Bytes::from(body)), opts)
            .await
        {
            Ok(_) => Ok(Written::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Written::AlreadyExists),
            Err(source) => Err(Error::ObjectStore {
                path: path.to_string(),
                source,
            }),
        }
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<T> {
        let bytes = self
            .store
            .get(path)
            .await
            .map_err(|source| Error::ObjectStore {
                path: path.to_string(),
                source,
            })?
            .bytes()
            .await
            .map_err(|source| Error::ObjectStore {
                path: path.to_string(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::CorruptFile {
            path: path.to_string(),
            source,
        })
    }
}
