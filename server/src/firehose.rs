//! The Firehose API (awsJson1_1, `X-Amz-Target: Firehose_20150804.<Operation>`) on the HTTP
//! port, over [`tarn_ingest::delivery::Deliveries`]: boto3's `firehose` client and the AWS CLI
//! work with only their endpoint changed.
//!
//! A delivery stream writes a table, named where Firehose names the Glue table it converts
//! records by: `ExtendedS3DestinationConfiguration.DataFormatConversionConfiguration
//! .SchemaConfiguration` (`DatabaseName`, `TableName`), or the first entry of
//! `IcebergDestinationConfiguration.DestinationTableConfigurationList`. The table's location is
//! the warehouse's; `BucketARN` and `RoleARN` are accepted and not used. A `Prefix` with
//! `!{partitionKeyFromQuery:f}` partitions by field `f`; one with `!{timestamp:…}` by arrival
//! time (`dt`, `hour`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tarn_catalog::TableRef;
use tarn_ingest::delivery::{
    Deliveries, Delivery, DeliveryError, DeliverySource, MAX_BUFFER_INTERVAL_SECS,
    MAX_RECORD_BYTES, NewDelivery, Partitioning,
};
use tarn_ingest::stream::StreamError;

use crate::aws::{ACCOUNT_ID, AwsError};
use crate::kinesis::{blob, string};

const REGION: &str = "us-east-1";
/// Records in one PutRecordBatch request, and bytes in all of them.
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 4 << 20;
/// How long DeleteDeliveryStream waits for the buffer to be delivered.
const DELETE_GRACE: Duration = Duration::from_secs(30);

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidArgumentException", message)
}

pub(crate) fn delivery_error(e: DeliveryError) -> AwsError {
    match e {
        DeliveryError::NotFound { .. } => AwsError::new("ResourceNotFoundException", e.to_string()),
        DeliveryError::InUse { .. } => AwsError::new("ResourceInUseException", e.to_string()),
        DeliveryError::Invalid(m) => invalid(m),
        DeliveryError::Stream(StreamError::Throttled { .. }) => AwsError::new(
            "ServiceUnavailableException",
            "Slow down: too many puts waiting to be written",
        ),
        DeliveryError::Stream(StreamError::NotFound { stream }) => {
            invalid(format!("the source stream {stream} does not exist"))
        }
        DeliveryError::Stream(StreamError::Invalid(m)) => invalid(m),
        DeliveryError::Catalog(c) => invalid(c.to_string()),
        other => {
            tracing::error!(error = %other, "delivery operation failed");
            AwsError::internal("the delivery could not be changed; see the server log")
        }
    }
}

fn arn(name: &str) -> String {
    format!("arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{name}")
}

fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}")
}

fn epoch(at: DateTime<Utc>) -> Value {
    json!(at.timestamp_millis() as f64 / 1000.0)
}

fn u64_at(body: &Value, pointer: &str) -> Result<Option<u64>, AwsError> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{} must be a non-negative integer", &pointer[1..]))),
    }
}

