//! Streams: Kinesis-style durable logs of records, split into shards by partition key.
//!
//! Each stream has a folder under the streams directory holding `stream.json` (its definition)
//! and its write-ahead log (see [`log`]). One writer task per stream appends and fsyncs each
//! batch of concurrent puts once (group commit); a put returns only after its records are on
//! disk, so an acknowledged record survives a crash. Sequence numbers increase strictly within
//! a stream (and so within each shard). An index of where each record sits is kept in memory
//! and rebuilt from the log at start-up; record bytes are read from the log on demand.

mod kpl;
mod log;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use self::kpl::{KPL_MAGIC, UserRecord, aggregate, deaggregate};
pub use self::log::StoredRecord;
use self::log::{Appender, Entry, NewRecord};

/// The `[streams]` section of tarn's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// The local folder of the write-ahead logs. Default: `<warehouse>/_tarn/streams` for a
    /// local warehouse, `./tarn-streams` otherwise.
    pub dir: Option<PathBuf>,
    /// A log segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Puts waiting for the writer, per stream; more are refused as throttled.
    pub max_pending_puts: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            segment_bytes: 64 << 20,
            max_pending_puts: 1024,
        }
    }
}

/// Kinesis' limits.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
pub const DEFAULT_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 8760;
/// Shards of an on-demand stream.
pub const ON_DEMAND_SHARDS: u32 = 4;

/// What can go wrong with streams; the server maps each to a Kinesis error type.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("Stream {stream} under account 000000000000 not found.")]
    NotFound { stream: String },
    #[error("Stream {stream} under account 000000000000 already exists.")]
    InUse { stream: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("Rate exceeded for stream {stream}: too many puts waiting to be written")]
    Throttled { stream: String },
    #[error("stream log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stream log {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("the stream writer stopped")]
    Stopped,
}

/// Provisioned (a fixed shard count) or on-demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

/// A stream's definition, kept in `stream.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub name: String,
    pub shards: u32,
    pub mode: StreamMode,
    pub retention_hours: u32,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl StreamInfo {
    /// The hash-key range `[start, end]` of shard `i`: 0..2^128-1 split evenly.
    pub fn hash_range(&self, shard: u32) -> (u128, u128) {
        let n = u128::from(self.shards.max(1));
        let start = boundary(u128::from(shard), n);
        let end = if u128::from(shard) + 1 == n {
            u128::MAX
        } else {
            boundary(u128::from(shard) + 1, n) - 1
        };
        (start, end)
    }

    /// The shard whose range holds `hash`.
    pub fn shard_for_hash(&self, hash: u128) -> u32 {
        (0..self.shards)
            .find(|s| {
                let (a, b) = self.hash_range(*s);
                (a..=b).contains(&hash)
            })
            .unwrap_or(self.shards.saturating_sub(1))
    }
}

/// `floor(i * 2^128 / n)` without overflow: where shard `i` of `n` starts, as Kinesis splits.
fn boundary(i: u128, n: u128) -> u128 {
    if i == 0 || n <= 1 {
        return 0;
    }
    // 2^128 = n * q + r, from u128::MAX = 2^128 - 1 (q fits: n >= 2).
    let (mut q, mut r) = (u128::MAX / n, u128::MAX % n + 1);
    if r == n {
        q += 1;
        r = 0;
    }
    i * q + i * r / n
}

/// Kinesis' shard id for shard `i`.
pub fn shard_id(i: u32) -> String {
    format!("shardId-{i:012}")
}

/// Parses `shardId-000000000003` (or `3`).
pub fn parse_shard_id(id: &str) -> Option<u32> {
    id.strip_prefix("shardId-").unwrap_or(id).parse().ok()
}

/// The hash key of a partition key: MD5 as a 128-bit big-endian integer, as Kinesis does.
pub fn hash_key(partition_key: &str) -> u128 {
    use md5::Digest;
    let digest = md5::Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// One record to put.
#[derive(Debug, Clone)]
pub struct PutRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<u128>,
    pub data: Vec<u8>,
}

/// Where a put record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub shard: u32,
    pub sequence: u64,
}

/// A batch of records read from one shard.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    pub records: Vec<StoredRecord>,
    /// The next sequence number to read from.
    pub next: u64,
    /// Milliseconds between the last record returned and the shard's newest.
    pub millis_behind: i64,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    TrimHorizon,
    Latest,
    At(u64),
    After(u64),
    AtTimestamp(i64),
}

