//! Tables created over the Postgres wire survive a restart of the server.

use tarn_tests::{connect, start_server};

async fn rows(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for message in client.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            out.push(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                    .collect(),
            );
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_survive_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let warehouse = dir.path().join("warehouse");
    let files = dir.path().join("files");
    let files = files.display();

    let server = start_server(&warehouse).await?;
    let client = connect(&server).await?;
    client
        .batch_execute(&format!(
            "CREATE DATABASE shop;
             CREATE TABLE shop.orders (id BIGINT, item VARCHAR);
             INSERT INTO shop.orders VALUES (1, 'tea'), (2, 'cake');
             CREATE TABLE shop.big AS SELECT * FROM (VALUES (1), (2), (3)) AS t(n);
             CREATE TABLE shop.gone AS SELECT 1 AS x;
             DROP TABLE shop.gone;
             COPY (SELECT 5 AS v) TO '{files}/ext/part=a/f.parquet' STORED AS PARQUET;
             CREATE EXTERNAL TABLE shop.ext STORED AS PARQUET LOCATION '{files}/ext/' PARTITIONED BY (part);"
        ))
        .await?;
    drop(client);
    server.shutdown().await;

    let server = start_server(&warehouse).await?;
    let client = connect(&server).await?;
    assert_eq!(
        rows(&client, "SELECT id, item FROM shop.orders ORDER BY id").await?,
        [["1", "tea"], ["2", "cake"]]
    );
    assert_eq!(rows(&client, "SELECT sum(n) FROM shop.big").await?, [["6"]]);
    assert_eq!(
        rows(&client, "SELECT v, part FROM shop.ext").await?,
        [["5", "a"]]
    );
    let err = client
        .simple_query("SELECT * FROM shop.gone")
        .await
        .expect_err("dropped");
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    // The restarted server keeps writing after the log it read.
    client
        .batch_execute("INSERT INTO shop.orders VALUES (3, 'jam')")
        .await?;
    assert_eq!(
        rows(&client, "SELECT count(*) FROM shop.orders").await?,
        [["3"]]
    );
    drop(client);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_do_not_share_settings() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(&dir.path().join("warehouse")).await?;
    let a = connect(&server).await?;
    let b = connect(&server).await?;
    a.batch_execute("SET datafusion.execution.batch_size = 123")
        .await?;
    let on_a = rows(&a, "SHOW datafusion.execution.batch_size").await?;
    let on_b = rows(&b, "SHOW datafusion.execution.batch_size").await?;
    assert!(on_a[0].iter().any(|v| v == "123"), "{on_a:?}");
    assert!(!on_b[0].iter().any(|v| v == "123"), "{on_b:?}");
    // The session time zone: what now() returns and how timestamptz values print.
    a.batch_execute("SET TIME ZONE 'Europe/Berlin'").await?;
    let zoned = "SELECT arrow_typeof(now()), TIMESTAMPTZ '2026-01-01T12:00:00Z'";
    assert_eq!(
        rows(&a, zoned).await?,
        [["Timestamp(ns, \"Europe/Berlin\")", "2026-01-01 13:00:00+01"]]
    );
    assert_eq!(
        rows(&b, zoned).await?,
        [["Timestamp(ns, \"UTC\")", "2026-01-01 12:00:00+00"]]
    );
    drop((a, b));
    server.shutdown().await;
    Ok(())
}
