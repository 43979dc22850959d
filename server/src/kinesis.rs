//! The Kinesis Data Streams API (awsJson1_1, `X-Amz-Target: Kinesis_20131202.<Operation>`) on
//! the HTTP port, over [`tarn_ingest::stream::Streams`]: boto3, the AWS CLI and SDKs that speak
//! JSON work with only their endpoint changed.
//!
//! Shard iterators are self-contained (base64 of JSON: stream, its creation time, shard, next
//! sequence number, issue time) and expire after five minutes, as Kinesis' do.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tarn_ingest::stream::{
    DEFAULT_RETENTION_HOURS, MAX_RETENTION_HOURS, PutRecord, Start, StreamError, StreamInfo,
    StreamMode, Streams, parse_shard_id, shard_id,
};

use crate::aws::{ACCOUNT_ID as CATALOG_ID, AwsError};

/// Records in one PutRecords request, and bytes in all of them.
const MAX_PUT_RECORDS: usize = 500;
const MAX_PUT_RECORDS_BYTES: usize = 5 << 20;
/// GetRecords: at most this many records, and about this many bytes.
const MAX_GET_LIMIT: u64 = 10_000;
const MAX_GET_BYTES: usize = 10 << 20;
const ITERATOR_TTL_MS: i64 = 5 * 60 * 1000;
const REGION: &str = "us-east-1";

fn stream_error(e: StreamError) -> AwsError {
    match e {
        StreamError::NotFound { .. } => AwsError::new("ResourceNotFoundException", e.to_string()),
        StreamError::InUse { .. } => AwsError::new("ResourceInUseException", e.to_string()),
        StreamError::Invalid(m) => AwsError::new("ValidationException", m),
        StreamError::LimitExceeded(m) => AwsError::new("LimitExceededException", m),
        StreamError::Throttled { .. } => {
            AwsError::new("ProvisionedThroughputExceededException", e.to_string())
        }
        other => {
            tracing::error!(error = %other, "stream operation failed");
            AwsError::internal("the stream log could not be written or read; see the server log")
        }
    }
}

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidArgumentException", message)
}

fn arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{CATALOG_ID}:stream/{name}")
}

fn epoch_ms(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

pub(crate) fn string<'a>(body: &'a Value, key: &str) -> Result<&'a str, AwsError> {
    match body.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(AwsError::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"
            ),
        )),
        Some(_) => Err(AwsError::new(
            "SerializationException",
            format!("{key} must be a string"),
        )),
    }
}

/// The stream a request names: `StreamName`, or the name in `StreamARN`.
fn stream_name(body: &Value) -> Result<String, AwsError> {
    if let Some(Value::String(arn)) = body.get("StreamARN") {
        return arn
            .rsplit_once(":stream/")
            .map(|(_, n)| n.to_owned())
            .ok_or_else(|| invalid(format!("{arn} is not a stream ARN")));
    }
    Ok(string(body, "StreamName")?.to_owned())
}

pub(crate) fn blob(body: &Value, key: &str) -> Result<Vec<u8>, AwsError> {
    let text = string(body, key)?;
    STANDARD.decode(text).map_err(|e| {
        AwsError::new(
            "SerializationException",
            format!("Value '{text}' at '{key}' can not be converted to a Blob: {e}"),
        )
    })
}

fn hash_key(body: &Value) -> Result<Option<u128>, AwsError> {
    match body.get("ExplicitHashKey") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse::<u128>().map(Some).map_err(|_| {
            invalid(format!(
                "ExplicitHashKey {s} is not a number between 0 and 2^128 - 1"
            ))
        }),
        Some(_) => Err(AwsError::new(
            "SerializationException",
            "ExplicitHashKey must be a string",
        )),
    }
}

/// A `PutRecord` / `PutRecords` entry.
fn put_record(entry: &Value) -> Result<PutRecord, AwsError> {
    let partition_key = match entry.get("PartitionKey") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err(AwsError::new(
                "SerializationException",
                "PartitionKey must be a string",
            ));
        }
    };
    Ok(PutRecord {
        partition_key,
        explicit_hash_key: hash_key(entry)?,
        data: blob(entry, "Data")?,
    })
}

