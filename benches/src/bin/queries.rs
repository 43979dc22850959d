//! Runs benchmark queries on tarn in this process, the way a connection would: one session,
//! each query parsed, planned and streamed on tarn's query threads, every row read.
//!
//! `queries --warehouse W --out DIR --runs N [--setup FILE] [QUERY.sql …]`
//!
//! `--setup` runs a file's statements once, untimed (the `CREATE EXTERNAL TABLE`s over the
//! generated files). Each query then runs `N` times; one JSON line per query goes to stdout:
//! `{"name", "seconds": [...], "rows"}`, or `{"name", "error"}`. The last run's rows are
//! written to `DIR/<name>.parquet` for the harness (`benches/scripts/bench.py`) to compare
//! with the other engines' answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use tarn_catalog::StoresConfig;
use tarn_sql::{EngineConfig, QueryOutput, Session};

struct Args {
    warehouse: String,
    out: PathBuf,
    runs: usize,
    setup: Option<PathBuf>,
    queries: Vec<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut warehouse, mut out, mut runs, mut setup) = (None, None, 1, None);
    let mut queries = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--warehouse" => warehouse = Some(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--runs" => runs = value()?.parse()?,
            "--setup" => setup = Some(PathBuf::from(value()?)),
            _ if arg.starts_with("--") => anyhow::bail!("unknown option {arg}"),
            _ => queries.push(PathBuf::from(arg)),
        }
    }
    Ok(Args {
        warehouse: warehouse.ok_or_else(|| anyhow::anyhow!("--warehouse is required"))?,
        out: out.unwrap_or_else(|| PathBuf::from(".")),
        runs,
        setup,
        queries,
    })
}

/// Runs every statement of `sql` and reads all rows of the last one: its columns and batches.
async fn run(
    session: &Session,
    sql: &str,
) -> anyhow::Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
    let mut batches = Vec::new();
    let Some(QueryOutput::Rows(df)) = session.sql(sql).await?.pop() else {
        return Ok((None, batches));
    };
    let mut stream = session.executor().stream(df);
    let schema = stream.schema();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    Ok((Some(schema), batches))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let engine = tarn_tests::engine_at(
        &args.warehouse,
        StoresConfig::new(),
        EngineConfig::default(),
    )
    .await?;
    let session = engine.session()?;
    if let Some(setup) = &args.setup {
        run(&session, &std::fs::read_to_string(setup)?).await?;
    }
    std::fs::create_dir_all(&args.out)?;
    for file in &args.queries {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("query")
            .to_owned();
        let sql = std::fs::read_to_string(file)?;
        let mut seconds = Vec::with_capacity(args.runs);
        let mut last = (None, Vec::new());
        let mut error = None;
        for _ in 0..args.runs {
            let started = Instant::now();
            match run(&session, &sql).await {
                Ok(batches) => {
                    seconds.push(started.elapsed().as_secs_f64());
                    last = batches;
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        let line = match error {
            Some(error) => serde_json::json!({ "name": name, "error": error }),
            None => {
                let (schema, batches) = &last;
                // An empty result's file still says what its columns are.
                if let Some(schema) = schema {
                    tarn_tests::bench_data::write_parquet(
                        &args.out.join(format!("{name}.parquet")),
                        Arc::clone(schema),
                        batches
                            .iter()
                            .cloned()
                            .map(Ok::<_, std::convert::Infallible>),
                    )?;
                }
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                serde_json::json!({ "name": name, "seconds": seconds, "rows": rows })
            }
        };
        println!("{line}");
    }
    Ok(())
}
