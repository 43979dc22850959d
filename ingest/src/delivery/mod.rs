//! Delivery (Firehose): records from a stream land in a Delta table, exactly once.
//!
//! A delivery reads its source (a Kinesis-style stream, or its own one-shard buffer stream for
//! direct puts), buffers records until the size or interval hint is reached or the source goes
//! quiet, converts them by the table's schema and appends them in one Delta commit. The
//! commit carries, per shard, a Delta application transaction (`txn`) with the last sequence
//! number it holds: that is the checkpoint, committed atomically with the data. After a crash
//! the delivery starts again after the checkpoint the table holds, so no record is lost or
//! written twice.
//!
//! Records that do not fit go to an error table (`<table>_errors`), committed before the data
//! with its own checkpoints; a replay skips what either table already holds.
//!
//! Queries see records not yet delivered through [`Deliveries::live_rows`]: the stream's
//! records after the checkpoints of the very snapshot being read, converted the same way.

mod convert;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use serde::{Deserialize, Serialize};
use tarn_catalog::{Catalog, Op, Table, TableFormat, TableKind, TableRef};
use tokio::sync::watch;
use url::Url;

pub use self::convert::{DT_COLUMN, HOUR_COLUMN, MALFORMED, SCHEMA_MISMATCH, error_schema};
use self::convert::{Rejected, SourceRecord};
use crate::Ingester;
use crate::stream::{Appended, PutRecord, Start, StreamError, StreamMode, Streams, StreamsConfig};

/// Firehose's buffering limits and defaults.
pub const DEFAULT_BUFFER_BYTES: u64 = 5 << 20;
pub const MAX_BUFFER_BYTES: u64 = 128 << 20;
pub const DEFAULT_BUFFER_INTERVAL_SECS: u64 = 300;
pub const MAX_BUFFER_INTERVAL_SECS: u64 = 900;
/// A buffer is delivered once the source has been quiet this long (0: never early).
pub const DEFAULT_IDLE_FLUSH_SECS: u64 = 10;
/// Firehose's limit on one record.
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

/// Records read from a shard at a time.
const READ_LIMIT: usize = 10_000;

/// Where a delivery's records come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverySource {
    /// Producers put records to the delivery itself (Firehose `PutRecord[Batch]`).
    DirectPut,
    /// A stream of the Kinesis API.
    Stream {
        name: String,
        /// The stream's creation time: a stream deleted and made again is another stream.
        created_at: DateTime<Utc>,
    },
}

/// How delivered rows are partitioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    None,
    /// `dt` (date) and `hour` of the record's arrival, in UTC.
    ArrivalTime,
    /// By these fields of the records.
    Fields(Vec<String>),
}

impl Partitioning {
    /// The table's partition columns under this partitioning.
    pub fn columns(&self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::ArrivalTime => vec![DT_COLUMN.to_owned(), HOUR_COLUMN.to_owned()],
            Self::Fields(f) => f.clone(),
        }
    }

    /// `arrival_time`, the comma-separated fields, or `none`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "" | "none" => return Ok(Self::None),
            "arrival_time" => return Ok(Self::ArrivalTime),
            _ => {}
        }
        let fields: Vec<String> = text.split(',').map(|f| f.trim().to_owned()).collect();
        if fields.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?}: expected arrival_time, none or a comma-separated list of fields"
            ));
        }
        Ok(Self::Fields(fields))
    }

    pub fn describe(&self) -> String {
        match self {
            Self::None => "none".to_owned(),
            Self::ArrivalTime => "arrival_time".to_owned(),
            Self::Fields(f) => f.join(","),
        }
    }

    /// What a table's own partition columns mean for a delivery into it.
    fn of_table(columns: &[String]) -> Self {
        if columns.is_empty() {
            Self::None
        } else if columns == [DT_COLUMN, HOUR_COLUMN] {
            Self::ArrivalTime
        } else {
            Self::Fields(columns.to_vec())
        }
    }
}