struct WriteRequest {
    records: Vec<NewRecord>,
    reply: oneshot::Sender<Result<Vec<Appended>, StreamError>>,
}

/// One stream: its definition, index and writer.
struct Stream {
    dir: PathBuf,
    info: Arc<RwLock<StreamInfo>>,
    /// Per shard, entries in sequence order.
    index: Arc<RwLock<Vec<Vec<Entry>>>>,
    writer: mpsc::Sender<WriteRequest>,
    /// The last sequence number handed out (shared with the writer).
    last_sequence: Arc<std::sync::atomic::AtomicU64>,
    /// The last sequence number on disk, for readers that wait for new records.
    appended: tokio::sync::watch::Receiver<u64>,
}

/// Every stream, and their logs.
pub struct Streams {
    dir: PathBuf,
    config: StreamsConfig,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").field("dir", &self.dir).finish()
    }
}

fn io(path: &Path, source: std::io::Error) -> StreamError {
    StreamError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Whether `name` is a valid AWS resource name of at most `max` characters
/// (`[a-zA-Z0-9_.-]+`, not starting with a dot: names starting with one are tarn's own).
pub(crate) fn is_valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !name.starts_with('.')
}

fn validate_name(name: &str) -> Result<(), StreamError> {
    if is_valid_name(name, 128) {
        Ok(())
    } else {
        Err(StreamError::Invalid(format!(
            "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ (1 to 128 characters)"
        )))
    }
}

