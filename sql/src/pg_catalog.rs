//! tarn's `pg_catalog`: `datafusion-pg-catalog`'s, with the tables clients reflect keys and
//! indexes from made truthful and usable.
//! - `pg_constraint` and `pg_index` are empty: tarn has no constraints and no indexes. The
//!   crate fills them with rows copied from a PostgreSQL system catalog, whose OIDs name
//!   nothing in tarn, and holds their array columns (`conkey`, `indkey`, …) as text, so
//!   `unnest(conkey)`, `indkey[1]` — SQLAlchemy's `get_pk_constraint` / `get_indexes`,
//!   pgjdbc's `getPrimaryKeys` / `getIndexInfo` — failed to plan. Here they are arrays.
//! - `pg_namespace` has `information_schema`, which tarn serves and Postgres lists.
//! - `pg_attribute.atttypid` is an `oid`, not a `regtype`, to clients, as in Postgres.
//! - `pg_attribute.atttypmod` carries a numeric column's precision and scale, as
//!   `((precision << 16) | scale) + 4` (`format_type` then says `numeric(15,2)`, pgjdbc's
//!   `getColumns` the column size, SQLAlchemy `NUMERIC(15, 2)`); the crate writes -1.
//! - `pg_roles` lists the role a Postgres connection logged in as (psql's `\du`), which the
//!   crate's does not know: tarn has no other roles. It can do all a superuser can.
//! - `pg_proc`'s `proallargtypes`, `proargmodes` and `proargnames` are arrays, as
//!   Postgres's are (pgcli's function list, Metabase's routine sync); the crate's are text.
//! - `pg_settings` lists the settings of the Postgres connection asking, with their values
//!   (pgjdbc reads `max_index_keys` before it sends `getImportedKeys`); the crate's has
//!   one row.
//! - `pg_class` has `relacl` and `reloptions` (NULL: default privileges, no storage
//!   options), which SQLAlchemy's index reflection reads.

use std::sync::Arc;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, SchemaRef};
use datafusion::catalog::{
    CatalogProviderList, MemTable, SchemaProvider, Session, TableProvider, view::ViewTable,
};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::functions::expr_fn::{btrim, replace};
use datafusion::functions_nested::expr_fn::string_to_array;
use datafusion::logical_expr::TableType;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, col, lit};
use datafusion::physical_plan::{ExecutionPlan, collect};

/// The OID Postgres gives its bootstrap superuser, and the crate gives every object's owner
/// (`relowner`, `nspowner`).
const OWNER_OID: i32 = 10;

/// The OID PostgreSQL 17 gives `information_schema` (it is assigned at initdb, not fixed).
const INFORMATION_SCHEMA_OID: i32 = 13_183;

/// Columns the crate holds as text that are arrays: (column, element type).
type ArrayColumns = &'static [(&'static str, DataType)];

/// The empty tables, with the array columns the crate holds as text:
/// (table, separator of the crate's text, columns).
const ARRAY_COLUMNS: &[(&str, &str, ArrayColumns)] = &[
    (
        "pg_constraint",
        ", ",
        &[
            ("conkey", DataType::Int16),
            ("confkey", DataType::Int16),
            ("conpfeqop", DataType::Int32),
            ("conppeqop", DataType::Int32),
            ("conffeqop", DataType::Int32),
            ("confdelsetcols", DataType::Int16),
            ("conexclop", DataType::Int32),
        ],
    ),
    (
        "pg_index",
        " ",
        &[
            ("indkey", DataType::Int16),
            ("indcollation", DataType::Int32),
            ("indclass", DataType::Int32),
            ("indoption", DataType::Int16),
        ],
    ),
];

/// The crate's `pg_catalog` schema with the tables above replaced.
#[derive(Debug)]
pub(crate) struct TarnPgCatalog {
    inner: Arc<dyn SchemaProvider>,
    /// Where the tables `pg_attribute` describes are.
    catalogs: Arc<dyn CatalogProviderList>,
}

impl TarnPgCatalog {
    pub(crate) fn new(
        inner: Arc<dyn SchemaProvider>,
        catalogs: Arc<dyn CatalogProviderList>,
    ) -> Self {
        Self { inner, catalogs }
    }
}

