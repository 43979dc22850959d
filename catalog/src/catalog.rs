use std::sync::{Arc, RwLock};

use chrono::Utc;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};
use crate::model::{CatalogSnapshot, Op};
use crate::persist::{CatalogFiles, LogEntry, Written};
use crate::store::{ObjectStores, ensure_local_folder};

/// How often a commit also writes a full snapshot, so start-up reads few log entries.
const DEFAULT_SNAPSHOT_EVERY: u64 = 20;
/// How many times a commit re-reads the log after losing a race before giving up.
const MAX_COMMIT_ATTEMPTS: usize = 32;

/// The `[catalog]` section of tarn's configuration.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Write a snapshot every this many commits (at least 1).
    pub snapshot_every: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

/// The catalog of one warehouse: the current snapshot in memory, the log in the object store.
#[derive(Debug)]
pub struct Catalog {
    warehouse: Url,
    store: Arc<dyn ObjectStore>,
    /// The warehouse's path in `store`.
    root: Path,
    files: CatalogFiles,
    current: RwLock<Arc<CatalogSnapshot>>,
    /// When the log was last read (or written) by this process.
    checked: std::sync::Mutex<std::time::Instant>,
    /// Serialises this process's commits; other processes are kept out by create-only puts.
    commit_lock: tokio::sync::Mutex<()>,
    config: CatalogConfig,
}

impl Catalog {
    /// Opens the catalog of the warehouse at `warehouse` (see [`crate::parse_location`]),
    /// reading its snapshot and log. A corrupt file is an error naming the file.
    /// Fails if the warehouse's store does not enforce create-only writes (see
    /// [`ObjectStores::check_writable`]): catalog commits rely on them.
    pub async fn open(
        warehouse: Url,
        config: CatalogConfig,
        stores: &ObjectStores,
    ) -> Result<Self> {
        ensure_local_folder(&warehouse)?;
        stores.check_writable(&warehouse).await?;
        let (store, root) = stores.resolve(&warehouse)?;
        Self::open_in(warehouse, store, root, config).await
    }

    /// Opens the catalog stored under `root` in `store`.
    pub async fn open_in(
        warehouse: Url,
        store: Arc<dyn ObjectStore>,
        root: Path,
        config: CatalogConfig,
    ) -> Result<Self> {
        let files = CatalogFiles::new(Arc::clone(&store), &root);
        let snapshot = files.load().await?;
        tracing::info!(
            warehouse = %warehouse,
            version = snapshot.version,
            databases = snapshot.databases.len(),
            tables = snapshot.tables.len(),
            "catalog loaded"
        );
        Ok(Self {
            warehouse,
            store,
            root,
            files,
            current: RwLock::new(Arc::new(snapshot)),
            checked: std::sync::Mutex::new(std::time::Instant::now()),
            commit_lock: tokio::sync::Mutex::new(()),
            config: CatalogConfig {
                snapshot_every: config.snapshot_every.max(1),
            },
        })
    }

    /// The warehouse URL, always ending in `/`.
    pub fn warehouse(&self) -> &Url {
        &self.warehouse
    }

    /// The warehouse's path in its store.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The store the warehouse lives in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where a managed table's data lives: `<warehouse>/<database>/<table>/`.
    pub fn managed_location(&self, database: &str, table: &str) -> Result<Url> {
        let join = |url: &Url, seg: &str| {
            let mut url = url.clone();
            url.path_segments_mut()
                .map_err(|()| Error::InvalidUrl {
                    url: self.warehouse.to_string(),
                    reason: "cannot hold a path".to_owned(),
                })?
                .pop_if_empty()
                .push(seg)
                .push("");
            Ok(url)
        };
        join(&join(&self.warehouse, database)?, table)
    }

