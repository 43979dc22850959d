//! DataFusion's view of the tarn catalog: one catalog (`tarn`) whose schemas are tarn databases.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::TableProvider;
use tarn_catalog::{Catalog, CatalogSnapshot};
use tarn_ingest::Ingester;
use tarn_ingest::delivery::Deliveries;

use crate::table::LakeTableProvider;
use crate::view::LakeViewProvider;

/// The `tarn` catalog. Databases come from the tarn catalog's current snapshot; system schemas
/// (`pg_catalog`, registered once when the engine builds its base session state) live beside
/// them, in memory.
#[derive(Debug)]
pub(crate) struct LakeCatalogProvider {
    catalog: Arc<Catalog>,
    ingester: Arc<Ingester>,
    metadata_ttl: Duration,
    deliveries: Option<Arc<Deliveries>>,
    system: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
}

impl LakeCatalogProvider {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        ingester: Arc<Ingester>,
        metadata_ttl: Duration,
        deliveries: Option<Arc<Deliveries>>,
    ) -> Self {
        Self {
            catalog,
            ingester,
            metadata_ttl,
            deliveries,
            system: RwLock::new(HashMap::new()),
        }
    }

    fn system(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<dyn SchemaProvider>>> {
        self.system.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl CatalogProvider for LakeCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.catalog.snapshot().databases.keys().cloned().collect();
        names.extend(self.system().keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.system().get(name) {
            return Some(Arc::clone(s));
        }
        let snapshot = self.catalog.snapshot();
        snapshot.database(name)?;
        Some(Arc::new(LakeSchemaProvider {
            snapshot,
            database: name.to_owned(),
            ingester: Arc::clone(&self.ingester),
            metadata_ttl: self.metadata_ttl,
            deliveries: self.deliveries.clone(),
        }))
    }

    /// Only system schemas are registered this way; databases are created through the engine,
    /// which persists them.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        if self.catalog.snapshot().database(name).is_some() {
            return Err(DataFusionError::Plan(format!(
                "database \"{name}\" already exists"
            )));
        }
        let mut system = self.system.write().unwrap_or_else(|e| e.into_inner());
        Ok(system.insert(name.to_owned(), schema))
    }
}

/// One tarn database, as of one catalog snapshot.
#[derive(Debug)]
pub(crate) struct LakeSchemaProvider {
    snapshot: Arc<CatalogSnapshot>,
    database: String,
    ingester: Arc<Ingester>,
    metadata_ttl: Duration,
    deliveries: Option<Arc<Deliveries>>,
}

#[async_trait]
impl SchemaProvider for LakeSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .snapshot
            .tables_in(&self.database)
            .map(|t| t.name.clone())
            .chain(
                self.snapshot
                    .views_in(&self.database)
                    .map(|v| v.name.clone()),
            )
            .collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = self.snapshot.view(&self.database, name) {
            return Ok(Some(Arc::new(LakeViewProvider::new(Arc::clone(view)))));
        }
        Ok(self.snapshot.table(&self.database, name).map(|t| {
            Arc::new(
                LakeTableProvider::new(
                    Arc::clone(t),
                    Arc::clone(&self.ingester),
                    self.metadata_ttl,
                )
                .with_deliveries(self.deliveries.clone()),
            ) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.snapshot.table(&self.database, name).is_some()
            || self.snapshot.view(&self.database, name).is_some()
    }
}
