//! Statements tarn runs itself because they change the catalog or the lake: databases,
//! external and managed tables, inserts into Delta tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use datafusion::catalog::TableProviderFactory;
use datafusion::common::{DFSchema, DFSchemaRef, SchemaReference, TableReference};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::listing_table_factory::ListingTableFactory;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    CreateExternalTable, CreateMemoryTable, DdlStatement, DmlStatement, DropCatalogSchema,
    Extension, LogicalPlan, UserDefinedLogicalNodeCore, WriteOp,
};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{ObjectType, Statement as SqlStatement};
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt as _;
use tarn_catalog::{Database, Op, Table, TableFormat, TableKind, TableRef};
use url::Url;

use crate::engine::{CATALOG_NAME, CommandTag, DEFAULT_DATABASE, Session};
use crate::error::{Error, Result};
use crate::table::generation;

/// Plans statements DataFusion does not plan the way tarn needs (`DROP DATABASE`).
pub(crate) fn plan_special(statement: &Statement) -> Result<Option<LogicalPlan>> {
    let Statement::Statement(stmt) = statement else {
        return Ok(None);
    };
    match stmt.as_ref() {
        SqlStatement::Drop {
            object_type: ObjectType::Database,
            if_exists,
            names,
            cascade,
            ..
        } => {
            let [name] = names.as_slice() else {
                return Err(Error::not_supported(
                    "dropping several databases in one statement",
                ));
            };
            Ok(Some(LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(
                DropCatalogSchema {
                    name: SchemaReference::Bare {
                        schema: name.to_string().into(),
                    },
                    if_exists: *if_exists,
                    cascade: *cascade,
                    schema: Arc::new(DFSchema::empty()),
                },
            ))))
        }
        // `REFRESH TABLE t` arrives as `MSCK TABLE t` (see `Session::parse`); Athena users
        // write `MSCK REPAIR TABLE t`. Both re-read the table's metadata from the store.
        SqlStatement::Msck(msck) => {
            if msck.partition_action.is_some() {
                return Err(Error::not_supported(
                    "MSCK partition actions (ADD / DROP / SYNC PARTITIONS); partitions are read from the store",
                ));
            }
            Ok(Some(RefreshTable::plan(&msck.table_name.to_string())))
        }
        _ => Ok(None),
    }
}

/// `REFRESH TABLE t`: forget what is cached about `t` and read it again from the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RefreshTable {
    pub(crate) name: TableReference,
    schema: DFSchemaRef,
}

impl RefreshTable {
    fn plan(name: &str) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(Self {
                name: TableReference::from(name),
                schema: Arc::new(DFSchema::empty()),
            }),
        })
    }
}

impl PartialOrd for RefreshTable {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.name.to_string().partial_cmp(&other.name.to_string())
    }
}

impl UserDefinedLogicalNodeCore for RefreshTable {
    fn name(&self) -> &str {
        "RefreshTable"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<datafusion::prelude::Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "RefreshTable: {}", self.name)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<datafusion::prelude::Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        Ok(self.clone())
    }
}

/// Schema names that are not databases.
pub(crate) const RESERVED_SCHEMAS: [&str; 3] = [
    crate::stores::SYSTEM_SCHEMA,
    "pg_catalog",
    "information_schema",
];

fn unquote(name: &str) -> String {
    name.trim_matches('"').to_owned()
}

impl Session {
    pub(crate) fn resolve(&self, name: &TableReference) -> Result<TableRef> {
        let state = self.ctx.state();
        let default_schema = state.config_options().catalog.default_schema.clone();
        let resolved = name.clone().resolve(CATALOG_NAME, &default_schema);
        if resolved.catalog.as_ref() != CATALOG_NAME {
            return Err(Error::not_supported(format!(
                "catalog \"{}\" (tarn has one catalog, \"{CATALOG_NAME}\")",
                resolved.catalog
            )));
        }
        Ok(TableRef::new(
            resolved.schema.as_ref(),
            resolved.table.as_ref(),
        ))
    }

    fn database_name(&self, name: &str) -> Result<String> {
        match name.split_once('.') {
            Some((catalog, db)) if unquote(catalog) == CATALOG_NAME => Ok(unquote(db)),
            Some((catalog, _)) => Err(Error::not_supported(format!("catalog \"{catalog}\""))),
            None => Ok(unquote(name)),
        }
    }

