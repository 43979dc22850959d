//! Runs every `tests/slt/**/*.slt` file on an in-process session and over the Postgres wire
//! against a live server, each on a local warehouse and on an S3 one. Each file gets a fresh
//! warehouse; `$DATA` is a scratch location for files the test writes itself and `$WAREHOUSE`
//! the warehouse (neither ends in `/`); `$DATA_URL` is `$DATA` as a URL.
//!
//! The S3 server is an in-process s3s-fs (with SigV4 keys checked), or the server named by
//! `TARN_TEST_S3_ENDPOINT` (with `TARN_TEST_S3_BUCKET`): the test command runs this suite once
//! more against a moto server that way.

use std::path::{Path, PathBuf};

use tarn_catalog::{Secret, StoreConfig, StoresConfig};
use tarn_sql::EngineConfig;
use tarn_tests::s3::{CreateOnly, S3TestServer};
use tarn_tests::{InProcessDb, PgDb, connect, engine_at, start_server_at};

fn slt_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("slt folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "slt") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("slt"),
        &mut files,
    );
    files.sort();
    assert!(!files.is_empty(), "no .slt files found");
    // Without substitution `$DATA` is taken literally: files land in a folder named `$DATA`.
    for file in &files {
        let text = std::fs::read_to_string(file).expect("slt file");
        if text.contains("$DATA") || text.contains("$WAREHOUSE") {
            assert!(
                text.contains("control substitution on"),
                "{} uses $DATA or $WAREHOUSE without `control substitution on`",
                file.display()
            );
        }
    }
    files
}

/// Where one file's run keeps its warehouse and scratch files.
struct Lake {
    warehouse: String,
    data: String,
    stores: StoresConfig,
    _dir: tempfile::TempDir,
}

/// Where the lakes live: local folders, or prefixes in a bucket of an S3 server.
enum Backend {
    Local,
    S3 {
        bucket: String,
        store: Box<StoreConfig>,
        _server: Option<S3TestServer>,
    },
}

impl Backend {
    async fn s3() -> anyhow::Result<Self> {
        if let Ok(endpoint) = std::env::var("TARN_TEST_S3_ENDPOINT") {
            let bucket = std::env::var("TARN_TEST_S3_BUCKET")
                .map_err(|_| anyhow::anyhow!("TARN_TEST_S3_ENDPOINT needs TARN_TEST_S3_BUCKET"))?;
            let store = StoreConfig {
                endpoint: Some(endpoint),
                region: Some("us-east-1".into()),
                access_key_id: Some("testing".into()),
                secret_access_key: Some(Secret::new("testing")),
                allow_http: Some(true),
                ..StoreConfig::default()
            };
            return Ok(Self::S3 {
                bucket,
                store: Box::new(store),
                _server: None,
            });
        }
        let server = S3TestServer::start("lake", CreateOnly::Enforced).await?;
        Ok(Self::S3 {
            bucket: "lake".into(),
            store: Box::new(server.store_config()),
            _server: Some(server),
        })
    }

    fn lake(&self, file: &Path) -> anyhow::Result<Lake> {
        let dir = tempfile::tempdir()?;
        Ok(match self {
            Self::Local => {
                let data = dir.path().join("data");
                std::fs::create_dir_all(&data)?;
                Lake {
                    warehouse: dir.path().join("warehouse").display().to_string(),
                    data: data.display().to_string(),
                    stores: StoresConfig::new(),
                    _dir: dir,
                }
            }
            Self::S3 { bucket, store, .. } => {
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("slt");
                let root = format!("s3://{bucket}/{stem}-{}", std::process::id());
                let root = format!(
                    "{root}-{}",
                    dir.path()
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("x")
                );
                Lake {
                    warehouse: format!("{root}/warehouse"),
                    data: format!("{root}/data"),
                    stores: [("default".to_owned(), (**store).clone())].into(),
                    _dir: dir,
                }
            }
        })
    }
}

fn vars<D: sqllogictest::AsyncDB, M: sqllogictest::MakeConnection<Conn = D>>(
    runner: &mut sqllogictest::Runner<D, M>,
    lake: &Lake,
) {
    runner.set_var("DATA".into(), lake.data.clone());
    // `$DATA` as the catalog spells locations: a URL.
    let url = if lake.data.contains("://") {
        lake.data.clone()
    } else {
        format!("file://{}", lake.data)
    };
    runner.set_var("DATA_URL".into(), url);
    runner.set_var("WAREHOUSE".into(), lake.warehouse.clone());
}

async fn run_in_process(backend: Backend) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for file in slt_files() {
        let lake = backend.lake(&file)?;
        let engine = engine_at(
            &lake.warehouse,
            lake.stores.clone(),
            EngineConfig::default(),
        )
        .await?;
        let mut runner = sqllogictest::Runner::new(|| {
            let engine = engine.clone();
            async move {
                Ok(InProcessDb {
                    session: engine.session()?,
                })
            }
        });
        vars(&mut runner, &lake);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

async fn run_over_postgres_wire(backend: Backend) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for file in slt_files() {
        let lake = backend.lake(&file)?;
        let server = start_server_at(&lake.warehouse, lake.stores.clone()).await?;
        let client_server = &server;
        let mut runner = sqllogictest::Runner::new(|| async move {
            let client = connect(client_server)
                .await
                .map_err(|e| tarn_tests::SltError {
                    message: e.to_string(),
                    sqlstate: None,
                })?;
            Ok(PgDb { client })
        });
        vars(&mut runner, &lake);
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
        drop(runner);
        server.shutdown().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_local_in_process() -> anyhow::Result<()> {
    run_in_process(Backend::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_local_over_postgres_wire() -> anyhow::Result<()> {
    run_over_postgres_wire(Backend::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_s3_in_process() -> anyhow::Result<()> {
    run_in_process(Backend::s3().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_s3_over_postgres_wire() -> anyhow::Result<()> {
    run_over_postgres_wire(Backend::s3().await?).await
}
