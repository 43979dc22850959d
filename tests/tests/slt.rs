//! Runs every `tests/slt/**/*.slt` file on an in-process session and over the Postgres wire
//! against a live server, each on a local warehouse and on an S3 one. Each file gets a fresh
//! warehouse; `$DATA` is a scratch location for files the test writes itself and `$WAREHOUSE`
//! the warehouse (neither ends in `/`); `$DATA_URL` is `$DATA` as a URL. `$TPCH`, `$H2O` and
//! `$EVENTS` are local folders holding the benchmark's three datasets at a tiny scale (TPC-H at
//! scale 0.01), generated once into cargo's scratch folder and kept between runs.
//!
//! Records can be limited to one driver with `onlyif in-process` or `onlyif pg-wire`: only for
//! a known difference of the wire, named where it is used.
//!
//! `TARN_SLT_COMPLETE=<name>.slt` writes the answers of that file's queries into it (the local
//! in-process run) instead of checking them: for a new file, whose answers must then be checked
//! by other means (see `tpch.slt`).
//!
//! The S3 server is an in-process s3s-fs (with SigV4 keys checked), or the server named by
//! `TARN_TEST_S3_ENDPOINT` (with `TARN_TEST_S3_BUCKET`): the test command runs this suite once
//! more against a moto server that way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tarn_tests::bench_data;

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

/// The benchmark's datasets at a tiny scale, in cargo's scratch folder. The first test process
/// to need them writes them aside and renames them into place, so that processes running at
/// once never see half a dataset.
fn bench_data() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = scratch.join(format!("bench-data-v{}", bench_data::VERSION));
        if !dir.exists() {
            let aside = tempfile::tempdir_in(scratch).expect("a folder for the datasets");
            bench_data::write_all(aside.path(), 0.01).expect("the benchmark's datasets");
            // Another process may have won the race: its copy is the same.
            if std::fs::rename(aside.path(), &dir).is_err() && !dir.exists() {
                panic!("could not move the datasets into {}", dir.display());
            }
        }
        dir
    })
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
    for (var, folder) in [("TPCH", "tpch"), ("H2O", "h2o"), ("EVENTS", "events")] {
        runner.set_var(var.into(), bench_data().join(folder).display().to_string());
    }
}

async fn run_in_process(backend: Backend) -> anyhow::Result<()> {
    let complete = matches!(backend, Backend::Local);
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
        runner.add_label("in-process");
        if complete && completing(&file) {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator::<sqllogictest::DefaultColumnType>,
                )
                .await
                .map_err(|e| anyhow::anyhow!("completing {}: {e}", file.display()))?;
            continue;
        }
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// Whether `TARN_SLT_COMPLETE` names `file`.
fn completing(file: &Path) -> bool {
    std::env::var_os("TARN_SLT_COMPLETE").is_some_and(|name| file.file_name() == Some(&name))
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
        runner.add_label("pg-wire");
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

/// `tpch.slt`, `h2o.slt` and `events.slt` run the benchmark's queries: each must hold the
/// text of every query file of its suite.
#[test]
fn slt_holds_the_benchmark_queries() {
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (suite, expected) in [("tpch", 22), ("h2o", 10), ("events", 8)] {
        let slt = root.join(format!("slt/{suite}.slt"));
        let slt = words(&std::fs::read_to_string(&slt).expect("the suite's .slt file"));
        let mut queries = 0;
        let folder = root.join("../benches/queries").join(suite);
        for entry in std::fs::read_dir(folder).expect("the suite's queries") {
            let path = entry.expect("entry").path();
            let sql = words(&std::fs::read_to_string(&path).expect("query"));
            assert!(
                slt.contains(&sql),
                "{suite}.slt does not run {}",
                path.display()
            );
            queries += 1;
        }
        assert_eq!(queries, expected, "{suite}");
    }
}