    /// The current snapshot. It never changes; commits publish a new one.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn publish(&self, snapshot: CatalogSnapshot) -> Arc<CatalogSnapshot> {
        let snapshot = Arc::new(snapshot);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&snapshot);
        snapshot
    }

    /// Reads entries other writers committed since our snapshot.
    pub async fn refresh(&self) -> Result<Arc<CatalogSnapshot>> {
        let _guard = self.commit_lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<Arc<CatalogSnapshot>> {
        let base = (*self.snapshot()).clone();
        let next = self.files.catch_up(base).await?;
        self.mark_checked();
        Ok(self.publish(next))
    }

    fn mark_checked(&self) {
        *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
    }

    /// The current snapshot, first reading what other writers committed if the log was last
    /// read more than `max_age` ago. A failed read keeps the snapshot we have (and is logged):
    /// queries go on while the store is briefly unreachable.
    pub async fn snapshot_within(&self, max_age: std::time::Duration) -> Arc<CatalogSnapshot> {
        let stale = self
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            > max_age;
        if stale && let Err(error) = self.refresh().await {
            tracing::warn!(%error, "could not re-read the catalog log");
        }
        self.snapshot()
    }

    /// Applies `ops` atomically as one new log entry. Fails without writing anything if any op
    /// does not apply to the current state (e.g. the table already exists).
    pub async fn commit(&self, ops: Vec<Op>) -> Result<Arc<CatalogSnapshot>> {
        let _guard = self.commit_lock.lock().await;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let base = self.snapshot();
            let mut next = (*base).clone();
            for op in &ops {
                next.apply(op)?;
            }
            next.version = base.version + 1;
            let entry = LogEntry {
                version: next.version,
                committed_at: Utc::now(),
                ops: ops.clone(),
            };
            match self.files.write_entry(&entry).await? {
                Written::Created => {
                    let published = self.publish(next);
                    self.mark_checked();
                    if published.version.is_multiple_of(self.config.snapshot_every) {
                        // The log is authoritative; a missing snapshot only slows start-up.
                        if let Err(e) = self.files.write_snapshot(&published).await {
                            tracing::warn!(error = %e, "could not write catalog snapshot");
                        }
                    }
                    return Ok(published);
                }
                Written::AlreadyExists => {
                    tracing::debug!(
                        version = entry.version,
                        "lost a catalog commit race; re-reading"
                    );
                    self.refresh_locked().await?;
                }
            }
        }
        Err(Error::TooMuchContention {
            attempts: MAX_COMMIT_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_schema::{DataType, Field, Schema};
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;
    use crate::TableRef;
    use crate::model::{Database, Table, TableFormat, TableKind};

    fn db(name: &str) -> Op {
        Op::CreateDatabase {
            database: Database {
                name: name.into(),
                properties: BTreeMap::new(),
                created_at: Utc::now(),
            },
        }
    }

    fn table(db: &str, name: &str) -> Op {
        Op::CreateTable {
            table: Table {
                database: db.into(),
                name: name.into(),
                kind: TableKind::External,
                format: TableFormat::Parquet,
                location: format!("file:///data/{name}/"),
                schema: Arc::new(Schema::new(vec![
                    Field::new("a", DataType::Int64, true),
                    Field::new("dt", DataType::Utf8, true),
                ])),
                partition_columns: vec!["dt".into()],
                options: BTreeMap::new(),
                properties: BTreeMap::new(),
                created_at: Utc::now(),
                updated_at: Utc::now(),
                partitions: None,
                skipped_files: BTreeMap::new(),
                versions: Vec::new(),
            },
        }
    }

    async fn open(store: &Arc<dyn ObjectStore>, every: u64) -> Result<Catalog> {
        let url = Url::parse("memory:///wh/").expect("url");
        Catalog::open_in(
            url,
            Arc::clone(store),
            Path::from("wh"),
            CatalogConfig {
                snapshot_every: every,
            },
        )
        .await
    }

    #[tokio::test]
    async fn commits_survive_reopen_across_snapshots() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = open(&store, 2).await?;
        cat.commit(vec![db("sales")]).await?;
        cat.commit(vec![table("sales", "orders")]).await?;
        cat.commit(vec![table("sales", "items")]).await?;
        cat.commit(vec![Op::DropTable {
            table: TableRef::new("sales", "items"),
        }])
        .await?;
        cat.commit(vec![table("sales", "returns")]).await?;
        let reopened = open(&store, 2).await?;
        let snap = reopened.snapshot();
        assert_eq!(snap.version, 5);
        let names: Vec<_> = snap.tables_in("sales").map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["orders", "returns"]);
        let orders = snap.table("sales", "orders").expect("orders");
        assert_eq!(orders.partition_columns, ["dt"]);
        assert_eq!(orders.file_schema().fields().len(), 1);
        assert!(
            store
                .head(&Path::from(
                    "wh/_tarn/catalog/snapshot-00000000000000000004.json"
                ))
                .await
                .is_ok()
        );
        Ok(())
    }

    #[tokio::test]
    async fn invalid_ops_write_nothing() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = open(&store, 10).await?;
        let err = cat
            .commit(vec![table("nope", "t")])
            .await
            .expect_err("no database");
        assert!(matches!(err, Error::DatabaseNotFound { .. }), "{err}");
        cat.commit(vec![db("a")]).await?;
        let err = cat.commit(vec![db("a")]).await.expect_err("exists");
        assert!(matches!(err, Error::DatabaseExists { .. }), "{err}");
        assert_eq!(open(&store, 10).await?.snapshot().version, 1);
        Ok(())
    }

    #[tokio::test]
    async fn two_writers_never_overwrite_each_other() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = open(&store, 100).await?;
        let b = open(&store, 100).await?;
        a.commit(vec![db("x")]).await?;
        // b's snapshot is stale: it must lose the race for version 1, re-read, and land at 2.
        b.commit(vec![db("y")]).await?;
        assert_eq!(b.snapshot().version, 2);
        let err = a
            .commit(vec![db("y")])
            .await
            .expect_err("y exists after refresh");
        assert!(matches!(err, Error::DatabaseExists { .. }), "{err}");
        let c = open(&store, 100).await?;
        assert_eq!(
            c.snapshot().databases.keys().collect::<Vec<_>>(),
            ["x", "y"]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_truncated_log_entry_is_an_error_naming_the_file() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = open(&store, 100).await?;
        cat.commit(vec![db("x")]).await?;
        let path = Path::from("wh/_tarn/catalog/log/00000000000000000002.json");
        store
            .put(
                &path,
                PutPayload::from_static(b"{\"version\": 2, \"ops\": ["),
            )
            .await
            .expect("put");
        let err = open(&store, 100).await.expect_err("corrupt");
        let msg = err.to_string();
        assert!(
            msg.contains("00000000000000000002.json") && msg.contains("corrupt"),
            "{msg}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_is_an_error_not_an_empty_catalog() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = open(&store, 1).await?;
        cat.commit(vec![db("x")]).await?;
        let path = Path::from("wh/_tarn/catalog/snapshot-00000000000000000001.json");
        store
            .put(&path, PutPayload::from_static(b"not json"))
            .await
            .expect("put");
        let msg = open(&store, 1).await.expect_err("corrupt").to_string();
        assert!(msg.contains("snapshot-00000000000000000001.json"), "{msg}");
        Ok(())
    }

    #[tokio::test]
    async fn a_gap_in_the_log_is_an_error() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = open(&store, 100).await?;
        cat.commit(vec![db("x")]).await?;
        cat.commit(vec![db("y")]).await?;
        cat.commit(vec![db("z")]).await?;
        store
            .delete(&Path::from(
                "wh/_tarn/catalog/log/00000000000000000002.json",
            ))
            .await
            .expect("delete");
        let err = open(&store, 100).await.expect_err("gap");
        assert!(matches!(err, Error::LogGap { missing: 2, .. }), "{err}");
        Ok(())
    }

    #[test]
    fn reserved_names_are_refused() {
        for bad in ["", "_tarn", ".x", "a/b"] {
            assert!(crate::model::validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(crate::model::validate_name("Sales 2024").is_ok());
    }

    fn view(db: &str, name: &str, sql: &str) -> crate::View {
        crate::View {
            database: db.into(),
            name: name.into(),
            sql: sql.into(),
            default_database: db.into(),
            settings: BTreeMap::new(),
            schema: Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)])),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn views_share_names_with_tables_and_survive_reopen() -> Result<()> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = open(&store, 2).await?;
        cat.commit(vec![db("sales"), table("sales", "orders")])
            .await?;
        let create = |name: &str, sql: &str, replace| Op::CreateView {
            view: view("sales", name, sql),
            replace,
        };
        cat.commit(vec![create("v", "SELECT a FROM orders", false)])
            .await?;
        // a name is a table's or a view's, never both; OR REPLACE replaces views only
        assert!(matches!(
            cat.commit(vec![create("v", "SELECT 1", false)]).await,
            Err(Error::ViewExists { .. })
        ));
        assert!(matches!(
            cat.commit(vec![create("orders", "SELECT 1", true)]).await,
            Err(Error::TableExists { .. })
        ));
        assert!(matches!(
            cat.commit(vec![table("sales", "v")]).await,
            Err(Error::ViewExists { .. })
        ));
        let first = cat.snapshot().view("sales", "v").expect("v").created_at;
        cat.commit(vec![create("v", "SELECT 2 AS a", true)]).await?;
        let reopened = open(&store, 2).await?;
        let snap = reopened.snapshot();
        let v = snap.view("sales", "v").expect("v");
        assert_eq!(v.sql, "SELECT 2 AS a");
        assert_eq!(
            v.created_at, first,
            "a replaced view keeps its creation time"
        );
        assert!(matches!(
            reopened
                .commit(vec![Op::DropDatabase {
                    name: "sales".into(),
                    cascade: false
                }])
                .await,
            Err(Error::DatabaseNotEmpty { tables: 2, .. })
        ));
        reopened
            .commit(vec![Op::DropView {
                view: TableRef::new("sales", "v"),
            }])
            .await?;
        assert!(matches!(
            reopened
                .commit(vec![Op::DropView {
                    view: TableRef::new("sales", "v"),
                }])
                .await,
            Err(Error::ViewNotFound { .. })
        ));
        assert_eq!(reopened.snapshot().views_in("sales").count(), 0);
        Ok(())
    }
}
