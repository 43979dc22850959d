//! Records to Arrow: JSON records parsed, checked against the table's schema and decoded into
//! one batch; records that do not fit are set aside with the reason.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::concat_batches;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::Partitioning;
use crate::stream::{KPL_MAGIC, deaggregate, shard_id};

/// The partition columns arrival-time partitioning adds.
pub const DT_COLUMN: &str = "dt";
pub const HOUR_COLUMN: &str = "hour";

/// Error codes in the error table.
pub const MALFORMED: &str = "DataFormatConversion.MalformedData";
pub const SCHEMA_MISMATCH: &str = "DataFormatConversion.SchemaMismatch";

/// One record read from a stream.
#[derive(Debug, Clone)]
pub(crate) struct SourceRecord {
    pub(crate) shard: u32,
    pub(crate) sequence: u64,
    pub(crate) arrival_ms: i64,
    pub(crate) data: Vec<u8>,
}

/// A record that did not convert, and why.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    pub(crate) shard: u32,
    pub(crate) sequence: u64,
    pub(crate) arrival_ms: i64,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) data: Vec<u8>,
}

/// The JSON objects in one record: one, several (newline-delimited or concatenated), or the
/// user records of a KPL aggregate.
pub(crate) fn parse_objects(data: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    if data.starts_with(&KPL_MAGIC)
        && let Some(users) = deaggregate(data)
    {
        let mut out = Vec::new();
        for user in users {
            out.extend(parse_plain(&user.data)?);
        }
        return Ok(out);
    }
    parse_plain(data)
}

fn parse_plain(data: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_slice(data).into_iter::<Value>() {
        match value {
            Ok(Value::Object(map)) => out.push(map),
            Ok(other) => {
                return Err(format!(
                    "the record holds a JSON {}, not an object",
                    json_kind(&other)
                ));
            }
            Err(e) => return Err(format!("the record is not valid JSON: {e}")),
        }
    }
    if out.is_empty() {
        return Err("the record is empty".to_owned());
    }
    Ok(out)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The schema of the records' fields, inferred from `objects` the way Glue would type JSON:
/// integers as bigint, other numbers as double, nested objects as structs. A field that is only
/// ever null is a string. Partition fields named in `partitioning` must be present.
pub(crate) fn infer_schema(
    objects: &[&Map<String, Value>],
    partitioning: &Partitioning,
) -> Result<SchemaRef, String> {
    let values: Vec<Value> = objects
        .iter()
        .map(|m| Value::Object((*m).clone()))
        .collect();
    let inferred = arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))
        .map_err(|e| format!("cannot infer a schema from the records: {e}"))?;
    let mut fields: Vec<Field> = inferred
        .fields()
        .iter()
        .filter(|f| {
            !matches!(partitioning, Partitioning::ArrivalTime)
                || (f.name() != DT_COLUMN && f.name() != HOUR_COLUMN)
        })
        .map(|f| without_nulls(f))
        .collect();
    match partitioning {
        Partitioning::None => {}
        Partitioning::ArrivalTime => {
            fields.push(Field::new(DT_COLUMN, DataType::Date32, true));
            fields.push(Field::new(HOUR_COLUMN, DataType::Int32, true));
        }
        Partitioning::Fields(names) => {
            for name in names {
                let Some(field) = fields.iter().find(|f| f.name() == name) else {
                    return Err(format!(
                        "the partition field {name:?} is in none of the first records"
                    ));
                };
                if matches!(field.data_type(), DataType::Struct(_) | DataType::List(_)) {
                    return Err(format!(
                        "the partition field {name:?} is nested; partition by a plain field"
                    ));
                }
            }
            // Delta keeps partition columns last.
            fields.sort_by_key(|f| names.iter().position(|n| n == f.name()).is_some());
        }
    }
    if fields.is_empty() {
        return Err("the records have no fields".to_owned());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Replaces the null type (a field only ever null) with a string, at every depth: tables
/// cannot hold a column of type null.
fn without_nulls(field: &Field) -> Field {
    let data_type = match field.data_type() {
        DataType::Null => DataType::Utf8,
        DataType::Struct(children) => DataType::Struct(Fields::from(
            children
                .iter()
                .map(|c| without_nulls(c))
                .collect::<Vec<_>>(),
        )),
        DataType::List(item) => DataType::List(Arc::new(without_nulls(item))),
        other => other.clone(),
    };
    Field::new(field.name(), data_type, true)
}

/// Adds the arrival-time partition values to `object`.
fn add_arrival(object: &mut Map<String, Value>, arrival_ms: i64) {
    let at = DateTime::<Utc>::from_timestamp_millis(arrival_ms).unwrap_or_default();
    object.insert(
        DT_COLUMN.to_owned(),
        Value::String(at.format("%Y-%m-%d").to_string()),
    );
    object.insert(
        HOUR_COLUMN.to_owned(),
        Value::from(at.format("%H").to_string().parse::<i64>().unwrap_or(0)),
    );
}

/// Converts `records` to one batch of `schema` (the table's full schema, partition columns
/// included). Returns the batch (`None` when no record converted) and the records set aside.
pub(crate) fn convert(
    schema: &SchemaRef,
    partitioning: &Partitioning,
    records: &[SourceRecord],
) -> Result<(Option<RecordBatch>, Vec<Rejected>), ArrowError> {
    let mut rejected = Vec::new();
    let mut parsed: Vec<(usize, Vec<Map<String, Value>>)> = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        match parse_objects(&record.data) {
            Ok(mut objects) => {
                if matches!(partitioning, Partitioning::ArrivalTime) {
                    for o in &mut objects {
                        add_arrival(o, record.arrival_ms);
                    }
                }
                parsed.push((i, objects));
            }
            Err(message) => rejected.push(reject(record, MALFORMED, message)),
        }
    }
    let rows: usize = parsed.iter().map(|(_, o)| o.len()).sum();
    if rows == 0 {
        return Ok((None, rejected));
    }
    // All at once; if that fails, record by record to find the ones that do not fit.
    let all: Vec<&Map<String, Value>> = parsed.iter().flat_map(|(_, o)| o.iter()).collect();
    if let Ok(batch) = decode(schema, &all) {
        return Ok((Some(batch), rejected));
    }
    let mut batches = Vec::new();
    for (i, objects) in &parsed {
        let objects: Vec<&Map<String, Value>> = objects.iter().collect();
        match decode(schema, &objects) {
            Ok(batch) => batches.push(batch),
            Err(e) => rejected.push(reject(
                &records[*i],
                SCHEMA_MISMATCH,
                format!("the record does not fit the table's schema: {e}"),
            )),
        }
    }
    rejected.sort_by_key(|r| (r.shard, r.sequence));
    if batches.is_empty() {
        return Ok((None, rejected));
    }
    Ok((Some(concat_batches(schema, &batches)?), rejected))
}

