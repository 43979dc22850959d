//! Crawlers: visit a location, find tables (Parquet, CSV, NDJSON, each maybe gzip or zstd
//! compressed, and Delta tables), infer and merge their schemas, find Hive-style (and, as an
//! option, unnamed) partitions, and commit everything found as one catalog entry together with
//! the run's record.
//!
//! A crawl never damages what is in the catalog: a file it cannot use (empty, corrupt, a row
//! with the wrong number of fields, a type that does not fit) is recorded in the run, with the
//! reason, and left out of its table; a failed run commits only its record.
//!
//! Incremental: which files were read, with their size and modification time, is kept in
//! `<warehouse>/_tarn/crawlers/<name>.json`. A later run reads only files that are new or
//! changed, and registers only partitions that are new. That file is a cache: if it is lost,
//! the next run reads every file again and reaches the same catalog.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::model::{
    CatalogSnapshot, CrawlRun, Crawler, NULL_PARTITION_VALUE, Op, Partition, SchemaChangePolicy,
    SkippedFile, Table, TableFormat, TableKind,
};
use crate::store::ObjectStores;

/// How much of a CSV or JSON file is read to infer its schema.
const SAMPLE_BYTES: u64 = 1 << 20;
/// How many records of that sample are used.
const SAMPLE_RECORDS: usize = 1000;
/// Files whose schemas are read at once.
const READ_CONCURRENCY: usize = 8;

/// Reads the schema of a Delta table. The catalog cannot read Delta logs itself; the ingest
/// layer, which owns Delta, implements this.
#[async_trait]
pub trait DeltaSchemas: Send + Sync {
    /// The table schema (partition columns included) and the partition columns.
    async fn delta_schema(
        &self,
        location: &Url,
    ) -> std::result::Result<(SchemaRef, Vec<String>), String>;
}

/// What a crawl did.
#[derive(Debug, Clone)]
pub struct CrawlOutcome {
    pub run: Arc<CrawlRun>,
    /// Locations of the tables it created or changed (their cached listings are stale).
    pub changed_locations: Vec<String>,
}

/// A compression codec of a CSV or JSON file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// The `format.compression` value DataFusion reads.
    pub fn as_option(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    fn from_option(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "gzip" => Some(Self::Gzip),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// What a file's name says it holds: a format (if the extension is known) and a compression.
pub fn classify_by_name(name: &str) -> (Option<TableFormat>, Option<Compression>) {
    let lower = name.to_ascii_lowercase();
    let (stem, compression) = if let Some(s) = lower.strip_suffix(".gz") {
        (s, Some(Compression::Gzip))
    } else if let Some(s) = lower.strip_suffix(".gzip") {
        (s, Some(Compression::Gzip))
    } else if let Some(s) = lower.strip_suffix(".zst") {
        (s, Some(Compression::Zstd))
    } else if let Some(s) = lower.strip_suffix(".zstd") {
        (s, Some(Compression::Zstd))
    } else {
        (lower.as_str(), None)
    };
    let ext = stem.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let format = match ext {
        "parquet" | "parq" | "pqt" => Some(TableFormat::Parquet),
        "csv" | "tsv" | "psv" => Some(TableFormat::Csv),
        "json" | "jsonl" | "ndjson" => Some(TableFormat::Json),
        _ => None,
    };
    (format, compression)
}

/// Whether a scan of a crawled `format` table reads the file `name`: not hidden (`_x`, `.x`),
/// and not named as another format.
pub fn file_belongs_to(name: &str, format: TableFormat, compression: Option<&str>) -> bool {
    if name.starts_with('_') || name.starts_with('.') {
        return false;
    }
    let (named, comp) = classify_by_name(name);
    let wanted = compression.and_then(Compression::from_option);
    named.is_none_or(|f| f == format) && (named.is_none() || comp == wanted)
}

/// The per-crawler record of files already read.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CrawlState {
    /// The crawler's creation time: a crawler dropped and created again starts afresh.
    generation: i64,
    files: BTreeMap<String, FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    size: u64,
    modified: DateTime<Utc>,
}

impl From<&ObjectMeta> for FileStamp {
    fn from(meta: &ObjectMeta) -> Self {
        Self {
            size: meta.size,
            modified: meta.last_modified,
        }
    }
}

/// A file found under the crawler's location.
#[derive(Debug, Clone)]
struct Found {
    meta: ObjectMeta,
    /// Path segments below the location, as stored (percent-encoded where needed).
    parts: Vec<String>,
}

impl Found {
    fn url(&self, base: &Url) -> String {
        join_url(base, &self.parts, false)
    }
}

/// `base` (a folder URL) with `parts` (object-store path parts, as stored) appended; a folder
/// URL ends in `/`. Parts are percent-encoded as URL segments, so a `%`, `#` or `?` in a key
/// survives the round trip through `ListingTableUrl`.
fn join_url(base: &Url, parts: &[String], folder: bool) -> String {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
        segments.extend(parts);
        if folder {
            segments.push("");
        }
    }
    url.to_string()
}

/// A table folder with its files, before schemas are read.
#[derive(Debug)]
struct Candidate {
    name: String,
    /// Folder URL ending in `/`.
    location: String,
    depth: usize,
    delta: bool,
    files: Vec<Found>,
}

/// A file's format, compression and CSV layout (delimiter, header), for counting which is
/// most common in a table.
type LayoutKey = (u8, Option<Compression>, Option<(u8, bool)>);

