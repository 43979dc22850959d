//! Crawling a prefix of many Parquet files in an S3 server (s3s-fs, in this process, over HTTP
//! with SigV4): the first run, a run with nothing new, a run after one new partition, and a
//! partition-filtered query on the crawled table (pruned from the catalog) against the same
//! query on an external table over the same files (pruned by listing).
//!
//! `cargo run --release -p tarn-benches --bin crawl [-- FILES]` (default 1000 files in 28
//! partitions). Prints a Markdown table; BENCHMARKS.md holds the latest.

use std::time::Instant;

use tarn_sql::{EngineConfig, QueryEngine};
use tarn_tests::s3::{CreateOnly, S3TestServer};
use tarn_tests::{describe_requests as show, engine_at, query, request_cost};

async fn write(
    engine: &QueryEngine,
    from: usize,
    to: usize,
    day: Option<usize>,
) -> anyhow::Result<()> {
    let session = engine.session()?;
    for i in from..to {
        let dt = day.unwrap_or(i % 28 + 1);
        query(
            &session,
            &format!(
                "COPY (SELECT {i} * 100 + value AS id, value * 0.5 AS v \
                 FROM generate_series(1, 100) AS t(value)) \
                 TO 's3://lake/events/dt=2026-01-{dt:02}/part-{i:05}.parquet' STORED AS PARQUET"
            ),
        )
        .await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let files: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000);
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    let dir = tempfile::tempdir()?;
    // The warehouse is local: only the lake's requests are counted.
    let engine = engine_at(
        &dir.path().join("wh").display().to_string(),
        [("default".to_owned(), s3.store_config())].into(),
        EngineConfig {
            metadata_ttl_secs: 0,
            ..EngineConfig::default()
        },
    )
    .await?;
    write(&engine, 0, files, None).await?;
    let session = engine.session()?;
    query(&session, "CREATE DATABASE lake").await?;
    query(&session, "CREATE CRAWLER c ON 's3://lake/' INTO lake").await?;
    query(
        &session,
        "CREATE EXTERNAL TABLE listed STORED AS PARQUET LOCATION 's3://lake/events/' PARTITIONED BY (dt)",
    )
    .await?;

    println!("| step | time | files read | object-store requests |");
    println!("|---|---:|---:|---|");
    let step = async |label: &str, sql: &str| -> anyhow::Result<()> {
        let start = Instant::now();
        let (rows, cost) = request_cost(&engine, "default", sql).await?;
        let took = start.elapsed();
        let read = if sql.starts_with("RUN") {
            rows[0][5].clone()
        } else {
            "-".into()
        };
        println!(
            "| {label} | {:.1} ms | {read} | {} |",
            took.as_secs_f64() * 1e3,
            show(&cost)
        );
        Ok(())
    };
    step(&format!("first crawl ({files} files)"), "RUN CRAWLER c").await?;
    step("recrawl, nothing new", "RUN CRAWLER c").await?;
    write(&engine, files, files + 10, Some(29)).await?;
    step("recrawl, 10 new files in a new partition", "RUN CRAWLER c").await?;
    step(
        "crawled table, `dt = '2026-01-03'`",
        "SELECT count(*) FROM lake.events WHERE dt = DATE '2026-01-03'",
    )
    .await?;
    step(
        "external table, same query",
        "SELECT count(*) FROM public.listed WHERE dt = '2026-01-03'",
    )
    .await?;
    step(
        "crawled table, `dt >= '2026-01-20'`",
        "SELECT count(*) FROM lake.events WHERE dt >= DATE '2026-01-20'",
    )
    .await?;
    step(
        "external table, same query",
        "SELECT count(*) FROM public.listed WHERE dt >= '2026-01-20'",
    )
    .await?;
    Ok(())
}
