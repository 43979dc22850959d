//! DataFusion's view of tarn's object stores, and the `system` schema that reports on them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::MemTable;
use datafusion::datasource::TableProvider;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use object_store::ObjectStore;
use tarn_catalog::ObjectStores;
use url::Url;

/// The schema of tarn's own tables.
pub const SYSTEM_SCHEMA: &str = "system";

/// Serves DataFusion's store lookups from tarn's registry. Stores DataFusion or deltalake
/// register themselves (deltalake registers one per table scan) are kept beside it.
#[derive(Debug)]
pub(crate) struct StoreRegistry {
    stores: Arc<ObjectStores>,
    registered: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    pub(crate) fn new(stores: Arc<ObjectStores>) -> Self {
        Self {
            stores,
            registered: RwLock::default(),
        }
    }
}

fn key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.authority())
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key(url), store)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if let Some(store) = self
            .registered
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(url))
        {
            return Ok(Arc::clone(store));
        }
        self.stores
            .store(url)
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// The `system` schema: `system.object_store_requests`.
pub(crate) fn system_schema(stores: &Arc<ObjectStores>) -> DfResult<Arc<dyn SchemaProvider>> {
    let schema = MemorySchemaProvider::new();
    schema.register_table(
        "object_store_requests".to_owned(),
        Arc::new(RequestsTable {
            stores: Arc::clone(stores),
        }),
    )?;
    Ok(Arc::new(schema))
}

/// Requests each object store has served since start-up, by operation: read before and after
/// a query to see what the query cost (and whether the caches answered it).
#[derive(Debug)]
struct RequestsTable {
    stores: Arc<ObjectStores>,
}

fn requests_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("store", DataType::Utf8, false),
        Field::new("operation", DataType::Utf8, false),
        Field::new("requests", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
    ]))
}

#[async_trait]
impl TableProvider for RequestsTable {
    fn schema(&self) -> SchemaRef {
        requests_schema()
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
        let counts = self.stores.request_counts();
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let batch = RecordBatch::try_new(
            requests_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    counts.iter().map(|c| c.store.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    counts.iter().map(|c| c.operation),
                )),
                Arc::new(Int64Array::from_iter_values(
                    counts.iter().map(|c| as_i64(c.requests)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    counts.iter().map(|c| as_i64(c.bytes)),
                )),
            ],
        )?;
        MemTable::try_new(requests_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