    pub(crate) async fn execute_ddl(&self, ddl: DdlStatement) -> Result<CommandTag> {
        match ddl {
            DdlStatement::CreateCatalogSchema(c) => {
                let name = self.database_name(&c.schema_name)?;
                self.create_database(name, c.if_not_exists).await?;
                Ok(CommandTag::new("CREATE SCHEMA"))
            }
            DdlStatement::CreateCatalog(c) => {
                self.create_database(unquote(&c.catalog_name), c.if_not_exists)
                    .await?;
                Ok(CommandTag::new("CREATE DATABASE"))
            }
            DdlStatement::DropCatalogSchema(d) => {
                let name = match &d.name {
                    SchemaReference::Bare { schema } => schema.to_string(),
                    SchemaReference::Full { schema, catalog }
                        if catalog.as_ref() == CATALOG_NAME =>
                    {
                        schema.to_string()
                    }
                    SchemaReference::Full { catalog, .. } => {
                        return Err(Error::not_supported(format!("catalog \"{catalog}\"")));
                    }
                };
                self.drop_database(name, d.if_exists, d.cascade).await?;
                Ok(CommandTag::new("DROP SCHEMA"))
            }
            DdlStatement::CreateExternalTable(cmd) => {
                self.create_external_table(*cmd).await?;
                Ok(CommandTag::new("CREATE TABLE"))
            }
            DdlStatement::CreateMemoryTable(cmd) => self.create_managed_table(cmd).await,
            DdlStatement::CreateView(cmd) => self.create_view(cmd).await,
            DdlStatement::DropView(cmd) => self.drop_view(cmd).await,
            DdlStatement::DropTable(d) => {
                let table = self.resolve(&d.name)?;
                self.drop_table(table, d.if_exists).await?;
                Ok(CommandTag::new("DROP TABLE"))
            }
            other => Err(Session::ddl_not_supported(&other)),
        }
    }

    /// Re-reads the catalog, and forgets the table's cached file listing and Delta snapshot,
    /// so the next query sees what other writers added.
    pub(crate) async fn refresh_table(&self, name: &TableReference) -> Result<CommandTag> {
        let table = self.resolve(name)?;
        let snapshot = self.engine.catalog.refresh().await?;
        let Some(entry) = snapshot.table(&table.database, &table.table) else {
            return Err(tarn_catalog::Error::TableNotFound { table }.into());
        };
        if let Ok(url) = Url::parse(&entry.location) {
            self.engine.ingester.forget_delta(&url);
        }
        self.forget_listings(&entry.location);
        Ok(CommandTag::new("REFRESH TABLE"))
    }

    /// Drops cached listings that cover `location` or lie under it: after a write there, the
    /// next query lists again.
    pub(crate) fn forget_listings(&self, location: &str) {
        let Some(cache) = self.ctx.runtime_env().cache_manager.get_list_files_cache() else {
            return;
        };
        let Ok(url) = ListingTableUrl::parse(location) else {
            return;
        };
        let written = url.prefix();
        for key in cache.list_entries().into_keys() {
            if key.path.prefix_matches(written) || written.prefix_matches(&key.path) {
                cache.remove(&key);
            }
        }
    }

