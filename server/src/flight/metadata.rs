//! The Flight SQL metadata calls JDBC, ADBC and DBeaver make: catalogs, schemas, tables (with
//! their Arrow schemas), table types, server facts (`GetSqlInfo`) and the SQL types tarn
//! knows (`GetXdbcTypeInfo`). Keys: tarn tables have none, and the answers say so.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo,
    XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, Nullable, Searchable, SqlInfo, SqlNullOrdering,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType,
};
use tarn_sql::{CATALOG_NAME, SYSTEM_SCHEMA, Session};
use tonic::Status;

/// Table types as `GetTables` reports them.
pub(crate) const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "SYSTEM TABLE"];

/// Schemas whose tables are the system's own.
fn is_system_schema(schema: &str) -> bool {
    schema == SYSTEM_SCHEMA || schema == "pg_catalog" || schema == "information_schema"
}

pub(crate) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "tarn");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    // Unquoted identifiers are folded to lower case.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        SupportedSqlGrammar::SqlCoreGrammar as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, true);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlMaxColumnNameLength, 63i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 63i64);
    // The builder accepts every value above; a mistake here is a programming error caught
    // by the first test that asks for SQL info.
    b.build().unwrap_or_else(|e| panic!("SQL info: {e}"))
});

fn xdbc(
    name: &str,
    data_type: XdbcDataType,
    column_size: Option<i32>,
    quoted: bool,
    unsigned: Option<bool>,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_owned(),
        data_type,
        column_size,
        literal_prefix: quoted.then(|| "'".to_owned()),
        literal_suffix: quoted.then(|| "'".to_owned()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: quoted,
        searchable: Searchable::Full,
        unsigned_attribute: unsigned,
        fixed_prec_scale: false,
        auto_increment: unsigned.map(|_| false),
        local_type_name: Some(name.to_owned()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: unsigned.map(|_| 10),
        interval_precision: None,
    }
}

pub(crate) static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    use XdbcDataType as X;
    let mut b = XdbcTypeInfoDataBuilder::new();
    // Sorted by data type, as JDBC's getTypeInfo is.
    let mut types = vec![
        xdbc("BIGINT", X::XdbcBigint, Some(19), false, Some(false)),
        xdbc("BYTEA", X::XdbcBinary, None, true, None),
        xdbc("CHAR", X::XdbcChar, None, true, None),
        xdbc("DECIMAL", X::XdbcDecimal, Some(38), false, Some(false)),
        xdbc("INTEGER", X::XdbcInteger, Some(10), false, Some(false)),
        xdbc("SMALLINT", X::XdbcSmallint, Some(5), false, Some(false)),
        xdbc("REAL", X::XdbcFloat, Some(24), false, Some(false)),
        xdbc(
            "DOUBLE PRECISION",
            X::XdbcDouble,
            Some(53),
            false,
            Some(false),
        ),
        xdbc("VARCHAR", X::XdbcVarchar, None, true, None),
        xdbc("BOOLEAN", X::XdbcBit, Some(1), false, None),
        xdbc("DATE", X::XdbcDate, Some(10), true, None),
        xdbc("TIME", X::XdbcTime, None, true, None),
        xdbc("TIMESTAMP", X::XdbcTimestamp, None, true, None),
        xdbc("INTERVAL", X::XdbcInterval, None, true, None),
    ];
    for t in &mut types {
        if t.type_name == "DECIMAL" {
            t.create_params = Some(vec!["precision".to_owned(), "scale".to_owned()]);
            t.fixed_prec_scale = true;
            t.minimum_scale = Some(0);
            t.maximum_scale = Some(38);
        }
        if t.type_name == "VARCHAR" || t.type_name == "CHAR" {
            t.create_params = Some(vec!["length".to_owned()]);
        }
    }
    types.sort_by_key(|t| t.data_type as i32);
    for t in types {
        b.append(t);
    }
    b.build().unwrap_or_else(|e| panic!("XDBC type info: {e}"))
});

/// The schema names of tarn's one catalog, sorted.
fn schema_names(session: &Session) -> Vec<String> {
    let mut names = session
        .context()
        .catalog(CATALOG_NAME)
        .map(|c| c.schema_names())
        .unwrap_or_default();
    if !names.iter().any(|n| n == "information_schema") {
        names.push("information_schema".to_owned());
    }
    names.sort();
    names
}

fn catalog_matches(filter: Option<&str>) -> bool {
    filter.is_none_or(|c| c.is_empty() || c == CATALOG_NAME)
}

pub(crate) fn db_schemas(
    session: &Session,
    query: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    let catalog = query.catalog.clone();
    let mut builder: GetDbSchemasBuilder = query.into_builder();
    if catalog_matches(catalog.as_deref()) {
        for schema in schema_names(session) {
            builder.append(CATALOG_NAME, schema);
        }
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

pub(crate) async fn tables(
    session: &Session,
    query: CommandGetTables,
) -> Result<RecordBatch, Status> {
    let catalog = query.catalog.clone();
    let include_schema = query.include_schema;
    let mut builder: GetTablesBuilder = query.into_builder();
    if !catalog_matches(catalog.as_deref()) {
        return builder.build().map_err(|e| Status::internal(e.to_string()));
    }
    let ctx = session.context();
    let empty = Schema::empty();
    for schema_name in schema_names(session) {
        let Some(schema) = ctx
            .catalog(CATALOG_NAME)
            .and_then(|c| c.schema(&schema_name))
        else {
            // information_schema is answered by the session, not the catalog.
            for table in ["tables", "columns", "views", "schemata", "df_settings"] {
                let arrow_schema = if include_schema {
                    information_schema_table(session, table).await
                } else {
                    None
                };
                builder
                    .append(
                        CATALOG_NAME,
                        &schema_name,
                        table,
                        "SYSTEM TABLE",
                        arrow_schema.as_deref().unwrap_or(&empty),
                    )
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
            continue;
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            let provider = if include_schema {
                schema.table(&name).await.ok().flatten()
            } else {
                None
            };
            let table_type = if is_system_schema(&schema_name) {
                "SYSTEM TABLE"
            } else if provider
                .as_ref()
                .is_some_and(|p| p.table_type() == datafusion::datasource::TableType::View)
            {
                "VIEW"
            } else {
                "TABLE"
            };
            let arrow_schema = provider.map(|p| p.schema());
            builder
                .append(
                    CATALOG_NAME,
                    &schema_name,
                    &name,
                    table_type,
                    arrow_schema.as_deref().unwrap_or(&empty),
                )
                .map_err(|e| Status::internal(e.to_string()))?;
        }
    }
    builder.build().map_err(|e| Status::internal(e.to_string()))
}

async fn information_schema_table(session: &Session, table: &str) -> Option<SchemaRef> {
    let df = session
        .context()
        .table(format!("information_schema.{table}"))
        .await
        .ok()?;
    Some(Arc::new(df.schema().as_arrow().clone()))
}

/// `GetPrimaryKeys`: tarn tables declare no keys, so always empty, in the schema the
/// protocol gives.
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// `GetExportedKeys`, `GetImportedKeys` and `GetCrossReference`: no foreign keys either.
pub(crate) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}
