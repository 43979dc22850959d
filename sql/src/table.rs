//! The table provider for every lake table: Delta tables and Parquet / CSV / JSON listings.
//!
//! Creating the provider does no IO: the schema comes from the catalog. The Delta log is read,
//! and the listing options built, when the table is scanned.

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{FieldRef, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::{ConfigFileType, TableOptions};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use futures::TryStreamExt;
use tarn_catalog::{Partition, Table, TableFormat};
use tarn_ingest::Ingester;
use tarn_ingest::delivery::Deliveries;
use url::Url;

use crate::error::Error;

/// A catalog table, readable by DataFusion.
#[derive(Debug)]
pub(crate) struct LakeTableProvider {
    table: Arc<Table>,
    ingester: Arc<Ingester>,
    metadata_ttl: Duration,
    /// Where a delivery writes this table, scans add the records it has not delivered yet.
    deliveries: Option<Arc<Deliveries>>,
}

impl LakeTableProvider {
    pub(crate) fn new(table: Arc<Table>, ingester: Arc<Ingester>, metadata_ttl: Duration) -> Self {
        Self {
            table,
            ingester,
            metadata_ttl,
            deliveries: None,
        }
    }

    pub(crate) fn table(&self) -> &Arc<Table> {
        &self.table
    }

    pub(crate) fn with_deliveries(mut self, deliveries: Option<Arc<Deliveries>>) -> Self {
        self.deliveries = deliveries;
        self
    }

    fn listing(&self, state: &dyn Session) -> DfResult<ListingTable> {
        listing_table(state, &self.table)
    }

    /// The Delta table's provider, and the snapshot it reads.
    async fn delta_table(
        &self,
        state: &dyn Session,
    ) -> DfResult<(Arc<dyn TableProvider>, deltalake::DeltaTable)> {
        let location = &self.table.location;
        let url = Url::parse(location).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table = self
            .ingester
            .read_delta(&url, generation(&self.table), self.metadata_ttl)
            .await
            .map_err(|e| DataFusionError::External(Box::new(Error::from(e))))?;
        table
            .update_datafusion_session(state)
            .map_err(|e| delta_err(location, e))?;
        let provider = table.table_provider().await.map_err(|e| {
            DataFusionError::External(Box::new(Error::Location {
                location: location.clone(),
                reason: format!("cannot be read as a Delta table: {e}"),
            }))
        })?;
        Ok((provider, table))
    }

    /// Scans a Delta table; where a delivery writes it, the records acknowledged to the
    /// delivery but not in the snapshot scanned are added (read from the stream log after the
    /// snapshot's own checkpoints, so nothing is seen twice).
    async fn scan_delta(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (provider, delta) = self.delta_table(state).await?;
        let plan = provider.scan(state, projection, filters, limit).await?;
        let Some(deliveries) = &self.deliveries else {
            return Ok(plan);
        };
        let written = delta
            .snapshot()
            .map_err(|e| delta_err(&self.table.location, e))?
            .snapshot()
            .arrow_schema();
        let live = deliveries
            .live_rows(&self.table.table_ref(), &delta, &written)
            .await
            .map_err(|e| DataFusionError::External(Box::new(Error::from(e))))?;
        let batches = match live {
            Some(b) if !b.is_empty() => b,
            _ => return Ok(plan),
        };
        let schema = plan.schema();
        let shaped = batches
            .iter()
            .map(|b| shape(b, &schema))
            .collect::<DfResult<Vec<_>>>()?;
        let live = MemorySourceConfig::try_new_exec(&[shaped], Arc::clone(&schema), None)?;
        UnionExec::try_new(vec![plan, live])
    }
}

impl LakeTableProvider {
    /// Scans a table whose partitions the catalog lists: prunes them by their values with the
    /// filters on partition columns, then lists only the folders of the partitions left. The
    /// table root is never listed, and `EXPLAIN` shows only the files of those partitions.
    async fn scan_partitions(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let table = &self.table;
        let partition_fields: Vec<FieldRef> = table
            .partition_columns
            .iter()
            .map(|name| Ok(Arc::new(table.schema.field_with_name(name)?.clone())))
            .collect::<DfResult<_>>()?;
        let names: Vec<&str> = table.partition_columns.iter().map(String::as_str).collect();
        let partition_filters: Vec<&Expr> = filters
            .iter()
            .filter(|f| {
                !names.is_empty()
                    && datafusion::datasource::listing::helpers::expr_applicable_for_cols(&names, f)
            })
            .collect();
        let partitions = table.partitions.as_deref().unwrap_or_default();
        let selected = prune_partitions(state, partitions, &partition_fields, &partition_filters)?;
        tracing::debug!(table = %table.table_ref(), partitions = partitions.len(),
            selected = selected.len(), "partitions pruned by the catalog");

        let format = file_format(state, table.format, &table.options)?;
        let root = ListingTableUrl::parse(&table.location)?;
        let store_url = root.object_store();
        let store = state.runtime_env().object_store(&store_url)?;
        let root_prefix = root.prefix().clone();
        let compression = table.options.get("format.compression").map(String::as_str);
        let mut files = Vec::new();
        for (partition, values) in selected {
            let url = ListingTableUrl::parse(&partition.location)?;
            for meta in list_folder(state, store.as_ref(), url.prefix())
                .await?
                .iter()
            {
                let meta = meta.clone();
                let name = meta.location.filename().unwrap_or_default();
                // Folder markers and empty files hold no rows.
                if meta.size == 0 || !tarn_catalog::file_belongs_to(name, table.format, compression)
                {
                    continue;
                }
                let relative: Vec<String> = meta
                    .location
                    .prefix_match(&root_prefix)
                    .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect())
                    .unwrap_or_default();
                if relative
                    .iter()
                    .any(|p| p.starts_with('_') || p.starts_with('.'))
                    || table.skipped_files.contains_key(&relative.join("/"))
                {
                    continue;
                }
                files.push(
                    PartitionedFile::new_from_meta(meta).with_partition_values(values.clone()),
                );
            }
        }
        if files.is_empty() {
            let schema = datafusion::physical_plan::project_schema(&table.schema, projection)?;
            return Ok(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(
                schema,
            )));
        }
        files.sort_by(|a, b| a.object_meta.location.cmp(&b.object_meta.location));
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let table_schema = TableSchemaBuilder::new(Arc::new(table.file_schema()))
            .with_table_partition_cols(partition_fields)
            .build();
        let source = format.file_source(table_schema);
        let config = FileScanConfigBuilder::new(store_url, source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

/// Every file under `prefix`, at any depth (Athena reads a partition's subfolders too),
/// through DataFusion's list-files cache, so a repeated query lists nothing until the metadata
/// TTL runs out or the table is refreshed.
async fn list_folder(
    state: &dyn Session,
    store: &dyn object_store::ObjectStore,
    prefix: &object_store::path::Path,
) -> DfResult<Arc<Vec<object_store::ObjectMeta>>> {
    use datafusion::execution::cache::TableScopedPath;
    let list = || async {
        store
            .list(Some(prefix))
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))
    };
    let Some(cache) = state.runtime_env().cache_manager.get_list_files_cache() else {
        return Ok(Arc::new(list().await?));
    };
    let key = TableScopedPath {
        table: None,
        path: prefix.clone(),
    };
    if let Some(hit) = cache.get(&key) {
        return Ok(hit.files_matching_prefix(&None));
    }
    let files = list().await?;
    let cached: datafusion::execution::cache::cache_manager::CachedFileList = files.into();
    let result = cached.files_matching_prefix(&None);
    cache.put(&key, cached);
    Ok(result)
}

