//! Object-store requests and planning time of a first and a repeated query over a table of
//! many Parquet files in an S3 server (s3s-fs, in this process, over HTTP with SigV4).
//!
//! `cargo run -p tarn-benches --bin s3_metadata [-- FILES]` (default 1000 files). Prints a
//! Markdown table; BENCHMARKS.md holds the latest.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tarn_sql::{EngineConfig, QueryEngine, QueryOutput};
use tarn_tests::s3::{CreateOnly, S3TestServer};
use tarn_tests::{describe_requests as show, engine_at, request_counts, request_diff};

struct Run {
    plan: Duration,
    total: Duration,
    requests: BTreeMap<String, i64>,
    rows: usize,
}

/// Runs `sql`, timing planning (parse, logical and physical plan: listing and footers happen
/// here) apart from the whole, and counting the requests it made.
async fn run(engine: &QueryEngine, sql: &str) -> anyhow::Result<Run> {
    let before = request_counts(engine, "default").await?;
    let session = engine.session()?;
    let start = Instant::now();
    let Some(QueryOutput::Rows(df)) = session.sql(sql).await?.pop() else {
        anyhow::bail!("no rows");
    };
    let (state, plan) = df.into_parts();
    let physical = state.create_physical_plan(&plan).await?;
    let planned = start.elapsed();
    let batches = datafusion::physical_plan::collect(physical, state.task_ctx()).await?;
    let total = start.elapsed();
    let requests = request_diff(&before, request_counts(engine, "default").await?);
    Ok(Run {
        plan: planned,
        total,
        requests,
        rows: batches.iter().map(|b| b.num_rows()).sum(),
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let files: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000);
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    let config = EngineConfig {
        metadata_ttl_secs: 600,
        ..EngineConfig::default()
    };
    let stores = [("default".to_owned(), s3.store_config())].into();
    let engine = engine_at("s3://lake/wh", stores, config).await?;
    let session = engine.session()?;
    let load = Instant::now();
    for i in 0..files {
        session
            .sql(&format!(
                "COPY (SELECT {i} * 100 + value AS id, value * 0.5 AS v \
                 FROM generate_series(1, 100) AS t(value)) \
                 TO 's3://lake/events/dt=2026-01-{:02}/part-{i:05}.parquet' STORED AS PARQUET",
                i % 28 + 1
            ))
            .await?;
    }
    session
        .sql(
            "CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION 's3://lake/events/' \
             PARTITIONED BY (dt)",
        )
        .await?;
    eprintln!("wrote {files} files in {:.1?}", load.elapsed());
    // A fresh engine, so the first query starts with empty caches.
    let stores = [("default".to_owned(), s3.store_config())].into();
    let engine = engine_at(
        "s3://lake/wh",
        stores,
        EngineConfig {
            metadata_ttl_secs: 600,
            ..EngineConfig::default()
        },
    )
    .await?;
    let queries = [
        ("count", "SELECT count(*) FROM events"),
        (
            "filter + group",
            "SELECT dt, count(*), sum(v) FROM events WHERE dt >= '2026-01-15' AND id % 7 = 0 GROUP BY dt",
        ),
    ];
    println!("| query | run | planning | total | object-store requests |");
    println!("|---|---|---:|---:|---|");
    for (name, sql) in queries {
        for label in ["first", "repeat"] {
            let r = run(&engine, sql).await?;
            println!(
                "| {name} | {label} | {:.1} ms | {:.1} ms | {} |",
                r.plan.as_secs_f64() * 1e3,
                r.total.as_secs_f64() * 1e3,
                show(&r.requests)
            );
            assert!(r.rows > 0);
        }
    }
    Ok(())
}
