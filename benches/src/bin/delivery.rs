//! Delivery throughput and freshness, in process: producers put 500-record batches of 1 KB
//! JSON records into a 4-shard stream, a delivery converts them by the table's schema and
//! commits them to a Delta table in a local warehouse. Reports how fast records are
//! acknowledged while the delivery runs, how fast they land in the table (acknowledged to
//! committed), and for single records the time from acknowledgement until a SQL query over the
//! delivered table returns them (live reads, before delivery).
//!
//! `cargo run --release -p tarn-benches --bin delivery [-- RECORDS PRODUCERS]` (default
//! 200,000 and 8). Prints a Markdown table; BENCHMARKS.md holds the latest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tarn_catalog::{Catalog, CatalogConfig, ObjectStores, TableRef};
use tarn_ingest::Ingester;
use tarn_ingest::delivery::{Deliveries, NewDelivery};
use tarn_ingest::stream::{PutRecord, StreamMode, Streams, StreamsConfig};
use tarn_sql::{EngineConfig, QueryEngine, QueryEngineArgs, QueryOutput};

use tarn_benches::{BATCH, RECORD, json_record as record, percentile};

async fn count(engine: &QueryEngine, sql: &str) -> anyhow::Result<i64> {
    let session = engine.session()?;
    let Some(QueryOutput::Rows(df)) = session.sql(sql).await?.pop() else {
        anyhow::bail!("{sql}: no rows");
    };
    let batches = df.collect().await?;
    let column = batches
        .first()
        .map(|b| Arc::clone(b.column(0)))
        .ok_or_else(|| anyhow::anyhow!("{sql}: empty"))?;
    let column = column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .ok_or_else(|| anyhow::anyhow!("{sql}: not a bigint"))?;
    Ok(column.value(0))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let producers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let per_producer = total.div_ceil(producers * BATCH) * BATCH;
    let total = per_producer * producers;

    let dir = tempfile::tempdir_in(".")?;
    let warehouse = dir.path().join("wh");
    std::fs::create_dir_all(&warehouse)?;
    let stores = Arc::new(ObjectStores::default());
    let catalog = Arc::new(
        Catalog::open(
            tarn_catalog::parse_location(&warehouse.display().to_string())?,
            CatalogConfig::default(),
            &stores,
        )
        .await?,
    );
    let streams_dir = dir.path().join("streams");
    let streams = Arc::new(Streams::open(
        streams_dir.clone(),
        StreamsConfig::default(),
    )?);
    let ingester = Arc::new(Ingester::new(Arc::clone(&stores)));
    let deliveries = Arc::new(Deliveries::open(
        &streams_dir,
        StreamsConfig::default(),
        Arc::clone(&streams),
        Arc::clone(&ingester),
        Arc::clone(&catalog),
    )?);
    let engine = QueryEngine::try_new(QueryEngineArgs {
        catalog,
        ingester,
        config: EngineConfig::default(),
        streams: Some(Arc::clone(&streams)),
        deliveries: Some(Arc::clone(&deliveries)),
    })
    .await?;
    streams.create("bench", 4, StreamMode::Provisioned)?;
    let mut new = NewDelivery::new("d", TableRef::new("public", "events"));
    new.source_stream = Some("bench".into());
    new.buffer_bytes = 64 << 20;
    new.buffer_interval_secs = 5;
    new.idle_flush_secs = 1;
    deliveries.create(new)?;

    // Producers put as fast as acknowledgements allow while the delivery runs.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let streams = Arc::clone(&streams);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for b in 0..per_producer / BATCH {
                let batch: Vec<PutRecord> = (0..BATCH)
                    .map(|j| PutRecord {
                        partition_key: format!("p{p}-{}", j % 64),
                        explicit_hash_key: None,
                        data: record(p, b * BATCH + j),
                    })
                    .collect();
                let t = Instant::now();
                streams.put("bench", batch).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let acked = started.elapsed();
    latencies.sort();
    let deadline = Instant::now() + Duration::from_secs(600);
    let commits = loop {
        let (_, status) = deliveries.describe("d")?;
        if status.records_delivered as usize >= total {
            break status.commits;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not delivered in 10 minutes: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let delivered = started.elapsed();
    let rows = count(&engine, "SELECT count(*) FROM events").await?;
    anyhow::ensure!(rows as usize == total, "{rows} rows, want {total}");

    // Freshness: one record at a time, acknowledged → returned by a query over the table.
    let mut visible = Vec::new();
    for i in 0..30 {
        let marker = 1_000_000_000 + i;
        let t = Instant::now();
        streams
            .put(
                "bench",
                vec![PutRecord {
                    partition_key: "probe".into(),
                    explicit_hash_key: None,
                    data: format!(r#"{{"producer": -1, "i": {marker}, "payload": "p"}}"#)
                        .into_bytes(),
                }],
            )
            .await?;
        let acked_at = Instant::now();
        let sql = format!("SELECT count(*) FROM events WHERE i = {marker}");
        while count(&engine, &sql).await? != 1 {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(60),
                "probe {i} never seen"
            );
        }
        visible.push(acked_at.elapsed());
    }
    visible.sort();
    deliveries.shutdown().await;

    let mb = (total * RECORD) as f64 / 1e6;
    println!("| what | value |");
    println!("|---|---:|");
    println!(
        "| acknowledged, {producers} producers × {BATCH}-record puts, while delivering | {:.0} records/s, {:.1} MB/s |",
        total as f64 / acked.as_secs_f64(),
        mb / acked.as_secs_f64()
    );
    println!(
        "| put latency p50 / p99 | {:.1} ms / {:.1} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| {total} records delivered into Delta (first put → last commit) | {:.1} s: {:.0} records/s, {:.1} MB/s, {commits} commits |",
        delivered.as_secs_f64(),
        total as f64 / delivered.as_secs_f64(),
        mb / delivered.as_secs_f64()
    );
    println!(
        "| acknowledged → returned by SQL over the delivered table, p50 / p99 | {:.1} ms / {:.1} ms |",
        percentile(&visible, 0.5).as_secs_f64() * 1e3,
        percentile(&visible, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