/// Replaces `dir/file` with `body` durably: write a temporary file, fsync it, rename it over
/// `file`, fsync the folder.
pub(crate) fn write_durably(dir: &Path, file: &str, body: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{file}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(file))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `info` to `stream.json` atomically (write, fsync, rename, fsync the folder).
fn save_info(dir: &Path, info: &StreamInfo) -> Result<(), StreamError> {
    let path = dir.join("stream.json");
    let body = serde_json::to_vec_pretty(info).map_err(|e| StreamError::Corrupt {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_durably(dir, "stream.json", &body).map_err(|e| io(&path, e))
}

impl Streams {
    /// Opens (creating it if missing) the streams folder and recovers every stream's log.
    /// Must run inside a Tokio runtime: each stream gets its writer task.
    pub fn open(dir: PathBuf, config: StreamsConfig) -> Result<Self, StreamError> {
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut streams = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let path = entry.path();
            let info_path = path.join("stream.json");
            if !info_path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&info_path).map_err(|e| io(&info_path, e))?;
            let info: StreamInfo =
                serde_json::from_slice(&bytes).map_err(|e| StreamError::Corrupt {
                    path: info_path.display().to_string(),
                    reason: e.to_string(),
                })?;
            let stream = Stream::recover(path, info, &config)?;
            let name = stream.info().name;
            streams.insert(name, Arc::new(stream));
        }
        tracing::info!(dir = %dir.display(), streams = streams.len(), "streams recovered");
        Ok(Self {
            dir,
            config,
            streams: RwLock::new(streams),
        })
    }

    fn get(&self, name: &str) -> Result<Arc<Stream>, StreamError> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| StreamError::NotFound {
                stream: name.to_owned(),
            })
    }

    /// Creates a stream. `shards` is ignored for on-demand streams.
    pub fn create(
        &self,
        name: &str,
        shards: u32,
        mode: StreamMode,
    ) -> Result<StreamInfo, StreamError> {
        validate_name(name)?;
        let shards = match mode {
            StreamMode::OnDemand => ON_DEMAND_SHARDS,
            StreamMode::Provisioned => shards,
        };
        if !(1..=1024).contains(&shards) {
            return Err(StreamError::Invalid(format!(
                "ShardCount must be between 1 and 1024, got {shards}"
            )));
        }
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        if streams.contains_key(name) {
            return Err(StreamError::InUse {
                stream: name.to_owned(),
            });
        }
        let info = StreamInfo {
            name: name.to_owned(),
            shards,
            mode,
            retention_hours: DEFAULT_RETENTION_HOURS,
            created_at: Utc::now(),
            tags: BTreeMap::new(),
        };
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        save_info(&dir, &info)?;
        let stream = Stream::recover(dir, info.clone(), &self.config)?;
        streams.insert(name.to_owned(), Arc::new(stream));
        Ok(info)
    }

    /// Deletes a stream and its log.
    pub fn delete(&self, name: &str) -> Result<(), StreamError> {
        let stream = self
            .streams
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .ok_or_else(|| StreamError::NotFound {
                stream: name.to_owned(),
            })?;
        // The definition goes first: a crash half-way leaves no stream behind.
        let info = stream.dir.join("stream.json");
        std::fs::remove_file(&info).map_err(|e| io(&info, e))?;
        std::fs::remove_dir_all(&stream.dir).map_err(|e| io(&stream.dir, e))?;
        Ok(())
    }

    pub fn list(&self) -> Vec<StreamInfo> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|s| s.info())
            .collect()
    }

    pub fn describe(&self, name: &str) -> Result<StreamInfo, StreamError> {
        Ok(self.get(name)?.info())
    }

    /// The first sequence number of each shard still held, if any.
    pub fn first_sequences(&self, name: &str) -> Result<Vec<Option<u64>>, StreamError> {
        let stream = self.get(name)?;
        let index = stream.index.read().unwrap_or_else(|e| e.into_inner());
        Ok(index
            .iter()
            .map(|s| s.first().map(|e| e.sequence))
            .collect())
    }

    /// The last sequence number written to the stream (0 for none yet).
    pub fn last_sequence(&self, name: &str) -> Result<u64, StreamError> {
        Ok(self
            .get(name)?
            .last_sequence
            .load(std::sync::atomic::Ordering::Acquire))
    }

    /// A receiver that changes whenever records are appended to the stream (its value is the
    /// last sequence number on disk). It closes when the stream is deleted.
    pub fn watch(&self, name: &str) -> Result<tokio::sync::watch::Receiver<u64>, StreamError> {
        Ok(self.get(name)?.appended.clone())
    }

    /// Changes a stream's definition (retention, tags) and saves it.
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut StreamInfo) -> Result<(), StreamError>,
    ) -> Result<StreamInfo, StreamError> {
        let stream = self.get(name)?;
        let mut info = stream.info.write().unwrap_or_else(|e| e.into_inner());
        let mut next = info.clone();
        change(&mut next)?;
        save_info(&stream.dir, &next)?;
        *info = next.clone();
        Ok(next)
    }

    /// Appends `records` and returns once they are on disk. Records are validated first; the
    /// whole batch is refused if one is invalid.
    pub async fn put(
        &self,
        name: &str,
        records: Vec<PutRecord>,
    ) -> Result<Vec<Appended>, StreamError> {
        let stream = self.get(name)?;
        let info = stream.info();
        let mut new = Vec::with_capacity(records.len());
        for r in records {
            let chars = r.partition_key.chars().count();
            if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
                return Err(StreamError::Invalid(format!(
                    "1 validation error detected: Value at 'partitionKey' failed to satisfy constraint: Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}, got {chars}"
                )));
            }
            if r.data.len() > MAX_RECORD_BYTES {
                return Err(StreamError::Invalid(format!(
                    "1 validation error detected: Value at 'data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}, got {}",
                    r.data.len()
                )));
            }
            let hash = r
                .explicit_hash_key
                .unwrap_or_else(|| hash_key(&r.partition_key));
            new.push(NewRecord {
                shard: info.shard_for_hash(hash),
                key: r.partition_key,
                data: r.data,
            });
        }
        let (reply, done) = oneshot::channel();
        stream
            .writer
            .try_send(WriteRequest {
                records: new,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StreamError::Throttled {
                    stream: name.to_owned(),
                },
                mpsc::error::TrySendError::Closed(_) => StreamError::Stopped,
            })?;
        done.await.map_err(|_| StreamError::Stopped)?
    }

    /// Reads up to `limit` records of `shard` starting at `start`.
    pub async fn read(
        &self,
        name: &str,
        shard: u32,
        start: Start,
        limit: usize,
    ) -> Result<ReadBatch, StreamError> {
        let stream = self.get(name)?;
        let info = stream.info();
        if shard >= info.shards {
            return Err(StreamError::NotFound {
                stream: format!("{name} shard {}", shard_id(shard)),
            });
        }
        let (entries, next, newest) = {
            let index = stream.index.read().unwrap_or_else(|e| e.into_inner());
            let list = &index[shard as usize];
            // Records past the retention period are gone for readers even before their
            // segment is deleted.
            let cutoff =
                Utc::now().timestamp_millis() - i64::from(info.retention_hours) * 3_600_000;
            let live = list.partition_point(|e| e.arrival_ms < cutoff);
            let from = match start {
                Start::TrimHorizon => 0,
                Start::Latest => list.len(),
                Start::At(seq) => list.partition_point(|e| e.sequence < seq),
                Start::After(seq) => list.partition_point(|e| e.sequence <= seq),
                Start::AtTimestamp(ms) => list.partition_point(|e| e.arrival_ms < ms),
            }
            .max(live);
            let taken: Vec<Entry> = list.iter().skip(from).take(limit).copied().collect();
            let next = match taken.last() {
                Some(e) => e.sequence + 1,
                None => match start {
                    Start::At(seq) => seq,
                    Start::After(seq) => seq + 1,
                    _ => list.get(from).map(|e| e.sequence).unwrap_or_else(|| {
                        stream
                            .last_sequence
                            .load(std::sync::atomic::Ordering::Acquire)
                            + 1
                    }),
                },
            };
            (taken, next, list.last().map(|e| e.arrival_ms))
        };
        let dir = stream.dir.clone();
        let records = tokio::task::spawn_blocking(move || {
            entries
                .iter()
                .map(|e| log::read_entry(&dir, e))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| StreamError::Stopped)??;
        let millis_behind = match (records.last(), newest) {
            (Some(r), Some(n)) => (n - r.arrival_ms).max(0),
            _ => 0,
        };
        Ok(ReadBatch {
            records,
            next,
            millis_behind,
        })
    }
}

