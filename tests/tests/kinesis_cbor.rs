//! The Kinesis API in CBOR (`application/x-amz-cbor-1.1`, what the AWS Java SDK sends) over
//! HTTP/2 with prior knowledge, on the same port as JSON over HTTP/1.1: a Rust client puts and
//! gets records as byte strings, with timestamps in epoch milliseconds.

use bytes::Bytes;
use ciborium::value::Value as Cbor;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tarn_tests::start_server;

struct Client {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        Ok(Self { send })
    }

    /// Calls `operation` with a CBOR `body`; returns the status, content type and CBOR answer.
    async fn call(
        &mut self,
        operation: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, String, Cbor)> {
        let request = Request::post("http://tarn/")
            .header("content-type", "application/x-amz-cbor-1.1")
            .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
            .body(Full::new(Bytes::from(body)))?;
        let response = self.send.send_request(request).await?;
        anyhow::ensure!(
            response.version() == hyper::Version::HTTP_2,
            "answered over {:?}",
            response.version()
        );
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.into_body().collect().await?.to_bytes();
        let answer: Cbor = ciborium::de::from_reader(bytes.as_ref())?;
        Ok((status, content_type, answer))
    }
}

fn map(entries: Vec<(&str, Cbor)>) -> Vec<u8> {
    let value = Cbor::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Cbor::Text(k.to_owned()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).expect("CBOR encodes into a Vec");
    out
}

fn get<'a>(value: &'a Cbor, key: &str) -> Option<&'a Cbor> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn text(value: &Cbor, key: &str) -> String {
    get(value, key)
        .and_then(Cbor::as_text)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cbor_over_http2_puts_and_gets_records_as_bytes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_server(&dir.path().join("wh")).await?;
    let mut client = Client::connect(server.addrs().http).await?;
    let (status, content_type, _) = client
        .call(
            "CreateStream",
            map(vec![
                ("StreamName", Cbor::Text("c".into())),
                ("ShardCount", Cbor::Integer(1.into())),
            ]),
        )
        .await?;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-amz-cbor-1.1")
    );

    let payload = vec![0u8, 159, 146, 150, 255];
    let before = chrono::Utc::now().timestamp_millis();
    let (status, _, put) = client
        .call(
            "PutRecord",
            map(vec![
                ("StreamName", Cbor::Text("c".into())),
                ("PartitionKey", Cbor::Text("k".into())),
                ("Data", Cbor::Bytes(payload.clone())),
            ]),
        )
        .await?;
    assert_eq!(status, 200, "{put:?}");
    let sequence = text(&put, "SequenceNumber");
    assert_eq!(text(&put, "ShardId"), "shardId-000000000000");

    let (_, _, iterator) = client
        .call(
            "GetShardIterator",
            map(vec![
                ("StreamName", Cbor::Text("c".into())),
                ("ShardId", Cbor::Text("shardId-000000000000".into())),
                ("ShardIteratorType", Cbor::Text("AT_TIMESTAMP".into())),
                // CBOR timestamps are epoch milliseconds.
                ("Timestamp", Cbor::Integer((before - 1000).into())),
            ]),
        )
        .await?;
    let (status, _, records) = client
        .call(
            "GetRecords",
            map(vec![(
                "ShardIterator",
                Cbor::Text(text(&iterator, "ShardIterator")),
            )]),
        )
        .await?;
    assert_eq!(status, 200, "{records:?}");
    let list = get(&records, "Records")
        .and_then(Cbor::as_array)
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "{records:?}");
    assert_eq!(get(&list[0], "Data"), Some(&Cbor::Bytes(payload)));
    assert_eq!(text(&list[0], "SequenceNumber"), sequence);
    let arrival = get(&list[0], "ApproximateArrivalTimestamp")
        .and_then(|v| v.as_integer())
        .map(i128::from)
        .unwrap_or_default();
    let now = i128::from(chrono::Utc::now().timestamp_millis());
    assert!(
        (i128::from(before)..=now).contains(&arrival),
        "arrival {arrival} in ms between {before} and {now}"
    );

    // Bad input gets a CBOR error in the AWS shape, and the connection keeps serving.
    let (status, content_type, error) = client.call("PutRecord", b"\xff\xfe".to_vec()).await?;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/x-amz-cbor-1.1")
    );
    assert_eq!(text(&error, "__type"), "SerializationException");
    let (status, _, error) = client
        .call(
            "PutRecord",
            map(vec![
                ("StreamName", Cbor::Text("nope".into())),
                ("PartitionKey", Cbor::Text("k".into())),
                ("Data", Cbor::Bytes(b"x".to_vec())),
            ]),
        )
        .await?;
    assert_eq!(status, 400);
    assert_eq!(text(&error, "__type"), "ResourceNotFoundException");
    let (status, _, summary) = client
        .call(
            "DescribeStreamSummary",
            map(vec![("StreamName", Cbor::Text("c".into()))]),
        )
        .await?;
    assert_eq!(status, 200);
    let created = get(&summary, "StreamDescriptionSummary")
        .and_then(|s| get(s, "StreamCreationTimestamp"))
        .and_then(Cbor::as_integer)
        .map(i128::from)
        .unwrap_or_default();
    assert!(created > 1_700_000_000_000, "milliseconds, got {created}");
    server.shutdown().await;
    Ok(())
}