    async fn create_database(&self, name: String, if_not_exists: bool) -> Result<()> {
        if RESERVED_SCHEMAS.contains(&name.as_str()) {
            return Err(tarn_catalog::Error::InvalidName {
                name,
                reason: "is reserved for tarn's own tables",
            }
            .into());
        }
        let op = Op::CreateDatabase {
            database: Database {
                name,
                properties: BTreeMap::new(),
                created_at: Utc::now(),
            },
        };
        match self.engine.catalog.commit(vec![op]).await {
            Err(tarn_catalog::Error::DatabaseExists { .. }) if if_not_exists => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn drop_database(&self, name: String, if_exists: bool, cascade: bool) -> Result<()> {
        if name == DEFAULT_DATABASE {
            return Err(Error::not_supported(format!(
                "dropping the default database \"{DEFAULT_DATABASE}\""
            )));
        }
        let snapshot = self.engine.catalog.snapshot();
        if snapshot.database(&name).is_none() && if_exists {
            return Ok(());
        }
        let managed: Vec<Arc<Table>> = snapshot
            .tables_in(&name)
            .filter(|t| t.kind == TableKind::Managed)
            .cloned()
            .collect();
        self.engine
            .catalog
            .commit(vec![Op::DropDatabase { name, cascade }])
            .await?;
        for table in managed {
            self.remove_managed_data(&table).await;
        }
        Ok(())
    }

    async fn drop_table(&self, table: TableRef, if_exists: bool) -> Result<()> {
        let snapshot = self.engine.catalog.snapshot();
        let Some(entry) = snapshot.table(&table.database, &table.table).cloned() else {
            if snapshot.view(&table.database, &table.table).is_some() {
                return Err(crate::view::not_a(&table, "table", "DROP VIEW"));
            }
            if if_exists {
                return Ok(());
            }
            return Err(tarn_catalog::Error::TableNotFound { table }.into());
        };
        self.engine
            .catalog
            .commit(vec![Op::DropTable { table }])
            .await?;
        if entry.kind == TableKind::Managed {
            self.remove_managed_data(&entry).await;
        }
        Ok(())
    }

    /// The catalog no longer names the table, so its files are garbage either way: a failure
    /// to remove them is logged, not returned.
    async fn remove_managed_data(&self, table: &Table) {
        let result = match Url::parse(&table.location) {
            Ok(url) => self
                .engine
                .ingester
                .remove_data(&url)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            tracing::warn!(table = %table.table_ref(), location = %table.location, %error,
                "dropped table's data could not be removed");
        }
    }

    /// Registers the managed Delta table just written at `location`. If the commit fails (the
    /// name was taken meanwhile), the files belong to no table and are removed.
    async fn register_managed_table(
        &self,
        table: TableRef,
        location: String,
        schema: arrow_schema::SchemaRef,
        partition_columns: Vec<String>,
    ) -> Result<()> {
        let now = Utc::now();
        let entry = Table {
            database: table.database,
            name: table.table,
            kind: TableKind::Managed,
            format: TableFormat::Delta,
            location,
            schema,
            partition_columns,
            options: BTreeMap::new(),
            properties: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            partitions: None,
            skipped_files: BTreeMap::new(),
            versions: Vec::new(),
        };
        let op = Op::CreateTable {
            table: entry.clone(),
        };
        if let Err(e) = self.engine.catalog.commit(vec![op]).await {
            self.remove_managed_data(&entry).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Optimizes a write's input before handing it to deltalake, so that errors in the query
    /// itself (a value that does not cast to the column type) surface as SQL errors with their
    /// own SQLSTATE rather than as a failed Delta write.
    pub(crate) fn checked_input(&self, input: &LogicalPlan) -> Result<LogicalPlan> {
        self.ctx.state().optimize(input)?;
        Ok(input.clone())
    }

    /// Checks the name is free; `Ok(false)` when it is taken and `IF NOT EXISTS` was given.
    fn check_new_table(&self, table: &TableRef, if_not_exists: bool) -> Result<bool> {
        let snapshot = self.engine.catalog.snapshot();
        if snapshot.database(&table.database).is_none() {
            return Err(tarn_catalog::Error::DatabaseNotFound {
                database: table.database.clone(),
            }
            .into());
        }
        // a table's or a view's (IF NOT EXISTS skips either, as Postgres does a relation)
        if let Err(taken) = snapshot.check_name_free(table) {
            if if_not_exists {
                return Ok(false);
            }
            return Err(taken.into());
        }
        tarn_catalog::validate_name(&table.table)?;
        Ok(true)
    }

    async fn create_external_table(&self, cmd: CreateExternalTable) -> Result<()> {
        if cmd.or_replace {
            return Err(Error::not_supported("CREATE OR REPLACE EXTERNAL TABLE"));
        }
        if cmd.temporary {
            return Err(Error::not_supported("temporary tables"));
        }
        let [location] = cmd.locations.as_slice() else {
            return Err(Error::not_supported(
                "external tables over several locations",
            ));
        };
        let table_ref = self.resolve(&cmd.name)?;
        if !self.check_new_table(&table_ref, cmd.if_not_exists)? {
            return Ok(());
        }
        let format = TableFormat::from_stored_as(&cmd.file_type)
            .ok_or_else(|| Error::not_supported(format!("STORED AS {}", cmd.file_type)))?;
        let url = ListingTableUrl::parse(location)?;
        let location = url.as_str().to_owned();
        let (schema, partition_columns) = if format == TableFormat::Delta {
            if !cmd.schema.fields().is_empty() || !cmd.table_partition_cols.is_empty() {
                return Err(Error::not_supported(
                    "a column list or PARTITIONED BY for Delta tables (both come from the Delta log)",
                ));
            }
            let url = Url::parse(&location).map_err(|e| Error::Location {
                location: location.clone(),
                reason: e.to_string(),
            })?;
            let table = self.engine.ingester.load_delta(&url).await?;
            let partitions = table
                .snapshot()
                .map(|s| s.metadata().partition_columns().to_vec())
                .unwrap_or_default();
            (self.delta_schema(&table, &location).await?, partitions)
        } else {
            self.check_location_has_files(&url).await?;
            let provider = ListingTableFactory::new()
                .create(&self.ctx.state(), &cmd)
                .await?;
            (provider.schema(), cmd.table_partition_cols.clone())
        };
        let now = Utc::now();
        let table = Table {
            database: table_ref.database,
            name: table_ref.table,
            kind: TableKind::External,
            format,
            location,
            schema,
            partition_columns,
            options: cmd.options.into_iter().collect(),
            properties: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            partitions: None,
            skipped_files: BTreeMap::new(),
            versions: Vec::new(),
        };
        self.engine
            .catalog
            .commit(vec![Op::CreateTable { table }])
            .await?;
        Ok(())
    }

    pub(crate) async fn delta_schema(
        &self,
        table: &DeltaTable,
        location: &str,
    ) -> Result<arrow_schema::SchemaRef> {
        let provider = table.table_provider().await.map_err(|e| Error::Location {
            location: location.to_owned(),
            reason: format!("cannot be read as a Delta table: {e}"),
        })?;
        Ok(provider.schema())
    }

    /// A missing or empty location is an error at CREATE time, not an empty table.
    async fn check_location_has_files(&self, url: &ListingTableUrl) -> Result<()> {
        let store = self.ctx.runtime_env().object_store(url.object_store())?;
        let missing = |reason: &str| Error::Location {
            location: url.as_str().to_owned(),
            reason: reason.to_owned(),
        };
        let prefix = url.prefix();
        if url.is_collection() || url.get_glob().is_some() {
            let first = store.list(Some(prefix)).next().await;
            match first {
                Some(Ok(_)) => Ok(()),
                Some(Err(object_store::Error::NotFound { .. })) | None => {
                    Err(missing("does not exist or contains no files"))
                }
                Some(Err(e)) => Err(Error::DataFusion(e.into())),
            }
        } else {
            match store.head(prefix).await {
                Ok(_) => Ok(()),
                Err(object_store::Error::NotFound { .. }) => Err(missing("does not exist")),
                Err(e) => Err(Error::DataFusion(e.into())),
            }
        }
    }

    /// `CREATE TABLE t (…)` and `CREATE TABLE t AS SELECT …`: a managed Delta table.
    pub(crate) async fn create_managed_table(&self, cmd: CreateMemoryTable) -> Result<CommandTag> {
        if cmd.or_replace {
            return Err(Error::not_supported("CREATE OR REPLACE TABLE"));
        }
        if cmd.temporary {
            return Err(Error::not_supported("temporary tables"));
        }
        let table_ref = self.resolve(&cmd.name)?;
        let is_ctas = !matches!(cmd.input.as_ref(), LogicalPlan::EmptyRelation(_));
        if !self.check_new_table(&table_ref, cmd.if_not_exists)? {
            return Ok(CommandTag::new(if is_ctas {
                "SELECT"
            } else {
                "CREATE TABLE"
            }));
        }
        let url = self
            .engine
            .catalog
            .managed_location(&table_ref.database, &table_ref.table)?;
        let location = url.to_string();
        let empty = self.engine.ingester.open_delta_for_write(&url).await?;
        if empty.version().is_some() {
            return Err(tarn_ingest::Error::LocationNotEmpty { location }.into());
        }
        let written = empty
            .write(Vec::new())
            .with_input_plan(self.checked_input(&cmd.input)?)
            .with_session_state(Arc::new(self.ctx.state()))
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_table_name(&table_ref.table)
            .await
            .map_err(|source| Error::Delta {
                location: location.clone(),
                source: Box::new(source),
            })?;
        let rows = added_rows(&written).await;
        let schema = self.delta_schema(&written, &location).await?;
        self.register_managed_table(table_ref, location, schema, Vec::new())
            .await?;
        Ok(if is_ctas {
            CommandTag::with_rows("SELECT", rows)
        } else {
            CommandTag::new("CREATE TABLE")
        })
    }

    /// `INSERT INTO` a Delta table is one Delta append commit; other tables take DataFusion's
    /// path (a new file in the listing).
    pub(crate) async fn execute_insert(&self, dml: DmlStatement) -> Result<CommandTag> {
        let table_ref = self.resolve(&dml.table_name)?;
        let entry = self
            .engine
            .catalog
            .snapshot()
            .table(&table_ref.database, &table_ref.table)
            .cloned();
        let location = entry.as_ref().map(|t| t.location.clone());
        let Some(entry) = entry.filter(|t| t.format == TableFormat::Delta) else {
            let df = self.ctx.execute_logical_plan(LogicalPlan::Dml(dml)).await?;
            let batches = df.collect().await;
            if let Some(location) = location {
                self.forget_listings(&location);
            }
            let batches = batches?;
            let rows = batches
                .first()
                .and_then(|b| b.column_by_name("count"))
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
                .map_or(0, |a| a.value(0));
            return Ok(CommandTag::with_rows("INSERT", rows));
        };
        let WriteOp::Insert(InsertOp::Append) = dml.op else {
            return Err(Error::not_supported(format!("{} on Delta tables", dml.op)));
        };
        if self.holds_writes() {
            let input = self.checked_input(&dml.input)?;
            let rows = self
                .hold_insert(table_ref, dml.target.schema(), input)
                .await?;
            return Ok(CommandTag::with_rows("INSERT", rows));
        }
        let input = self.checked_input(&dml.input)?;
        let state = Arc::new(self.ctx.state());
        let written = self
            .append_to_delta(&entry, |table| {
                table
                    .write(Vec::new())
                    .with_input_plan(input)
                    .with_session_state(state)
            })
            .await?;
        Ok(CommandTag::with_rows("INSERT", added_rows(&written).await))
    }
}

impl Session {
    /// Appends to the Delta table behind `entry` with the write `write` makes of it (one
    /// commit), and tells the ingester's cache of the new version.
    pub(crate) async fn append_to_delta(
        &self,
        entry: &Table,
        write: impl FnOnce(DeltaTable) -> deltalake::operations::write::WriteBuilder,
    ) -> Result<DeltaTable> {
        let (location, url, table) = self.open_delta_table(entry).await?;
        let written = write(table)
            .with_save_mode(SaveMode::Append)
            .await
            .map_err(|source| Error::Delta {
                location,
                source: Box::new(source),
            })?;
        self.engine
            .ingester
            .committed_delta(&url, generation(entry), &written);
        Ok(written)
    }

    /// The Delta table behind catalog entry `entry`, opened to write: its location, as text
    /// and as a URL, and its latest version. A location without a Delta log is an error.
    pub(crate) async fn open_delta_table(
        &self,
        entry: &Table,
    ) -> Result<(String, Url, DeltaTable)> {
        let location = entry.location.clone();
        let url = Url::parse(&location).map_err(|e| Error::Location {
            location: location.clone(),
            reason: e.to_string(),
        })?;
        let table = self.engine.ingester.open_delta_for_write(&url).await?;
        if table.version().is_none() {
            return Err(tarn_ingest::Error::NotADeltaTable { location }.into());
        }
        Ok((location, url, table))
    }
}

/// Rows the table's latest commit added, from the commit's operation metrics.
pub(crate) async fn added_rows(table: &DeltaTable) -> u64 {
    let latest = table.history(Some(1)).try_collect::<Vec<_>>().await.ok();
    latest
        .and_then(|mut commits| commits.pop())
        .and_then(|commit| commit.info.get("operationMetrics").cloned())
        .and_then(|m| m.get("num_added_rows").and_then(|v| v.as_u64()))
        .unwrap_or(0)
}

impl crate::engine::QueryEngine {
    /// Creates the managed Delta table `table` holding `batches` (a batch load), and registers
    /// it in the catalog. The database must exist.
    pub async fn create_table_from_batches(
        &self,
        table: TableRef,
        batches: Vec<arrow::array::RecordBatch>,
        partition_columns: Vec<String>,
    ) -> Result<()> {
        let session = self.session()?;
        if !session.check_new_table(&table, false)? {
            return Ok(());
        }
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            return Err(Error::not_supported("a batch load without batches"));
        };
        let url = self
            .catalog()
            .managed_location(&table.database, &table.table)?;
        let location = url.to_string();
        self.ingester()
            .write_batches(
                &url,
                schema,
                batches,
                &partition_columns,
                tarn_ingest::WriteMode::Create,
            )
            .await?;
        let written = self.ingester().load_delta(&url).await?;
        let schema = session.delta_schema(&written, &location).await?;
        session
            .register_managed_table(table, location, schema, partition_columns)
            .await
    }

    /// Creates database `name` unless it exists.
    pub async fn create_database_if_missing(&self, name: &str) -> Result<()> {
        self.session()?.create_database(name.to_owned(), true).await
    }
}
