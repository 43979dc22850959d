//! A Glue Data Catalog subset on the HTTP port, so boto3's `glue` client (and other AWS SDKs)
//! work against `endpoint_url`: `POST /` with `X-Amz-Target: AWSGlue.<Operation>` and an
//! awsJson1_1 body. Read operations only: GetDatabases, GetDatabase, GetTables, GetTable,
//! GetPartitions (with `Expression`), GetPartition, GetTableVersions.
//!
//! Errors are AWS-style: HTTP 400 with `{"__type": "EntityNotFoundException", "message": …}`.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tarn_catalog::{CatalogSnapshot, Partition, Table, TableFormat, TableKind, TableVersion, View};
use tarn_sql::QueryEngine;

use crate::aws::{ACCOUNT_ID as CATALOG_ID, AwsError};

/// Page size when a request gives no `MaxResults`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Answers one Glue operation.
pub(crate) async fn handle(
    engine: &QueryEngine,
    operation: &str,
    body: &Value,
) -> Result<Value, AwsError> {
    let snapshot = engine.catalog_snapshot().await;
    let catalog = Glue {
        snapshot: &snapshot,
        warehouse: engine.catalog().warehouse().as_str(),
    };
    match operation {
        "GetDatabases" => {
            let all: Vec<Value> = snapshot
                .databases
                .keys()
                .filter_map(|name| catalog.database(name))
                .collect();
            let (page, next) = paginate(all, body)?;
            Ok(with_token(json!({"DatabaseList": page}), next))
        }
        "GetDatabase" => {
            let name = string(body, "Name")?;
            let db = catalog
                .database(name)
                .ok_or_else(|| AwsError::not_found(format!("Database {name} not found.")))?;
            Ok(json!({"Database": db}))
        }
        "GetTables" => {
            let database = string(body, "DatabaseName")?;
            catalog.require_database(database)?;
            let pattern = optional_string(body, "Expression")?
                .map(glue_name_pattern)
                .transpose()?;
            let matches = |name: &str| pattern.as_ref().is_none_or(|p| p.is_match(name));
            // tables and views, in name order (a name is never both)
            let mut all: Vec<(&str, Value)> = snapshot
                .tables_in(database)
                .filter(|t| matches(&t.name))
                .map(|t| (t.name.as_str(), catalog.table(t, None)))
                .chain(
                    snapshot
                        .views_in(database)
                        .filter(|v| matches(&v.name))
                        .map(|v| (v.name.as_str(), view(v))),
                )
                .collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            let all: Vec<Value> = all.into_iter().map(|(_, v)| v).collect();
            let (page, next) = paginate(all, body)?;
            Ok(with_token(json!({"TableList": page}), next))
        }
        "GetTable" => {
            if let Some(found) = catalog.find_view(body, "Name")? {
                return Ok(json!({"Table": view(&found)}));
            }
            let table = catalog.find_table(body, "Name")?;
            Ok(json!({"Table": catalog.table(&table, None)}))
        }
        "GetTableVersions" => {
            // a view has one version: CREATE OR REPLACE replaces it
            if let Some(found) = catalog.find_view(body, "TableName")? {
                return Ok(json!({"TableVersions": [{"Table": view(&found), "VersionId": "1"}]}));
            }
            let table = catalog.find_table(body, "TableName")?;
            let versions: Vec<Value> = table
                .history()
                .iter()
                .rev()
                .map(|v| {
                    json!({"Table": catalog.table(&table, Some(v)), "VersionId": v.version.to_string()})
                })
                .collect();
            let (page, next) = paginate(versions, body)?;
            Ok(with_token(json!({"TableVersions": page}), next))
        }
        "GetPartitions" => {
            let table = catalog.find_table(body, "TableName")?;
            let expression = optional_string(body, "Expression")?;
            let partitions = engine
                .partitions_matching(&table, expression)
                .map_err(|e| AwsError::invalid(format!("Invalid partition expression: {e}")))?;
            let all: Vec<Value> = partitions
                .iter()
                .map(|p| catalog.partition(&table, p))
                .collect();
            let (page, next) = paginate(all, body)?;
            Ok(with_token(json!({"Partitions": page}), next))
        }
        "GetPartition" => {
            let table = catalog.find_table(body, "TableName")?;
            let values: Vec<String> = body
                .get("PartitionValues")
                .and_then(Value::as_array)
                .ok_or_else(|| AwsError::invalid("PartitionValues is required"))?
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| AwsError::invalid("PartitionValues must be strings"))?;
            let found = engine
                .partitions_matching(&table, None)
                .map_err(|e| AwsError::internal(e.to_string()))?
                .into_iter()
                .find(|p| p.values == values)
                .ok_or_else(|| AwsError::not_found(format!("Partition {values:?} not found.")))?;
            Ok(json!({"Partition": catalog.partition(&table, &found)}))
        }
        _ => Err(AwsError::new(
            "UnknownOperationException",
            format!("operation {operation} is not supported by tarn's Glue API"),
        )),
    }
}

