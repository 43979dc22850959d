//! A store wrapper that counts the requests made through it, so caches can be verified
//! (`system.object_store_requests`).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The kinds of request counted, in the order they are reported.
const OPERATIONS: [&str; 10] = [
    "get",
    "get_range",
    "head",
    "put",
    "put_multipart",
    "list",
    "list_with_delimiter",
    "delete",
    "copy",
    "rename",
];

#[derive(Clone, Copy)]
enum Op {
    Get,
    GetRange,
    Head,
    Put,
    PutMultipart,
    List,
    ListWithDelimiter,
    Delete,
    Copy,
    Rename,
}

/// One row of `system.object_store_requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    pub store: String,
    pub operation: &'static str,
    /// Calls made; a listing of many objects may take several HTTP pages.
    pub requests: u64,
    /// Bytes read (gets) or written (puts).
    pub bytes: u64,
}

/// Request and byte counters of one store.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: [AtomicU64; OPERATIONS.len()],
    bytes: [AtomicU64; OPERATIONS.len()],
}

impl Counters {
    fn count(&self, op: Op, bytes: u64) {
        self.requests[op as usize].fetch_add(1, Ordering::Relaxed);
        self.bytes[op as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, store: &str) -> Vec<RequestCount> {
        OPERATIONS
            .iter()
            .enumerate()
            .map(|(i, operation)| RequestCount {
                store: store.to_owned(),
                operation,
                requests: self.requests[i].load(Ordering::Relaxed),
                bytes: self.bytes[i].load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Counts every request before passing it on to the store it wraps.
#[derive(Debug)]
pub(crate) struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
}

impl CountingStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.counters
            .count(Op::Put, payload.content_length() as u64);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.counters.count(Op::PutMultipart, 0);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head {
            Op::Head
        } else if options.range.is_some() {
            Op::GetRange
        } else {
            Op::Get
        };
        let result = self.inner.get_opts(location, options).await;
        let bytes = match (&result, op) {
            (Ok(r), Op::Get | Op::GetRange) => r.range.end - r.range.start,
            _ => 0,
        };
        self.counters.count(op, bytes);
        result
    }

    // As the trait's default does: coalesce the ranges and read each through `get_opts`
    // above, so every ranged read is counted (the inner store's own version is bypassed).
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        object_store::coalesce_ranges(
            ranges,
            |range| async move {
                let options = GetOptions {
                    range: Some(range.into()),
                    ..GetOptions::default()
                };
                self.get_opts(location, options).await?.bytes().await
            },
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counters = Arc::clone(&self.counters);
        let locations = locations
            .inspect(move |_| counters.count(Op::Delete, 0))
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counters.count(Op::List, 0);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counters.count(Op::List, 0);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.counters.count(Op::ListWithDelimiter, 0);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.counters.count(Op::Copy, 0);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.counters.count(Op::Rename, 0);
        self.inner.rename_opts(from, to, options).await
    }
}
