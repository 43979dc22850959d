//! `engine.memory_limit` bounds what queries may hold; past it, sorts spill to disk and still
//! answer correctly.

use tarn_sql::{EngineConfig, QueryEngine, QueryOutput};

async fn engine(dir: &std::path::Path, memory_limit: &str) -> anyhow::Result<QueryEngine> {
    let config = EngineConfig {
        memory_limit: Some(memory_limit.to_owned()),
        spill_dir: Some(dir.join("spill")),
        target_partitions: 1,
        ..EngineConfig::default()
    };
    let warehouse = dir.join("warehouse").display().to_string();
    tarn_tests::engine_at(&warehouse, Default::default(), config).await
}

async fn text(engine: &QueryEngine, sql: &str) -> anyhow::Result<String> {
    let session = engine.session()?;
    let Some(QueryOutput::Rows(df)) = session.sql(sql).await?.pop() else {
        anyhow::bail!("no rows from {sql}");
    };
    let batches = df.collect().await?;
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorts_past_the_memory_limit_spill_and_stay_correct() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = engine(dir.path(), "4MiB").await?;
    // A full sort of 2M distinct keys in scrambled order (16 MB) cannot fit in 4 MiB.
    let sorted = "SELECT v, lag(v) OVER (ORDER BY v DESC) AS prev \
                  FROM (SELECT (value * 7919) % 2000003 AS v FROM generate_series(1, 2000000) AS t(value))";
    let checked = format!(
        "SELECT count(*) AS n, sum(CASE WHEN prev > v THEN 1 ELSE 0 END) AS ordered FROM ({sorted})"
    );
    // The sort keeps 10 MB aside for merging by default; leave it room in a 4 MiB pool.
    let checked =
        format!("SET datafusion.execution.sort_spill_reservation_bytes = 1048576; {checked}");
    let out = text(&engine, &checked).await?;
    assert!(out.contains("| 2000000 | 1999999 |"), "{out}");
    let explain = checked.replacen("; ", "; EXPLAIN ANALYZE ", 1);
    let plan = text(&engine, &explain).await?;
    let spilled = plan
        .split("spill_count=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .any(|n| n > 0);
    assert!(spilled, "expected a spill under a 4 MiB limit:\n{plan}");
    Ok(())
}

#[tokio::test]
async fn a_malformed_memory_limit_is_refused_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let err = engine(dir.path(), "lots").await.expect_err("refused");
    assert!(err.to_string().contains("engine.memory_limit"), "{err}");
    Ok(())
}
