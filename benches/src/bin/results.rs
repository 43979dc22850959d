//! Result throughput: one wide scan (`SELECT * FROM lineitem`, TPC-H, from the tpchgen
//! generator) read whole through each way out of tarn, side by side in one run:
//!
//! - in process: the plan's own batches, the ceiling every protocol is measured against;
//! - Flight SQL with the Rust client (Arrow batches, no conversion);
//! - Flight SQL with ADBC from Python (`adbc_driver_flightsql`, Arrow record batches);
//! - the Postgres wire with psycopg (text rows turned into Python tuples).
//!
//! It also reports the bulk load that made the table: a Flight SQL `CommandStatementIngest`
//! (what `adbc_ingest` sends) streaming the generated batches into a Delta table.
//!
//! `cargo run --release -p tarn-benches --bin results [-- SCALE RUNS]` (default 1.0 and 3).
//! MB are the result's Arrow bytes in memory, the same figure for every client. The Python
//! clients run in `$TARN_VENV` (default `~/.cache/tarn-test-venv`, made by
//! `scripts/test-all.sh`). Prints a Markdown table; BENCHMARKS.md holds the latest.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use futures::StreamExt;
use tarn_sql::QueryOutput;
use tonic::transport::Channel;
use tpchgen::generators::LineItemGenerator;
use tpchgen_arrow::LineItemArrow;

const SCAN: &str = "SELECT * FROM lineitem";

struct Measured {
    rows: u64,
    elapsed: Duration,
}

fn best(runs: Vec<Measured>) -> anyhow::Result<Measured> {
    runs.into_iter()
        .min_by_key(|m| m.elapsed)
        .ok_or_else(|| anyhow::anyhow!("no runs"))
}

fn python() -> PathBuf {
    let venv = std::env::var_os("TARN_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/tarn-test-venv")
        },
        PathBuf::from,
    );
    venv.join("bin/python")
}

fn python_scan(mode: &str, target: &str) -> anyhow::Result<Measured> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/scan.py");
    let out = Command::new(python())
        .arg(script)
        .args([mode, target, SCAN])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{mode} scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(Measured {
        rows: answer["rows"].as_u64().unwrap_or(0),
        elapsed: Duration::from_secs_f64(answer["seconds"].as_f64().unwrap_or(0.0)),
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let scale: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1.0);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);

    let dir = tempfile::tempdir_in(".")?;
    let server = tarn_tests::start_server(dir.path()).await?;
    let channel = Channel::from_shared(format!("http://{}", server.addrs().flight))?
        .connect()
        .await?;
    let mut client = FlightSqlServiceClient::new(channel);

    // The load: generated batches streamed into a new Delta table.
    let generated = LineItemArrow::new(LineItemGenerator::new(scale, 1, 1)).with_batch_size(8192);
    let started = Instant::now();
    let loaded = client
        .execute_ingest(
            CommandStatementIngest {
                table_definition_options: Some(TableDefinitionOptions {
                    if_not_exist: TableNotExistOption::Create.into(),
                    if_exists: TableExistsOption::Fail.into(),
                }),
                table: "lineitem".into(),
                ..Default::default()
            },
            futures::stream::iter(
                generated.map(|b| b.map_err(arrow_flight::error::FlightError::Arrow)),
            ),
        )
        .await?;
    let load_time = started.elapsed();

    // In process: also fixes the result's size in Arrow bytes.
    let mut bytes = 0u64;
    let mut in_process = Vec::new();
    for _ in 0..runs {
        let session = server.engine().session()?;
        let started = Instant::now();
        let Some(QueryOutput::Rows(df)) = session.sql(SCAN).await?.pop() else {
            anyhow::bail!("no rows");
        };
        let mut stream = df.execute_stream().await?;
        let (mut rows, mut size) = (0u64, 0u64);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            size += batch.get_array_memory_size() as u64;
        }
        bytes = size;
        in_process.push(Measured {
            rows,
            elapsed: started.elapsed(),
        });
    }

    let mut flight_rust = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let info = client.execute(SCAN.into(), None).await?;
        let mut rows = 0u64;
        for endpoint in info.endpoint {
            let ticket = endpoint
                .ticket
                .ok_or_else(|| anyhow::anyhow!("no ticket"))?;
            let mut stream = client.do_get(ticket).await?;
            while let Some(batch) = stream.next().await {
                rows += batch?.num_rows() as u64;
            }
        }
        flight_rust.push(Measured {
            rows,
            elapsed: started.elapsed(),
        });
    }

    let flight_uri = format!("grpc://{}", server.addrs().flight);
    let pg = server.addrs().pg;
    let dsn = format!("host={} port={} user=tarn dbname=tarn", pg.ip(), pg.port());
    let mut adbc = Vec::new();
    let mut psycopg = Vec::new();
    for _ in 0..runs {
        adbc.push(python_scan("adbc", &flight_uri)?);
        psycopg.push(python_scan("psycopg", &dsn)?);
    }

    let ceiling = best(in_process)?;
    let rows_expected = ceiling.rows;
    println!(
        "lineitem at scale {scale}: {rows_expected} rows, {:.0} MB of Arrow; best of {runs} runs\n",
        bytes as f64 / 1e6
    );
    println!("| path | seconds | rows/s | MB/s | × in-process time |");
    println!("|---|---:|---:|---:|---:|");
    let ceiling_secs = ceiling.elapsed.as_secs_f64();
    for (name, m) in [
        ("in process (ceiling)", ceiling),
        ("Flight SQL, Rust client", best(flight_rust)?),
        ("Flight SQL, ADBC (Python)", best(adbc)?),
        ("Postgres wire, psycopg", best(psycopg)?),
    ] {
        anyhow::ensure!(
            m.rows == rows_expected,
            "{name} read {} rows, not {rows_expected}",
            m.rows
        );
        let secs = m.elapsed.as_secs_f64();
        println!(
            "| {name} | {secs:.2} | {:.0} | {:.0} | {:.1} |",
            m.rows as f64 / secs,
            bytes as f64 / 1e6 / secs,
            secs / ceiling_secs
        );
    }
    let load_secs = load_time.as_secs_f64();
    println!(
        "\nBulk load (Flight SQL ingest into Delta): {loaded} rows in {load_secs:.2} s, {:.0} rows/s, {:.0} MB/s",
        loaded as f64 / load_secs,
        bytes as f64 / 1e6 / load_secs
    );
    server.shutdown().await;
    Ok(())
}