/// The position a shard iterator stands for.
#[derive(Debug, Serialize, Deserialize)]
struct Iterator {
    /// Stream name and creation time (a stream made again under the name is another stream).
    s: String,
    g: i64,
    h: u32,
    /// Next sequence number to read.
    q: u64,
    /// Issued at (ms).
    t: i64,
}

impl Iterator {
    fn encode(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Result<Self, AwsError> {
        let bad = || invalid(format!("Invalid ShardIterator: {text}"));
        let bytes = STANDARD.decode(text).map_err(|_| bad())?;
        serde_json::from_slice(&bytes).map_err(|_| bad())
    }
}

fn shard_json(info: &StreamInfo, shard: u32, first: Option<u64>) -> Value {
    let (start, end) = info.hash_range(shard);
    json!({
        "ShardId": shard_id(shard),
        "HashKeyRange": {"StartingHashKey": start.to_string(), "EndingHashKey": end.to_string()},
        "SequenceNumberRange": {"StartingSequenceNumber": first.unwrap_or(0).to_string()},
    })
}

fn mode_json(info: &StreamInfo) -> Value {
    json!({"StreamMode": match info.mode {
        StreamMode::Provisioned => "PROVISIONED",
        StreamMode::OnDemand => "ON_DEMAND",
    }})
}

/// Answers one Kinesis operation.
pub(crate) async fn handle(
    streams: &Arc<Streams>,
    operation: &str,
    body: &Value,
) -> Result<Value, AwsError> {
    match operation {
        "CreateStream" => {
            let name = string(body, "StreamName")?;
            let mode = match body
                .pointer("/StreamModeDetails/StreamMode")
                .and_then(Value::as_str)
            {
                Some("ON_DEMAND") => StreamMode::OnDemand,
                Some("PROVISIONED") | None => StreamMode::Provisioned,
                Some(other) => return Err(invalid(format!("unknown StreamMode {other}"))),
            };
            let shards = match body.get("ShardCount") {
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("ShardCount must be a positive integer"))?,
                None if mode == StreamMode::OnDemand => 0,
                None => {
                    return Err(invalid("ShardCount is required for a provisioned stream"));
                }
            };
            streams.create(name, shards, mode).map_err(stream_error)?;
            Ok(json!({}))
        }
        "DeleteStream" => {
            streams.delete(&stream_name(body)?).map_err(stream_error)?;
            Ok(json!({}))
        }
        "ListStreams" => {
            let all = streams.list();
            let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            let summaries: Vec<Value> = all
                .iter()
                .map(|s| {
                    json!({
                        "StreamName": s.name,
                        "StreamARN": arn(&s.name),
                        "StreamStatus": "ACTIVE",
                        "StreamModeDetails": mode_json(s),
                        "StreamCreationTimestamp": epoch_ms(s.created_at.timestamp_millis()),
                    })
                })
                .collect();
            Ok(json!({"StreamNames": names, "HasMoreStreams": false, "StreamSummaries": summaries}))
        }
        "DescribeStream" | "ListShards" => {
            let name = stream_name(body)?;
            let info = streams.describe(&name).map_err(stream_error)?;
            let firsts = streams.first_sequences(&name).map_err(stream_error)?;
            let shards: Vec<Value> = (0..info.shards)
                .map(|s| shard_json(&info, s, firsts.get(s as usize).copied().flatten()))
                .collect();
            if operation == "ListShards" {
                return Ok(json!({"Shards": shards}));
            }
            Ok(json!({"StreamDescription": {
                "StreamName": info.name,
                "StreamARN": arn(&info.name),
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": mode_json(&info),
                "Shards": shards,
                "HasMoreShards": false,
                "RetentionPeriodHours": info.retention_hours,
                "StreamCreationTimestamp": epoch_ms(info.created_at.timestamp_millis()),
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                "EncryptionType": "NONE",
            }}))
        }
        "DescribeStreamSummary" => {
            let info = streams
                .describe(&stream_name(body)?)
                .map_err(stream_error)?;
            Ok(json!({"StreamDescriptionSummary": {
                "StreamName": info.name,
                "StreamARN": arn(&info.name),
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": mode_json(&info),
                "RetentionPeriodHours": info.retention_hours,
                "StreamCreationTimestamp": epoch_ms(info.created_at.timestamp_millis()),
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                "EncryptionType": "NONE",
                "OpenShardCount": info.shards,
                "ConsumerCount": 0,
            }}))
        }
        "PutRecord" => {
            let name = stream_name(body)?;
            let record = put_record(body)?;
            let appended = streams
                .put(&name, vec![record])
                .await
                .map_err(stream_error)?;
            let a = appended
                .first()
                .ok_or_else(|| AwsError::internal("no record was appended"))?;
            Ok(json!({
                "ShardId": shard_id(a.shard),
                "SequenceNumber": a.sequence.to_string(),
                "EncryptionType": "NONE",
            }))
        }
        "PutRecords" => {
            let name = stream_name(body)?;
            let entries = body
                .get("Records")
                .and_then(Value::as_array)
                .ok_or_else(|| AwsError::new("ValidationException", "Records is required"))?;
            if entries.is_empty() || entries.len() > MAX_PUT_RECORDS {
                return Err(AwsError::new(
                    "ValidationException",
                    format!(
                        "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length between 1 and {MAX_PUT_RECORDS}, got {}",
                        entries.len()
                    ),
                ));
            }
            let records = entries
                .iter()
                .map(put_record)
                .collect::<Result<Vec<_>, _>>()?;
            let total: usize = records
                .iter()
                .map(|r| r.data.len() + r.partition_key.len())
                .sum();
            if total > MAX_PUT_RECORDS_BYTES {
                return Err(invalid(format!(
                    "Records size exceeds 5 MB limit: {total} bytes"
                )));
            }
            let appended = streams.put(&name, records).await.map_err(stream_error)?;
            let out: Vec<Value> = appended
                .iter()
                .map(|a| json!({"SequenceNumber": a.sequence.to_string(), "ShardId": shard_id(a.shard)}))
                .collect();
            Ok(json!({"FailedRecordCount": 0, "Records": out, "EncryptionType": "NONE"}))
        }
        "GetShardIterator" => {
            let name = stream_name(body)?;
            let info = streams.describe(&name).map_err(stream_error)?;
            let shard_text = string(body, "ShardId")?;
            let shard = parse_shard_id(shard_text)
                .filter(|s| *s < info.shards)
                .ok_or_else(|| {
                    AwsError::new(
                        "ResourceNotFoundException",
                        format!("Shard {shard_text} in stream {name} under account {CATALOG_ID} does not exist"),
                    )
                })?;
            let sequence = || -> Result<u64, AwsError> {
                let text = string(body, "StartingSequenceNumber").map_err(|_| {
                    invalid("StartingSequenceNumber is required for this ShardIteratorType")
                })?;
                text.parse::<u64>().map_err(|_| {
                    invalid(format!(
                        "StartingSequenceNumber {text} is not a sequence number of this stream"
                    ))
                })
            };
            let start = match string(body, "ShardIteratorType")? {
                "TRIM_HORIZON" => Start::TrimHorizon,
                "LATEST" => Start::Latest,
                "AT_SEQUENCE_NUMBER" => Start::At(sequence()?),
                "AFTER_SEQUENCE_NUMBER" => Start::After(sequence()?),
                "AT_TIMESTAMP" => {
                    let ts = body
                        .get("Timestamp")
                        .and_then(Value::as_f64)
                        .ok_or_else(|| invalid("Timestamp is required for AT_TIMESTAMP"))?;
                    Start::AtTimestamp((ts * 1000.0).round() as i64)
                }
                other => {
                    return Err(AwsError::new(
                        "ValidationException",
                        format!(
                            "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
                        ),
                    ));
                }
            };
            // Resolve the start now, so that LATEST means "after what is there now".
            let position = streams
                .read(&name, shard, start, 0)
                .await
                .map_err(stream_error)?;
            let it = Iterator {
                s: name,
                g: info.created_at.timestamp_micros(),
                h: shard,
                q: position.next,
                t: Utc::now().timestamp_millis(),
            };
            Ok(json!({"ShardIterator": it.encode()}))
        }
        "GetRecords" => {
            let it = Iterator::decode(string(body, "ShardIterator")?)?;
            let limit = match body.get("Limit") {
                None | Some(Value::Null) => MAX_GET_LIMIT,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=MAX_GET_LIMIT).contains(n))
                    .ok_or_else(|| {
                        invalid(format!("Limit must be between 1 and {MAX_GET_LIMIT}"))
                    })?,
            };
            let now = Utc::now().timestamp_millis();
            if now - it.t > ITERATOR_TTL_MS {
                return Err(AwsError::new(
                    "ExpiredIteratorException",
                    format!(
                        "Iterator expired. The iterator was created at time {} while right now it is {}",
                        it.t, now
                    ),
                ));
            }
            let info = streams.describe(&it.s).map_err(stream_error)?;
            if info.created_at.timestamp_micros() != it.g {
                return Err(AwsError::new(
                    "ResourceNotFoundException",
                    format!("Stream {} under account {CATALOG_ID} not found.", it.s),
                ));
            }
            let batch = streams
                .read(&it.s, it.h, Start::At(it.q), limit as usize)
                .await
                .map_err(stream_error)?;
            let mut bytes = 0usize;
            let mut records = Vec::new();
            let mut next = it.q;
            for r in &batch.records {
                bytes += r.data.len() + r.partition_key.len();
                if bytes > MAX_GET_BYTES && !records.is_empty() {
                    break;
                }
                next = r.sequence + 1;
                records.push(json!({
                    "SequenceNumber": r.sequence.to_string(),
                    "ApproximateArrivalTimestamp": epoch_ms(r.arrival_ms),
                    "Data": STANDARD.encode(&r.data),
                    "PartitionKey": r.partition_key,
                }));
            }
            if batch.records.is_empty() {
                next = batch.next.max(it.q);
            }
            let following = Iterator {
                q: next,
                t: now,
                ..it
            };
            let behind = if records.len() < batch.records.len() {
                batch.millis_behind.max(1)
            } else {
                batch.millis_behind
            };
            Ok(json!({
                "Records": records,
                "NextShardIterator": following.encode(),
                "MillisBehindLatest": behind,
            }))
        }
        "IncreaseStreamRetentionPeriod" | "DecreaseStreamRetentionPeriod" => {
            let name = stream_name(body)?;
            let hours = body
                .get("RetentionPeriodHours")
                .and_then(Value::as_u64)
                .and_then(|h| u32::try_from(h).ok())
                .ok_or_else(|| invalid("RetentionPeriodHours is required"))?;
            let increase = operation.starts_with("Increase");
            streams
                .update(&name, |info| {
                    if !(DEFAULT_RETENTION_HOURS..=MAX_RETENTION_HOURS).contains(&hours) {
                        return Err(StreamError::LimitExceeded(format!(
                            "Minimum allowed retention period is {DEFAULT_RETENTION_HOURS} hours and maximum is {MAX_RETENTION_HOURS} hours; requested {hours}"
                        )));
                    }
                    if increase && hours < info.retention_hours {
                        return Err(StreamError::LimitExceeded(format!(
                            "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({} hours). Use DecreaseRetentionPeriod API.",
                            info.retention_hours
                        )));
                    }
                    if !increase && hours > info.retention_hours {
                        return Err(StreamError::LimitExceeded(format!(
                            "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({} hours). Use IncreaseRetentionPeriod API.",
                            info.retention_hours
                        )));
                    }
                    info.retention_hours = hours;
                    Ok(())
                })
                .map_err(|e| match e {
                    StreamError::LimitExceeded(m) => invalid(m),
                    other => stream_error(other),
                })?;
            Ok(json!({}))
        }
        "AddTagsToStream" => {
            let name = stream_name(body)?;
            let tags = body
                .get("Tags")
                .and_then(Value::as_object)
                .ok_or_else(|| invalid("Tags is required"))?
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        v.as_str()
                            .ok_or_else(|| invalid("tag values must be strings"))?
                            .to_owned(),
                    ))
                })
                .collect::<Result<Vec<_>, AwsError>>()?;
            streams
                .update(&name, |info| {
                    info.tags.extend(tags);
                    if info.tags.len() > 50 {
                        return Err(StreamError::Invalid(
                            "a stream can have at most 50 tags".to_owned(),
                        ));
                    }
                    Ok(())
                })
                .map_err(stream_error)?;
            Ok(json!({}))
        }
        "ListTagsForStream" => {
            let info = streams
                .describe(&stream_name(body)?)
                .map_err(stream_error)?;
            let tags: Vec<Value> = info
                .tags
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            Ok(json!({"Tags": tags, "HasMoreTags": false}))
        }
        _ => Err(AwsError::new(
            "UnknownOperationException",
            format!("operation {operation} is not supported by tarn's Kinesis API"),
        )),
    }
}
