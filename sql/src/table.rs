//! The table provider for every lake table: Delta tables and Parquet / CSV / JSON listings.
//!
//! Creating the provider does no IO: the schema comes from the catalog. The Delta log is read,
//! and the listing options built, when the table is scanned.

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::config::{ConfigFileType, TableOptions};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tarn_catalog::{Table, TableFormat};
use tarn_ingest::Ingester;
use url::Url;

use crate::error::Error;

/// A catalog table, readable by DataFusion.
#[derive(Debug)]
pub(crate) struct LakeTableProvider {
    table: Arc<Table>,
    ingester: Arc<Ingester>,
    metadata_ttl: Duration,
}

impl LakeTableProvider {
    pub(crate) fn new(table: Arc<Table>, ingester: Arc<Ingester>, metadata_ttl: Duration) -> Self {
        Self {
            table,
            ingester,
            metadata_ttl,
        }
    }

    fn listing(&self, state: &dyn Session) -> DfResult<ListingTable> {
        listing_table(state, &self.table)
    }

    async fn delta(&self, state: &dyn Session) -> DfResult<Arc<dyn TableProvider>> {
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
        table.table_provider().await.map_err(|e| {
            DataFusionError::External(Box::new(Error::Location {
                location: location.clone(),
                reason: format!("cannot be read as a Delta table: {e}"),
            }))
        })
    }
}

/// Tells apart tables created at the same location (dropped and created again): the time the
/// catalog entry was created.
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

/// The listing table for a Parquet / CSV / JSON catalog table. No IO.
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
    ListingTable::try_new(config)
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
            TableFormat::Delta => {
                self.delta(state)
                    .await?
                    .scan(state, projection, filters, limit)
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
            _ => {
                self.listing(state)?
                    .insert_into(state, input, insert_op)
                    .await
            }
        }
    }
}