/// The table and buffering of a CreateDeliveryStream request's destination.
fn destination(body: &Value, new: &mut NewDelivery) -> Result<(), AwsError> {
    let (config, table) = if let Some(s3) = body.get("ExtendedS3DestinationConfiguration") {
        let schema = s3.pointer("/DataFormatConversionConfiguration/SchemaConfiguration");
        let table = schema.and_then(|s| {
            Some((
                s.get("DatabaseName")?.as_str()?,
                s.get("TableName")?.as_str()?,
            ))
        });
        (s3, table)
    } else if let Some(iceberg) = body.get("IcebergDestinationConfiguration") {
        let first = iceberg.pointer("/DestinationTableConfigurationList/0");
        let table = first.and_then(|t| {
            Some((
                t.get("DestinationDatabaseName")?.as_str()?,
                t.get("DestinationTableName")?.as_str()?,
            ))
        });
        (iceberg, table)
    } else {
        return Err(invalid(
            "tarn delivers into tables: give ExtendedS3DestinationConfiguration (with DataFormatConversionConfiguration.SchemaConfiguration naming DatabaseName and TableName) or IcebergDestinationConfiguration (with DestinationTableConfigurationList)",
        ));
    };
    let Some((database, table)) = table else {
        return Err(invalid(
            "the destination names no table: set DataFormatConversionConfiguration.SchemaConfiguration DatabaseName and TableName (or DestinationTableConfigurationList for Iceberg)",
        ));
    };
    new.table = TableRef::new(database, table);
    if let Some(mb) = u64_at(config, "/BufferingHints/SizeInMBs")? {
        if !(1..=128).contains(&mb) {
            return Err(invalid(
                "BufferingHints.SizeInMBs must be between 1 and 128",
            ));
        }
        new.buffer_bytes = mb << 20;
    }
    if let Some(secs) = u64_at(config, "/BufferingHints/IntervalInSeconds")? {
        if secs > MAX_BUFFER_INTERVAL_SECS {
            return Err(invalid(format!(
                "BufferingHints.IntervalInSeconds must be between 0 and {MAX_BUFFER_INTERVAL_SECS}"
            )));
        }
        new.buffer_interval_secs = secs;
    }
    if let Some(prefix) = config.get("Prefix").and_then(Value::as_str) {
        new.partitioning = prefix_partitioning(prefix)?;
    }
    Ok(())
}

/// The partitioning a Firehose S3 prefix asks for.
fn prefix_partitioning(prefix: &str) -> Result<Option<Partitioning>, AwsError> {
    let mut fields = Vec::new();
    let mut rest = prefix;
    while let Some(at) = rest.find("!{partitionKeyFromQuery:") {
        let after = &rest[at + "!{partitionKeyFromQuery:".len()..];
        let Some(end) = after.find('}') else {
            return Err(invalid(format!("Prefix {prefix:?}: unclosed !{{")));
        };
        fields.push(after[..end].to_owned());
        rest = &after[end..];
    }
    if !fields.is_empty() {
        return Ok(Some(Partitioning::Fields(fields)));
    }
    if prefix.contains("!{timestamp:") {
        return Ok(Some(Partitioning::ArrivalTime));
    }
    Ok(None)
}

/// The bucket ARN and key prefix of a table location (`s3://bucket/key/`); the location
/// itself for a local folder.
fn bucket_and_prefix(location: Option<&str>) -> (String, String) {
    match location.and_then(|l| l.strip_prefix("s3://")) {
        Some(rest) => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            (format!("arn:aws:s3:::{bucket}"), key.to_owned())
        }
        None => (location.unwrap_or_default().to_owned(), String::new()),
    }
}