/// The partitions whose values pass every filter, with their values typed as the columns.
pub(crate) fn prune_partitions<'a>(
    state: &dyn Session,
    partitions: &'a [Partition],
    fields: &[FieldRef],
    filters: &[&Expr],
) -> DfResult<Vec<(&'a Partition, Vec<ScalarValue>)>> {
    let typed: Vec<Vec<ScalarValue>> = partitions
        .iter()
        .map(|p| {
            if p.values.len() != fields.len() {
                return Err(DataFusionError::Internal(format!(
                    "partition {} has {} values for {} partition columns",
                    p.location,
                    p.values.len(),
                    fields.len()
                )));
            }
            fields
                .iter()
                .zip(&p.values)
                .map(|(f, v)| partition_value(f.data_type(), v))
                .collect::<DfResult<Vec<_>>>()
        })
        .collect::<DfResult<_>>()?;
    if filters.is_empty() || partitions.is_empty() {
        return Ok(partitions.iter().zip(typed).collect());
    }
    let schema = Arc::new(arrow_schema::Schema::new(fields.to_vec()));
    let columns = (0..fields.len())
        .map(|i| ScalarValue::iter_to_array(typed.iter().map(|row| row[i].clone())))
        .collect::<DfResult<Vec<_>>>()?;
    let batch = arrow::array::RecordBatch::try_new(Arc::clone(&schema), columns)?;
    let df_schema = datafusion::common::DFSchema::try_from(schema)?;
    let mut keep = vec![true; partitions.len()];
    for filter in filters {
        let expr = state.create_physical_expr((*filter).clone(), &df_schema)?;
        let result = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let mask = result
            .as_any()
            .downcast_ref::<arrow::array::BooleanArray>()
            .ok_or_else(|| DataFusionError::Internal("partition filter is not boolean".into()))?;
        for (i, k) in keep.iter_mut().enumerate() {
            *k = *k && arrow::array::Array::is_valid(mask, i) && mask.value(i);
        }
    }
    Ok(partitions
        .iter()
        .zip(typed)
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(p))
        .collect())
}

