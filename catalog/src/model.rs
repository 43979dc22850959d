//! The catalog model: what tarn knows about databases and tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, TableRef};

/// A database (Glue/Athena "database", Postgres "schema"): a namespace of tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// Who owns a table's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// tarn owns the data: a Delta table under the warehouse, dropped with the table.
    Managed,
    /// The data lives elsewhere; dropping the table leaves it alone.
    External,
}

/// The file format of a table's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    Parquet,
    Csv,
    /// Newline-delimited JSON.
    Json,
    Delta,
}

impl TableFormat {
    /// Parses the `STORED AS` keyword (case-insensitive); `NDJSON` is accepted for JSON.
    pub fn from_stored_as(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PARQUET" => Some(Self::Parquet),
            "CSV" => Some(Self::Csv),
            "JSON" | "NDJSON" => Some(Self::Json),
            "DELTA" | "DELTALAKE" => Some(Self::Delta),
            _ => None,
        }
    }

    /// The `STORED AS` keyword for this format.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parquet => "PARQUET",
            Self::Csv => "CSV",
            Self::Json => "JSON",
            Self::Delta => "DELTA",
        }
    }
}

/// A table: where its data is, in what format, and with what schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub database: String,
    pub name: String,
    pub kind: TableKind,
    pub format: TableFormat,
    /// A URL (`file:///…`, `s3://…`); a folder or a single file.
    pub location: String,
    /// The full table schema, partition columns included (they come last).
    pub schema: SchemaRef,
    /// Hive-style partition columns (`key=value/` folders), in folder order.
    #[serde(default)]
    pub partition_columns: Vec<String>,
    /// Format options (e.g. `format.has_header`), as given to `CREATE EXTERNAL TABLE … OPTIONS`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Free-form table properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The catalog's own partition list (Glue's partitions), for tables a crawler maintains.
    /// `Some`: scans read only these folders, pruned by their values, and never list the table
    /// root. `None`: the table's files are found by listing its location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<Partition>>,
    /// Files under the location that scans leave out, with the reason (set by crawlers: a
    /// corrupt footer, a schema that does not fit). Paths are relative to `location`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_files: BTreeMap<String, String>,
    /// Every version of the table's definition, oldest first; the last is the current one.
    /// Empty for tables written before versions were kept (then the table is at version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<TableVersion>,
}

/// One version of a table's definition. A new one is made by every schema change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableVersion {
    pub version: u64,
    pub schema: SchemaRef,
    pub partition_columns: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Why this version was made (`created`, `crawler c1 added columns x, y`).
    pub reason: String,
}

/// A partition registered in the catalog: its values (in partition-column order, as the
/// folder names spell them; `__HIVE_DEFAULT_PARTITION__` is NULL) and its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub values: Vec<String>,
    /// A folder URL ending in `/`.
    pub location: String,
    pub created_at: DateTime<Utc>,
}

/// The partition value Hive writes for NULL.
pub const NULL_PARTITION_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

impl Table {
    /// The current version number.
    pub fn version(&self) -> u64 {
        self.versions.last().map_or(1, |v| v.version)
    }

    /// The table's version history, oldest first (a table from before versions were kept has
    /// one, made when it was created).
    pub fn history(&self) -> Vec<TableVersion> {
        if self.versions.is_empty() {
            return vec![self.first_version("created")];
        }
        self.versions.clone()
    }

    fn first_version(&self, reason: &str) -> TableVersion {
        TableVersion {
            version: 1,
            schema: Arc::clone(&self.schema),
            partition_columns: self.partition_columns.clone(),
            created_at: self.created_at,
            reason: reason.to_owned(),
        }
    }

    pub fn table_ref(&self) -> TableRef {
        TableRef::new(&self.database, &self.name)
    }

    /// The schema of the data files: the table schema without partition columns.
    pub fn file_schema(&self) -> Schema {
        let fields = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.partition_columns.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>();
        Schema::new_with_metadata(fields, self.schema.metadata().clone())
    }
}

/// A view (Athena's `CREATE VIEW`, Glue's `VIRTUAL_VIEW`): a named query, planned again
/// each time it is read. Its columns are fixed when it is created, as in Postgres and Athena:
/// a read whose query no longer gives them fails as stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub database: String,
    pub name: String,
    /// The query, as SQL (a `SELECT`, normalized by the parser).
    pub sql: String,
    /// The database unqualified table names in `sql` are read from.
    pub default_database: String,
    /// The engine settings `sql` is planned with (those that change its types), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// The view's columns, as the query gave them when the view was created.
    pub schema: SchemaRef,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl View {
    pub fn table_ref(&self) -> TableRef {
        TableRef::new(&self.database, &self.name)
    }
}

