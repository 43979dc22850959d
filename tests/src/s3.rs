//! An S3 server in the test process: s3s-fs over a temporary folder, with SigV4 keys checked.
//!
//! s3s-fs checks `If-None-Match: *` and then writes, which two concurrent writers can both
//! pass; S3 itself decides atomically. [`Atomic`] serialises create-only puts, so the server
//! behaves like S3 for the concurrent-writer tests. With `enforce_create_only: false` it drops
//! the condition instead, like stores that ignore it, to test that tarn refuses them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use s3s_fs::FileSystem;
use tarn_catalog::{Secret, StoreConfig};
use tokio_util::sync::CancellationToken;

pub const ACCESS_KEY: &str = "TARNTESTACCESSKEY";
pub const SECRET_KEY: &str = "tarn-test-secret-key-not-for-prod";

/// How the test server treats `If-None-Match: *` on PutObject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOnly {
    /// Atomically, as S3 does.
    Enforced,
    /// Not at all: the condition is dropped and the object overwritten.
    Ignored,
}

struct Atomic {
    fs: FileSystem,
    create_only: CreateOnly,
    puts: tokio::sync::Mutex<()>,
    /// Key prefixes (`bucket/key…`) whose objects cannot be read: `AccessDenied`, as S3
    /// answers when a bucket policy denies `GetObject` there.
    denied: Arc<std::sync::Mutex<Vec<String>>>,
}

/// `impl S3 for Atomic`: every listed operation goes to s3s-fs; `put_object` is our own.
macro_rules! delegate {
    ($($op:ident: $input:ident => $output:ident),* $(,)?) => {
        #[async_trait::async_trait]
        impl S3 for Atomic {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*

            async fn put_object(
                &self,
                req: S3Request<PutObjectInput>,
            ) -> S3Result<S3Response<PutObjectOutput>> {
                self.put(req).await
            }

            async fn get_object(
                &self,
                req: S3Request<GetObjectInput>,
            ) -> S3Result<S3Response<GetObjectOutput>> {
                self.check_access(&req.input.bucket, &req.input.key)?;
                self.fs.get_object(req).await
            }

            async fn head_object(
                &self,
                req: S3Request<HeadObjectInput>,
            ) -> S3Result<S3Response<HeadObjectOutput>> {
                self.check_access(&req.input.bucket, &req.input.key)?;
                self.fs.head_object(req).await
            }
        }
    };
}

delegate! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    list_objects: ListObjectsInput => ListObjectsOutput,
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
    list_parts: ListPartsInput => ListPartsOutput,
}

impl Atomic {
    fn check_access(&self, bucket: &str, key: &str) -> S3Result<()> {
        let full = format!("{bucket}/{key}");
        let denied = self.denied.lock().unwrap_or_else(|e| e.into_inner());
        if denied.iter().any(|p| full.starts_with(p.as_str())) {
            return Err(s3s::s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
    }

    async fn put(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        if req.input.if_none_match.is_none() {
            return self.fs.put_object(req).await;
        }
        if self.create_only == CreateOnly::Ignored {
            req.input.if_none_match = None;
            return self.fs.put_object(req).await;
        }
        let _one_at_a_time = self.puts.lock().await;
        self.fs.put_object(req).await
    }
}

/// A running in-process S3 server; stops when dropped.
pub struct S3TestServer {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    stop: CancellationToken,
    denied: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl S3TestServer {
    /// Starts a server on 127.0.0.1 port 0 with one bucket, `bucket`.
    pub async fn start(bucket: &str, create_only: CreateOnly) -> anyhow::Result<Self> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join(bucket))?;
        let fs = FileSystem::new(root.path()).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
        let denied = Arc::new(std::sync::Mutex::new(Vec::new()));
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(Atomic {
                fs,
                create_only,
                puts: tokio::sync::Mutex::new(()),
                denied: Arc::clone(&denied),
            });
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            b.build()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    () = stopped.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => continue,
                    },
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        () = stopped.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            root,
            stop,
            denied,
        })
    }

    /// From now on, reading any object of `bucket` whose key starts with `prefix` is
    /// `AccessDenied` (listing still shows them, as with a policy denying `GetObject`).
    pub fn deny_reads(&self, bucket: &str, prefix: &str) {
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{bucket}/{prefix}"));
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The folder holding `bucket/key`.
    pub fn path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// A store configuration that reaches this server with the right keys.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(Secret::new(SECRET_KEY)),
            allow_http: Some(true),
            max_retries: Some(1),
            retry_timeout_secs: Some(5),
            ..StoreConfig::default()
        }
    }
}