/// What reading one file gave.
#[derive(Debug, Clone)]
struct FileSchema {
    format: TableFormat,
    compression: Option<Compression>,
    schema: Schema,
    /// CSV only.
    csv: Option<CsvLayout>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CsvLayout {
    delimiter: u8,
    header: bool,
}

/// The record a run builds up.
#[derive(Debug, Default)]
struct Report {
    tables_created: Vec<String>,
    tables_updated: Vec<String>,
    partitions_added: u64,
    files_read: u64,
    skipped: Vec<SkippedFile>,
    schema_changes: Vec<String>,
}

impl Report {
    fn skip(&mut self, path: String, reason: impl Into<String>) {
        self.skipped.push(SkippedFile {
            path,
            reason: reason.into(),
        });
    }
}

impl Catalog {
    /// Runs crawler `name` once and commits what it found, with the run's record. A run that
    /// fails (the location cannot be listed, the `fail` schema policy) commits only its record
    /// and is returned, not raised; errors are returned only when even that cannot be committed.
    pub async fn crawl(
        &self,
        name: &str,
        stores: &ObjectStores,
        delta: &dyn DeltaSchemas,
    ) -> Result<CrawlOutcome> {
        let crawler = {
            let snapshot = self.refresh().await?;
            snapshot
                .crawlers
                .get(name)
                .cloned()
                .ok_or_else(|| Error::CrawlerNotFound {
                    crawler: name.to_owned(),
                })?
        };
        let started_at = Utc::now();
        let state = self.load_crawl_state(&crawler).await;
        let mut reads: HashMap<String, std::result::Result<FileSchema, String>> = HashMap::new();
        // A concurrent writer may create a table we meant to create: plan again once.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snapshot = self.snapshot();
            let planned = plan_crawl(&crawler, &snapshot, &state, stores, delta, &mut reads).await;
            let (mut ops, report, seen, changed, error) = match planned {
                Ok(p) => (p.ops, p.report, p.seen, p.changed, None),
                Err(e) => (
                    Vec::new(),
                    Report::default(),
                    BTreeMap::new(),
                    Vec::new(),
                    Some(e),
                ),
            };
            let run = CrawlRun {
                crawler: crawler.name.clone(),
                run: snapshot.next_crawl_run(&crawler.name),
                started_at,
                finished_at: Utc::now(),
                succeeded: error.is_none(),
                error: error.clone(),
                tables_created: report.tables_created,
                tables_updated: report.tables_updated,
                partitions_added: report.partitions_added,
                files_read: report.files_read,
                files_skipped: report.skipped,
                schema_changes: report.schema_changes,
            };
            if error.is_some() {
                ops.clear();
            }
            ops.push(Op::RecordCrawlRun { run: run.clone() });
            match self.commit(ops).await {
                Ok(_) => {
                    if error.is_none() {
                        self.save_crawl_state(&crawler, state, seen).await;
                    }
                    tracing::info!(crawler = %crawler.name, run = run.run,
                        succeeded = run.succeeded, created = run.tables_created.len(),
                        updated = run.tables_updated.len(), partitions = run.partitions_added,
                        skipped = run.files_skipped.len(), "crawl finished");
                    return Ok(CrawlOutcome {
                        run: Arc::new(run),
                        changed_locations: changed,
                    });
                }
                Err(
                    e @ (Error::TableExists { .. }
                    | Error::TableNotFound { .. }
                    | Error::DatabaseNotFound { .. }),
                ) if attempt < 2 => {
                    tracing::debug!(error = %e, "crawl raced another writer; planning again");
                    self.refresh().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn crawl_state_path(&self, crawler: &str) -> Path {
        self.root()
            .clone()
            .join("_tarn")
            .join("crawlers")
            .join(format!("{crawler}.json"))
    }

    async fn load_crawl_state(&self, crawler: &Crawler) -> CrawlState {
        let path = self.crawl_state_path(&crawler.name);
        let generation = crawler.created_at.timestamp_micros();
        let read = async {
            let bytes = self.store().get(&path).await?.bytes().await?;
            Ok::<_, object_store::Error>(serde_json::from_slice::<CrawlState>(&bytes).ok())
        };
        match read.await {
            Ok(Some(state)) if state.generation == generation => state,
            Ok(_) | Err(object_store::Error::NotFound { .. }) => CrawlState {
                generation,
                files: BTreeMap::new(),
            },
            Err(error) => {
                tracing::warn!(%error, crawler = %crawler.name, "crawler state unreadable; reading every file");
                CrawlState {
                    generation,
                    files: BTreeMap::new(),
                }
            }
        }
    }

    /// Records which files this run read. A failure only costs the next run some reads.
    async fn save_crawl_state(
        &self,
        crawler: &Crawler,
        mut state: CrawlState,
        seen: BTreeMap<String, FileStamp>,
    ) {
        state.files.extend(seen);
        let path = self.crawl_state_path(&crawler.name);
        let body = match serde_json::to_vec(&state) {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(%error, "cannot encode crawler state");
                return;
            }
        };
        if let Err(error) = self
            .store()
            .put(&path, PutPayload::from(Bytes::from(body)))
            .await
        {
            tracing::warn!(%error, crawler = %crawler.name, "cannot save crawler state");
        }
    }
}

/// The catalog changes one run makes.
struct Planned {
    ops: Vec<Op>,
    report: Report,
    seen: BTreeMap<String, FileStamp>,
    changed: Vec<String>,
}

async fn plan_crawl(
    crawler: &Crawler,
    snapshot: &CatalogSnapshot,
    state: &CrawlState,
    stores: &ObjectStores,
    delta: &dyn DeltaSchemas,
    reads: &mut HashMap<String, std::result::Result<FileSchema, String>>,
) -> std::result::Result<Planned, String> {
    if snapshot.database(&crawler.database).is_none() {
        return Err(format!("database \"{}\" does not exist", crawler.database));
    }
    let base = Url::parse(&crawler.location).map_err(|e| format!("{}: {e}", crawler.location))?;
    let (store, root) = stores.resolve(&base).map_err(|e| e.to_string())?;
    // A folder that cannot be listed is recorded and the rest crawled; a location of which
    // nothing at all can be listed fails the run.
    let mut report = Report::default();
    let mut listed: Vec<ObjectMeta> = Vec::new();
    let mut listing = store.list(Some(&root));
    let mut first_error = None;
    while let Some(item) = listing.next().await {
        match item {
            Ok(meta) => listed.push(meta),
            Err(e) => {
                let path = match &e {
                    object_store::Error::NotFound { path, .. } => path.clone(),
                    _ => crawler.location.clone(),
                };
                report.skip(path, format!("cannot be listed: {e}"));
                first_error.get_or_insert_with(|| format!("cannot list {}: {e}", crawler.location));
            }
        }
    }
    if listed.is_empty()
        && let Some(error) = first_error
    {
        return Err(error);
    }
    let files: Vec<Found> = listed
        .into_iter()
        .filter_map(|meta| {
            let parts: Vec<String> = meta
                .location
                .prefix_match(&root)?
                .map(|p| p.as_ref().to_owned())
                .collect();
            (!parts.is_empty()).then_some(Found { meta, parts })
        })
        .collect();
    let candidates = find_tables(crawler, &base, files, &mut report);

    let mut ops = Vec::new();
    let mut seen = BTreeMap::new();
    let mut changed = Vec::new();
    for candidate in candidates {
        if snapshot.view(&crawler.database, &candidate.name).is_some() {
            report.skip(
                candidate.location.clone(),
                format!(
                    "\"{}.{}\" is a view; drop it, or set a table prefix, to crawl this folder",
                    crawler.database, candidate.name
                ),
            );
            continue;
        }
        let existing = snapshot.table(&crawler.database, &candidate.name).cloned();
        if let Some(t) = &existing {
            let ours = t.properties.get("crawler") == Some(&crawler.name);
            if ours
                && t.location == candidate.location
                && (t.format == TableFormat::Delta) != candidate.delta
            {
                report.skip(
                    candidate.location.clone(),
                    format!(
                        "table \"{}.{}\" is {} but the folder now holds {}; drop the table to crawl it afresh",
                        crawler.database,
                        candidate.name,
                        t.format.as_str(),
                        if candidate.delta { "a Delta table" } else { "plain files" }
                    ),
                );
                continue;
            }
            if !ours || t.location != candidate.location {
                report.skip(
                    candidate.location.clone(),
                    format!(
                        "table \"{}.{}\" already exists and was not made by this crawler from this folder",
                        crawler.database, candidate.name
                    ),
                );
                continue;
            }
        }
        let planned = if candidate.delta {
            plan_delta(crawler, &candidate, existing.as_deref(), delta, &mut report).await
        } else {
            plan_files(
                crawler,
                &base,
                &candidate,
                existing.as_deref(),
                state,
                &store,
                reads,
                &mut report,
                &mut seen,
            )
            .await
        }?;
        changed.push(candidate.location.clone());
        ops.extend(planned);
    }
    Ok(Planned {
        ops,
        report,
        seen,
        changed,
    })
}

/// Splits the listing into table folders.
fn find_tables(
    crawler: &Crawler,
    base: &Url,
    files: Vec<Found>,
    report: &mut Report,
) -> Vec<Candidate> {
    // Delta tables: folders holding `_delta_log`.
    let delta_roots: BTreeSet<Vec<String>> = files
        .iter()
        .filter_map(|f| {
            let i = f.parts.iter().position(|p| p == "_delta_log")?;
            let root = &f.parts[..i];
            (!root
                .iter()
                .any(|p| p.starts_with('_') || p.starts_with('.')))
            .then(|| root.to_vec())
        })
        .collect();
    let visible: Vec<Found> = files
        .into_iter()
        .filter(|f| {
            let in_delta = delta_roots
                .iter()
                .any(|root| f.parts.len() > root.len() && f.parts.starts_with(root));
            !in_delta
                && !f
                    .parts
                    .iter()
                    .any(|p| p.starts_with('_') || p.starts_with('.'))
        })
        .collect();
    let level = crawler
        .options
        .table_level
        .map(|l| l as usize)
        .unwrap_or_else(|| {
            let top_folders: BTreeSet<&String> = visible
                .iter()
                .filter(|f| f.parts.len() > 1)
                .map(|f| &f.parts[0])
                .chain(delta_roots.iter().filter_map(|r| r.first()))
                .collect();
            let all_partitions =
                !top_folders.is_empty() && top_folders.iter().all(|p| hive_segment(p).is_some());
            // Files but no folders: the location itself is the table.
            let only_files = top_folders.is_empty() && !visible.is_empty();
            if delta_roots.contains(&Vec::new()) || all_partitions || only_files {
                0
            } else {
                1
            }
        });
    let mut tables: BTreeMap<Vec<String>, Candidate> = BTreeMap::new();
    let table_name = |key: &[String]| {
        let raw = match key.last() {
            Some(last) => decode(last),
            None => base
                .path_segments()
                .and_then(|mut s| s.rfind(|s| !s.is_empty()).map(decode))
                .unwrap_or_else(|| base.host_str().unwrap_or("root").to_owned()),
        };
        format!("{}{}", crawler.options.table_prefix, sanitize(&raw))
    };
    let location = |key: &[String]| join_url(base, key, true);
    for root in &delta_roots {
        if root.len() == level {
            tables.insert(
                root.clone(),
                Candidate {
                    name: table_name(root),
                    location: location(root),
                    depth: level,
                    delta: true,
                    files: Vec::new(),
                },
            );
        } else {
            report.skip(
                location(root),
                format!(
                    "Delta table at folder depth {} but tables are at depth {level}",
                    root.len()
                ),
            );
        }
    }
    for file in visible {
        if file.parts.len() <= level {
            report.skip(
                file.url(base),
                format!(
                    "lies above the table folders (tables are {level} folder(s) below {})",
                    crawler.location
                ),
            );
            continue;
        }
        let key = file.parts[..level].to_vec();
        let candidate = tables.entry(key.clone()).or_insert_with(|| Candidate {
            name: table_name(&key),
            location: location(&key),
            depth: level,
            delta: false,
            files: Vec::new(),
        });
        if candidate.delta {
            continue;
        }
        candidate.files.push(file);
    }
    // Two folders whose names sanitize alike: the first keeps the name.
    let mut names = BTreeSet::new();
    tables
        .into_values()
        .filter(|c| {
            if let Err(e) = crate::model::validate_name(&c.name) {
                report.skip(
                    c.location.clone(),
                    format!("gives no valid table name: {e}"),
                );
                return false;
            }
            if names.insert(c.name.clone()) {
                true
            } else {
                report.skip(
                    c.location.clone(),
                    format!("another folder already gives the table name \"{}\"", c.name),
                );
                false
            }
        })
        .collect()
}

/// `key=value` → (key, value), decoded.
fn hive_segment(segment: &str) -> Option<(String, String)> {
    let (k, v) = segment.split_once('=')?;
    (!k.is_empty()).then(|| (decode(k), decode(v)))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Table names as Glue makes them: lower case, anything but letters, digits and `_` as `_`.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('_') {
        out.insert(0, 't');
    }
    out
}

async fn plan_delta(
    crawler: &Crawler,
    candidate: &Candidate,
    existing: Option<&Table>,
    delta: &dyn DeltaSchemas,
    report: &mut Report,
) -> std::result::Result<Vec<Op>, String> {
    let url = Url::parse(&candidate.location).map_err(|e| e.to_string())?;
    report.files_read += 1;
    let (schema, partition_columns) = match delta.delta_schema(&url).await {
        Ok(found) => found,
        Err(reason) => {
            report.skip(candidate.location.clone(), reason);
            return Ok(Vec::new());
        }
    };
    let now = Utc::now();
    match existing {
        None => {
            report.tables_created.push(candidate.name.clone());
            Ok(vec![Op::CreateTable {
                table: new_table(
                    crawler,
                    candidate,
                    TableFormat::Delta,
                    schema,
                    partition_columns,
                    BTreeMap::new(),
                    None,
                    now,
                ),
            }])
        }
        Some(old) if old.schema == schema && old.partition_columns == partition_columns => {
            Ok(Vec::new())
        }
        Some(old) => {
            let change = format!(
                "{}: Delta schema changed ({} → {} columns)",
                candidate.name,
                old.schema.fields().len(),
                schema.fields().len()
            );
            match crawler.options.schema_change {
                SchemaChangePolicy::Fail => Err(format!(
                    "schema change in {} and the crawler's policy is fail: {change}",
                    candidate.location
                )),
                SchemaChangePolicy::Log => {
                    report
                        .schema_changes
                        .push(format!("{change} (logged only)"));
                    Ok(Vec::new())
                }
                SchemaChangePolicy::AddColumns => {
                    report.schema_changes.push(change);
                    report.tables_updated.push(candidate.name.clone());
                    let mut table = old.clone();
                    table.schema = schema;
                    table.partition_columns = partition_columns;
                    table.updated_at = now;
                    table.partitions = None;
                    Ok(vec![Op::UpdateTable {
                        table,
                        reason: format!("crawler {} read a new Delta schema", crawler.name),
                    }])
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn new_table(
    crawler: &Crawler,
    candidate: &Candidate,
    format: TableFormat,
    schema: SchemaRef,
    partition_columns: Vec<String>,
    options: BTreeMap<String, String>,
    partitions: Option<Vec<Partition>>,
    now: DateTime<Utc>,
) -> Table {
    let mut properties = BTreeMap::from([
        ("crawler".to_owned(), crawler.name.clone()),
        (
            "classification".to_owned(),
            format.as_str().to_ascii_lowercase(),
        ),
    ]);
    if let Some(c) = options.get("format.compression") {
        properties.insert("compressionType".to_owned(), c.clone());
    }
    Table {
        database: crawler.database.clone(),
        name: candidate.name.clone(),
        kind: TableKind::External,
        format,
        location: candidate.location.clone(),
        schema,
        partition_columns,
        options,
        properties,
        created_at: now,
        updated_at: now,
        partitions,
        skipped_files: BTreeMap::new(),
        versions: Vec::new(),
    }
}

/// The partition folders of one file: names and values, or `None` if it has none that count.
fn partition_layout(dirs: &[String], unnamed: bool) -> Vec<(String, String)> {
    let hive: Option<Vec<(String, String)>> = dirs.iter().map(|d| hive_segment(d)).collect();
    match hive {
        Some(h) => h,
        None if unnamed => dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let value = hive_segment(d).map_or_else(|| decode(d), |(_, v)| v);
                (format!("partition_{i}"), value)
            })
            .collect(),
        None => Vec::new(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn plan_files(
    crawler: &Crawler,
    base: &Url,
    candidate: &Candidate,
    existing: Option<&Table>,
    state: &CrawlState,
    store: &Arc<dyn ObjectStore>,
    reads: &mut HashMap<String, std::result::Result<FileSchema, String>>,
    report: &mut Report,
    seen: &mut BTreeMap<String, FileStamp>,
) -> std::result::Result<Vec<Op>, String> {
    let unnamed = crawler.options.unnamed_partitions;
    let depth = candidate.depth;
    // Each file's partition layout; the table's is the existing one, else the most common.
    let layouts: Vec<Vec<(String, String)>> = candidate
        .files
        .iter()
        .map(|f| partition_layout(&f.parts[depth..f.parts.len() - 1], unnamed))
        .collect();
    let keys_of = |l: &Vec<(String, String)>| l.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let partition_keys: Vec<String> = match existing {
        Some(t) => t.partition_columns.clone(),
        None => {
            let mut counts: BTreeMap<Vec<String>, usize> = BTreeMap::new();
            for l in &layouts {
                *counts.entry(keys_of(l)).or_default() += 1;
            }
            counts
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .map(|(k, _)| k)
                .unwrap_or_default()
        }
    };
    // Which files to read: new or changed ones (all of them for a table not yet in the catalog).
    let mut to_read = Vec::new();
    let mut kept: Vec<(&Found, &Vec<(String, String)>)> = Vec::new();
    let mut misplaced: BTreeMap<String, String> = BTreeMap::new();
    for (file, layout) in candidate.files.iter().zip(&layouts) {
        let url = file.url(base);
        if keys_of(layout) != partition_keys {
            let reason = format!(
                "its folders ({}) do not match the table's partition columns ({})",
                describe_keys(&keys_of(layout)),
                describe_keys(&partition_keys)
            );
            report.skip(url, reason.clone());
            misplaced.insert(file.parts[depth..].join("/"), reason);
            continue;
        }
        if file.meta.size == 0 {
            report.skip(url, "is empty");
            continue;
        }
        let known =
            existing.is_some() && state.files.get(&url) == Some(&FileStamp::from(&file.meta));
        if !known {
            to_read.push(file.clone());
        }
        kept.push((file, layout));
    }
    // Read schemas of the new files (cached across attempts of one run).
    let pending: Vec<Found> = to_read
        .iter()
        .filter(|f| !reads.contains_key(&f.url(base)))
        .cloned()
        .collect();
    let results: Vec<(String, std::result::Result<FileSchema, String>)> =
        futures::stream::iter(pending)
            .map(|f| {
                let store = Arc::clone(store);
                let url = f.url(base);
                async move { (url, read_schema(&store, &f.meta).await) }
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
    reads.extend(results);
    report.files_read += to_read.len() as u64;

    // The table's format, compression and CSV layout: the existing table's, else the most
    // common among the files read.
    let ok_reads: Vec<(&Found, &FileSchema)> = to_read
        .iter()
        .filter_map(|f| match reads.get(&f.url(base)) {
            Some(Ok(s)) => Some((f, s)),
            _ => None,
        })
        .collect();
    let (format, compression, csv) = match existing {
        Some(t) => (
            t.format,
            t.options
                .get("format.compression")
                .and_then(|c| Compression::from_option(c)),
            (t.format == TableFormat::Csv).then(|| CsvLayout {
                delimiter: t
                    .options
                    .get("format.delimiter")
                    .and_then(|d| d.bytes().next())
                    .unwrap_or(b','),
                header: t.options.get("format.has_header").map(String::as_str) == Some("true"),
            }),
        ),
        None => {
            let mut counts: BTreeMap<LayoutKey, usize> = BTreeMap::new();
            for (_, s) in &ok_reads {
                let key = (
                    format_rank(s.format),
                    s.compression,
                    s.csv.map(|c| (c.delimiter, c.header)),
                );
                *counts.entry(key).or_default() += 1;
            }
            match counts.into_iter().max_by_key(|(_, n)| *n) {
                Some(((rank, comp, csv), _)) => (
                    format_from_rank(rank),
                    comp,
                    csv.map(|(delimiter, header)| CsvLayout { delimiter, header }),
                ),
                None => {
                    // Nothing readable: every file's reason goes in the report.
                    for f in &to_read {
                        if let Some(Err(reason)) = reads.get(&f.url(base)) {
                            report.skip(f.url(base), reason.clone());
                        }
                    }
                    return Ok(Vec::new());
                }
            }
        }
    };

    // Merge schemas: the existing table's file schema first, then each new file in path order.
    let mut merged: Vec<Field> = match existing {
        Some(t) => t
            .file_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect(),
        None => Vec::new(),
    };
    let before = merged.clone();
    let mut changes = Vec::new();
    let mut skipped_files = misplaced;
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    // An existing table's partition columns have types: a file whose folder values do not fit
    // them is refused before its schema counts.
    let existing_types: Vec<DataType> = existing
        .map(|t| {
            partition_keys
                .iter()
                .filter_map(|k| t.schema.field_with_name(k).ok())
                .map(|f| f.data_type().clone())
                .collect()
        })
        .unwrap_or_default();
    for f in &to_read {
        let url = f.url(base);
        let rel = f.parts[depth..].join("/");
        let layout = partition_layout(&f.parts[depth..f.parts.len() - 1], unnamed);
        if let Some(((_, value), t)) = layout
            .iter()
            .zip(&existing_types)
            .find(|((_, v), t)| !value_fits(t, v))
        {
            let reason = format!("partition value {value:?} is not a {t}");
            report.skip(url, reason.clone());
            skipped_files.insert(rel, reason);
            continue;
        }
        let read = match reads.get(&url) {
            Some(Ok(s)) => s,
            Some(Err(reason)) => {
                report.skip(url, reason.clone());
                skipped_files.insert(rel, reason.clone());
                continue;
            }
            None => continue,
        };
        let fits = read.format == format
            && read.compression == compression
            && (format != TableFormat::Csv || read.csv == csv);
        if !fits {
            let reason = format!(
                "is {}, but the table is {}",
                describe_file(read),
                describe(format, compression, csv)
            );
            report.skip(url, reason.clone());
            skipped_files.insert(rel, reason);
            continue;
        }
        let clash = read
            .schema
            .fields()
            .iter()
            .find(|f| partition_keys.contains(f.name()));
        if let Some(f) = clash {
            let reason = format!("has a column {} named like a partition column", f.name());
            report.skip(url, reason.clone());
            skipped_files.insert(rel, reason);
            continue;
        }
        if format == TableFormat::Csv && !csv_columns_line_up(&merged, &read.schema) {
            let reason =
                "its columns are not the table's, in the table's order (CSV is read by position)"
                    .to_owned();
            report.skip(url, reason.clone());
            skipped_files.insert(rel, reason);
            continue;
        }
        match merge_into(&merged, &read.schema) {
            Ok((next, added)) => {
                for a in added {
                    changes.push(format!("{}: {} from {url}", candidate.name, a));
                }
                merged = next;
                accepted.insert(url);
            }
            Err(reason) => {
                report.skip(url, reason.clone());
                skipped_files.insert(rel, reason);
            }
        }
    }
    if merged.is_empty() {
        return Ok(Vec::new());
    }
    let schema_changed = existing.is_some() && merged != before;
    if schema_changed {
        match crawler.options.schema_change {
            SchemaChangePolicy::Fail => {
                return Err(format!(
                    "schema change in {} and the crawler's policy is fail: {}",
                    candidate.location,
                    changes.join("; ")
                ));
            }
            SchemaChangePolicy::Log => {
                report
                    .schema_changes
                    .extend(changes.into_iter().map(|c| format!("{c} (logged only)")));
                merged = before.clone();
            }
            SchemaChangePolicy::AddColumns => report.schema_changes.extend(changes),
        }
    }

    // Partition columns and their types.
    let mut partition_fields: Vec<Field> = Vec::new();
    match existing {
        Some(t) => {
            for k in &partition_keys {
                let f = t.schema.field_with_name(k).map_err(|e| e.to_string())?;
                partition_fields.push(f.clone());
            }
        }
        None => {
            for (i, key) in partition_keys.iter().enumerate() {
                let values = kept.iter().map(|(_, l)| l[i].1.as_str());
                partition_fields.push(Field::new(key, infer_partition_type(values), true));
            }
        }
    }
    // Partitions: folders of kept files, whose values fit the column types.
    let known: BTreeSet<Vec<String>> = existing
        .and_then(|t| t.partitions.as_ref())
        .map(|ps| ps.iter().map(|p| p.values.clone()).collect())
        .unwrap_or_default();
    let now = Utc::now();
    let mut new_partitions: BTreeMap<Vec<String>, Partition> = BTreeMap::new();
    for (file, layout) in &kept {
        let url = file.url(base);
        if let Some(Err(_)) = reads.get(&url) {
            continue;
        }
        if skipped_files.contains_key(&file.parts[depth..].join("/")) {
            continue;
        }
        let values: Vec<String> = layout.iter().map(|(_, v)| v.clone()).collect();
        if let Some((field, value)) = partition_fields
            .iter()
            .zip(&values)
            .find(|(f, v)| !value_fits(f.data_type(), v))
        {
            let reason = format!(
                "partition value {value:?} is not a {} (column {})",
                field.data_type(),
                field.name()
            );
            report.skip(url, reason.clone());
            skipped_files.insert(file.parts[depth..].join("/"), reason);
            continue;
        }
        seen.insert(url.clone(), FileStamp::from(&file.meta));
        if known.contains(&values) || new_partitions.contains_key(&values) {
            continue;
        }
        let n = partition_keys.len();
        let location = join_url(base, &file.parts[..depth + n], true);
        new_partitions.insert(
            values.clone(),
            Partition {
                values,
                location,
                created_at: now,
            },
        );
    }
    // Files that were read but not accepted are not "seen": a later run reads them again.
    for f in &to_read {
        let url = f.url(base);
        if !accepted.contains(&url) {
            seen.remove(&url);
        }
    }

    let mut fields = merged;
    fields.extend(partition_fields);
    let schema = Arc::new(Schema::new(fields));
    let mut options = BTreeMap::new();
    if let Some(c) = compression {
        options.insert("format.compression".to_owned(), c.as_option().to_owned());
    }
    if let Some(c) = csv {
        // Older files may have fewer columns than the table once columns are added.
        options.insert("format.truncated_rows".to_owned(), "true".to_owned());
        options.insert("format.has_header".to_owned(), c.header.to_string());
        options.insert(
            "format.delimiter".to_owned(),
            char::from(c.delimiter).to_string(),
        );
    }
    let partitions: Vec<Partition> = new_partitions.into_values().collect();
    let mut ops = Vec::new();
    match existing {
        None => {
            if kept.is_empty() || accepted.is_empty() {
                return Ok(Vec::new());
            }
            // An unpartitioned table is one partition: its own folder.
            let list = if partition_keys.is_empty() {
                vec![Partition {
                    values: Vec::new(),
                    location: candidate.location.clone(),
                    created_at: now,
                }]
            } else {
                partitions.clone()
            };
            report.partitions_added += if partition_keys.is_empty() {
                0
            } else {
                list.len() as u64
            };
            report.tables_created.push(candidate.name.clone());
            let mut table = new_table(
                crawler,
                candidate,
                format,
                schema,
                partition_keys,
                options,
                Some(list),
                now,
            );
            table.skipped_files = skipped_files;
            ops.push(Op::CreateTable { table });
        }
        Some(old) => {
            // Files skipped earlier that were not read again (unchanged) stay skipped.
            let mut all_skipped: BTreeMap<String, String> = old
                .skipped_files
                .iter()
                .filter(|(rel, _)| {
                    candidate
                        .files
                        .iter()
                        .any(|f| f.parts[depth..].join("/") == **rel)
                        && !to_read.iter().any(|f| f.parts[depth..].join("/") == **rel)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            all_skipped.extend(skipped_files);
            if old.schema != schema || old.skipped_files != all_skipped {
                let mut table = old.clone();
                table.schema = schema;
                table.skipped_files = all_skipped;
                table.updated_at = now;
                table.partitions = None;
                if !report.tables_updated.contains(&candidate.name) && old.schema != table.schema {
                    report.tables_updated.push(candidate.name.clone());
                }
                ops.push(Op::UpdateTable {
                    table,
                    reason: format!("crawler {} added columns", crawler.name),
                });
            }
            if !partitions.is_empty() && !partition_keys.is_empty() {
                report.partitions_added += partitions.len() as u64;
                ops.push(Op::AddPartitions {
                    table: old.table_ref(),
                    partitions,
                });
            }
        }
    }
    Ok(ops)
}

fn describe_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".to_owned()
    } else {
        keys.join(", ")
    }
}

fn format_rank(f: TableFormat) -> u8 {
    match f {
        TableFormat::Parquet => 0,
        TableFormat::Csv => 1,
        TableFormat::Json => 2,
        TableFormat::Delta => 3,
    }
}

fn format_from_rank(r: u8) -> TableFormat {
    match r {
        0 => TableFormat::Parquet,
        1 => TableFormat::Csv,
        2 => TableFormat::Json,
        _ => TableFormat::Delta,
    }
}

fn describe(
    format: TableFormat,
    compression: Option<Compression>,
    csv: Option<CsvLayout>,
) -> String {
    let mut s = format.as_str().to_owned();
    if let Some(c) = csv {
        s.push_str(&format!(
            " (delimiter {:?}, {})",
            char::from(c.delimiter),
            if c.header { "header" } else { "no header" }
        ));
    }
    if let Some(c) = compression {
        s.push_str(&format!(", {}", c.as_option()));
    }
    s
}

fn describe_file(f: &FileSchema) -> String {
    describe(f.format, f.compression, f.csv)
}

/// CSV files are read by position: a file's columns must be the table's, in order; it may
/// stop early (read as NULLs) or add columns after them.
fn csv_columns_line_up(table: &[Field], file: &Schema) -> bool {
    table
        .iter()
        .zip(file.fields().iter())
        .all(|(t, f)| t.name() == f.name())
}

/// Adds `file`'s columns to `table`: new columns at the end, types widened where one holds
/// the other. A column whose types cannot be reconciled rejects the file.
fn merge_into(
    table: &[Field],
    file: &Schema,
) -> std::result::Result<(Vec<Field>, Vec<String>), String> {
    let mut out: Vec<Field> = table.to_vec();
    let mut changes = Vec::new();
    for f in file.fields() {
        match out.iter_mut().find(|t| t.name() == f.name()) {
            None => {
                changes.push(format!("added column {} {}", f.name(), f.data_type()));
                out.push(Field::new(f.name(), f.data_type().clone(), true));
            }
            Some(t) if t.data_type() == f.data_type() => {}
            Some(t) => match widen(t.data_type(), f.data_type()) {
                Some(w) => {
                    if &w != t.data_type() {
                        changes.push(format!(
                            "widened column {} from {} to {w}",
                            t.name(),
                            t.data_type()
                        ));
                        *t = Field::new(t.name(), w, true);
                    }
                }
                None => {
                    return Err(format!(
                        "column {} is {} in this file but {} in the table",
                        f.name(),
                        f.data_type(),
                        t.data_type()
                    ));
                }
            },
        }
    }
    Ok((out, changes))
}

/// The narrowest type holding both, where one exists.
fn widen(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    let int_rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    match (a, b) {
        (Null, t) | (t, Null) => Some(t.clone()),
        _ if int_rank(a).is_some() && int_rank(b).is_some() => {
            if int_rank(a) >= int_rank(b) {
                Some(a.clone())
            } else {
                Some(b.clone())
            }
        }
        (Float32 | Float64, t) | (t, Float32 | Float64)
            if int_rank(t).is_some() || matches!(t, Float32 | Float64) =>
        {
            Some(Float64)
        }
        (Utf8, Utf8View) | (Utf8View, Utf8) => Some(Utf8View),
        _ => None,
    }
}

/// Partition column types: integers, dates, else strings (`__HIVE_DEFAULT_PARTITION__` is NULL).
fn infer_partition_type<'a>(values: impl Iterator<Item = &'a str>) -> DataType {
    let values: Vec<&str> = values.filter(|v| *v != NULL_PARTITION_VALUE).collect();
    if values.is_empty() {
        return DataType::Utf8;
    }
    if values.iter().all(|v| value_fits(&DataType::Int64, v)) {
        DataType::Int64
    } else if values.iter().all(|v| value_fits(&DataType::Date32, v)) {
        DataType::Date32
    } else {
        DataType::Utf8
    }
}

/// Whether a partition folder's value reads as `t`.
pub fn value_fits(t: &DataType, v: &str) -> bool {
    if v == NULL_PARTITION_VALUE {
        return true;
    }
    match t {
        DataType::Int64 => v.parse::<i64>().is_ok() && !v.starts_with('+'),
        DataType::Date32 => {
            v.len() == 10 && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
        }
        _ => true,
    }
}

/// Reads a file's schema: the Parquet footer, or a sample of a CSV / NDJSON file.
async fn read_schema(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
) -> std::result::Result<FileSchema, String> {
    let name = meta.location.filename().unwrap_or("");
    let (named, compression) = classify_by_name(name);
    if named == Some(TableFormat::Parquet) && compression.is_none() {
        return read_parquet(store, meta).await;
    }
    // Everything else is sniffed from its first bytes.
    let range = 0..meta.size.min(SAMPLE_BYTES);
    let whole = range.end == meta.size;
    let head = store
        .get_opts(
            &meta.location,
            GetOptions {
                range: Some(GetRange::Bounded(range)),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot read: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    if named.is_none() && compression.is_none() && head.starts_with(b"PAR1") {
        return read_parquet(store, meta).await;
    }
    let named_compression = compression;
    let compression = compression.or_else(|| {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else {
            None
        }
    });
    if named_compression.is_none()
        && let Some(c) = compression
    {
        return Err(format!(
            "is {}-compressed but its name does not say so (name it *.{})",
            c.as_option(),
            if c == Compression::Gzip { "gz" } else { "zst" }
        ));
    }
    let (text, complete) = match compression {
        None => (head.to_vec(), whole),
        Some(c) => decompress_prefix(c, &head, whole)?,
    };
    let text = complete_lines(&text, complete);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err("is empty".to_owned());
    }
    let format = named.unwrap_or_else(|| {
        if text.trim_ascii_start().starts_with(b"{") {
            TableFormat::Json
        } else {
            TableFormat::Csv
        }
    });
    match format {
        TableFormat::Json => {
            let (schema, _) = arrow_json::reader::infer_json_schema(
                std::io::Cursor::new(text),
                Some(SAMPLE_RECORDS),
            )
            .map_err(|e| format!("is not newline-delimited JSON: {e}"))?;
            Ok(FileSchema {
                format,
                compression,
                schema: nullable(&schema),
                csv: None,
            })
        }
        TableFormat::Csv => {
            let tsv = name.to_ascii_lowercase().contains(".tsv");
            let layout = sniff_csv(text, tsv)?;
            let (schema, _) = arrow_csv::reader::Format::default()
                .with_header(layout.header)
                .with_delimiter(layout.delimiter)
                .infer_schema(std::io::Cursor::new(text), Some(SAMPLE_RECORDS))
                .map_err(|e| format!("is not a consistent CSV file: {e}"))?;
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let name = if layout.header {
                        f.name().clone()
                    } else {
                        format!("col{i}")
                    };
                    Field::new(name, f.data_type().clone(), true)
                })
                .collect();
            Ok(FileSchema {
                format,
                compression,
                schema: Schema::new(fields),
                csv: Some(layout),
            })
        }
        TableFormat::Parquet | TableFormat::Delta => {
            Err("is compressed Parquet, which is not a format".to_owned())
        }
    }
}

async fn read_parquet(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
) -> std::result::Result<FileSchema, String> {
    use parquet::errors::ParquetError;
    use parquet::file::metadata::ParquetMetaDataReader;
    let size = meta.size;
    let tail = |len: u64| {
        let store = Arc::clone(store);
        let location = meta.location.clone();
        async move {
            store
                .get_range(&location, size - len.min(size)..size)
                .await
                .map_err(|e| format!("cannot read: {e}"))
        }
    };
    let corrupt = |e: ParquetError| format!("cannot read the Parquet footer: {e}");
    let mut reader = ParquetMetaDataReader::new();
    let bytes = tail(64 << 10).await?;
    match reader.try_parse_sized(&bytes, size) {
        Ok(()) => {}
        Err(ParquetError::NeedMoreData(needed)) => {
            let bytes = tail(needed as u64).await?;
            reader.try_parse_sized(&bytes, size).map_err(corrupt)?;
        }
        Err(e) => return Err(corrupt(e)),
    }
    let metadata = reader.finish().map_err(corrupt)?;
    let file = metadata.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(corrupt)?;
    // As DataFusion reads Parquet by default: strings and binaries as view types.
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
                DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
                t => t.clone(),
            };
            Field::new(f.name(), t, true)
        })
        .collect();
    Ok(FileSchema {
        format: TableFormat::Parquet,
        compression: None,
        schema: Schema::new(fields),
        csv: None,
    })
}

fn nullable(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    )
}

/// Decompresses what there is of a file's start. Returns the text and whether it is all of it.
fn decompress_prefix(
    c: Compression,
    head: &[u8],
    whole: bool,
) -> std::result::Result<(Vec<u8>, bool), String> {
    let mut out = Vec::new();
    let limit = SAMPLE_BYTES * 4;
    let result = match c {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(head)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Zstd => match zstd::stream::read::Decoder::new(head) {
            Ok(d) => d.take(limit).read_to_end(&mut out),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(_) => {
            let complete = whole && (out.len() as u64) < limit;
            Ok((out, complete))
        }
        // A sample cut mid-stream ends early; what came out before is good.
        Err(_) if !whole && !out.is_empty() => Ok((out, false)),
        Err(e) => Err(format!("is not valid {} data: {e}", c.as_option())),
    }
}

/// The sample up to its last full line, unless it is the whole file.
fn complete_lines(text: &[u8], complete: bool) -> &[u8] {
    if complete {
        return text;
    }
    match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => &text[..=i],
        None => text,
    }
}

/// Finds the delimiter (the candidate splitting every sampled line into the same number of
/// fields, the most of them) and whether the first line is a header (Glue's rule: it is when
/// every value in it is text and some column below it is not).
fn sniff_csv(text: &[u8], tsv: bool) -> std::result::Result<CsvLayout, String> {
    let candidates: &[u8] = if tsv { b"\t" } else { b",\t|;" };
    let records = |delimiter: u8| -> Vec<Vec<String>> { csv_records(text, delimiter) };
    let mut best: Option<(u8, usize)> = None;
    for &d in candidates {
        let rows = records(d);
        let Some(first) = rows.first() else { continue };
        let width = first.len();
        if width >= 2
            && rows.iter().all(|r| r.len() == width)
            && best.is_none_or(|(_, w)| width > w)
        {
            best = Some((d, width));
        }
    }
    let delimiter = match best {
        Some((d, _)) => d,
        // No delimiter gives a consistent table: the most fields in the first line decides,
        // and a row with the wrong number of fields shows up as the reason.
        None => candidates
            .iter()
            .copied()
            .max_by_key(|d| records(*d).first().map_or(0, Vec::len))
            .unwrap_or(b','),
    };
    let rows = records(delimiter);
    let header = match rows.split_first() {
        Some((first, rest)) if !rest.is_empty() => {
            let distinct: BTreeSet<&String> = first.iter().collect();
            let all_text = first
                .iter()
                .all(|v| !v.trim().is_empty() && !looks_typed(v));
            let typed_below = (0..first.len()).any(|i| {
                let col: Vec<&str> = rest
                    .iter()
                    .filter_map(|r| r.get(i).map(String::as_str))
                    .filter(|v| !v.is_empty())
                    .collect();
                !col.is_empty() && col.iter().all(|v| looks_typed(v))
            });
            all_text && distinct.len() == first.len() && typed_below
        }
        _ => false,
    };
    Ok(CsvLayout { delimiter, header })
}

fn csv_records(text: &[u8], delimiter: u8) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text);
    reader
        .records()
        .take(SAMPLE_RECORDS)
        .filter_map(|r| r.ok())
        .map(|r| r.iter().map(str::to_owned).collect())
        .collect()
}

/// A value that reads as something other than text: a number, a boolean, a date.
fn looks_typed(v: &str) -> bool {
    let v = v.trim();
    v.parse::<f64>().is_ok()
        || v.eq_ignore_ascii_case("true")
        || v.eq_ignore_ascii_case("false")
        || chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
        || chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S").is_ok()
        || chrono::DateTime::parse_from_rfc3339(v).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_delimiter_and_header_are_detected() {
        let l = sniff_csv(b"name;age\nann;31\nbob;42\n", false).expect("sniff");
        assert_eq!(
            l,
            CsvLayout {
                delimiter: b';',
                header: true
            }
        );
        // All text: Glue's rule finds no header.
        let l = sniff_csv(b"a,b\nc,d\n", false).expect("sniff");
        assert_eq!(
            l,
            CsvLayout {
                delimiter: b',',
                header: false
            }
        );
        let l = sniff_csv(b"1|2|3\n4|5|6\n", false).expect("sniff");
        assert_eq!(
            l,
            CsvLayout {
                delimiter: b'|',
                header: false
            }
        );
    }

    #[test]
    fn schemas_merge_and_widen_but_refuse_conflicts() {
        let t = vec![Field::new("a", DataType::Int32, true)];
        let f = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let (merged, changes) = merge_into(&t, &f).expect("merge");
        assert_eq!(merged[0].data_type(), &DataType::Int64);
        assert_eq!(merged.len(), 2);
        assert_eq!(changes.len(), 2, "{changes:?}");
        let bad = Schema::new(vec![Field::new("a", DataType::Utf8, true)]);
        let err = merge_into(&merged, &bad).expect_err("conflict");
        assert!(err.contains("column a"), "{err}");
    }

    #[test]
    fn partition_values_are_typed() {
        assert_eq!(
            infer_partition_type(["1", "20"].into_iter()),
            DataType::Int64
        );
        assert_eq!(
            infer_partition_type(["2024-01-01", NULL_PARTITION_VALUE].into_iter()),
            DataType::Date32
        );
        assert_eq!(
            infer_partition_type(["eu", "1"].into_iter()),
            DataType::Utf8
        );
    }

    #[test]
    fn names_classify_files() {
        assert_eq!(
            classify_by_name("a.csv.gz"),
            (Some(TableFormat::Csv), Some(Compression::Gzip))
        );
        assert_eq!(classify_by_name("x.ndjson.zst").0, Some(TableFormat::Json));
        assert!(file_belongs_to("part-0", TableFormat::Parquet, None));
        assert!(!file_belongs_to("_SUCCESS", TableFormat::Parquet, None));
        assert!(!file_belongs_to("a.csv", TableFormat::Parquet, None));
        assert!(file_belongs_to("a.csv.gz", TableFormat::Csv, Some("gzip")));
        assert!(!file_belongs_to("a.csv", TableFormat::Csv, Some("gzip")));
    }
}