fn with_token(mut value: Value, next: Option<String>) -> Value {
    if let (Some(token), Some(map)) = (next, value.as_object_mut()) {
        map.insert("NextToken".to_owned(), Value::String(token));
    }
    value
}

/// One page of `all` as `MaxResults` and `NextToken` ask; the token is the next offset.
fn paginate(all: Vec<Value>, body: &Value) -> Result<(Vec<Value>, Option<String>), AwsError> {
    let size = match body.get("MaxResults") {
        None | Some(Value::Null) => DEFAULT_PAGE,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_PAGE as u64).contains(&n) => n as usize,
            _ => {
                return Err(AwsError::invalid(format!(
                    "MaxResults must be between 1 and {MAX_PAGE}"
                )));
            }
        },
    };
    let start = match optional_string(body, "NextToken")? {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= all.len())
            .ok_or_else(|| AwsError::invalid("NextToken is not valid"))?,
    };
    let end = (start + size).min(all.len());
    let next = (end < all.len()).then(|| end.to_string());
    Ok((all[start..end].to_vec(), next))
}

fn string<'a>(body: &'a Value, key: &str) -> Result<&'a str, AwsError> {
    optional_string(body, key)?.ok_or_else(|| AwsError::invalid(format!("{key} is required")))
}

fn optional_string<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, AwsError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AwsError::invalid(format!("{key} must be a string"))),
    }
}

/// GetTables' `Expression`: a regular expression the whole name must match.
fn glue_name_pattern(expr: &str) -> Result<regex::Regex, AwsError> {
    regex::Regex::new(&format!("^(?:{expr})$"))
        .map_err(|e| AwsError::invalid(format!("Expression is not a valid pattern: {e}")))
}

fn epoch(t: DateTime<Utc>) -> Value {
    json!(t.timestamp_micros() as f64 / 1e6)
}

/// Hive's name for an Arrow type, as Glue and Athena spell column types.
pub(crate) fn hive_type(t: &DataType) -> String {
    use DataType::*;
    match t {
        Boolean => "boolean".into(),
        Int8 => "tinyint".into(),
        Int16 | UInt8 => "smallint".into(),
        Int32 | UInt16 => "int".into(),
        Int64 | UInt32 => "bigint".into(),
        UInt64 => "decimal(20,0)".into(),
        Float16 | Float32 => "float".into(),
        Float64 => "double".into(),
        Utf8 | LargeUtf8 | Utf8View => "string".into(),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "binary".into(),
        Date32 | Date64 => "date".into(),
        Timestamp(_, _) => "timestamp".into(),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            format!("decimal({p},{s})")
        }
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            format!("array<{}>", hive_type(f.data_type()))
        }
        Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Map(entries, _) => match entries.data_type() {
            Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                hive_type(kv[0].data_type()),
                hive_type(kv[1].data_type())
            ),
            _ => "string".into(),
        },
        Dictionary(_, v) => hive_type(v),
        _ => "string".into(),
    }
}