#[async_trait]
impl SchemaProvider for TarnPgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if name == "pg_namespace" {
            return with_information_schema(table).map(Some);
        }
        if name == "pg_attribute" {
            return Ok(Some(Arc::new(PgAttribute {
                attributes: table,
                pg_catalog: Arc::clone(&self.inner),
                catalogs: Arc::clone(&self.catalogs),
            })));
        }
        if name == "pg_roles" {
            return Ok(Some(Arc::new(PgRoles { roles: table })));
        }
        if name == "pg_views" {
            return Ok(Some(Arc::new(PgViews {
                views: table,
                catalogs: Arc::clone(&self.catalogs),
            })));
        }
        if name == "pg_settings" {
            return Ok(Some(Arc::new(PgSettingsTable { crate_rows: table })));
        }
        if name == "pg_class" {
            return with_null_text_arrays(&name, table, &["relacl", "reloptions"]).map(Some);
        }
        if name == "pg_proc" {
            return with_arrays(&name, table, ", ", PROC_ARRAY_COLUMNS, true).map(Some);
        }
        match ARRAY_COLUMNS.iter().find(|(t, ..)| *t == name) {
            Some((_, separator, columns)) => {
                with_arrays(&name, table, separator, columns, false).map(Some)
            }
            None => Ok(Some(table)),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `pg_proc`'s array columns, which the crate holds as Python-like text (`[25, 18]`,
/// `['o', 'o']`). `proargtypes` is an `oidvector`, which Postgres writes as `23 23`, and
/// pgjdbc splits at spaces: it stays text.
const PROC_ARRAY_COLUMNS: ArrayColumns = &[
    ("proallargtypes", DataType::Int32),
    ("proargmodes", DataType::Utf8),
    ("proargnames", DataType::Utf8),
];

/// `table` with `columns` parsed from text into arrays, and its rows when `rows`
/// (else none).
fn with_arrays(
    name: &str,
    table: Arc<dyn TableProvider>,
    separator: &str,
    columns: &[(&str, DataType)],
    rows: bool,
) -> Result<Arc<dyn TableProvider>> {
    let schema = table.schema();
    let exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|field| {
            let column = col(format!("\"{}\"", field.name()));
            match columns.iter().find(|(c, _)| c == field.name()) {
                Some((_, element)) => cast(
                    string_to_array(
                        btrim(vec![
                            // text items are quoted: `['o', 'o']`
                            match element {
                                DataType::Utf8 => replace(column, lit("'"), lit("")),
                                _ => column,
                            },
                            lit("[]{}"),
                        ]),
                        lit(separator),
                        lit(ScalarValue::Utf8(None)),
                    ),
                    DataType::List(Arc::new(Field::new_list_field(element.clone(), true))),
                )
                .alias(field.name()),
                None => column,
            }
        })
        .collect();
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?
        .filter(lit(rows))?
        .project(exprs)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// `table` with `columns` added, NULL text arrays, where it lacks them.
fn with_null_text_arrays(
    name: &str,
    table: Arc<dyn TableProvider>,
    columns: &[&str],
) -> Result<Arc<dyn TableProvider>> {
    let schema = table.schema();
    let missing: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| schema.field_with_name(c).is_err())
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    let text_array = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|field| col(format!("\"{}\"", field.name())))
        .chain(
            missing
                .iter()
                .map(|c| cast(lit(ScalarValue::Null), text_array.clone()).alias(*c)),
        )
        .collect();
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?
        .project(exprs)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// The crate's `pg_namespace` and a row for `information_schema`.
fn with_information_schema(table: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
    let schema = table.schema();
    let row: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|field| {
            let value = match field.name().as_str() {
                "oid" => lit(INFORMATION_SCHEMA_OID),
                "nspname" => lit("information_schema"),
                "nspowner" => lit(OWNER_OID),
                _ => lit(ScalarValue::try_from(field.data_type())?),
            };
            Ok(cast(value, field.data_type().clone()).alias(field.name()))
        })
        .collect::<Result<_>>()?;
    let extra = LogicalPlanBuilder::empty(true).project(row)?.build()?;
    let plan = LogicalPlanBuilder::scan("pg_namespace", provider_as_source(table), None)?
        .union(extra)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// The OID of Postgres's `numeric`.
const NUMERIC_OID: i32 = 1700;

/// The crate's `pg_attribute`, with numeric typmods.
#[derive(Debug)]
struct PgAttribute {
    attributes: Arc<dyn TableProvider>,
    pg_catalog: Arc<dyn SchemaProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
}