impl Stream {
    fn info(&self) -> StreamInfo {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rebuilds the index from the log and starts the writer.
    fn recover(
        dir: PathBuf,
        info: StreamInfo,
        config: &StreamsConfig,
    ) -> Result<Self, StreamError> {
        let mut segments: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse::<u64>()
                    .ok()
            })
            .collect();
        segments.sort_unstable();
        let mut index: Vec<Vec<Entry>> = vec![Vec::new(); info.shards as usize];
        let mut last_sequence = 0u64;
        let mut tail = (0u64, 0u64);
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let (entries, end) = log::recover_segment(&dir, *segment, last)?;
            for (shard, entry) in entries {
                last_sequence = last_sequence.max(entry.sequence);
                if let Some(list) = index.get_mut(shard as usize) {
                    list.push(entry);
                }
            }
            tail = (*segment, end);
        }
        let appender = Appender::open(&dir, tail.0, tail.1, config.segment_bytes)?;
        let index = Arc::new(RwLock::new(index));
        let last_sequence = Arc::new(std::sync::atomic::AtomicU64::new(last_sequence));
        let (writer, requests) = mpsc::channel(config.max_pending_puts.max(1));
        let info = Arc::new(RwLock::new(info));
        let (notify, appended) =
            tokio::sync::watch::channel(last_sequence.load(std::sync::atomic::Ordering::Acquire));
        tokio::spawn(write_loop(
            appender,
            requests,
            Arc::clone(&index),
            Arc::clone(&last_sequence),
            Arc::clone(&info),
            notify,
        ));
        Ok(Self {
            dir,
            info,
            index,
            writer,
            last_sequence,
            appended,
        })
    }
}

/// How often the writer drops segments past the retention period.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Deletes sealed segments (before `current`) whose every record arrived before `cutoff_ms`,
/// and forgets their entries. Returns how many segments went.
fn trim(
    dir: &Path,
    index: &RwLock<Vec<Vec<Entry>>>,
    current: u64,
    cutoff_ms: i64,
) -> Result<usize, StreamError> {
    let expired: Vec<u64> = {
        let index = index.read().unwrap_or_else(|e| e.into_inner());
        let mut newest: BTreeMap<u64, i64> = BTreeMap::new();
        for e in index.iter().flatten() {
            let n = newest.entry(e.segment).or_insert(i64::MIN);
            *n = (*n).max(e.arrival_ms);
        }
        newest
            .into_iter()
            .filter(|(segment, arrival)| *segment < current && *arrival < cutoff_ms)
            .map(|(segment, _)| segment)
            .collect()
    };
    if expired.is_empty() {
        return Ok(0);
    }
    // Entries go first, so no reader looks for a file that is about to disappear.
    {
        let mut index = index.write().unwrap_or_else(|e| e.into_inner());
        for list in index.iter_mut() {
            list.retain(|e| !expired.contains(&e.segment));
        }
    }
    for segment in &expired {
        let path = log::segment_path(dir, *segment);
        std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
    }
    tracing::info!(dir = %dir.display(), segments = expired.len(), "stream log: dropped segments past retention");
    Ok(expired.len())
}

