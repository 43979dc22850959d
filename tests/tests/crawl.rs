//! Crawlers over a messy lake the tests write themselves: several tables, Hive and plain
//! folder layouts, a schema that grows a column, compressed CSV and NDJSON, a Delta table, and
//! bad files (empty, corrupt footer, a CSV row with the wrong number of fields, a type that does
//! not fit, a folder that cannot be read). Each scenario runs on a local folder and on the
//! in-process S3 server; request counts prove incremental recrawls and catalog pruning.

use std::io::Write;

use tarn_catalog::StoresConfig;
use tarn_sql::{EngineConfig, QueryEngine};
use tarn_tests::s3::{CreateOnly, S3TestServer};
use tarn_tests::{engine_at, put_object, query, request_cost};

/// Where a scenario's lake and warehouse live.
struct Lake {
    engine: QueryEngine,
    /// The folder the crawler visits, ending in `/` (a path or an `s3://` URL).
    src: String,
    /// The name of the store serving `src` in `system.object_store_requests`.
    store: &'static str,
    s3: Option<S3TestServer>,
    _dir: tempfile::TempDir,
}

impl Lake {
    async fn local() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let engine = engine_at(
            &dir.path().join("wh").display().to_string(),
            StoresConfig::new(),
            no_ttl(),
        )
        .await?;
        let src = format!("{}/src/", dir.path().display());
        std::fs::create_dir_all(&src)?;
        Ok(Self {
            engine,
            src,
            store: "local",
            s3: None,
            _dir: dir,
        })
    }

    async fn s3() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let s3 = S3TestServer::start("lake", CreateOnly::Enforced).await?;
        let stores: StoresConfig = [("default".to_owned(), s3.store_config())].into();
        // The warehouse is local, so the catalog's own requests do not count against the lake.
        let engine = engine_at(
            &dir.path().join("wh").display().to_string(),
            stores,
            no_ttl(),
        )
        .await?;
        Ok(Self {
            engine,
            src: "s3://lake/src/".into(),
            store: "default",
            s3: Some(s3),
            _dir: dir,
        })
    }

    async fn both() -> anyhow::Result<[Self; 2]> {
        Ok([Self::local().await?, Self::s3().await?])
    }

    async fn sql(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        query(&self.engine.session()?, sql).await
    }

    async fn put(&self, rel: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        put_object(&self.engine, &format!("{}{rel}", self.src), bytes).await
    }

    async fn copy(&self, select: &str, rel: &str) -> anyhow::Result<()> {
        self.sql(&format!(
            "COPY ({select}) TO '{}{rel}' STORED AS PARQUET",
            self.src
        ))
        .await
        .map(|_| ())
    }

    /// Runs the crawler; returns RUN CRAWLER's row as (name, value) pairs.
    async fn run(&self, crawler: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows = self.sql(&format!("RUN CRAWLER {crawler}")).await?;
        let names = [
            "run",
            "succeeded",
            "tables_created",
            "tables_updated",
            "partitions_added",
            "files_read",
            "files_skipped",
            "error",
        ];
        Ok(names
            .iter()
            .map(|n| n.to_string())
            .zip(rows[0].clone())
            .collect())
    }

    async fn skipped(&self) -> anyhow::Result<Vec<(String, String)>> {
        let rows = self
            .sql("SELECT path, reason FROM system.crawler_skipped_files WHERE run = (SELECT max(run) FROM system.crawler_skipped_files) ORDER BY path")
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let rel = r[0]
                    .rsplit_once("/src/")
                    .map_or(r[0].clone(), |(_, p)| p.to_owned());
                (rel, r[1].clone())
            })
            .collect())
    }
}

fn no_ttl() -> EngineConfig {
    EngineConfig {
        metadata_ttl_secs: 0,
        ..EngineConfig::default()
    }
}

fn field<'a>(run: &'a [(String, String)], name: &str) -> &'a str {
    run.iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes)?;
    Ok(e.finish()?)
}