/// An immutable view of the whole catalog at one version. Planning reads only this.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    /// The last log entry applied (0: nothing yet).
    pub version: u64,
    pub databases: BTreeMap<String, Database>,
    /// Keyed by (database, table).
    #[serde(with = "table_map")]
    pub tables: BTreeMap<(String, String), Arc<Table>>,
    /// Keyed by (database, view); a view's name is never also a table's.
    #[serde(default, with = "view_map", skip_serializing_if = "BTreeMap::is_empty")]
    pub views: BTreeMap<(String, String), Arc<View>>,
    #[serde(default)]
    pub crawlers: BTreeMap<String, Arc<Crawler>>,
    /// The latest runs of each crawler, oldest first (at most [`CRAWL_RUNS_KEPT`] each).
    #[serde(default)]
    pub crawl_runs: BTreeMap<String, Vec<Arc<CrawlRun>>>,
}

/// How many runs of each crawler the catalog keeps.
pub const CRAWL_RUNS_KEPT: usize = 100;

impl CatalogSnapshot {
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(name)
    }

    pub fn table(&self, database: &str, table: &str) -> Option<&Arc<Table>> {
        self.tables.get(&(database.to_owned(), table.to_owned()))
    }

    /// Tables of one database, in name order.
    pub fn tables_in(&self, database: &str) -> impl Iterator<Item = &Arc<Table>> {
        self.tables
            .range((database.to_owned(), String::new())..)
            .take_while(move |((db, _), _)| db == database)
            .map(|(_, t)| t)
    }

    pub fn view(&self, database: &str, view: &str) -> Option<&Arc<View>> {
        self.views.get(&(database.to_owned(), view.to_owned()))
    }

    /// Views of one database, in name order.
    pub fn views_in(&self, database: &str) -> impl Iterator<Item = &Arc<View>> {
        self.views
            .range((database.to_owned(), String::new())..)
            .take_while(move |((db, _), _)| db == database)
            .map(|(_, v)| v)
    }

    /// Fails if `name` is already a table or a view.
    pub fn check_name_free(&self, name: &TableRef) -> Result<()> {
        let key = (name.database.clone(), name.table.clone());
        if self.tables.contains_key(&key) {
            return Err(Error::TableExists {
                table: name.clone(),
            });
        }
        if self.views.contains_key(&key) {
            return Err(Error::ViewExists { view: name.clone() });
        }
        Ok(())
    }

    /// Checks that `op` can be applied, then applies it.
    pub(crate) fn apply(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::CreateDatabase { database } => {
                validate_name(&database.name)?;
                if self.databases.contains_key(&database.name) {
                    return Err(Error::DatabaseExists {
                        database: database.name.clone(),
                    });
                }
                self.databases
                    .insert(database.name.clone(), database.clone());
            }
            Op::DropDatabase { name, cascade } => {
                if !self.databases.contains_key(name) {
                    return Err(Error::DatabaseNotFound {
                        database: name.clone(),
                    });
                }
                let tables: Vec<_> = self.tables_in(name).map(|t| t.name.clone()).collect();
                let views: Vec<_> = self.views_in(name).map(|v| v.name.clone()).collect();
                if !cascade && (!tables.is_empty() || !views.is_empty()) {
                    return Err(Error::DatabaseNotEmpty {
                        database: name.clone(),
                        tables: tables.len() + views.len(),
                    });
                }
                for t in tables {
                    self.tables.remove(&(name.clone(), t));
                }
                for v in views {
                    self.views.remove(&(name.clone(), v));
                }
                self.databases.remove(name);
            }
            Op::CreateTable { table } => {
                validate_name(&table.name)?;
                let mut table = table.clone();
                if table.versions.is_empty() {
                    table.versions.push(table.first_version("created"));
                }
                if !self.databases.contains_key(&table.database) {
                    return Err(Error::DatabaseNotFound {
                        database: table.database.clone(),
                    });
                }
                self.check_name_free(&table.table_ref())?;
                let key = (table.database.clone(), table.name.clone());
                self.tables.insert(key, Arc::new(table));
            }
            Op::DropTable { table } => {
                let key = (table.database.clone(), table.table.clone());
                if self.tables.remove(&key).is_none() {
                    return Err(Error::TableNotFound {
                        table: table.clone(),
                    });
                }
            }
            Op::CreateView { view, replace } => {
                validate_name(&view.name)?;
                if !self.databases.contains_key(&view.database) {
                    return Err(Error::DatabaseNotFound {
                        database: view.database.clone(),
                    });
                }
                let key = (view.database.clone(), view.name.clone());
                let mut view = view.clone();
                match self.views.get(&key) {
                    Some(old) if *replace => view.created_at = old.created_at,
                    _ => self.check_name_free(&view.table_ref())?,
                }
                self.views.insert(key, Arc::new(view));
            }
            Op::DropView { view } => {
                let key = (view.database.clone(), view.table.clone());
                if self.views.remove(&key).is_none() {
                    return Err(Error::ViewNotFound { view: view.clone() });
                }
            }
            Op::UpdateTable { table, reason } => {
                let key = (table.database.clone(), table.name.clone());
                let Some(old) = self.tables.get(&key) else {
                    return Err(Error::TableNotFound {
                        table: table.table_ref(),
                    });
                };
                // A table dropped and created again meanwhile is not the one this update read.
                if old.created_at != table.created_at {
                    return Err(Error::TableNotFound {
                        table: table.table_ref(),
                    });
                }
                let mut next = table.clone();
                // Partitions change only through AddPartitions, so a concurrent one is kept.
                next.partitions = old.partitions.clone();
                next.versions = old.history();
                let changed =
                    old.schema != next.schema || old.partition_columns != next.partition_columns;
                if changed {
                    next.versions.push(TableVersion {
                        version: old.version() + 1,
                        schema: Arc::clone(&next.schema),
                        partition_columns: next.partition_columns.clone(),
                        created_at: next.updated_at,
                        reason: reason.clone(),
                    });
                }
                self.tables.insert(key, Arc::new(next));
            }
            Op::AddPartitions { table, partitions } => {
                let key = (table.database.clone(), table.table.clone());
                let Some(entry) = self.tables.get_mut(&key) else {
                    return Err(Error::TableNotFound {
                        table: table.clone(),
                    });
                };
                let entry = Arc::make_mut(entry);
                let width = entry.partition_columns.len();
                let list = entry.partitions.get_or_insert_with(Vec::new);
                for p in partitions {
                    if p.values.len() != width {
                        return Err(Error::InvalidPartition {
                            table: table.clone(),
                            reason: format!(
                                "{} values for {width} partition columns",
                                p.values.len()
                            ),
                        });
                    }
                    if !list.iter().any(|q| q.values == p.values) {
                        list.push(p.clone());
                    }
                }
            }
            Op::CreateCrawler { crawler } => {
                validate_name(&crawler.name)?;
                if self.crawlers.contains_key(&crawler.name) {
                    return Err(Error::CrawlerExists {
                        crawler: crawler.name.clone(),
                    });
                }
                if !self.databases.contains_key(&crawler.database) {
                    return Err(Error::DatabaseNotFound {
                        database: crawler.database.clone(),
                    });
                }
                self.crawlers
                    .insert(crawler.name.clone(), Arc::new(crawler.clone()));
            }
            Op::DropCrawler { name } => {
                if self.crawlers.remove(name).is_none() {
                    return Err(Error::CrawlerNotFound {
                        crawler: name.clone(),
                    });
                }
                self.crawl_runs.remove(name);
            }
            Op::RecordCrawlRun { run } => {
                if !self.crawlers.contains_key(&run.crawler) {
                    return Err(Error::CrawlerNotFound {
                        crawler: run.crawler.clone(),
                    });
                }
                let runs = self.crawl_runs.entry(run.crawler.clone()).or_default();
                runs.push(Arc::new(run.clone()));
                let excess = runs.len().saturating_sub(CRAWL_RUNS_KEPT);
                runs.drain(..excess);
            }
        }
        Ok(())
    }

    /// A crawler's next run number.
    pub fn next_crawl_run(&self, crawler: &str) -> u64 {
        self.crawl_runs
            .get(crawler)
            .and_then(|runs| runs.last())
            .map_or(1, |r| r.run + 1)
    }
}

