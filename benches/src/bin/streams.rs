//! Stream log throughput: concurrent producers putting 500-record batches of 1 KB JSON records
//! into one stream's write-ahead log (in process, no HTTP), each put acknowledged only after
//! fsync. Beside it, on the same disk, the two ceilings: fsync'd appends of the same batches to
//! one file, and the arrow-rs Parquet writer over the same records.
//!
//! `cargo run --release -p tarn-benches --bin streams [-- PRODUCERS SECONDS]` (default 8 and
//! 10). Prints a Markdown table; BENCHMARKS.md holds the latest.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tarn_ingest::stream::{PutRecord, StreamMode, Streams, StreamsConfig};

use tarn_benches::{BATCH, RECORD, json_record as record, percentile};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let producers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let dir = tempfile::tempdir_in(".")?;
    let streams = Arc::new(Streams::open(
        dir.path().join("streams"),
        StreamsConfig::default(),
    )?);
    streams.create("bench", 4, StreamMode::Provisioned)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let streams = Arc::clone(&streams);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut records = 0usize;
            let mut i = 0;
            while Instant::now() < deadline {
                let batch: Vec<PutRecord> = (0..BATCH)
                    .map(|_| {
                        i += 1;
                        PutRecord {
                            partition_key: format!("p{p}-{}", i % 64),
                            explicit_hash_key: None,
                            data: record(p, i),
                        }
                    })
                    .collect();
                let t = Instant::now();
                streams.put("bench", batch).await?;
                latencies.push(t.elapsed());
                records += BATCH;
            }
            Ok::<_, anyhow::Error>((records, latencies))
        }));
    }
    let mut records = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, l) = t.await??;
        records += n;
        latencies.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let mb = (records * RECORD) as f64 / 1e6;

    // Ceiling 1: the same bytes appended to one file, fsync'd per 500-record batch.
    let path = dir.path().join("raw.log");
    let mut file = std::fs::File::create(&path)?;
    let payload: Vec<u8> = (0..BATCH).flat_map(|i| record(0, i)).collect();
    let raw_start = Instant::now();
    let mut raw_batches = 0usize;
    while raw_start.elapsed() < Duration::from_secs(seconds.min(5)) {
        file.write_all(&payload)?;
        file.sync_data()?;
        raw_batches += 1;
    }
    let raw_secs = raw_start.elapsed().as_secs_f64();

    // Ceiling 2: the arrow-rs Parquet writer over 200,000 such records (one string column).
    let strings: Vec<String> = (0..200_000)
        .map(|i| String::from_utf8_lossy(&record(0, i)).into_owned())
        .collect();
    let schema = Arc::new(Schema::new(vec![Field::new("json", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(strings))],
    )?;
    let pq_start = Instant::now();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    let pq_secs = pq_start.elapsed().as_secs_f64();

    println!("| what | records/s | MB/s | ack p50 | ack p99 |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| stream log, {producers} producers × {BATCH}-record puts | {:.0} | {:.1} | {:.1} ms | {:.1} ms |",
        records as f64 / elapsed,
        mb / elapsed,
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "| fsync'd appends of the same batches, one file | {:.0} | {:.1} | - | - |",
        (raw_batches * BATCH) as f64 / raw_secs,
        (raw_batches * BATCH * RECORD) as f64 / 1e6 / raw_secs,
    );
    println!(
        "| arrow-rs Parquet writer, same records | {:.0} | {:.1} | - | - |",
        200_000.0 / pq_secs,
        200_000.0 * RECORD as f64 / 1e6 / pq_secs,
    );
    Ok(())
}