/// A partition folder's value as a value of the column's type.
fn partition_value(data_type: &arrow_schema::DataType, value: &str) -> DfResult<ScalarValue> {
    if value == tarn_catalog::NULL_PARTITION_VALUE {
        return ScalarValue::try_from(data_type);
    }
    ScalarValue::try_from_string(value.to_owned(), data_type)
}

/// Tells apart tables created at the same location (dropped and created again): the time the
/// catalog entry was created.
/// `batch`'s columns, by name, in `schema`'s order and types.
fn shape(
    batch: &arrow::array::RecordBatch,
    schema: &SchemaRef,
) -> DfResult<arrow::array::RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let column = batch.column_by_name(f.name()).ok_or_else(|| {
                DataFusionError::Internal(format!("live rows lack the column {}", f.name()))
            })?;
            if column.data_type() == f.data_type() {
                Ok(Arc::clone(column))
            } else {
                Ok(arrow::compute::cast(column, f.data_type())?)
            }
        })
        .collect::<DfResult<Vec<_>>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(arrow::array::RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

pub(crate) fn generation(table: &Table) -> i64 {
    table.created_at.timestamp_micros()
}

fn delta_err(location: &str, source: deltalake::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(Error::Delta {
        location: location.to_owned(),
        source: Box::new(source),
    }))
}

/// Builds the file format of a listing table from its stored options.
fn file_format(
    state: &dyn Session,
    format: TableFormat,
    options: &std::collections::BTreeMap<String, String>,
) -> DfResult<Arc<dyn FileFormat>> {
    let mut table_options = TableOptions::default_from_session_config(state.config_options());
    let file_type = match format {
        TableFormat::Parquet => ConfigFileType::PARQUET,
        TableFormat::Csv => ConfigFileType::CSV,
        TableFormat::Json => ConfigFileType::JSON,
        TableFormat::Delta => {
            return Err(DataFusionError::Internal(
                "Delta tables have no listing format".into(),
            ));
        }
    };
    table_options.set_config_format(file_type);
    table_options.alter_with_string_hash_map(&options.clone().into_iter().collect())?;
    Ok(match format {
        TableFormat::Parquet => {
            Arc::new(ParquetFormat::default().with_options(table_options.parquet))
        }
        TableFormat::Csv => Arc::new(CsvFormat::default().with_options(table_options.csv)),
        _ => Arc::new(JsonFormat::default().with_options(table_options.json)),
    })
}

/// The listing table for a Parquet / CSV / JSON catalog table. No IO. It keeps the files'
/// statistics in the runtime's cache, as DataFusion's own `CREATE EXTERNAL TABLE` does: a table
/// is built for every scan, and without the shared cache each query would compute every file's
/// statistics again. Entries are checked against the file's size and modification time.
fn listing_table(state: &dyn Session, table: &Table) -> DfResult<ListingTable> {
    let format = file_format(state, table.format, &table.options)?;
    let url = ListingTableUrl::parse(&table.location)?;
    let extension = if url.is_collection() && url.get_glob().is_none() {
        let compression = format.compression_type();
        match compression {
            Some(c) => format.get_ext_with_compression(&c)?,
            None => format.get_ext(),
        }
    } else {
        String::new()
    };
    let extension = if extension.is_empty() || extension.starts_with('.') {
        extension
    } else {
        format!(".{extension}")
    };
    let partition_cols = table
        .partition_columns
        .iter()
        .map(|name| {
            let field = table.schema.field_with_name(name)?;
            Ok((name.clone(), field.data_type().clone()))
        })
        .collect::<DfResult<Vec<_>>>()?;
    let options = ListingOptions::new(format)
        .with_file_extension(extension)
        .with_table_partition_cols(partition_cols);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(Arc::new(table.file_schema()));
    Ok(ListingTable::try_new(config)?
        .with_cache(state.runtime_env().cache_manager.get_file_statistic_cache()))
}