impl PgAttribute {
    /// The attributes with each numeric column's typmod from its table's schema.
    async fn with_typmods(&self, state: &dyn Session, batch: &RecordBatch) -> Result<RecordBatch> {
        let typids = int32s(batch, "pg_attribute", "atttypid")?;
        let relids = int32s(batch, "pg_attribute", "attrelid")?;
        let names = texts(batch, "pg_attribute", "attname")?;
        let typmods = int32s(batch, "pg_attribute", "atttypmod")?;
        let numeric: Vec<usize> = (0..batch.num_rows())
            .filter(|&i| typids.is_valid(i) && typids.value(i) == NUMERIC_OID)
            .collect();
        if numeric.is_empty() {
            return Ok(batch.clone());
        }
        // attrelid -> (schema, table)
        let relations = relation_names(&self.pg_catalog, state).await?;
        let mut out: Vec<Option<i32>> = typmods.iter().collect();
        let mut schemas: HashMap<i32, Option<SchemaRef>> = HashMap::new();
        for i in numeric {
            let relid = relids.value(i);
            let schema = match schemas.entry(relid) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(match relations.get(&relid) {
                    Some((space, table)) => self.table_schema(space, table).await?,
                    None => None,
                }),
            };
            let field = schema
                .as_ref()
                .and_then(|s| s.field_with_name(names.value(i)).ok().cloned());
            if let Some(field) = field
                && let Some(typmod) = numeric_typmod(field.data_type())
            {
                out[i] = Some(typmod);
            }
        }
        let index = batch.schema().index_of("atttypmod")?;
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(Int32Array::from(out));
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }

    /// The schema of table `schema.table`, looked up in every catalog, as the crate does.
    async fn table_schema(&self, schema: &str, table: &str) -> Result<Option<SchemaRef>> {
        for catalog in self.catalogs.catalog_names() {
            if let Some(provider) = self
                .catalogs
                .catalog(&catalog)
                .and_then(|c| c.schema(schema))
                && let Some(t) = provider.table(table).await?
            {
                return Ok(Some(t.schema()));
            }
        }
        Ok(None)
    }
}

/// Every relation's (schema, name) by its OID, through `pg_class` and `pg_namespace` of
/// `pg_catalog`.
async fn relation_names(
    pg_catalog: &Arc<dyn SchemaProvider>,
    state: &dyn Session,
) -> Result<HashMap<i32, (String, String)>> {
    let rows = |name: &'static str| async move {
        let Some(table) = pg_catalog.table(name).await? else {
            return plan_err!("pg_catalog.{name} is missing");
        };
        all_rows(table.as_ref(), state).await
    };
    let mut namespaces = HashMap::new();
    for b in rows("pg_namespace").await? {
        let (oids, names) = (
            int32s(&b, "pg_namespace", "oid")?,
            texts(&b, "pg_namespace", "nspname")?,
        );
        for i in 0..b.num_rows() {
            namespaces.insert(oids.value(i), names.value(i).to_owned());
        }
    }
    let mut relations = HashMap::new();
    for b in rows("pg_class").await? {
        let oids = int32s(&b, "pg_class", "oid")?;
        let names = texts(&b, "pg_class", "relname")?;
        let spaces = int32s(&b, "pg_class", "relnamespace")?;
        for i in 0..b.num_rows() {
            if let Some(space) = namespaces.get(&spaces.value(i)) {
                relations.insert(oids.value(i), (space.clone(), names.value(i).to_owned()));
            }
        }
    }
    Ok(relations)
}

/// Every relation's (schema, name) by its OID, in the `pg_catalog` of `state`.
pub(crate) async fn relations_in(
    state: &datafusion::execution::SessionState,
) -> Result<HashMap<i32, (String, String)>> {
    let pg_catalog = state
        .catalog_list()
        .catalog(crate::engine::CATALOG_NAME)
        .and_then(|c| c.schema("pg_catalog"))
        .ok_or_else(|| DataFusionError::Plan("pg_catalog is missing".to_owned()))?;
    relation_names(&pg_catalog, state).await
}

/// Every row of `table`: the crate's catalog tables are built whole on each scan.
async fn all_rows(table: &dyn TableProvider, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

/// Column `name` of a batch of the crate's `table`, an oid (int4) column.
fn int32s<'a>(batch: &'a RecordBatch, table: &str, name: &str) -> Result<&'a Int32Array> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| DataFusionError::Plan(format!("{table}.{name} is missing or not int4")))
}