/// What a delivery is asked to do.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub name: String,
    /// `None`: direct put.
    pub source_stream: Option<String>,
    pub table: TableRef,
    pub buffer_bytes: u64,
    pub buffer_interval_secs: u64,
    pub idle_flush_secs: u64,
    /// `None`: the existing table's, or none for a new table.
    pub partitioning: Option<Partitioning>,
    /// Start at the oldest record the stream holds rather than at the newest (Firehose starts
    /// at the newest).
    pub from_trim_horizon: bool,
}

impl NewDelivery {
    pub fn new(name: impl Into<String>, table: TableRef) -> Self {
        Self {
            name: name.into(),
            source_stream: None,
            table,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            buffer_interval_secs: DEFAULT_BUFFER_INTERVAL_SECS,
            idle_flush_secs: DEFAULT_IDLE_FLUSH_SECS,
            partitioning: None,
            from_trim_horizon: false,
        }
    }
}

/// A delivery as saved: `<streams dir>/.deliveries/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub name: String,
    pub source: DeliverySource,
    pub table: TableRef,
    pub error_table: TableRef,
    pub buffer_bytes: u64,
    pub buffer_interval_secs: u64,
    pub idle_flush_secs: u64,
    pub partitioning: Partitioning,
    /// Records at or before this sequence number are not delivered.
    pub start_after: u64,
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    /// The Delta application id of `shard`'s checkpoint.
    fn app_id(&self, shard: u32) -> String {
        format!(
            "tarn-delivery:{}:{}:{shard}",
            self.name,
            self.created_at.timestamp_micros()
        )
    }

    fn source_name(&self) -> &str {
        match &self.source {
            DeliverySource::DirectPut => &self.name,
            DeliverySource::Stream { name, .. } => name,
        }
    }
}

/// How a delivery is doing (since this process started).
#[derive(Debug, Clone, Default)]
pub struct DeliveryStatus {
    pub records_delivered: u64,
    pub rows_written: u64,
    pub error_records: u64,
    pub commits: u64,
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    pub last_commit_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Per shard, the last sequence number in the table.
    pub delivered_through: BTreeMap<u32, u64>,
}

/// What can go wrong with deliveries.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("Firehose {name} under account 000000000000 not found.")]
    NotFound { name: String },
    #[error("Firehose {name} under account 000000000000 already exists.")]
    InUse { name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("the delivery's source: {0}")]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Ingest(#[from] Box<crate::Error>),
    #[error(transparent)]
    Catalog(#[from] tarn_catalog::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Convert(String),
}

impl From<crate::Error> for DeliveryError {
    fn from(e: crate::Error) -> Self {
        Self::Ingest(Box::new(e))
    }
}

type Result<T, E = DeliveryError> = std::result::Result<T, E>;

/// How a delivery's worker is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    /// Shutdown: what is buffered stays in the log for the next start.
    Now,
    /// Deleted: deliver what the source holds first.
    AfterFlush,
}