/// One change to the catalog. A log entry holds one or more, applied atomically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateDatabase {
        database: Database,
    },
    DropDatabase {
        name: String,
        cascade: bool,
    },
    CreateTable {
        table: Table,
    },
    DropTable {
        table: TableRef,
    },
    /// Creates a view; with `replace`, a view of that name is replaced (not a table).
    CreateView {
        view: View,
        replace: bool,
    },
    DropView {
        view: TableRef,
    },
    /// Replaces a table's definition; a changed schema or partition columns make a new version.
    UpdateTable {
        table: Table,
        reason: String,
    },
    /// Registers partitions; ones already registered (same values) are left as they are.
    AddPartitions {
        table: TableRef,
        partitions: Vec<Partition>,
    },
    CreateCrawler {
        crawler: Crawler,
    },
    DropCrawler {
        name: String,
    },
    RecordCrawlRun {
        run: CrawlRun,
    },
}

/// What a crawler does when a file brings columns the table does not have, or types that
/// differ (Glue's schema change policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaChangePolicy {
    /// Add new columns to the table (a new table version).
    #[default]
    AddColumns,
    /// Leave the table as it is and record the change in the run.
    Log,
    /// Fail the run; nothing in the catalog changes.
    Fail,
}

impl SchemaChangePolicy {
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "add_columns" | "update_in_database" | "update" => Some(Self::AddColumns),
            "log" => Some(Self::Log),
            "fail" => Some(Self::Fail),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddColumns => "add_columns",
            Self::Log => "log",
            Self::Fail => "fail",
        }
    }
}

