//! Deliveries (Firehose) into Delta tables, through SQL over the Postgres wire: records land
//! exactly once, misfits go to the error table, queries see acknowledged records before they
//! are delivered, and a restart neither loses nor repeats any.

use std::time::{Duration, Instant};

use tarn_ingest::stream::{PutRecord, StreamMode};
use tarn_tests::s3::{CreateOnly, S3TestServer};
use tarn_tests::{connect, start_server, start_server_at};

fn record(key: &str, data: &str) -> PutRecord {
    PutRecord {
        partition_key: key.into(),
        explicit_hash_key: None,
        data: data.as_bytes().to_vec(),
    }
}

/// Polls `sql` (one row, one bigint) until it gives `want`, for at most a minute.
async fn wait_for(client: &tokio_postgres::Client, sql: &str, want: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: i64 = client.query_one(sql, &[]).await?.get(0);
        if got == want {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{sql}: still {got} after a minute, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<i64> {
    Ok(client.query_one(sql, &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_records_land_once_and_misfits_go_to_the_error_table() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let warehouse = dir.path().join("wh");
    let server = start_server(&warehouse).await?;
    let streams = server.streams();
    streams.create("clicks", 2, StreamMode::Provisioned)?;
    // Before the delivery: read only with start = 'trim_horizon'.
    streams
        .put(
            "clicks",
            vec![record("early", r#"{"id": 0, "user": "u0"}"#)],
        )
        .await?;
    let client = connect(&server).await?;
    client
        .batch_execute(
            "CREATE DELIVERY STREAM d FROM STREAM clicks INTO clicks_t \
             WITH (buffer_interval_seconds = 1, idle_flush_seconds = 1, start = 'trim_horizon')",
        )
        .await?;
    let mut records: Vec<PutRecord> = (1..=100)
        .map(|i| {
            record(
                &format!("k{i}"),
                &format!(r#"{{"id": {i}, "user": "u{}"}}"#, i % 5),
            )
        })
        .collect();
    records.push(record("bad", "not json"));
    records.push(record("bad", r#"[1, 2]"#));
    let acked = streams.put("clicks", records).await?;
    wait_for(
        &client,
        "SELECT records_delivered FROM system.deliveries WHERE name = 'd'",
        103,
    )
    .await?;
    // A record with a string id: the schema (inferred from the first delivery) says bigint.
    let misfit = streams
        .put(
            "clicks",
            vec![record("m", r#"{"id": "seven", "user": "x"}"#)],
        )
        .await?;
    wait_for(
        &client,
        "SELECT records_delivered FROM system.deliveries WHERE name = 'd'",
        104,
    )
    .await?;
    let rows = client
        .query(
            "SELECT count(*), count(DISTINCT id), sum(id) FROM clicks_t",
            &[],
        )
        .await?;
    let (n, distinct, sum): (i64, i64, i64) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!((n, distinct, sum), (101, 101, 5050));
    let errors = client
        .query(
            "SELECT error_code, sequence_number, raw_data, shard_id FROM clicks_t_errors \
             ORDER BY CAST(sequence_number AS BIGINT)",
            &[],
        )
        .await?;
    let errors: Vec<(String, String, Vec<u8>)> = errors
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        errors,
        [
            (
                "DataFormatConversion.MalformedData".to_owned(),
                acked[100].sequence.to_string(),
                b"not json".to_vec()
            ),
            (
                "DataFormatConversion.MalformedData".to_owned(),
                acked[101].sequence.to_string(),
                b"[1, 2]".to_vec()
            ),
            (
                "DataFormatConversion.SchemaMismatch".to_owned(),
                misfit[0].sequence.to_string(),
                br#"{"id": "seven", "user": "x"}"#.to_vec()
            ),
        ]
    );

    // After a restart the delivery resumes from the table's checkpoints: nothing twice.
    server.shutdown().await;
    let server = start_server(&warehouse).await?;
    let client = connect(&server).await?;
    server
        .streams()
        .put(
            "clicks",
            vec![record("late", r#"{"id": 1000, "user": "u9"}"#)],
        )
        .await?;
    wait_for(
        &client,
        "SELECT records_delivered FROM system.deliveries WHERE name = 'd'",
        1,
    )
    .await?;
    let rows = client
        .query("SELECT count(*), count(DISTINCT id) FROM clicks_t", &[])
        .await?;
    assert_eq!(
        (rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1)),
        (102, 102)
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM clicks_t_errors").await?,
        3
    );
    let show = client.query("SHOW DELIVERY STREAMS", &[]).await?;
    assert_eq!(show.len(), 1);
    assert_eq!(show[0].get::<_, String>("source_stream"), "clicks");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_see_acknowledged_records_before_delivery_and_after_restart() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let warehouse = dir.path().join("wh");
    let server = start_server(&warehouse).await?;
    let client = connect(&server).await?;
    client
        .batch_execute(
            "CREATE TABLE orders (id BIGINT, item TEXT, qty INT); \
             INSERT INTO orders VALUES (1, 'pre-existing', 1); \
             CREATE DELIVERY STREAM o INTO orders \
             WITH (buffer_interval_seconds = 900, idle_flush_seconds = 0)",
        )
        .await?;
    let records: Vec<Vec<u8>> = (2..=201)
        .map(|i| {
            format!(r#"{{"id": {i}, "item": "x{i}", "qty": 2, "ignored": true}}"#).into_bytes()
        })
        .collect();
    let acked = server.deliveries().put("o", records).await?;
    assert_eq!(acked.len(), 200);
    // Acknowledged, not delivered, and already queryable.
    let commits = count(
        &client,
        "SELECT commits FROM system.deliveries WHERE name = 'o'",
    )
    .await?;
    assert_eq!(commits, 0);
    let rows = client
        .query(
            "SELECT count(*), sum(qty), max(item) FROM orders WHERE id > 100",
            &[],
        )
        .await?;
    assert_eq!(rows[0].get::<_, i64>(0), 101);
    assert_eq!(rows[0].get::<_, i64>(1), 202);
    assert_eq!(count(&client, "SELECT count(*) FROM orders").await?, 201);

    // Still there after a restart, from the log.
    server.shutdown().await;
    let server = start_server(&warehouse).await?;
    let client = connect(&server).await?;
    assert_eq!(count(&client, "SELECT count(*) FROM orders").await?, 201);
    // Dropping the delivery delivers what it holds; the rows are then in the table, once.
    client.batch_execute("DROP DELIVERY STREAM o").await?;
    let rows = client
        .query("SELECT count(*), count(DISTINCT id) FROM orders", &[])
        .await?;
    assert_eq!(
        (rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1)),
        (201, 201)
    );
    let versions = count(&client, "SELECT count(*) FROM orders_errors").await;
    assert!(versions.is_err(), "no misfits, so no error table");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_into_s3_partition_by_arrival_time() -> anyhow::Result<()> {
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    let stores = [("default".to_owned(), s3.store_config())].into();
    let server = start_server_at("s3://lake/wh", stores).await?;
    let client = connect(&server).await?;
    server
        .streams()
        .create("events", 1, StreamMode::Provisioned)?;
    client
        .batch_execute(
            "CREATE DELIVERY STREAM e FROM STREAM events INTO events_t \
             WITH (partition_by = 'arrival_time', buffer_interval_seconds = 1, idle_flush_seconds = 1)",
        )
        .await?;
    let records = (0..20)
        .map(|i| record("k", &format!(r#"{{"n": {i}, "kind": "k{}"}}"#, i % 2)))
        .collect();
    server.streams().put("events", records).await?;
    wait_for(
        &client,
        "SELECT records_delivered FROM system.deliveries WHERE name = 'e'",
        20,
    )
    .await?;
    let now = chrono::Utc::now();
    let row = client
        .query_one(
            "SELECT count(*), CAST(min(dt) AS TEXT), min(hour), sum(n) FROM events_t",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, i64>(0), 20);
    assert_eq!(row.get::<_, String>(1), now.format("%Y-%m-%d").to_string());
    let hour: i32 = row.get(2);
    assert!((hour - now.format("%H").to_string().parse::<i32>()?).abs() <= 1);
    assert_eq!(row.get::<_, i64>(3), 190);
    let folder = s3.path(
        "lake",
        &format!("wh/public/events_t/dt={}", now.format("%Y-%m-%d")),
    );
    assert!(folder.is_dir(), "{} holds the partition", folder.display());
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_delivery_statements_get_their_sqlstate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(&dir.path().join("wh")).await?;
    let client = connect(&server).await?;
    server.streams().create("s", 1, StreamMode::Provisioned)?;
    client
        .batch_execute("CREATE DELIVERY STREAM d FROM STREAM s INTO t1")
        .await?;
    let cases = [
        ("CREATE DELIVERY STREAM d FROM STREAM s INTO t2", "42710"),
        ("CREATE DELIVERY STREAM x FROM STREAM nope INTO t3", "42P01"),
        ("CREATE DELIVERY STREAM x INTO nodb.t3", "3F000"),
        (
            "CREATE DELIVERY STREAM x INTO t3 WITH (buffer_size_mb = 0)",
            "22023",
        ),
        (
            "CREATE DELIVERY STREAM x INTO t3 WITH (colour = 'red')",
            "22023",
        ),
        (
            "CREATE DELIVERY STREAM x INTO t3 WITH (start = 'middle')",
            "22023",
        ),
        ("CREATE DELIVERY STREAM x INTO t1", "22023"),
        ("CREATE DELIVERY STREAM x FROM s INTO t3", "42601"),
        ("CREATE DELIVERY STREAM x", "42601"),
        ("DROP DELIVERY STREAM nope", "42704"),
    ];
    for (sql, state) in cases {
        let err = client.batch_execute(sql).await.expect_err(sql);
        let code = err.code().map(|c| c.code().to_owned());
        assert_eq!(code.as_deref(), Some(state), "{sql}: {err:?}");
    }
    client
        .batch_execute(
            "CREATE DELIVERY STREAM IF NOT EXISTS d FROM STREAM s INTO t1; \
             DROP DELIVERY STREAM IF EXISTS nope; DROP DELIVERY STREAM d",
        )
        .await?;
    assert_eq!(
        count(&client, "SELECT count(*) FROM system.deliveries").await?,
        0
    );
    server.shutdown().await;
    Ok(())
}