fn description(delivery: &Delivery, location: Option<&str>) -> Value {
    let (bucket, key_prefix) = bucket_and_prefix(location);
    let (kind, source) = match &delivery.source {
        DeliverySource::DirectPut => ("DirectPut", None),
        DeliverySource::Stream { name, .. } => (
            "KinesisStreamAsSource",
            Some(json!({"KinesisStreamSourceDescription": {
                "KinesisStreamARN": stream_arn(name),
                "RoleARN": format!("arn:aws:iam::{ACCOUNT_ID}:role/tarn"),
                "DeliveryStartTimestamp": epoch(delivery.created_at),
            }})),
        ),
    };
    let hints = json!({
        "SizeInMBs": (delivery.buffer_bytes >> 20).max(1),
        "IntervalInSeconds": delivery.buffer_interval_secs,
    });
    let layout = match &delivery.partitioning {
        Partitioning::None => String::new(),
        Partitioning::ArrivalTime => "dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/".to_owned(),
        Partitioning::Fields(fields) => fields
            .iter()
            .map(|f| format!("{f}=!{{partitionKeyFromQuery:{f}}}/"))
            .collect(),
    };
    let prefix = format!("{key_prefix}{layout}");
    let mut out = json!({
        "DeliveryStreamName": delivery.name,
        "DeliveryStreamARN": arn(&delivery.name),
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamEncryptionConfiguration": {"Status": "DISABLED"},
        "DeliveryStreamType": kind,
        "VersionId": "1",
        "CreateTimestamp": epoch(delivery.created_at),
        "LastUpdateTimestamp": epoch(delivery.created_at),
        "Destinations": [{
            "DestinationId": "destinationId-000000000001",
            "S3DestinationDescription": {
                "RoleARN": format!("arn:aws:iam::{ACCOUNT_ID}:role/tarn"),
                "BucketARN": bucket,
                "Prefix": prefix,
                "BufferingHints": hints,
                "CompressionFormat": "UNCOMPRESSED",
                "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
            },
            "ExtendedS3DestinationDescription": {
                "RoleARN": format!("arn:aws:iam::{ACCOUNT_ID}:role/tarn"),
                "BucketARN": bucket,
                "Prefix": prefix,
                "ErrorOutputPrefix": format!("{}.{}", delivery.error_table.database, delivery.error_table.table),
                "BufferingHints": hints,
                "CompressionFormat": "UNCOMPRESSED",
                "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
                "S3BackupMode": "Disabled",
                "DataFormatConversionConfiguration": {
                    "Enabled": true,
                    "SchemaConfiguration": {
                        "CatalogId": ACCOUNT_ID,
                        "DatabaseName": delivery.table.database,
                        "TableName": delivery.table.table,
                        "Region": REGION,
                        "VersionId": "LATEST",
                        "RoleARN": format!("arn:aws:iam::{ACCOUNT_ID}:role/tarn"),
                    },
                    "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                    "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
                },
            },
        }],
        "HasMoreDestinations": false,
    });
    if let (Some(source), Some(map)) = (source, out.as_object_mut()) {
        map.insert("Source".to_owned(), source);
    }
    out
}