/// Builds Glue's JSON from one catalog snapshot.
struct Glue<'a> {
    snapshot: &'a CatalogSnapshot,
    warehouse: &'a str,
}

impl Glue<'_> {
    fn database(&self, name: &str) -> Option<Value> {
        let db = self.snapshot.database(name)?;
        let parameters: Map<String, Value> = db
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Some(json!({
            "Name": db.name,
            "LocationUri": format!("{}{}/", self.warehouse, db.name),
            "Parameters": parameters,
            "CreateTime": epoch(db.created_at),
            "CatalogId": CATALOG_ID,
            "CreateTableDefaultPermissions": [],
        }))
    }

    fn require_database(&self, name: &str) -> Result<(), AwsError> {
        self.snapshot
            .database(name)
            .map(|_| ())
            .ok_or_else(|| AwsError::not_found(format!("Database {name} not found.")))
    }

    /// The view named by `body[key]` in `body["DatabaseName"]`, if that names a view.
    fn find_view(&self, body: &Value, key: &str) -> Result<Option<Arc<View>>, AwsError> {
        let database = string(body, "DatabaseName")?;
        let name = string(body, key)?;
        Ok(self.snapshot.view(database, name).cloned())
    }

    fn find_table(&self, body: &Value, key: &str) -> Result<Arc<Table>, AwsError> {
        let database = string(body, "DatabaseName")?;
        let name = string(body, key)?;
        self.require_database(database)?;
        self.snapshot
            .table(database, name)
            .cloned()
            .ok_or_else(|| AwsError::not_found(format!("Table {name} not found.")))
    }

    /// A table as Glue describes it; `version` picks an older definition.
    fn table(&self, table: &Table, version: Option<&TableVersion>) -> Value {
        let (schema, partition_columns, version_id) = match version {
            Some(v) => (
                v.schema.as_ref().clone(),
                v.partition_columns.clone(),
                v.version,
            ),
            None => (
                table.schema.as_ref().clone(),
                table.partition_columns.clone(),
                table.version(),
            ),
        };
        let columns = columns(&schema, |f| !partition_columns.contains(f.name()));
        let keys = columns_named(&schema, &partition_columns);
        let mut parameters: Map<String, Value> = table
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        parameters
            .entry("classification")
            .or_insert_with(|| Value::String(table.format.as_str().to_ascii_lowercase()));
        if table.format == TableFormat::Delta {
            parameters.insert("table_type".into(), Value::String("DELTA".into()));
        }
        if table.options.get("format.has_header").map(String::as_str) == Some("true") {
            parameters.insert("skip.header.line.count".into(), Value::String("1".into()));
        }
        json!({
            "Name": table.name,
            "DatabaseName": table.database,
            "CreateTime": epoch(table.created_at),
            "UpdateTime": epoch(table.updated_at),
            "Retention": 0,
            "StorageDescriptor": storage(table, columns, &table.location),
            "PartitionKeys": keys,
            "TableType": match table.kind {
                TableKind::Managed => "MANAGED_TABLE",
                TableKind::External => "EXTERNAL_TABLE",
            },
            "Parameters": parameters,
            "CreatedBy": "tarn",
            "IsRegisteredWithLakeFormation": false,
            "CatalogId": CATALOG_ID,
            "VersionId": version_id.to_string(),
        })
    }

    fn partition(&self, table: &Table, p: &Partition) -> Value {
        let columns = columns(&table.schema, |f| {
            !table.partition_columns.contains(f.name())
        });
        json!({
            "Values": p.values,
            "DatabaseName": table.database,
            "TableName": table.name,
            "CreationTime": epoch(p.created_at),
            "LastAccessTime": epoch(p.created_at),
            "StorageDescriptor": storage(table, columns, &p.location),
            "Parameters": {},
            "CatalogId": CATALOG_ID,
        })
    }
}