#[async_trait]
impl TableProvider for LakeTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.table.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters on partition columns only are answered exactly by listing pruning; everything
        // else is used for pruning (row groups, Delta file stats) and applied again above.
        let parts: Vec<&str> = self
            .table
            .partition_columns
            .iter()
            .map(String::as_str)
            .collect();
        Ok(filters
            .iter()
            .map(|f| {
                if self.table.format != TableFormat::Delta
                    && !parts.is_empty()
                    && datafusion::datasource::listing::helpers::expr_applicable_for_cols(&parts, f)
                {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match self.table.format {
            TableFormat::Delta => self.scan_delta(state, projection, filters, limit).await,
            _ if self.table.partitions.is_some() => {
                self.scan_partitions(state, projection, filters, limit)
                    .await
            }
            _ => {
                self.listing(state)?
                    .scan(state, projection, filters, limit)
                    .await
            }
        }
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match self.table.format {
            // Delta inserts are intercepted by the engine and committed through deltalake.
            TableFormat::Delta => Err(DataFusionError::Internal(
                "Delta inserts go through the engine".to_owned(),
            )),
            // The catalog lists these tables' partitions; files written outside a crawl would
            // not be read until the next one.
            _ if self.table.partitions.is_some() => Err(DataFusionError::External(Box::new(
                Error::not_supported(format!(
                    "INSERT into \"{}\", whose partitions a crawler maintains (write the files, \
                     then RUN CRAWLER)",
                    self.table.table_ref()
                )),
            ))),
            _ => {
                self.listing(state)?
                    .insert_into(state, input, insert_op)
                    .await
            }
        }
    }
}

impl LakeTableProvider {
    /// The data files a full scan of the table reads: how many, and their bytes. Delta
    /// tables count the files of their current snapshot (not older versions' files still in
    /// the folder), listings the files they list.
    pub(crate) async fn data_files(&self, state: &dyn Session) -> DfResult<(u64, u64)> {
        use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
        use datafusion::datasource::physical_plan::FileScanConfig;
        use datafusion::datasource::source::DataSourceExec;

        // the files only: no footers read for statistics
        let plan = match state
            .as_any()
            .downcast_ref::<datafusion::execution::SessionState>()
        {
            Some(state) => {
                let mut state = state.clone();
                state
                    .config_mut()
                    .options_mut()
                    .execution
                    .collect_statistics = false;
                self.scan(&state, None, &[], None).await?
            }
            None => self.scan(state, None, &[], None).await?,
        };
        let mut files = std::collections::HashMap::new();
        plan.apply(|node| {
            if let Some(exec) = node.downcast_ref::<DataSourceExec>()
                && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
            {
                for file in config.file_groups.iter().flat_map(|g| g.files()) {
                    files.insert(file.object_meta.location.clone(), file.object_meta.size);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok((files.len() as u64, files.values().sum()))
    }
}

/// `system.table_sizes`: each table's data files and their bytes (psql's `\dt+`,
/// `pg_table_size` and the other size functions read it). Each scan looks at every table,
/// through the cached listings and Delta snapshots; a table that cannot be read has NULL
/// counts and the reason in `error`.
#[derive(Debug)]
pub(crate) struct TableSizes {
    catalog: Arc<tarn_catalog::Catalog>,
    ingester: Arc<Ingester>,
    metadata_ttl: Duration,
}

impl TableSizes {
    pub(crate) fn new(
        catalog: Arc<tarn_catalog::Catalog>,
        ingester: Arc<Ingester>,
        metadata_ttl: Duration,
    ) -> Self {
        Self {
            catalog,
            ingester,
            metadata_ttl,
        }
    }

    pub(crate) fn catalog(&self) -> &Arc<tarn_catalog::Catalog> {
        &self.catalog
    }

    /// `table`'s data files: how many, and their bytes (see
    /// [`LakeTableProvider::data_files`]).
    pub(crate) async fn of(&self, table: &Arc<Table>, state: &dyn Session) -> DfResult<(u64, u64)> {
        LakeTableProvider::new(
            Arc::clone(table),
            Arc::clone(&self.ingester),
            self.metadata_ttl,
        )
        .data_files(state)
        .await
    }
}

#[async_trait]
impl TableProvider for TableSizes {
    fn schema(&self) -> SchemaRef {
        use arrow_schema::{DataType, Field, Schema};
        Arc::new(Schema::new(vec![
            Field::new("database", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("files", DataType::Int64, true),
            Field::new("bytes", DataType::Int64, true),
            Field::new("error", DataType::Utf8, true),
        ]))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        use arrow::array::{Int64Array, RecordBatch, StringArray};
        let snapshot = self.catalog.snapshot();
        let (mut databases, mut names, mut files, mut bytes, mut errors) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for table in snapshot.tables.values() {
            databases.push(table.database.clone());
            names.push(table.name.clone());
            match self.of(table, state).await {
                Ok((n, b)) => {
                    files.push(i64::try_from(n).ok());
                    bytes.push(i64::try_from(b).ok());
                    errors.push(None);
                }
                Err(e) => {
                    files.push(None);
                    bytes.push(None);
                    errors.push(Some(Error::from(e).to_string()));
                }
            }
        }
        let batch = RecordBatch::try_new(
            self.schema(),
            vec![
                Arc::new(StringArray::from(databases)),
                Arc::new(StringArray::from(names)),
                Arc::new(Int64Array::from(files)),
                Arc::new(Int64Array::from(bytes)),
                Arc::new(StringArray::from(errors)),
            ],
        )?;
        datafusion::datasource::MemTable::try_new(self.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