/// Answers one Firehose operation.
pub(crate) async fn handle(
    deliveries: &Deliveries,
    operation: &str,
    body: &Value,
) -> Result<Value, AwsError> {
    match operation {
        "CreateDeliveryStream" => {
            let name = string(body, "DeliveryStreamName")?;
            let mut new = NewDelivery::new(name, TableRef::new("", ""));
            match body
                .get("DeliveryStreamType")
                .and_then(Value::as_str)
                .unwrap_or("DirectPut")
            {
                "DirectPut" => {}
                "KinesisStreamAsSource" => {
                    let stream_arn = body
                        .pointer("/KinesisStreamSourceConfiguration/KinesisStreamARN")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            invalid("KinesisStreamSourceConfiguration.KinesisStreamARN is required for KinesisStreamAsSource")
                        })?;
                    let stream = stream_arn
                        .rsplit_once(":stream/")
                        .map(|(_, n)| n.to_owned())
                        .ok_or_else(|| invalid(format!("{stream_arn} is not a stream ARN")))?;
                    new.source_stream = Some(stream);
                }
                other => {
                    return Err(invalid(format!(
                        "DeliveryStreamType {other} is not supported; tarn has DirectPut and KinesisStreamAsSource"
                    )));
                }
            }
            destination(body, &mut new)?;
            let delivery = deliveries.create(new).map_err(delivery_error)?;
            Ok(json!({"DeliveryStreamARN": arn(&delivery.name)}))
        }
        "DeleteDeliveryStream" => {
            let name = string(body, "DeliveryStreamName")?;
            deliveries
                .delete(name, DELETE_GRACE)
                .await
                .map_err(delivery_error)?;
            Ok(json!({}))
        }
        "DescribeDeliveryStream" => {
            let name = string(body, "DeliveryStreamName")?;
            let (delivery, _) = deliveries.describe(name).map_err(delivery_error)?;
            let location = deliveries.table_location(&delivery.table);
            Ok(json!({"DeliveryStreamDescription": description(&delivery, location.as_deref())}))
        }
        "ListDeliveryStreams" => {
            let kind = body.get("DeliveryStreamType").and_then(Value::as_str);
            let start = body
                .get("ExclusiveStartDeliveryStreamName")
                .and_then(Value::as_str);
            let limit = u64_at(body, "/Limit")?.unwrap_or(10_000).clamp(1, 10_000) as usize;
            let mut names: Vec<String> = deliveries
                .list()
                .into_iter()
                .filter(|(d, _)| match kind {
                    Some("DirectPut") => d.source == DeliverySource::DirectPut,
                    Some("KinesisStreamAsSource") => d.source != DeliverySource::DirectPut,
                    _ => true,
                })
                .map(|(d, _)| d.name)
                .filter(|n| start.is_none_or(|s| n.as_str() > s))
                .collect();
            names.sort();
            let more = names.len() > limit;
            names.truncate(limit);
            Ok(json!({"DeliveryStreamNames": names, "HasMoreDeliveryStreams": more}))
        }
        "PutRecord" => {
            let name = string(body, "DeliveryStreamName")?;
            let record = body
                .get("Record")
                .ok_or_else(|| invalid("Record is required"))?;
            let data = blob(record, "Data")?;
            check_size(data.len())?;
            let appended = deliveries
                .put(name, vec![data])
                .await
                .map_err(delivery_error)?;
            let id = appended.first().map(|a| record_id(a.sequence));
            Ok(json!({"RecordId": id, "Encrypted": false}))
        }
        "PutRecordBatch" => {
            let name = string(body, "DeliveryStreamName")?;
            let entries = body
                .get("Records")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("Records is required"))?;
            if entries.is_empty() || entries.len() > MAX_BATCH_RECORDS {
                return Err(invalid(format!(
                    "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length between 1 and {MAX_BATCH_RECORDS}, got {}",
                    entries.len()
                )));
            }
            let records = entries
                .iter()
                .map(|e| blob(e, "Data"))
                .collect::<Result<Vec<_>, _>>()?;
            for r in &records {
                check_size(r.len())?;
            }
            let total: usize = records.iter().map(Vec::len).sum();
            if total > MAX_BATCH_BYTES {
                return Err(invalid(format!(
                    "Records size exceeds 4 MiB limit: {total} bytes"
                )));
            }
            let appended = deliveries
                .put(name, records)
                .await
                .map_err(delivery_error)?;
            let responses: Vec<Value> = appended
                .iter()
                .map(|a| json!({"RecordId": record_id(a.sequence)}))
                .collect();
            Ok(json!({"FailedPutCount": 0, "Encrypted": false, "RequestResponses": responses}))
        }
        _ => Err(AwsError::new(
            "UnknownOperationException",
            format!("Firehose operation {operation} is not supported"),
        )),
    }
}

fn check_size(len: usize) -> Result<(), AwsError> {
    if len > MAX_RECORD_BYTES {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'record.data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}, got {len}"
        )));
    }
    Ok(())
}

/// A record's id: its sequence number in the delivery's log.
fn record_id(sequence: u64) -> String {
    format!("{sequence:020}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_choose_the_partitioning() {
        assert_eq!(
            prefix_partitioning(
                "events/!{partitionKeyFromQuery:kind}/!{partitionKeyFromQuery:region}/"
            )
            .ok()
            .flatten(),
            Some(Partitioning::Fields(vec!["kind".into(), "region".into()]))
        );
        assert_eq!(
            prefix_partitioning("data/year=!{timestamp:yyyy}/")
                .ok()
                .flatten(),
            Some(Partitioning::ArrivalTime)
        );
        assert_eq!(prefix_partitioning("plain/").ok().flatten(), None);
        assert!(prefix_partitioning("x/!{partitionKeyFromQuery:open").is_err());
    }
}
