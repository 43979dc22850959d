//! Streams read from SQL: `stream('name')` over the records the Kinesis API (here, the same
//! `Streams` the server's API writes to) has acknowledged, over the Postgres wire.

use tarn_ingest::stream::{PutRecord, StreamMode};
use tarn_tests::{connect, start_server};

fn record(key: &str, data: &[u8]) -> PutRecord {
    PutRecord {
        partition_key: key.into(),
        explicit_hash_key: None,
        data: data.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_are_rows_of_stream() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(&dir.path().join("wh")).await?;
    let streams = server.streams();
    streams.create("clicks", 2, StreamMode::Provisioned)?;
    let acked = streams
        .put(
            "clicks",
            vec![
                record("u1", br#"{"user": 1}"#),
                record("u1", br#"{"user": 1, "n": 2}"#),
                record("u2", &[0xff, 0xfe]),
            ],
        )
        .await?;
    let client = connect(&server).await?;
    let rows = client
        .query(
            "SELECT shard_id, sequence_number, partition_key, text, data \
             FROM stream('clicks') ORDER BY sequence_number",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), 3);
    for (row, ack) in rows.iter().zip(&acked) {
        let shard: String = row.get(0);
        let sequence: i64 = row.get(1);
        assert_eq!(shard, tarn_ingest::stream::shard_id(ack.shard));
        assert_eq!(sequence as u64, ack.sequence);
    }
    let texts: Vec<Option<String>> = rows.iter().map(|r| r.get(3)).collect();
    assert_eq!(
        texts,
        [
            Some(r#"{"user": 1}"#.to_owned()),
            Some(r#"{"user": 1, "n": 2}"#.to_owned()),
            None
        ]
    );
    let data: Vec<Vec<u8>> = rows.iter().map(|r| r.get(4)).collect();
    assert_eq!(data[2], [0xff, 0xfe]);
    assert_eq!(data[0], br#"{"user": 1}"#);
    let keys = client
        .query(
            "SELECT partition_key, count(*) FROM stream('clicks') GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    let keys: Vec<(String, i64)> = keys.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(keys, [("u1".to_owned(), 2), ("u2".to_owned(), 1)]);

    // A KPL-aggregated record is its user records, each with its own key.
    let packed = tarn_ingest::stream::aggregate(&[("a", b"first"), ("b", b"second")]);
    let acked = streams.put("clicks", vec![record("kpl", &packed)]).await?;
    let rows = client
        .query(
            "SELECT sequence_number, sub_sequence_number, partition_key, text              FROM stream('clicks') WHERE sequence_number = $1 ORDER BY sub_sequence_number",
            &[&(acked[0].sequence as i64)],
        )
        .await?;
    let rows: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        [
            (0, "a".to_owned(), "first".to_owned()),
            (1, "b".to_owned(), "second".to_owned())
        ]
    );

    // An unknown stream is an unknown table; a bad argument is a plan error. The session
    // goes on.
    let err = client
        .query("SELECT * FROM stream('nope')", &[])
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("unknown stream answered"))?;
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    let err = client
        .query("SELECT * FROM stream(1)", &[])
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("bad argument answered"))?;
    assert!(
        err.to_string().contains("stream()") || format!("{err:?}").contains("stream()"),
        "{err:?}"
    );
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);
    drop(client);
    server.shutdown().await;
    Ok(())
}
