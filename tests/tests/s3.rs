//! tarn on S3: an in-process s3s-fs server that checks SigV4 keys. Bad credentials, missing
//! buckets, dead endpoints and stores without create-only writes; two writers on one
//! warehouse; and the metadata caches, verified by counting object-store requests.

use std::collections::BTreeMap;

use tarn_catalog::{Secret, StoreConfig, StoresConfig};
use tarn_sql::{EngineConfig, QueryEngine};
use tarn_tests::s3::{CreateOnly, S3TestServer};
use tarn_tests::{connect, engine_at, query, request_cost as cost, start_server_at};

fn stores(name: &str, config: StoreConfig) -> StoresConfig {
    [(name.to_owned(), config)].into()
}

fn no_ttl() -> EngineConfig {
    EngineConfig {
        metadata_ttl_secs: 0,
        ..EngineConfig::default()
    }
}

fn long_ttl() -> EngineConfig {
    EngineConfig {
        metadata_ttl_secs: 3600,
        ..EngineConfig::default()
    }
}

async fn sql(engine: &QueryEngine, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    query(&engine.session()?, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_on_s3_keeps_tables_across_restarts() -> anyhow::Result<()> {
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    let config = stores("default", s3.store_config());
    let engine = engine_at("s3://lake/wh", config.clone(), EngineConfig::default()).await?;
    sql(
        &engine,
        "CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, s);
         INSERT INTO t VALUES (3, 'c')",
    )
    .await?;
    drop(engine);
    // The objects really are in the bucket, where a Delta reader expects them.
    assert!(s3.path("lake", "wh/_tarn/catalog/log").is_dir());
    assert!(
        s3.path("lake", "wh/public/t/_delta_log/00000000000000000001.json")
            .is_file()
    );
    let engine = engine_at("s3://lake/wh", config, EngineConfig::default()).await?;
    assert_eq!(
        sql(&engine, "SELECT count(*), max(s) FROM t").await?,
        [["3", "c"]]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_are_a_clear_error_without_the_secret() -> anyhow::Result<()> {
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    let wrong_secret = "wrong-secret-do-not-print";
    let bad_keys = StoreConfig {
        secret_access_key: Some(Secret::new(wrong_secret)),
        ..s3.store_config()
    };
    let err = engine_at("s3://lake/wh", stores("default", bad_keys), no_ttl())
        .await
        .expect_err("wrong keys");
    let msg = format!("{err:#}");
    eprintln!("wrong keys: {msg}");
    assert!(msg.contains("s3://lake/wh"), "{msg}");
    assert!(!msg.contains(wrong_secret), "{msg}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_a_clear_error() -> anyhow::Result<()> {
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    let dir = tempfile::tempdir()?;
    let engine = engine_at(
        &dir.path().display().to_string(),
        stores("default", s3.store_config()),
        no_ttl(),
    )
    .await?;
    let Err(err) = engine
        .session()?
        .sql("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://no-such-bucket/files/'")
        .await
    else {
        anyhow::bail!("a table over a missing bucket was created");
    };
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
    assert_eq!(sql(&engine, "SELECT 1").await?, [["1"]]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_stores_and_vanished_files_fail_only_their_queries() -> anyhow::Result<()> {
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;

    // A server on a local warehouse, with external tables on stores that cannot answer: each
    // query fails with an error naming the store's path, and everything else keeps working.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let dead_port = dead.local_addr()?.port();
    drop(dead);
    let mut config: StoresConfig = BTreeMap::new();
    config.insert(
        "good".into(),
        StoreConfig {
            buckets: vec!["lake".into()],
            ..s3.store_config()
        },
    );
    config.insert(
        "dead".into(),
        StoreConfig {
            buckets: vec!["dead".into()],
            endpoint: Some(format!("http://127.0.0.1:{dead_port}")),
            max_retries: Some(0),
            connect_timeout_secs: Some(2),
            ..s3.store_config()
        },
    );
    let dir = tempfile::tempdir()?;
    let server = start_server_at(&dir.path().join("wh").display().to_string(), config).await?;
    let client = connect(&server).await?;
    client
        .batch_execute(
            // Larger than the footer read-ahead, so a query must read the file's data.
            "COPY (SELECT (value * 7919) % 1000003 AS x FROM generate_series(1, 400000) AS t(value))
               TO 's3://lake/files/a.parquet' STORED AS PARQUET;
             CREATE EXTERNAL TABLE good STORED AS PARQUET LOCATION 's3://lake/files/';
             CREATE TABLE local AS SELECT 42 AS answer",
        )
        .await?;
    let err = client
        .simple_query("CREATE EXTERNAL TABLE d STORED AS PARQUET LOCATION 's3://dead/files/'")
        .await
        .expect_err("dead endpoint");
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    eprintln!("dead endpoint: {msg}");
    assert!(
        msg.contains("dead") || msg.contains(&dead_port.to_string()),
        "{msg}"
    );
    // A file that vanished after its listing was cached: the query names it.
    client.simple_query("SELECT sum(x) FROM good").await?;
    std::fs::remove_file(s3.path("lake", "files/a.parquet"))?;
    let err = match client.simple_query("SELECT sum(x) FROM good").await {
        Ok(rows) => anyhow::bail!("the listed file is gone, yet: {rows:?}"),
        Err(err) => err,
    };
    let msg = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        msg.as_deref()
            .is_some_and(|m| m.contains("files/a.parquet")),
        "{err:?}"
    );
    eprintln!("vanished file: {msg:?}");
    client.simple_query("REFRESH TABLE good").await?;
    let rows = client.simple_query("SELECT count(*) FROM good").await?;
    let tokio_postgres::SimpleQueryMessage::Row(row) = &rows[1] else {
        anyhow::bail!("no row: {rows:?}");
    };
    assert_eq!(row.get(0), Some("0"));
    let rows = client.simple_query("SELECT answer FROM local").await?;
    assert!(
        matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("42"))
    );
    drop(client);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_without_create_only_writes_are_refused_unless_single_writer() -> anyhow::Result<()>
{
    let s3 = S3TestServer::start("lake", CreateOnly::Ignored).await?;
    let err = engine_at(
        "s3://lake/wh",
        stores("default", s3.store_config()),
        no_ttl(),
    )
    .await
    .expect_err("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("\"default\"") && msg.contains("stores.default.single_writer"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");

    let single = StoreConfig {
        single_writer: true,
        ..s3.store_config()
    };
    let engine = engine_at("s3://lake/wh", stores("default", single), no_ttl()).await?;
    sql(&engine, "CREATE TABLE t AS SELECT 1 AS x").await?;
    assert_eq!(sql(&engine, "SELECT x FROM t").await?, [["1"]]);

    // A local warehouse reads tables on such a store, but does not write to them.
    let dir = tempfile::tempdir()?;
    let local = engine_at(
        &dir.path().display().to_string(),
        stores("default", s3.store_config()),
        no_ttl(),
    )
    .await?;
    sql(
        &local,
        "CREATE EXTERNAL TABLE e STORED AS DELTA LOCATION 's3://lake/wh/public/t/'",
    )
    .await?;
    assert_eq!(sql(&local, "SELECT x FROM e").await?, [["1"]]);
    let err = local
        .session()?
        .sql("INSERT INTO e VALUES (2)")
        .await
        .expect_err("refused");
    assert_eq!(err.sqlstate(), "55000", "{err}");
    assert!(
        err.to_string().contains("stores.default.single_writer"),
        "{err}"
    );
    Ok(())
}

/// Two processes' worth of tarn (separate catalogs, stores and caches) on one warehouse.
async fn two_writers(warehouse: &str, config: StoresConfig) -> anyhow::Result<()> {
    let a = engine_at(warehouse, config.clone(), no_ttl()).await?;
    let b = engine_at(warehouse, config.clone(), no_ttl()).await?;
    sql(&a, "CREATE TABLE shared (writer VARCHAR, n BIGINT)").await?;
    const ROUNDS: usize = 8;
    let work = |engine: QueryEngine, name: &'static str| async move {
        for i in 0..ROUNDS {
            sql(
                &engine,
                &format!("INSERT INTO shared VALUES ('{name}', {i}), ('{name}', {i})"),
            )
            .await?;
            sql(
                &engine,
                &format!("CREATE TABLE {name}_{i} AS SELECT {i} AS i"),
            )
            .await?;
        }
        anyhow::Ok(())
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(work(a.clone(), "a")),
        tokio::spawn(work(b.clone(), "b"))
    );
    ra??;
    rb??;
    // A third reader sees every commit of both.
    let c = engine_at(warehouse, config, no_ttl()).await?;
    assert_eq!(
        sql(
            &c,
            "SELECT writer, count(*), sum(n) FROM shared GROUP BY writer ORDER BY writer"
        )
        .await?,
        [["a", "16", "56"], ["b", "16", "56"]]
    );
    let tables = sql(
        &c,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE '%\\_%' ESCAPE '\\'",
    )
    .await?;
    assert_eq!(tables, [[(2 * ROUNDS).to_string()]]);
    // And each writer sees the other's tables (the catalog is re-read; TTL 0 here).
    assert_eq!(sql(&a, "SELECT i FROM b_7").await?, [["7"]]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_s3_never_lose_a_commit() -> anyhow::Result<()> {
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    two_writers("s3://lake/wh", stores("default", s3.store_config())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_a_local_warehouse_never_lose_a_commit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    two_writers(&dir.path().display().to_string(), StoresConfig::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_queries_are_answered_from_the_caches() -> anyhow::Result<()> {
    let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
    let engine = engine_at(
        "s3://lake/wh",
        stores("default", s3.store_config()),
        long_ttl(),
    )
    .await?;
    for i in 0..20 {
        sql(
            &engine,
            &format!(
                "COPY (SELECT {i} AS k, 'v{i}' AS v) TO 's3://lake/ext/dt={}/f{i}.parquet' STORED AS PARQUET",
                i % 4
            ),
        )
        .await?;
    }
    sql(
        &engine,
        "CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION 's3://lake/ext/' PARTITIONED BY (dt);
         CREATE TABLE managed AS SELECT * FROM (VALUES (1), (2), (3)) AS t(n)",
    )
    .await?;

    // DataFusion's file-statistics cache, shared by every session's scans.
    let session = engine.session()?;
    let runtime = session.context().runtime_env();
    let statistics = runtime
        .cache_manager
        .get_file_statistic_cache()
        .expect("a statistics cache");
    let created = statistics.len();

    // Listing table: the first query lists and reads footers; the repeat makes no request.
    let q = "SELECT count(*), sum(k) FROM ext";
    let (rows, _) = cost(&engine, "default", q).await?;
    assert_eq!(rows, [["20", "190"]]);
    let (rows, repeat) = cost(&engine, "default", q).await?;
    assert_eq!(rows, [["20", "190"]]);
    assert!(
        !repeat.contains_key("list") && !repeat.contains_key("list_with_delimiter"),
        "{repeat:?}"
    );
    let (_, repeat) = cost(&engine, "default", "SELECT count(*) FROM ext").await?;
    assert!(
        repeat.is_empty(),
        "count(*) from cached statistics: {repeat:?}"
    );
    // The scans computed each file's statistics once and keep them.
    assert_eq!(statistics.len() - created, 20, "one entry per file");

    // Delta table: the repeat reads no log.
    let q = "SELECT sum(n) FROM managed";
    assert_eq!(cost(&engine, "default", q).await?.0, [["6"]]);
    let (rows, repeat) = cost(&engine, "default", q).await?;
    assert_eq!(rows, [["6"]]);
    assert!(!repeat.contains_key("list"), "{repeat:?}");
    assert!(!repeat.contains_key("get"), "no log reads: {repeat:?}");

    // Our own writes are seen at once.
    sql(&engine, "INSERT INTO managed VALUES (4)").await?;
    assert_eq!(sql(&engine, q).await?, [["10"]]);
    sql(
        &engine,
        "COPY (SELECT 100 AS k, 'x' AS v) TO 's3://lake/ext/dt=9/g.parquet' STORED AS PARQUET",
    )
    .await?;
    assert_eq!(sql(&engine, "SELECT count(*) FROM ext").await?, [["21"]]);

    // Another writer's files wait for the TTL, or REFRESH TABLE.
    let other = engine_at(
        "s3://lake/wh",
        stores("default", s3.store_config()),
        long_ttl(),
    )
    .await?;
    sql(
        &other,
        "COPY (SELECT 200 AS k, 'y' AS v) TO 's3://lake/ext/dt=9/h.parquet' STORED AS PARQUET;
         INSERT INTO managed VALUES (5)",
    )
    .await?;
    assert_eq!(sql(&engine, "SELECT count(*) FROM ext").await?, [["21"]]);
    assert_eq!(sql(&engine, q).await?, [["10"]]);
    sql(&engine, "REFRESH TABLE ext; MSCK REPAIR TABLE managed").await?;
    assert_eq!(sql(&engine, "SELECT count(*) FROM ext").await?, [["22"]]);
    assert_eq!(sql(&engine, q).await?, [["15"]]);
    Ok(())
}