/// Column `name` of a batch of the crate's `table`, a text column.
fn texts<'a>(batch: &'a RecordBatch, table: &str, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| DataFusionError::Plan(format!("{table}.{name} is missing or not text")))
}

/// Postgres's typmod of a numeric of `data_type`'s precision and scale: what
/// `pg_attribute.atttypmod` and a RowDescription carry.
pub fn numeric_typmod(data_type: &DataType) -> Option<i32> {
    let (precision, scale) = match data_type {
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => (*p, *s),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => (*p, *s),
        _ => return None,
    };
    // Postgres has no negative scale
    let scale = u16::try_from(scale).ok()?;
    Some(((i32::from(precision) << 16) | i32::from(scale)) + 4)
}

/// The crate's `pg.oid_alias` field metadata: how the type of an Int32 catalog column is
/// described to clients.
const OID_ALIAS_KEY: &str = "pg.oid_alias";

/// The crate's type planner, with a cast to `oid` (or `oid[]`) saying it is one: the
/// crate plans it as a plain Int32, so `$1::oid[]` (asyncpg's type introspection) was
/// described to the client as an `int4[]`, a type asyncpg must itself introspect.
#[derive(Debug)]
pub(crate) struct OidCasts;

impl datafusion::logical_expr::planner::TypePlanner for OidCasts {
    fn plan_type_field(
        &self,
        sql_type: &datafusion::sql::sqlparser::ast::DataType,
    ) -> Result<Option<datafusion::arrow::datatypes::FieldRef>> {
        use datafusion::sql::sqlparser::ast::DataType as SqlType;
        let planned = datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner
            .plan_type_field(sql_type)?;
        let is_oid = matches!(sql_type, SqlType::Custom(name, args)
            if args.is_empty()
                && name.0.last().and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("oid")));
        Ok(match planned {
            Some(field) if is_oid && field.data_type() == &DataType::Int32 => {
                let mut metadata = field.metadata().clone();
                metadata.insert(OID_ALIAS_KEY.to_owned(), "oid".to_owned());
                Some(Arc::new(field.as_ref().clone().with_metadata(metadata)))
            }
            planned => planned,
        })
    }
}