/// The writer: takes every waiting put, appends them all, fsyncs once, then answers each.
/// Ends when the stream is dropped (its sender goes away).
async fn write_loop(
    appender: Appender,
    mut requests: mpsc::Receiver<WriteRequest>,
    index: Arc<RwLock<Vec<Vec<Entry>>>>,
    last_sequence: Arc<std::sync::atomic::AtomicU64>,
    info: Arc<RwLock<StreamInfo>>,
    notify: tokio::sync::watch::Sender<u64>,
) {
    let dir = appender.dir().to_owned();
    let appender = Arc::new(std::sync::Mutex::new(appender));
    let mut trimmed = std::time::Instant::now();
    loop {
        // Retention: drop expired segments now and then, also while the stream is quiet.
        if trimmed.elapsed() >= TRIM_EVERY {
            trimmed = std::time::Instant::now();
            let current = appender.lock().unwrap_or_else(|e| e.into_inner()).segment();
            let hours = info
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .retention_hours;
            let cutoff = Utc::now().timestamp_millis() - i64::from(hours) * 3_600_000;
            if let Err(error) = trim(&dir, &index, current, cutoff) {
                tracing::warn!(%error, "stream log: cannot drop expired segments");
            }
        }
        let first = match tokio::time::timeout(TRIM_EVERY, requests.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => break,
            Err(_) => continue,
        };
        let mut batch = vec![first];
        while batch.len() < 256 {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let counts: Vec<usize> = batch.iter().map(|r| r.records.len()).collect();
        let records: Vec<NewRecord> = batch
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.records))
            .collect();
        let first_sequence = last_sequence.load(std::sync::atomic::Ordering::Acquire) + 1;
        let arrival_ms = Utc::now().timestamp_millis();
        let appender = Arc::clone(&appender);
        let written = tokio::task::spawn_blocking(move || {
            let mut a = appender.lock().unwrap_or_else(|e| e.into_inner());
            a.append(&records, first_sequence, arrival_ms)
        })
        .await
        .unwrap_or(Err(StreamError::Stopped));
        match written {
            Ok(entries) => {
                if let Some((_, last)) = entries.last() {
                    last_sequence.store(last.sequence, std::sync::atomic::Ordering::Release);
                }
                {
                    let mut index = index.write().unwrap_or_else(|e| e.into_inner());
                    for (shard, entry) in &entries {
                        if let Some(list) = index.get_mut(*shard as usize) {
                            list.push(*entry);
                        }
                    }
                }
                if let Some((_, last)) = entries.last() {
                    notify.send_replace(last.sequence);
                }
                let mut rest = entries.as_slice();
                for (request, count) in batch.into_iter().zip(counts) {
                    let (mine, others) = rest.split_at(count.min(rest.len()));
                    rest = others;
                    let appended = mine
                        .iter()
                        .map(|(shard, e)| Appended {
                            shard: *shard,
                            sequence: e.sequence,
                        })
                        .collect();
                    let _ = request.reply.send(Ok(appended));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "stream log write failed; puts refused");
                let message = e.to_string();
                for request in batch {
                    let _ = request.reply.send(Err(StreamError::Io {
                        path: message.clone(),
                        source: std::io::Error::other("write failed"),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, data: &str) -> PutRecord {
        PutRecord {
            partition_key: key.into(),
            explicit_hash_key: None,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn hash_ranges_cover_everything_and_keys_find_their_shard() {
        let info = StreamInfo {
            name: "s".into(),
            shards: 3,
            mode: StreamMode::Provisioned,
            retention_hours: 24,
            created_at: Utc::now(),
            tags: BTreeMap::new(),
        };
        assert_eq!(info.hash_range(0).0, 0);
        assert_eq!(info.hash_range(2).1, u128::MAX);
        assert_eq!(info.hash_range(0).1 + 1, info.hash_range(1).0);
        assert_eq!(info.hash_range(1).1 + 1, info.hash_range(2).0);
        let h = hash_key("key-1");
        let s = info.shard_for_hash(h);
        let (a, b) = info.hash_range(s);
        assert!(a <= h && h <= b);
        assert_eq!(shard_id(3), "shardId-000000000003");
        // Four shards split at exact quarters of 2^128.
        let four = StreamInfo { shards: 4, ..info };
        assert_eq!(four.hash_range(1).0, 1u128 << 126);
        assert_eq!(four.hash_range(0).1, (1u128 << 126) - 1);
        let one = StreamInfo { shards: 1, ..four };
        assert_eq!(one.hash_range(0), (0, u128::MAX));
        assert_eq!(parse_shard_id("shardId-000000000003"), Some(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_puts_are_durable_ordered_and_survive_reopen() -> Result<(), StreamError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let config = StreamsConfig {
            segment_bytes: 4096,
            ..StreamsConfig::default()
        };
        let streams = Arc::new(Streams::open(dir.path().to_owned(), config.clone())?);
        streams.create("s", 2, StreamMode::Provisioned)?;
        let mut tasks = Vec::new();
        for p in 0..8 {
            let streams = Arc::clone(&streams);
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..50 {
                    let a = streams
                        .put("s", vec![put(&format!("k{p}"), &format!("{p}-{i}"))])
                        .await?;
                    out.push(a[0]);
                }
                Ok::<_, StreamError>(out)
            }));
        }
        let mut acked = 0;
        for t in tasks {
            let appended = t.await.map_err(|_| StreamError::Stopped)??;
            // One producer, one key: its records are in order.
            assert!(appended.windows(2).all(|w| w[0].sequence < w[1].sequence));
            acked += appended.len();
        }
        assert_eq!(acked, 400);
        drop(streams);
        let reopened = Streams::open(dir.path().to_owned(), config)?;
        let mut seen = 0;
        for shard in 0..2 {
            let batch = reopened
                .read("s", shard, Start::TrimHorizon, 10_000)
                .await?;
            assert!(
                batch
                    .records
                    .windows(2)
                    .all(|w| w[0].sequence < w[1].sequence)
            );
            seen += batch.records.len();
        }
        assert_eq!(seen, 400);
        // New puts continue the sequence.
        let next = reopened.put("s", vec![put("k0", "after")]).await?;
        assert!(next[0].sequence > 400);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_segments_are_dropped_and_their_records_gone() -> Result<(), StreamError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let config = StreamsConfig {
            segment_bytes: 64,
            ..StreamsConfig::default()
        };
        let streams = Streams::open(dir.path().to_owned(), config)?;
        streams.create("s", 1, StreamMode::Provisioned)?;
        for i in 0..5 {
            streams
                .put("s", vec![put("k", &format!("record {i} of some length"))])
                .await?;
        }
        let stream = streams.get("s")?;
        let segments = |d: &Path| {
            std::fs::read_dir(d.join("s"))
                .map(|r| {
                    r.filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                        .count()
                })
                .unwrap_or(0)
        };
        let before = segments(dir.path());
        assert!(before >= 3, "{before} segments");
        // Nothing is old enough yet.
        let current = before as u64 - 1;
        assert_eq!(trim(&stream.dir, &stream.index, current, 0)?, 0);
        // Everything is, as far as a cutoff in the future says: all but the open segment go.
        let dropped = trim(&stream.dir, &stream.index, current, i64::MAX)?;
        assert_eq!(dropped, before - 1);
        assert_eq!(segments(dir.path()), 1);
        let left = streams.read("s", 0, Start::TrimHorizon, 100).await?;
        assert_eq!(left.records.len(), 1);
        assert!(left.records[0].data.starts_with(b"record 4"));
        Ok(())
    }

    #[tokio::test]
    async fn bad_puts_and_names_are_refused() -> Result<(), StreamError> {
        let dir = tempfile::tempdir().map_err(|e| io(Path::new("tmp"), e))?;
        let streams = Streams::open(dir.path().to_owned(), StreamsConfig::default())?;
        assert!(matches!(
            streams.create("bad name", 1, StreamMode::Provisioned),
            Err(StreamError::Invalid(_))
        ));
        streams.create("s", 1, StreamMode::Provisioned)?;
        assert!(matches!(
            streams.create("s", 1, StreamMode::Provisioned),
            Err(StreamError::InUse { .. })
        ));
        assert!(matches!(
            streams.put("s", vec![put("", "x")]).await,
            Err(StreamError::Invalid(_))
        ));
        let big = PutRecord {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: vec![0; MAX_RECORD_BYTES + 1],
        };
        assert!(matches!(
            streams.put("s", vec![big]).await,
            Err(StreamError::Invalid(_))
        ));
        assert!(matches!(
            streams.put("nope", vec![put("k", "x")]).await,
            Err(StreamError::NotFound { .. })
        ));
        Ok(())
    }
}