/// A view as Glue describes one (`VIRTUAL_VIEW`): its columns and its SQL. The SQL is
/// tarn's, not Athena's encoded Presto view.
fn view(view: &View) -> Value {
    json!({
        "Name": view.name,
        "DatabaseName": view.database,
        "CreateTime": epoch(view.created_at),
        "UpdateTime": epoch(view.updated_at),
        "Retention": 0,
        "StorageDescriptor": {
            "Columns": columns(&view.schema, |_| true),
            "Location": "",
            "Compressed": false,
            "NumberOfBuckets": 0,
            "SerdeInfo": {},
            "BucketColumns": [],
            "SortColumns": [],
            "StoredAsSubDirectories": false,
        },
        "PartitionKeys": [],
        "TableType": "VIRTUAL_VIEW",
        "ViewOriginalText": view.sql,
        "ViewExpandedText": view.sql,
        "Parameters": {},
        "CreatedBy": "tarn",
        "IsRegisteredWithLakeFormation": false,
        "CatalogId": CATALOG_ID,
        "VersionId": "1",
    })
}

fn column(f: &Field) -> Value {
    json!({"Name": f.name(), "Type": hive_type(f.data_type())})
}

fn columns(schema: &Schema, keep: impl Fn(&Field) -> bool) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .filter(|f| keep(f))
        .map(|f| column(f))
        .collect()
}

fn columns_named(schema: &Schema, names: &[String]) -> Vec<Value> {
    names
        .iter()
        .filter_map(|n| schema.field_with_name(n).ok())
        .map(column)
        .collect()
}

/// The storage descriptor Athena and Spark read: Hive's input/output formats and SerDe.
fn storage(table: &Table, columns: Vec<Value>, location: &str) -> Value {
    const TEXT_IN: &str = "org.apache.hadoop.mapred.TextInputFormat";
    const TEXT_OUT: &str = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat";
    let (input, output, serde, serde_parameters) = match table.format {
        TableFormat::Parquet | TableFormat::Delta => (
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
            json!({"serialization.format": "1"}),
        ),
        TableFormat::Csv => (
            TEXT_IN,
            TEXT_OUT,
            "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
            json!({"field.delim": table.options.get("format.delimiter").map_or(",", String::as_str)}),
        ),
        TableFormat::Json => (
            TEXT_IN,
            TEXT_OUT,
            "org.openx.data.jsonserde.JsonSerDe",
            json!({"paths": table.file_schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(",")}),
        ),
    };
    let compressed = table.options.contains_key("format.compression");
    json!({
        "Columns": columns,
        "Location": location,
        "InputFormat": input,
        "OutputFormat": output,
        "Compressed": compressed,
        "NumberOfBuckets": -1,
        "SerdeInfo": {"SerializationLibrary": serde, "Parameters": serde_parameters},
        "BucketColumns": [],
        "SortColumns": [],
        "Parameters": {},
        "StoredAsSubDirectories": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_have_hive_names() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        assert_eq!(hive_type(&list), "array<int>");
        assert_eq!(hive_type(&DataType::Decimal128(12, 2)), "decimal(12,2)");
        assert_eq!(hive_type(&DataType::Utf8View), "string");
        let s = DataType::Struct(vec![Field::new("a", DataType::Int64, true)].into());
        assert_eq!(hive_type(&s), "struct<a:bigint>");
    }

    #[test]
    fn pages_walk_everything_once() {
        let all: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let body = match &token {
                Some(t) => json!({"MaxResults": 2, "NextToken": t}),
                None => json!({"MaxResults": 2}),
            };
            let (page, next) = paginate(all.clone(), &body).unwrap_or_default();
            seen.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, all);
        assert!(paginate(all.clone(), &json!({"NextToken": "x"})).is_err());
        assert!(paginate(all, &json!({"MaxResults": 0})).is_err());
    }
}