/// A crawler: a location to visit, the database its tables go to, and how to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crawler {
    pub name: String,
    /// A folder URL ending in `/`.
    pub location: String,
    pub database: String,
    #[serde(default)]
    pub options: CrawlerOptions,
    pub created_at: DateTime<Utc>,
}

/// A crawler's settings (`CREATE CRAWLER … WITH (…)`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CrawlerOptions {
    /// How many folders below the location a table sits: 0 = the location is one table,
    /// 1 = each top-level folder is a table. `None` = 1, unless every top-level folder is a
    /// `key=value` partition folder (then the location is one partitioned table).
    pub table_level: Option<u32>,
    pub schema_change: SchemaChangePolicy,
    /// Treat plain folders between a table and its files as partitions named `partition_0`,
    /// `partition_1`, … (as Glue does). Off: such files just belong to the table.
    pub unnamed_partitions: bool,
    /// Put before every discovered table name.
    pub table_prefix: String,
    /// A cron expression; the server re-runs the crawler on it.
    pub schedule: Option<String>,
}

/// One run of a crawler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawlRun {
    pub crawler: String,
    /// 1, 2, … per crawler.
    pub run: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub succeeded: bool,
    /// Why the run failed.
    pub error: Option<String>,
    pub tables_created: Vec<String>,
    pub tables_updated: Vec<String>,
    pub partitions_added: u64,
    /// Files whose schema was read in this run (already-seen, unchanged files are not).
    pub files_read: u64,
    pub files_skipped: Vec<SkippedFile>,
    /// Schema changes found and, depending on the policy, applied or only logged.
    pub schema_changes: Vec<String>,
}

/// A file a crawl could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// A URL.
    pub path: String,
    pub reason: String,
}

/// Names are stored as given; they must be usable as a folder name in the warehouse.
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name.len() > 255 {
        return invalid("must be at most 255 bytes");
    }
    if name.starts_with('_') || name.starts_with('.') {
        return invalid("must not start with '_' or '.' (reserved for tarn's own files)");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return invalid("must not contain '/', '\\' or control characters");
    }
    Ok(())
}

mod table_map {
    //! JSON maps need string keys; tables are stored as a list.
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Table;

    type Map = BTreeMap<(String, String), Arc<Table>>;

    pub(super) fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<&Table> = map.values().map(|t| t.as_ref()).collect();
        list.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let list = Vec::<Table>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|t| ((t.database.clone(), t.name.clone()), Arc::new(t)))
            .collect())
    }
}

mod view_map {
    //! Views are stored as a list, as tables are.
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::View;

    type Map = BTreeMap<(String, String), Arc<View>>;

    pub(super) fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<&View> = map.values().map(|v| v.as_ref()).collect();
        list.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let list = Vec::<View>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|v| ((v.database.clone(), v.name.clone()), Arc::new(v)))
            .collect())
    }
}