fn reject(record: &SourceRecord, code: &'static str, message: String) -> Rejected {
    Rejected {
        shard: record.shard,
        sequence: record.sequence,
        arrival_ms: record.arrival_ms,
        code,
        message,
        data: record.data.clone(),
    }
}

fn decode(schema: &SchemaRef, objects: &[&Map<String, Value>]) -> Result<RecordBatch, ArrowError> {
    let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(objects.len().max(1))
        .with_strict_mode(false)
        .build_decoder()?;
    decoder.serialize(objects)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
}

/// The error table's columns.
pub fn error_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("error_time", ts.clone(), false),
        Field::new("arrival_time", ts, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("shard_id", DataType::Utf8, false),
        Field::new("sequence_number", DataType::Utf8, false),
        Field::new("error_code", DataType::Utf8, false),
        Field::new("error_message", DataType::Utf8, false),
        Field::new("raw_data", DataType::Binary, false),
    ]))
}

/// The error table's rows for `rejected`.
pub(crate) fn error_batch(source: &str, rejected: &[Rejected]) -> Result<RecordBatch, ArrowError> {
    let now = Utc::now().timestamp_micros();
    let n = rejected.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        Arc::new(
            TimestampMicrosecondArray::from(
                rejected
                    .iter()
                    .map(|r| r.arrival_ms * 1000)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(vec![source; n])),
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| shard_id(r.shard)),
        )),
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| r.sequence.to_string()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| r.code),
        )),
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| r.message.as_str()),
        )),
        Arc::new(BinaryArray::from_iter_values(
            rejected.iter().map(|r| r.data.as_slice()),
        )),
    ];
    RecordBatch::try_new(error_schema(), columns)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array};

    use super::*;

    fn record(seq: u64, data: &str) -> SourceRecord {
        SourceRecord {
            shard: 0,
            sequence: seq,
            arrival_ms: 1_763_900_000_000,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn records_convert_and_misfits_are_set_aside_with_the_reason() {
        let first = parse_objects(br#"{"id": 1, "name": "a", "tags": null}"#).expect("parse");
        let schema = infer_schema(&[&first[0]], &Partitioning::ArrivalTime).expect("schema");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "name", "tags", "dt", "hour"]);
        assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
        let records = vec![
            record(1, r#"{"id": 1, "name": "a"}"#),
            record(2, r#"{"id": "x", "name": "b"}"#),
            record(3, "not json"),
            record(4, "[1, 2]"),
            record(5, "{\"id\": 2, \"extra\": true}\n{\"id\": 3}"),
            record(6, "  "),
        ];
        let (batch, rejected) =
            convert(&schema, &Partitioning::ArrivalTime, &records).expect("convert");
        let batch = batch.expect("rows");
        assert_eq!(batch.num_rows(), 3);
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ids");
        assert_eq!(ids.values(), &[1, 2, 3]);
        assert!(batch.column(3).is_valid(0), "dt is filled");
        let why: Vec<(u64, &str)> = rejected.iter().map(|r| (r.sequence, r.code)).collect();
        assert_eq!(
            why,
            [
                (2, SCHEMA_MISMATCH),
                (3, MALFORMED),
                (4, MALFORMED),
                (6, MALFORMED)
            ]
        );
        assert!(
            rejected[2].message.contains("array"),
            "{}",
            rejected[2].message
        );
        let errors = error_batch("s", &rejected).expect("errors");
        assert_eq!(errors.num_rows(), 4);
    }

    #[test]
    fn partition_fields_must_be_present_and_plain() {
        let o = parse_objects(br#"{"a": 1, "n": {"x": 1}}"#).expect("parse");
        let ok = infer_schema(&[&o[0]], &Partitioning::Fields(vec!["a".into()])).expect("ok");
        assert_eq!(ok.field(1).name(), "a", "partition columns go last");
        let missing = infer_schema(&[&o[0]], &Partitioning::Fields(vec!["b".into()]));
        assert!(missing.is_err());
        let nested = infer_schema(&[&o[0]], &Partitioning::Fields(vec!["n".into()]));
        assert!(nested.expect_err("nested").contains("nested"));
    }
}