#[async_trait]
impl TableProvider for PgAttribute {
    /// The crate's schema, with `atttypid` an `oid` as in Postgres (the crate marks it a
    /// `regtype`, and clients read the column's type from the RowDescription).
    fn schema(&self) -> SchemaRef {
        let schema = self.attributes.schema();
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let field = f.as_ref().clone();
                if field.name() != "atttypid" {
                    return field;
                }
                let mut metadata = field.metadata().clone();
                metadata.insert(OID_ALIAS_KEY.to_owned(), "oid".to_owned());
                field.with_metadata(metadata)
            })
            .collect();
        Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
            fields,
            schema.metadata().clone(),
        ))
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let mut batches = Vec::new();
        for batch in all_rows(self.attributes.as_ref(), state).await? {
            let batch = self.with_typmods(state, &batch).await?;
            batches.push(RecordBatch::try_new(
                Arc::clone(&schema),
                batch.columns().to_vec(),
            )?);
        }
        MemTable::try_new(self.schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// The user a session logged in as over the Postgres wire: its role in `pg_roles`.
#[derive(Debug)]
pub(crate) struct LoginUser(pub(crate) String);

/// The crate's `pg_roles` (empty: tarn passes it no roles) and the session's login role.
#[derive(Debug)]
struct PgRoles {
    roles: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for PgRoles {
    fn schema(&self) -> SchemaRef {
        self.roles.schema()
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut batches = all_rows(self.roles.as_ref(), state).await?;
        if let Some(user) = state.config().get_extension::<LoginUser>() {
            batches.push(login_role(&self.schema(), &user.0)?);
        }
        MemTable::try_new(self.schema(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `pg_views`: every view of every schema, with its query (`pg_get_viewdef` reads it).
/// tarn's own views (`system.*`) are computed by tarn, not by a query: their definition is
/// NULL.
#[derive(Debug)]
struct PgViews {
    /// The crate's (empty) `pg_views`, for its columns.
    views: Arc<dyn TableProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
}

#[async_trait]
impl TableProvider for PgViews {
    fn schema(&self) -> SchemaRef {
        self.views.schema()
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (mut schemas, mut names, mut definitions) = (Vec::new(), Vec::new(), Vec::new());
        for catalog in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for name in schema.table_names() {
                    let Some(view) = schema.table(&name).await? else {
                        continue;
                    };
                    if view.table_type() != TableType::View {
                        continue;
                    }
                    schemas.push(schema_name.clone());
                    names.push(name);
                    definitions.push(view.get_table_definition().map(str::to_owned));
                }
            }
        }
        let owners = vec!["postgres"; names.len()];
        let batch = RecordBatch::try_new(
            self.schema(),
            vec![
                Arc::new(StringArray::from(schemas)),
                Arc::new(StringArray::from(names)),
                Arc::new(StringArray::from(owners)),
                Arc::new(StringArray::from(definitions)),
            ],
        )?;
        MemTable::try_new(self.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `user`'s row of `pg_roles`: a login role that may do anything, as every tarn user may.
fn login_role(schema: &SchemaRef, user: &str) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let value = match field.name().as_str() {
                "rolname" => ScalarValue::Utf8(Some(user.to_owned())),
                "rolsuper" | "rolinherit" | "rolcreaterole" | "rolcreatedb" | "rolcanlogin"
                | "rolbypassrls" => ScalarValue::Boolean(Some(true)),
                "rolreplication" => ScalarValue::Boolean(Some(false)),
                "rolconnlimit" => ScalarValue::Int32(Some(-1)),
                "rolpassword" => ScalarValue::Utf8(Some("********".to_owned())),
                "oid" => ScalarValue::Int32(Some(OWNER_OID)),
                _ => ScalarValue::try_from(field.data_type())?,
            };
            value.cast_to(field.data_type())?.to_array()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// A Postgres setting as `pg_settings` shows it.
#[derive(Debug, Clone)]
pub struct PgSetting {
    /// As Postgres spells it (`DateStyle`).
    pub name: String,
    pub setting: String,
    pub description: &'static str,
    /// `bool`, `integer`, `enum` or `string`.
    pub vartype: &'static str,
    /// `user` (a session may `SET` it) or `internal` (fixed).
    pub context: &'static str,
}

/// The settings of a session's Postgres connection, for `pg_settings`.
#[derive(Debug)]
pub(crate) struct PgSettings(pub(crate) Vec<PgSetting>);

/// `pg_settings`: the connection's settings; the crate's one row where the session has no
/// Postgres connection (Flight SQL, in-process).
#[derive(Debug)]
struct PgSettingsTable {
    crate_rows: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for PgSettingsTable {
    fn schema(&self) -> SchemaRef {
        self.crate_rows.schema()
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(settings) = state.config().get_extension::<PgSettings>() else {
            return self
                .crate_rows
                .scan(state, projection, filters, limit)
                .await;
        };
        let schema = self.schema();
        let rows = settings.0.len();
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let texts = |f: &dyn Fn(&PgSetting) -> Option<&str>| -> Arc<dyn Array> {
                    Arc::new(StringArray::from_iter(settings.0.iter().map(f)))
                };
                let column: Arc<dyn Array> = match field.name().as_str() {
                    "name" => texts(&|s| Some(s.name.as_str())),
                    "setting" | "reset_val" | "boot_val" => texts(&|s| Some(s.setting.as_str())),
                    "short_desc" => texts(&|s| Some(s.description)),
                    "vartype" => texts(&|s| Some(s.vartype)),
                    "context" => texts(&|s| Some(s.context)),
                    "pending_restart" => {
                        Arc::new(datafusion::arrow::array::BooleanArray::from(vec![
                            false;
                            rows
                        ]))
                    }
                    _ => datafusion::arrow::array::new_null_array(field.data_type(), rows),
                };
                datafusion::arrow::compute::cast(&column, field.data_type())
                    .map_err(DataFusionError::from)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmods_are_postgres_typmods() {
        // SELECT atttypmod FROM pg_attribute for numeric(15,2), numeric(38,0) in PostgreSQL 16
        assert_eq!(numeric_typmod(&DataType::Decimal128(15, 2)), Some(983_046));
        assert_eq!(
            numeric_typmod(&DataType::Decimal128(38, 0)),
            Some(2_490_372)
        );
        assert_eq!(numeric_typmod(&DataType::Decimal128(10, -2)), None);
        assert_eq!(numeric_typmod(&DataType::Int64), None);
    }
}

/// `pg_table_size(oid)`, `pg_relation_size(oid [, fork])` and `pg_total_relation_size(oid)`:
/// the bytes of a lake table's data files, as `system.table_sizes` counts them (tarn tables
/// have no indexes, TOAST or other forks, so the three agree). 0 for a relation with no
/// files of its own (a view, a catalog table) and for a fork other than `main`; NULL for an
/// OID that names no relation, or a table that cannot be read now. Only the tables asked
/// about are looked at. (The crate's answered 0 always.)
#[derive(Debug)]
pub(crate) struct RelationSize {
    name: &'static str,
    signature: datafusion::logical_expr::Signature,
    /// A copy of the engine's base state: its catalogs (`pg_class`) and object stores.
    state: datafusion::execution::SessionState,
    /// What `system.table_sizes` reads.
    sizes: Arc<crate::table::TableSizes>,
}

impl PartialEq for RelationSize {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RelationSize {}

impl std::hash::Hash for RelationSize {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl RelationSize {
    /// The three functions.
    pub(crate) fn udfs(
        state: &datafusion::execution::SessionState,
        sizes: &Arc<crate::table::TableSizes>,
    ) -> Vec<datafusion::logical_expr::ScalarUDF> {
        use datafusion::logical_expr::{Signature, TypeSignature, Volatility};
        [
            "pg_table_size",
            "pg_relation_size",
            "pg_total_relation_size",
        ]
        .into_iter()
        .map(|name| {
            let arities = if name == "pg_relation_size" {
                vec![TypeSignature::Any(1), TypeSignature::Any(2)]
            } else {
                vec![TypeSignature::Any(1)]
            };
            let udf = Self {
                name,
                signature: Signature::one_of(arities, Volatility::Volatile),
                state: state.clone(),
                sizes: Arc::clone(sizes),
            };
            datafusion::logical_expr::ScalarUDF::new_from_impl(udf)
        })
        .collect()
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for RelationSize {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    /// The sizes are looked up in the store, which DataFusion's scalar functions cannot
    /// wait for (its async functions work only in a select list, WHERE or an aggregate, not
    /// in `ORDER BY pg_total_relation_size(oid) DESC`): the query thread waits, handing its
    /// other work to the pool meanwhile. Only a multi-threaded runtime allows that; tarn's
    /// query pool is one.
    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(self.sizes(args)))
            }
            _ => datafusion::common::not_impl_err!("{} outside tarn's query threads", self.name),
        }
    }
}

impl RelationSize {
    async fn sizes(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::array::Int64Builder;
        use datafusion::arrow::compute::cast as cast_array;
        use datafusion::arrow::datatypes::Int64Type;
        use datafusion::logical_expr::ColumnarValue;

        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let oids = cast_array(&arrays[0], &DataType::Int64)?;
        let oids = oids.as_primitive::<Int64Type>();
        let forks = arrays
            .get(1)
            .map(|a| cast_array(a, &DataType::Utf8))
            .transpose()?;
        let forks = forks.as_ref().map(|f| f.as_string::<i32>());
        let relations = relations_in(&self.state).await?;
        let snapshot = self.sizes.catalog().snapshot();
        let mut sizes: HashMap<(String, String), Option<i64>> = HashMap::new();
        let mut out = Int64Builder::with_capacity(oids.len());
        for i in 0..oids.len() {
            if oids.is_null(i) || forks.is_some_and(|f| f.is_null(i)) {
                out.append_null();
                continue;
            }
            // tarn tables have only the main fork
            if forks.is_some_and(|f| f.value(i) != "main") {
                out.append_value(0);
                continue;
            }
            let relation = i32::try_from(oids.value(i))
                .ok()
                .and_then(|oid| relations.get(&oid));
            let Some((schema, name)) = relation else {
                out.append_null();
                continue;
            };
            let Some(table) = snapshot.table(schema, name) else {
                out.append_value(0);
                continue;
            };
            let key = (schema.clone(), name.clone());
            let size = match sizes.entry(key) {
                Entry::Occupied(known) => *known.get(),
                Entry::Vacant(new) => {
                    let size = self
                        .sizes
                        .of(table, &self.state)
                        .await
                        .ok()
                        .and_then(|(_, bytes)| i64::try_from(bytes).ok());
                    *new.insert(size)
                }
            };
            out.append_option(size);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
