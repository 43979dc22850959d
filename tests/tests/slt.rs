//! Runs every `tests/slt/**/*.slt` file twice: on an in-process session and over the
//! Postgres wire against a live server. Each file gets a fresh warehouse; `$DATA` is a scratch
//! folder for files the test writes itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tarn_catalog::{Catalog, CatalogConfig};
use tarn_ingest::Ingester;
use tarn_sql::{EngineConfig, QueryEngine, QueryEngineArgs};
use tarn_tests::{InProcessDb, PgDb, connect, start_server};

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
    files
}

/// A scratch folder for one file's run: the warehouse and `$DATA` live under it.
fn scratch() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    Ok((dir, data))
}

async fn in_process_engine(warehouse: &Path) -> anyhow::Result<QueryEngine> {
    let url = tarn_catalog::parse_location(&warehouse.display().to_string())?;
    let catalog = Arc::new(Catalog::open(url, CatalogConfig::default()).await?);
    Ok(QueryEngine::try_new(QueryEngineArgs {
        catalog,
        ingester: Arc::new(Ingester::new()),
        config: EngineConfig::default(),
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_in_process() -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for file in slt_files() {
        let (dir, data) = scratch()?;
        let engine = in_process_engine(&dir.path().join("warehouse")).await?;
        let mut runner = sqllogictest::Runner::new(|| {
            let engine = engine.clone();
            async move {
                Ok(InProcessDb {
                    session: engine.session()?,
                })
            }
        });
        runner.set_var("DATA".into(), data.display().to_string());
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_over_postgres_wire() -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for file in slt_files() {
        let (dir, data) = scratch()?;
        let server = start_server(&dir.path().join("warehouse")).await?;
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
        runner.set_var("DATA".into(), data.display().to_string());
        if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
        drop(runner);
        server.shutdown().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