fn rows(data: &[&[&str]]) -> Vec<Vec<String>> {
    data.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

/// The messy lake: what each folder holds, and what the crawl must make of it.
async fn write_messy_lake(lake: &Lake) -> anyhow::Result<()> {
    // events: Hive partitions; the second day's files have a new column; a corrupt file.
    lake.copy(
        "SELECT 1::bigint AS id, 'a' AS name",
        "events/dt=2024-01-01/part-0.parquet",
    )
    .await?;
    lake.copy(
        "SELECT 2::bigint AS id, 'b' AS name, 2.5::double AS amount",
        "events/dt=2024-01-02/part-0.parquet",
    )
    .await?;
    lake.put(
        "events/dt=2024-01-02/corrupt.parquet",
        b"PAR1 this is not a parquet file".to_vec(),
    )
    .await?;
    lake.put("events/_SUCCESS", Vec::new()).await?;
    // clicks: plain nested folders (no key=value): one unpartitioned table.
    lake.put("clicks/2024/01/a.csv", b"user,n\nann,1\nbob,2\n".to_vec())
        .await?;
    lake.put("clicks/2024/02/b.csv", b"user,n\ncid,3\n".to_vec())
        .await?;
    // orders: gzip CSV with ';' and a header.
    lake.put(
        "orders/o.csv.gz",
        gzip(b"order_id;total\n10;1.5\n11;2.25\n")?,
    )
    .await?;
    // logs: zstd NDJSON whose records differ in their keys.
    lake.put(
        "logs/l.ndjson.zst",
        zstd::encode_all(
            &b"{\"level\":\"info\",\"code\":1}\n{\"level\":\"warn\",\"extra\":true}\n"[..],
            3,
        )?,
    )
    .await?;
    // mixed: a column that is a number in one file and text in another.
    lake.put("mixed/a.json", b"{\"v\": 1}\n".to_vec()).await?;
    lake.put("mixed/b.json", b"{\"v\": \"text\"}\n".to_vec())
        .await?;
    // bad_rows: a CSV row with the wrong number of fields; empty: a file of no bytes.
    lake.put("bad_rows/r.csv", b"a,b\n1,2\n3,4,5\n".to_vec())
        .await?;
    lake.put("empty/e.csv", Vec::new()).await?;
    // A file beside the table folders belongs to no table.
    lake.put("stray.csv", b"x\n1\n".to_vec()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_discovers_tables_formats_and_partitions() -> anyhow::Result<()> {
    for lake in Lake::both().await? {
        write_messy_lake(&lake).await?;
        lake.sql("CREATE DATABASE lake").await?;
        lake.sql(&format!("CREATE CRAWLER c ON '{}' INTO lake", lake.src))
            .await?;
        let run = lake.run("c").await?;
        assert_eq!(field(&run, "succeeded"), "t", "{run:?}");
        assert_eq!(field(&run, "error"), "NULL", "{run:?}");
        // events, clicks, orders, logs, mixed; not bad_rows or empty (nothing readable).
        assert_eq!(field(&run, "tables_created"), "5", "{run:?}");
        assert_eq!(field(&run, "partitions_added"), "2", "{run:?}");

        let tables = lake
            .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'lake' ORDER BY 1")
            .await?;
        assert_eq!(
            tables,
            rows(&[&["clicks"], &["events"], &["logs"], &["mixed"], &["orders"]])
        );
        // The schema grew a column; partition columns come last, typed.
        let columns = lake
            .sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'lake' AND table_name = 'events' ORDER BY ordinal_position")
            .await?;
        assert_eq!(
            columns,
            rows(&[
                &["id", "Int64"],
                &["name", "Utf8View"],
                &["amount", "Float64"],
                &["dt", "Date32"]
            ])
        );
        assert_eq!(
            lake.sql("SELECT id, name, amount, dt FROM lake.events ORDER BY id")
                .await?,
            rows(&[
                &["1", "a", "NULL", "2024-01-01"],
                &["2", "b", "2.5", "2024-01-02"]
            ])
        );
        assert_eq!(
            lake.sql("SELECT \"user\", n FROM lake.clicks ORDER BY n")
                .await?,
            rows(&[&["ann", "1"], &["bob", "2"], &["cid", "3"]])
        );
        assert_eq!(
            lake.sql("SELECT order_id, total FROM lake.orders ORDER BY order_id")
                .await?,
            rows(&[&["10", "1.5"], &["11", "2.25"]])
        );
        assert_eq!(
            lake.sql("SELECT level, code, extra FROM lake.logs ORDER BY level")
                .await?,
            rows(&[&["info", "1", "NULL"], &["warn", "NULL", "t"]])
        );
        assert_eq!(lake.sql("SELECT v FROM lake.mixed").await?, rows(&[&["1"]]));
        let props = lake
            .sql("SELECT column_name FROM information_schema.columns WHERE table_schema = 'lake' AND table_name = 'logs' ORDER BY ordinal_position")
            .await?;
        // arrow-json's inference orders keys by name.
        assert_eq!(props, rows(&[&["code"], &["level"], &["extra"]]));

        // Every bad file is recorded with its reason, and left out of its table.
        let skipped = lake.skipped().await?;
        let reason = |path: &str| {
            skipped
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| panic!("{path} not skipped: {skipped:?}"))
        };
        assert!(reason("events/dt=2024-01-02/corrupt.parquet").contains("Parquet footer"));
        assert!(reason("mixed/b.json").contains("column v"));
        assert!(reason("bad_rows/r.csv").contains("CSV"));
        assert!(reason("empty/e.csv").contains("empty"));
        assert!(reason("stray.csv").contains("above the table folders"));
        assert_eq!(skipped.len(), 5, "{skipped:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_filters_list_only_matching_partitions() -> anyhow::Result<()> {
    let lake = Lake::s3().await?;
    for day in 1..=4 {
        lake.copy(
            &format!("SELECT {day}::bigint AS id"),
            &format!("events/dt=2024-01-0{day}/part-0.parquet"),
        )
        .await?;
    }
    lake.sql("CREATE DATABASE lake").await?;
    lake.sql(&format!("CREATE CRAWLER c ON '{}' INTO lake", lake.src))
        .await?;
    lake.run("c").await?;
    // No filter: one listing per partition folder, never the bucket or the table root.
    let (all, cost) =
        request_cost(&lake.engine, lake.store, "SELECT count(*) FROM lake.events").await?;
    assert_eq!(all, rows(&[&["4"]]));
    assert_eq!(cost.get("list").copied(), Some(4), "{cost:?}");
    // A filter on the partition column: only the matching folder is listed.
    let (one, cost) = request_cost(
        &lake.engine,
        lake.store,
        "SELECT id FROM lake.events WHERE dt = DATE '2024-01-03'",
    )
    .await?;
    assert_eq!(one, rows(&[&["3"]]));
    assert_eq!(cost.get("list").copied(), Some(1), "{cost:?}");
    // EXPLAIN shows the pruning: only that partition's file is in the plan.
    let plan = lake
        .sql("EXPLAIN SELECT id FROM lake.events WHERE dt >= DATE '2024-01-03'")
        .await?
        .concat()
        .join("\n");
    assert!(plan.contains("dt=2024-01-03/part-0.parquet"), "{plan}");
    assert!(plan.contains("dt=2024-01-04/part-0.parquet"), "{plan}");
    assert!(!plan.contains("dt=2024-01-01"), "{plan}");
    assert!(!plan.contains("dt=2024-01-02"), "{plan}");
    // A filter no partition passes reads nothing at all.
    let (none, cost) = request_cost(
        &lake.engine,
        lake.store,
        "SELECT count(*) FROM lake.events WHERE dt > DATE '2030-01-01'",
    )
    .await?;
    assert_eq!(none, rows(&[&["0"]]));
    assert!(cost.is_empty(), "{cost:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recrawls_read_only_new_files_and_add_only_new_partitions() -> anyhow::Result<()> {
    for lake in Lake::both().await? {
        lake.copy("SELECT 1::bigint AS id", "t/dt=2024-01-01/a.parquet")
            .await?;
        lake.copy("SELECT 2::bigint AS id", "t/dt=2024-01-02/a.parquet")
            .await?;
        lake.sql("CREATE DATABASE lake").await?;
        lake.sql(&format!("CREATE CRAWLER c ON '{}' INTO lake", lake.src))
            .await?;
        let first = lake.run("c").await?;
        assert_eq!(field(&first, "files_read"), "2", "{first:?}");
        // Nothing new: nothing read, nothing added.
        let (again, cost) = request_cost(&lake.engine, lake.store, "RUN CRAWLER c").await?;
        assert_eq!(
            again[0][4..6],
            ["0".to_owned(), "0".to_owned()],
            "{again:?}"
        );
        assert_eq!(cost.get("get_range"), None, "no file was read: {cost:?}");
        // A new file in a known partition, and a new partition.
        lake.copy("SELECT 3::bigint AS id", "t/dt=2024-01-02/b.parquet")
            .await?;
        lake.copy("SELECT 4::bigint AS id", "t/dt=2024-01-03/a.parquet")
            .await?;
        let third = lake.run("c").await?;
        assert_eq!(field(&third, "files_read"), "2", "{third:?}");
        assert_eq!(field(&third, "partitions_added"), "1", "{third:?}");
        assert_eq!(field(&third, "tables_updated"), "0", "{third:?}");
        assert_eq!(
            lake.sql("SELECT dt, count(*) FROM lake.t GROUP BY dt ORDER BY dt")
                .await?,
            rows(&[
                &["2024-01-01", "1"],
                &["2024-01-02", "2"],
                &["2024-01-03", "1"]
            ])
        );
        let parts = lake
            .sql("SELECT partition FROM system.partitions WHERE table_name = 't' ORDER BY 1")
            .await?;
        assert_eq!(
            parts,
            rows(&[&["dt=2024-01-01"], &["dt=2024-01-02"], &["dt=2024-01-03"]])
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_change_policies_add_log_or_fail() -> anyhow::Result<()> {
    let lake = Lake::local().await?;
    lake.sql("CREATE DATABASE lake").await?;
    for (policy, table) in [("add_columns", "a"), ("log", "l"), ("fail", "f")] {
        lake.copy(
            "SELECT 1::bigint AS id",
            &format!("{policy}/{table}/dt=1/x.parquet"),
        )
        .await?;
        lake.sql(&format!(
            "CREATE CRAWLER c_{policy} ON '{}{policy}/' INTO lake WITH (schema_change = '{policy}')",
            lake.src
        ))
        .await?;
        let first = lake.run(&format!("c_{policy}")).await?;
        assert_eq!(field(&first, "tables_created"), "1", "{first:?}");
        lake.copy(
            "SELECT 2::bigint AS id, 'new' AS extra",
            &format!("{policy}/{table}/dt=2/x.parquet"),
        )
        .await?;
        let second = lake.run(&format!("c_{policy}")).await?;
        let columns = lake
            .sql(&format!("SELECT column_name FROM information_schema.columns WHERE table_schema = 'lake' AND table_name = '{table}' ORDER BY ordinal_position"))
            .await?;
        let versions = lake
            .sql(&format!(
                "SELECT count(*) FROM system.table_versions WHERE table_name = '{table}'"
            ))
            .await?;
        let partitions = lake
            .sql(&format!(
                "SELECT count(*) FROM system.partitions WHERE table_name = '{table}'"
            ))
            .await?;
        let changes = lake
            .sql(&format!("SELECT schema_changes FROM system.crawler_runs WHERE crawler = 'c_{policy}' AND run = 2"))
            .await?;
        match policy {
            "add_columns" => {
                assert_eq!(field(&second, "tables_updated"), "1", "{second:?}");
                assert_eq!(columns, rows(&[&["id"], &["extra"], &["dt"]]));
                assert_eq!(versions, rows(&[&["2"]]));
                assert_eq!(partitions, rows(&[&["2"]]));
                assert!(changes[0][0].contains("added column extra"), "{changes:?}");
            }
            "log" => {
                assert_eq!(field(&second, "succeeded"), "t", "{second:?}");
                assert_eq!(columns, rows(&[&["id"], &["dt"]]));
                assert_eq!(versions, rows(&[&["1"]]));
                assert_eq!(partitions, rows(&[&["2"]]));
                assert!(changes[0][0].contains("logged only"), "{changes:?}");
            }
            _ => {
                assert_eq!(field(&second, "succeeded"), "f", "{second:?}");
                assert!(
                    field(&second, "error").contains("policy is fail"),
                    "{second:?}"
                );
                // Nothing changed: not the schema, not the partitions.
                assert_eq!(columns, rows(&[&["id"], &["dt"]]));
                assert_eq!(versions, rows(&[&["1"]]));
                assert_eq!(partitions, rows(&[&["1"]]));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_files_are_recorded_and_the_rest_is_crawled() -> anyhow::Result<()> {
    let lake = Lake::s3().await?;
    lake.copy("SELECT 1::bigint AS id", "open/x.parquet")
        .await?;
    lake.copy("SELECT 2::bigint AS id", "locked/x.parquet")
        .await?;
    lake.s3
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("s3"))?
        .deny_reads("lake", "src/locked/");
    lake.sql("CREATE DATABASE lake").await?;
    lake.sql(&format!("CREATE CRAWLER c ON '{}' INTO lake", lake.src))
        .await?;
    let run = lake.run("c").await?;
    assert_eq!(field(&run, "succeeded"), "t", "{run:?}");
    assert_eq!(field(&run, "tables_created"), "1", "{run:?}");
    let skipped = lake.skipped().await?;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].0, "locked/x.parquet");
    assert!(
        skipped[0].1.to_lowercase().contains("denied") || skipped[0].1.contains("403"),
        "{skipped:?}"
    );
    assert_eq!(lake.sql("SELECT id FROM lake.open").await?, rows(&[&["1"]]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_partitions_and_delta_tables() -> anyhow::Result<()> {
    for lake in Lake::both().await? {
        lake.put("logs/2024/01/a.csv", b"msg,n\nx,1\n".to_vec())
            .await?;
        lake.put("logs/2024/02/b.csv", b"msg,n\ny,2\n".to_vec())
            .await?;
        // A Delta table written by tarn in another warehouse, under the crawled folder.
        let other = engine_at(
            &format!("{}delta_wh", lake.src),
            match &lake.s3 {
                Some(s3) => [("default".to_owned(), s3.store_config())].into(),
                None => StoresConfig::new(),
            },
            no_ttl(),
        )
        .await?;
        query(
            &other.session()?,
            "CREATE TABLE d AS SELECT 7::bigint AS k, 'z' AS v",
        )
        .await?;
        lake.sql("CREATE DATABASE lake").await?;
        lake.sql(&format!(
            "CREATE CRAWLER c ON '{}' INTO lake WITH (table_level = 1, unnamed_partitions = true, table_prefix = 'raw_')",
            lake.src
        ))
        .await?;
        lake.sql(&format!(
            "CREATE CRAWLER d ON '{}delta_wh/public/' INTO lake",
            lake.src
        ))
        .await?;
        lake.run("c").await?;
        lake.run("d").await?;
        assert_eq!(
            lake.sql("SELECT msg, n, partition_0, partition_1 FROM lake.raw_logs ORDER BY n")
                .await?,
            rows(&[&["x", "1", "2024", "1"], &["y", "2", "2024", "2"]])
        );
        assert_eq!(
            lake.sql("SELECT n FROM lake.raw_logs WHERE partition_1 = 2")
                .await?,
            rows(&[&["2"]])
        );
        assert_eq!(
            lake.sql("SELECT k, v FROM lake.d").await?,
            rows(&[&["7", "z"]])
        );
        assert_eq!(
            lake.sql(
                "SELECT nullif(tables_created, '') FROM system.crawler_runs WHERE crawler = 'c'"
            )
            .await?,
            rows(&[&["raw_logs"]])
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawls_survive_a_restart_and_recrawl_incrementally() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let wh = dir.path().join("wh").display().to_string();
    let src = format!("{}/src/", dir.path().display());
    let engine = engine_at(&wh, StoresConfig::new(), no_ttl()).await?;
    let session = engine.session()?;
    query(
        &session,
        &format!("COPY (SELECT 1::bigint AS id) TO '{src}t/dt=1/a.parquet' STORED AS PARQUET"),
    )
    .await?;
    query(&session, "CREATE DATABASE lake").await?;
    query(
        &session,
        &format!("CREATE CRAWLER c ON '{src}' INTO lake WITH (schedule = '0 3 * * *')"),
    )
    .await?;
    query(&session, "RUN CRAWLER c").await?;
    drop(session);
    drop(engine);
    let engine = engine_at(&wh, StoresConfig::new(), no_ttl()).await?;
    let session = engine.session()?;
    assert_eq!(
        query(
            &session,
            "SELECT name, schedule, last_run FROM system.crawlers"
        )
        .await?,
        rows(&[&["c", "0 3 * * *", "1"]])
    );
    assert_eq!(
        query(&session, "SELECT id, dt FROM lake.t").await?,
        rows(&[&["1", "1"]])
    );
    let again = query(&session, "RUN CRAWLER c").await?;
    assert_eq!(
        again[0][0..6],
        ["2", "t", "0", "0", "0", "0"].map(String::from),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_of_files_is_one_table() -> anyhow::Result<()> {
    let lake = Lake::local().await?;
    lake.put("flat/a.csv", b"k,v\n1,x\n".to_vec()).await?;
    lake.put("flat/b.csv", b"k,v\n2,y\n".to_vec()).await?;
    lake.sql("CREATE DATABASE lake").await?;
    lake.sql(&format!(
        "CREATE CRAWLER c ON '{}flat/' INTO lake",
        lake.src
    ))
    .await?;
    let run = lake.run("c").await?;
    assert_eq!(field(&run, "tables_created"), "1", "{run:?}");
    assert_eq!(
        lake.sql("SELECT k, v FROM lake.flat ORDER BY k").await?,
        rows(&[&["1", "x"], &["2", "y"]])
    );
    Ok(())
}