struct Running {
    delivery: Delivery,
    status: Mutex<DeliveryStatus>,
    stop: watch::Sender<Stop>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Checkpoints (per shard, the last sequence number held) of a table at one Delta version.
type Checkpoints = Vec<Option<u64>>;

struct Shared {
    dir: PathBuf,
    streams: Arc<Streams>,
    direct: Arc<Streams>,
    ingester: Arc<Ingester>,
    catalog: Arc<Catalog>,
    /// Checkpoints read from Delta logs, by (location, version, delivery): reading them replays
    /// the log, so each version is read once.
    checkpoints: Mutex<HashMap<(String, u64, String), Checkpoints>>,
}

/// Every delivery, and their workers.
pub struct Deliveries {
    shared: Arc<Shared>,
    running: RwLock<BTreeMap<String, Arc<Running>>>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeliveryError + '_ {
    move |source| DeliveryError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn validate_name(name: &str) -> Result<()> {
    if crate::stream::is_valid_name(name, 64) {
        Ok(())
    } else {
        Err(DeliveryError::Invalid(format!(
            "1 validation error detected: Value '{name}' at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ (1 to 64 characters)"
        )))
    }
}

impl Deliveries {
    /// Opens the deliveries saved beside the stream logs in `streams_dir` and starts their
    /// workers. Must run inside a Tokio runtime.
    pub fn open(
        streams_dir: &Path,
        config: StreamsConfig,
        streams: Arc<Streams>,
        ingester: Arc<Ingester>,
        catalog: Arc<Catalog>,
    ) -> Result<Self> {
        let dir = streams_dir.join(".deliveries");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Direct puts are buffered in streams of their own, apart from the Kinesis API's.
        let direct = Arc::new(Streams::open(streams_dir.join(".firehose"), config)?);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            streams,
            direct,
            ingester,
            catalog,
            checkpoints: Mutex::new(HashMap::new()),
        });
        let this = Self {
            shared,
            running: RwLock::new(BTreeMap::new()),
        };
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let delivery: Delivery =
                serde_json::from_slice(&bytes).map_err(|e| DeliveryError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::other(e),
                })?;
            let mut running = this.running.write().unwrap_or_else(|e| e.into_inner());
            this.start(&mut running, delivery);
        }
        Ok(this)
    }

    fn start(&self, running_map: &mut BTreeMap<String, Arc<Running>>, delivery: Delivery) {
        let (stop, stopped) = watch::channel(Stop::Run);
        let running = Arc::new(Running {
            delivery: delivery.clone(),
            status: Mutex::new(DeliveryStatus::default()),
            stop,
            worker: Mutex::new(None),
        });
        let worker = tokio::spawn(run(Arc::clone(&self.shared), Arc::clone(&running), stopped));
        *running.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(worker);
        running_map.insert(delivery.name.clone(), running);
    }

    fn get(&self, name: &str) -> Result<Arc<Running>> {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| DeliveryError::NotFound {
                name: name.to_owned(),
            })
    }

    /// Creates a delivery and starts it.
    pub fn create(&self, new: NewDelivery) -> Result<Delivery> {
        validate_name(&new.name)?;
        if !(1..=MAX_BUFFER_BYTES).contains(&new.buffer_bytes) {
            return Err(DeliveryError::Invalid(format!(
                "the buffer size must be between 1 byte and {} MiB",
                MAX_BUFFER_BYTES >> 20
            )));
        }
        if new.buffer_interval_secs > MAX_BUFFER_INTERVAL_SECS {
            return Err(DeliveryError::Invalid(format!(
                "the buffer interval must be between 0 and {MAX_BUFFER_INTERVAL_SECS} seconds"
            )));
        }
        let snapshot = self.shared.catalog.snapshot();
        if snapshot.database(&new.table.database).is_none() {
            return Err(tarn_catalog::Error::DatabaseNotFound {
                database: new.table.database.clone(),
            }
            .into());
        }
        tarn_catalog::validate_name(&new.table.table)?;
        let error_table = TableRef::new(
            new.table.database.clone(),
            format!("{}_errors", new.table.table),
        );
        let partitioning = match snapshot.table(&new.table.database, &new.table.table) {
            Some(t) => {
                if t.format != TableFormat::Delta {
                    return Err(DeliveryError::Invalid(format!(
                        "{}.{} is a {} table; deliveries write Delta tables",
                        t.database,
                        t.name,
                        t.format.as_str()
                    )));
                }
                let own = Partitioning::of_table(&t.partition_columns);
                match new.partitioning {
                    Some(p) if p != own => {
                        return Err(DeliveryError::Invalid(format!(
                            "{}.{} is partitioned by {}, not {}",
                            t.database,
                            t.name,
                            own.describe(),
                            p.describe()
                        )));
                    }
                    _ => own,
                }
            }
            None => new.partitioning.unwrap_or(Partitioning::None),
        };
        if let Some(t) = snapshot.table(&error_table.database, &error_table.table)
            && t.format != TableFormat::Delta
        {
            return Err(DeliveryError::Invalid(format!(
                "the error table {}.{} exists and is not a Delta table",
                t.database, t.name
            )));
        }
        // Holding the lock from the check to the insert keeps two creates of one name apart.
        let mut running = self.running.write().unwrap_or_else(|e| e.into_inner());
        if running.contains_key(&new.name) {
            return Err(DeliveryError::InUse { name: new.name });
        }
        if running.values().any(|r| r.delivery.table == new.table) {
            return Err(DeliveryError::Invalid(format!(
                "{}.{} already has a delivery",
                new.table.database, new.table.table
            )));
        }
        let (source, start_after) = match &new.source_stream {
            Some(stream) => {
                let info = self.shared.streams.describe(stream)?;
                let start_after = if new.from_trim_horizon {
                    0
                } else {
                    self.shared.streams.last_sequence(stream)?
                };
                (
                    DeliverySource::Stream {
                        name: stream.clone(),
                        created_at: info.created_at,
                    },
                    start_after,
                )
            }
            None => {
                // A buffer left by a create that crashed half-way belongs to no delivery.
                match self.shared.direct.delete(&new.name) {
                    Ok(()) | Err(StreamError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.shared
                    .direct
                    .create(&new.name, 1, StreamMode::Provisioned)?;
                (DeliverySource::DirectPut, 0)
            }
        };
        let delivery = Delivery {
            name: new.name.clone(),
            source,
            table: new.table,
            error_table,
            buffer_bytes: new.buffer_bytes,
            buffer_interval_secs: new.buffer_interval_secs,
            idle_flush_secs: new.idle_flush_secs,
            partitioning,
            start_after,
            created_at: Utc::now(),
        };
        save(&self.shared.dir, &delivery)?;
        self.start(&mut running, delivery.clone());
        Ok(delivery)
    }

    /// Stops a delivery after delivering what its source holds (for at most `grace`), and
    /// deletes it; a direct-put delivery's buffer goes with it. The table stays.
    pub async fn delete(&self, name: &str, grace: Duration) -> Result<()> {
        let running = self
            .running
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| DeliveryError::NotFound {
                name: name.to_owned(),
            })?;
        let path = self.shared.dir.join(format!("{name}.json"));
        std::fs::remove_file(&path).map_err(io(&path))?;
        let _ = running.stop.send(Stop::AfterFlush);
        let worker = running
            .worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(worker) = worker {
            let abort = worker.abort_handle();
            if tokio::time::timeout(grace, worker).await.is_err() {
                abort.abort();
                tracing::warn!(delivery = name, "deleted before its buffer was delivered");
            }
        }
        if running.delivery.source == DeliverySource::DirectPut {
            match self.shared.direct.delete(name) {
                Ok(()) | Err(StreamError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stops every worker; buffered records stay in the logs for the next start.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Running>> = self
            .running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for running in all {
            let _ = running.stop.send(Stop::Now);
            let worker = running
                .worker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(worker) = worker {
                let _ = worker.await;
            }
        }
    }

    pub fn list(&self) -> Vec<(Delivery, DeliveryStatus)> {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|r| (r.delivery.clone(), r.status()))
            .collect()
    }

    pub fn describe(&self, name: &str) -> Result<(Delivery, DeliveryStatus)> {
        let r = self.get(name)?;
        Ok((r.delivery.clone(), r.status()))
    }

    /// Puts records to a direct-put delivery; they are acknowledged once in its log.
    pub async fn put(&self, name: &str, records: Vec<Vec<u8>>) -> Result<Vec<Appended>> {
        let running = self.get(name)?;
        if running.delivery.source != DeliverySource::DirectPut {
            return Err(DeliveryError::Invalid(format!(
                "This operation is not permitted on KinesisStreamAsSource delivery stream type. ({name} reads the stream {})",
                running.delivery.source_name()
            )));
        }
        let records = records
            .into_iter()
            .map(|data| PutRecord {
                partition_key: "firehose".to_owned(),
                explicit_hash_key: Some(0),
                data,
            })
            .collect();
        Ok(self.shared.direct.put(name, records).await?)
    }

    /// Where `table` is, if it exists yet.
    pub fn table_location(&self, table: &TableRef) -> Option<String> {
        self.shared.table(table).map(|t| t.location.clone())
    }

    /// The delivery into `table`, if any.
    pub fn for_table(&self, table: &TableRef) -> Option<Delivery> {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|r| &r.delivery.table == table)
            .map(|r| r.delivery.clone())
    }

    /// Rows acknowledged to the delivery into `table` but not in `delta` (a snapshot of it),
    /// converted to `schema`: what a query adds to the snapshot's rows to see every
    /// acknowledged record exactly once. `None` when no delivery writes `table`.
    pub async fn live_rows(
        &self,
        table: &TableRef,
        delta: &DeltaTable,
        schema: &SchemaRef,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let Some(delivery) = self.for_table(table) else {
            return Ok(None);
        };
        let source = self.shared.source(&delivery)?;
        let shards = source.describe(delivery.source_name())?.shards;
        let checkpoints = self.shared.checkpoints(&delivery, delta, shards).await?;
        let mut records = Vec::new();
        for shard in 0..shards {
            let after = checkpoints[shard as usize]
                .unwrap_or(0)
                .max(delivery.start_after);
            read_all(&source, delivery.source_name(), shard, after, &mut records).await?;
        }
        if records.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let (batch, _) = convert::convert(schema, &delivery.partitioning, &records)
            .map_err(|e| DeliveryError::Convert(e.to_string()))?;
        Ok(Some(batch.into_iter().collect()))
    }
}

impl Running {
    fn status(&self) -> DeliveryStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut DeliveryStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Reads every record of `shard` after `after` into `out`.
async fn read_all(
    source: &Streams,
    name: &str,
    shard: u32,
    mut after: u64,
    out: &mut Vec<SourceRecord>,
) -> Result<()> {
    loop {
        let batch = source
            .read(name, shard, Start::After(after), READ_LIMIT)
            .await?;
        let Some(last) = batch.records.last() else {
            return Ok(());
        };
        after = last.sequence;
        out.extend(batch.records.into_iter().map(|r| SourceRecord {
            shard,
            sequence: r.sequence,
            arrival_ms: r.arrival_ms,
            data: r.data,
        }));
    }
}

/// Writes `delivery` atomically (write, fsync, rename, fsync the folder).
fn save(dir: &Path, delivery: &Delivery) -> Result<()> {
    let file = format!("{}.json", delivery.name);
    let path = dir.join(&file);
    let body = serde_json::to_vec_pretty(delivery).map_err(|e| DeliveryError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    crate::stream::write_durably(dir, &file, &body).map_err(io(&path))
}

impl Shared {
    fn source(&self, delivery: &Delivery) -> Result<Arc<Streams>> {
        match &delivery.source {
            DeliverySource::DirectPut => Ok(Arc::clone(&self.direct)),
            DeliverySource::Stream { name, created_at } => {
                let info = self.streams.describe(name)?;
                if &info.created_at != created_at {
                    return Err(DeliveryError::Invalid(format!(
                        "the stream {name} was deleted and created again; drop the delivery {} and create it anew",
                        delivery.name
                    )));
                }
                Ok(Arc::clone(&self.streams))
            }
        }
    }

    /// The checkpoints `delta` holds for `delivery`, per shard.
    async fn checkpoints(
        &self,
        delivery: &Delivery,
        delta: &DeltaTable,
        shards: u32,
    ) -> Result<Checkpoints> {
        let Some(version) = delta.version() else {
            return Ok(vec![None; shards as usize]);
        };
        let key = (delta.table_url().to_string(), version, delivery.app_id(0));
        if let Some(found) = self
            .checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let snapshot = delta.snapshot().map_err(|e| delta_error(delta, e))?;
        let mut out = Vec::with_capacity(shards as usize);
        for shard in 0..shards {
            let v = snapshot
                .transaction_version(delta.log_store().as_ref(), delivery.app_id(shard))
                .await
                .map_err(|e| delta_error(delta, e))?;
            out.push(v.and_then(|v| u64::try_from(v).ok()));
        }
        self.remember(key, out.clone());
        Ok(out)
    }

    fn remember(&self, key: (String, u64, String), checkpoints: Checkpoints) {
        let mut cache = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, checkpoints);
    }

    /// The table, from the catalog; `None` while it does not exist.
    fn table(&self, table: &TableRef) -> Option<Arc<Table>> {
        self.catalog
            .snapshot()
            .table(&table.database, &table.table)
            .cloned()
    }

    /// Creates the managed Delta table `table` with `schema` and registers it.
    async fn create_table(
        &self,
        table: &TableRef,
        schema: SchemaRef,
        partition_columns: Vec<String>,
    ) -> Result<Arc<Table>> {
        let url = self
            .catalog
            .managed_location(&table.database, &table.table)?;
        let written = self
            .ingester
            .write_batches(
                &url,
                Arc::clone(&schema),
                Vec::new(),
                &partition_columns,
                crate::WriteMode::Create,
            )
            .await;
        match written {
            Ok(_) => {}
            // A crash after the write and before the catalog commit left the table behind.
            Err(crate::Error::LocationNotEmpty { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let delta = self.ingester.load_delta(&url).await?;
        // The schema scans produce (view types, dictionary-encoded partition values), as for
        // every other Delta table in the catalog.
        let schema = delta
            .table_provider()
            .await
            .map_err(|e| delta_error(&delta, deltalake::DeltaTableError::from(e)))?
            .schema();
        let now = Utc::now();
        let entry = Table {
            database: table.database.clone(),
            name: table.table.clone(),
            kind: TableKind::Managed,
            format: TableFormat::Delta,
            location: url.to_string(),
            schema,
            partition_columns,
            options: BTreeMap::new(),
            properties: BTreeMap::from([(
                "tarn.delivery".to_owned(),
                "written by a delivery".to_owned(),
            )]),
            created_at: now,
            updated_at: now,
            partitions: None,
            skipped_files: BTreeMap::new(),
            versions: Vec::new(),
        };
        self.catalog
            .commit(vec![Op::CreateTable {
                table: entry.clone(),
            }])
            .await?;
        tracing::info!(table = %entry.table_ref(), "delivery created its table");
        Ok(Arc::new(entry))
    }
}

fn delta_error(delta: &DeltaTable, e: deltalake::DeltaTableError) -> DeliveryError {
    crate::Error::Delta {
        location: delta.table_url().to_string(),
        source: Box::new(e),
    }
    .into()
}

/// A table a delivery writes: its catalog entry, latest snapshot and checkpoints.
struct Target {
    entry: Arc<Table>,
    delta: DeltaTable,
    schema: SchemaRef,
    checkpoints: Checkpoints,
}

impl Target {
    async fn open(
        shared: &Shared,
        delivery: &Delivery,
        entry: Arc<Table>,
        shards: u32,
    ) -> Result<Self> {
        let url = Url::parse(&entry.location)
            .map_err(|e| DeliveryError::Invalid(format!("{}: bad location {e}", entry.location)))?;
        let delta = shared.ingester.open_delta_for_write(&url).await?;
        if delta.version().is_none() {
            return Err(crate::Error::NotADeltaTable {
                location: entry.location.clone(),
            }
            .into());
        }
        let schema = delta
            .snapshot()
            .map_err(|e| delta_error(&delta, e))?
            .snapshot()
            .arrow_schema();
        let checkpoints = shared.checkpoints(delivery, &delta, shards).await?;
        Ok(Self {
            entry,
            delta,
            schema,
            checkpoints,
        })
    }

    fn checkpoint(&self, shard: u32) -> Option<u64> {
        self.checkpoints.get(shard as usize).copied().flatten()
    }

    /// Appends `batch` (may be empty) with checkpoints `through` in one commit.
    async fn append(
        &mut self,
        shared: &Shared,
        delivery: &Delivery,
        batch: RecordBatch,
        through: &BTreeMap<u32, u64>,
    ) -> Result<()> {
        let txns: Vec<Transaction> = through
            .iter()
            .map(|(shard, seq)| {
                Transaction::new_with_last_update(
                    delivery.app_id(*shard),
                    *seq as i64,
                    Some(Utc::now().timestamp_millis()),
                )
            })
            .collect();
        let mut write = self
            .delta
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default().with_application_transactions(txns),
            );
        if !self.entry.partition_columns.is_empty() {
            write = write.with_partition_columns(self.entry.partition_columns.clone());
        }
        let written = write.await.map_err(|e| delta_error(&self.delta, e))?;
        for (shard, seq) in through {
            if let Some(c) = self.checkpoints.get_mut(*shard as usize) {
                *c = Some(*seq);
            }
        }
        if let Some(version) = written.version() {
            shared.remember(
                (written.table_url().to_string(), version, delivery.app_id(0)),
                self.checkpoints.clone(),
            );
        }
        if let Ok(url) = Url::parse(&self.entry.location) {
            shared.ingester.committed_delta(
                &url,
                self.entry.created_at.timestamp_micros(),
                &written,
            );
        }
        self.delta = written;
        Ok(())
    }
}

/// The worker: delivers until stopped, starting again after an error (with back-off).
async fn run(shared: Arc<Shared>, running: Arc<Running>, mut stop: watch::Receiver<Stop>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match deliver(&shared, &running, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(delivery = %running.delivery.name, error = %e, "delivery failed; retrying");
                running.update(|s| s.last_error = Some(e.to_string()));
            }
        }
        if *stop.borrow() != Stop::Run {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// What the worker holds between flushes.
#[derive(Default)]
struct Buffer {
    records: Vec<SourceRecord>,
    bytes: u64,
    oldest: Option<Instant>,
}

async fn deliver(
    shared: &Shared,
    running: &Running,
    stop: &mut watch::Receiver<Stop>,
) -> Result<()> {
    let delivery = &running.delivery;
    let source = shared.source(delivery)?;
    let name = delivery.source_name();
    let shards = source.describe(name)?.shards;
    let mut appended = source.watch(name)?;
    let mut data = match shared.table(&delivery.table) {
        Some(entry) => Some(Target::open(shared, delivery, entry, shards).await?),
        None => None,
    };
    let mut errors = match shared.table(&delivery.error_table) {
        Some(entry) => Some(Target::open(shared, delivery, entry, shards).await?),
        None => None,
    };
    // Resume after what the data table holds; the error table's checkpoints filter the replay.
    let mut positions: Vec<u64> = (0..shards)
        .map(|s| {
            data.as_ref()
                .and_then(|t| t.checkpoint(s))
                .unwrap_or(0)
                .max(delivery.start_after)
        })
        .collect();
    running.update(|s| {
        s.delivered_through = positions
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, *p))
            .collect();
    });
    let interval = Duration::from_secs(delivery.buffer_interval_secs);
    let idle = Duration::from_secs(delivery.idle_flush_secs);
    let mut buffer = Buffer::default();
    let mut last_new = Instant::now();
    loop {
        let mode = *stop.borrow_and_update();
        appended.borrow_and_update();
        let mut got_new = false;
        for shard in 0..shards {
            while buffer.bytes < delivery.buffer_bytes {
                let batch = source
                    .read(
                        name,
                        shard,
                        Start::After(positions[shard as usize]),
                        READ_LIMIT,
                    )
                    .await?;
                let Some(last) = batch.records.last() else {
                    break;
                };
                positions[shard as usize] = last.sequence;
                got_new = true;
                for r in batch.records {
                    buffer.bytes += r.data.len() as u64;
                    buffer.records.push(SourceRecord {
                        shard,
                        sequence: r.sequence,
                        arrival_ms: r.arrival_ms,
                        data: r.data,
                    });
                }
                buffer.oldest.get_or_insert_with(Instant::now);
            }
        }
        if got_new {
            last_new = Instant::now();
        }
        running.update(|s| {
            s.buffered_records = buffer.records.len() as u64;
            s.buffered_bytes = buffer.bytes;
        });
        if mode == Stop::Now {
            return Ok(());
        }
        let due = match buffer.oldest {
            None => false,
            Some(oldest) => {
                mode == Stop::AfterFlush
                    || buffer.bytes >= delivery.buffer_bytes
                    || oldest.elapsed() >= interval
                    || (delivery.idle_flush_secs > 0 && last_new.elapsed() >= idle)
            }
        };
        if due {
            let records = std::mem::take(&mut buffer).records;
            flush(shared, running, &mut data, &mut errors, shards, &records).await?;
            running.update(|s| {
                s.last_error = None;
                s.buffered_records = 0;
                s.buffered_bytes = 0;
            });
            continue;
        }
        if mode == Stop::AfterFlush {
            return Ok(());
        }
        let wake = match buffer.oldest {
            None => None,
            Some(oldest) => {
                let by_interval = oldest + interval;
                Some(if delivery.idle_flush_secs > 0 {
                    by_interval.min(last_new + idle)
                } else {
                    by_interval
                })
            }
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = appended.changed() => {
                if changed.is_err() {
                    return Err(DeliveryError::Invalid(format!(
                        "the source stream {name} was deleted"
                    )));
                }
            }
            () = sleep => {}
            _ = stop.changed() => {}
        }
    }
}

/// Delivers `records`: rejects to the error table first, then the rows (with every shard's
/// checkpoint) to the table. Records either table already holds are skipped for it.
async fn flush(
    shared: &Shared,
    running: &Running,
    data: &mut Option<Target>,
    errors: &mut Option<Target>,
    shards: u32,
    records: &[SourceRecord],
) -> Result<()> {
    let delivery = &running.delivery;
    let mut no_schema =
        "no record so far is a JSON object to take the table's schema from".to_owned();
    if data.is_none() {
        // The first delivery into a new table: its schema comes from these records.
        if let Some(entry) = shared.table(&delivery.table) {
            *data = Some(Target::open(shared, delivery, entry, shards).await?);
        } else {
            let parsed: Vec<_> = records
                .iter()
                .filter_map(|r| convert::parse_objects(&r.data).ok())
                .take(1000)
                .collect();
            let objects: Vec<_> = parsed.iter().flatten().collect();
            if !objects.is_empty() {
                match convert::infer_schema(&objects, &delivery.partitioning) {
                    Ok(schema) => {
                        let entry = shared
                            .create_table(&delivery.table, schema, delivery.partitioning.columns())
                            .await?;
                        *data = Some(Target::open(shared, delivery, entry, shards).await?);
                    }
                    Err(reason) => no_schema = format!("the table cannot be created: {reason}"),
                }
            }
        }
    }
    let mut through: BTreeMap<u32, u64> = BTreeMap::new();
    for r in records {
        let e = through.entry(r.shard).or_insert(r.sequence);
        *e = (*e).max(r.sequence);
    }
    let (batch, mut rejected) = match data {
        Some(t) => {
            let pending: Vec<SourceRecord> = records
                .iter()
                .filter(|r| t.checkpoint(r.shard).is_none_or(|c| r.sequence > c))
                .cloned()
                .collect();
            convert::convert(&t.schema, &delivery.partitioning, &pending)
                .map_err(|e| DeliveryError::Convert(e.to_string()))?
        }
        None => (
            None,
            records
                .iter()
                .map(|r| Rejected {
                    shard: r.shard,
                    sequence: r.sequence,
                    arrival_ms: r.arrival_ms,
                    code: SCHEMA_MISMATCH,
                    message: no_schema.clone(),
                    data: r.data.clone(),
                })
                .collect(),
        ),
    };
    if let Some(t) = errors.as_ref() {
        rejected.retain(|r| t.checkpoint(r.shard).is_none_or(|c| r.sequence > c));
    }
    let error_count = rejected.len() as u64;
    if !rejected.is_empty() {
        if errors.is_none() {
            let entry = match shared.table(&delivery.error_table) {
                Some(entry) => entry,
                None => {
                    shared
                        .create_table(&delivery.error_table, error_schema(), Vec::new())
                        .await?
                }
            };
            *errors = Some(Target::open(shared, delivery, entry, shards).await?);
        }
        if let Some(t) = errors.as_mut() {
            let batch = convert::error_batch(delivery.source_name(), &rejected)
                .map_err(|e| DeliveryError::Convert(e.to_string()))?;
            t.append(shared, delivery, batch, &through).await?;
        }
    }
    let rows = batch.as_ref().map_or(0, |b| b.num_rows() as u64);
    if let Some(t) = data.as_mut() {
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&t.schema)));
        t.append(shared, delivery, batch, &through).await?;
    }
    running.update(|s| {
        s.records_delivered += records.len() as u64;
        s.rows_written += rows;
        s.error_records += error_count;
        s.commits += 1;
        s.last_commit_at = Some(Utc::now());
        s.delivered_through
            .extend(through.iter().map(|(k, v)| (*k, *v)));
    });
    tracing::debug!(delivery = %delivery.name, records = records.len(), rows, errors = error_count, "delivered");
    Ok(())
}
