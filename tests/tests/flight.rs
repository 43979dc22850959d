//! Flight SQL with the Rust `FlightSqlServiceClient`: queries, prepared statements whose
//! handles carry their parameters, updates, bulk loads, metadata, authentication, and the
//! stream's life: backpressure from a client that stops reading, a client that goes away, and
//! `CancelFlightInfo`. Every bad request gets a gRPC status and the server keeps serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandStatementIngest, SqlInfo, TableDefinitionOptions,
    TableExistsOption, TableNotExistOption,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo, Ticket,
};
use datafusion::arrow::array::{AsArray, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use futures::{StreamExt, TryStreamExt};
use tarn_server::{Server, TarnConfig};
use tonic::Code;
use tonic::transport::Channel;

type Client = FlightSqlServiceClient<Channel>;

async fn client(server: &Server) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(format!("http://{}", server.addrs().flight))?
        .connect()
        .await?;
    Ok(FlightSqlServiceClient::new(channel))
}

/// The gRPC status inside a client error.
fn code(e: &FlightError) -> (Code, String) {
    match e {
        FlightError::Tonic(status) => (status.code(), status.message().to_owned()),
        other => (Code::Unknown, other.to_string()),
    }
}

async fn collect(client: &mut Client, info: FlightInfo) -> anyhow::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .ok_or_else(|| anyhow::anyhow!("no ticket"))?;
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(batches)
}

async fn query(client: &mut Client, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let info = client.execute(sql.to_owned(), None).await?;
    collect(client, info).await
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn int64s(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = datafusion::arrow::compute::cast(b.column(column), &DataType::Int64)
                .expect("int column");
            c.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = datafusion::arrow::compute::cast(b.column(column), &DataType::Utf8)
                .expect("text column");
            c.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until `check` holds, for at most 30 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_prepared_statements_updates_and_loads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = tarn_tests::start_server(dir.path()).await?;
    let mut c = client(&server).await?;

    // DDL and DML as updates; the count is the rows inserted.
    assert_eq!(
        c.execute_update("CREATE TABLE t (id INT, name TEXT)".into(), None)
            .await?,
        0
    );
    assert_eq!(
        c.execute_update(
            "INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three')".into(),
            None
        )
        .await?,
        3
    );
    let batches = query(&mut c, "SELECT id, name FROM t ORDER BY id").await?;
    assert_eq!(int64s(&batches, 0), vec![1, 2, 3]);

    // A prepared query: parameter schema typed from the plan; binding returns a handle that
    // carries the values, so execution needs no server memory.
    let mut prepared = c
        .prepare("SELECT name FROM t WHERE id > $1 ORDER BY id".into(), None)
        .await?;
    assert_eq!(
        prepared.parameter_schema()?.field(0).data_type(),
        &DataType::Int32
    );
    let params = Schema::new(vec![Field::new("$1", DataType::Int64, false)]);
    prepared.set_parameters(RecordBatch::try_new(
        Arc::new(params.clone()),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )?)?;
    let info = prepared.execute().await?;
    let batches = collect(&mut c, info).await?;
    assert_eq!(strings(&batches, 0), ["two", "three"]);
    prepared.close().await?;

    // A prepared insert with many rows: one load, all rows.
    let mut insert = c
        .prepare("INSERT INTO t VALUES ($1, $2)".into(), None)
        .await?;
    let ids: Vec<i32> = (100..600).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
    let schema = Schema::new(vec![
        Field::new("$1", DataType::Int32, false),
        Field::new("$2", DataType::Utf8, false),
    ]);
    insert.set_parameters(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int32Array::from(ids.clone())),
            Arc::new(StringArray::from(names)),
        ],
    )?)?;
    assert_eq!(insert.execute_update().await?, 500);
    let batches = query(&mut c, "SELECT count(*), sum(id) FROM t").await?;
    assert_eq!(int64s(&batches, 0), vec![503]);
    assert_eq!(
        int64s(&batches, 1),
        vec![6 + ids.iter().map(|&i| i64::from(i)).sum::<i64>()]
    );

    // The same insert run as a query (what a DB-API `cursor.execute(sql, rows)` sends): it
    // runs at GetFlightInfo, once, and the ticket returns the one count.
    let mut as_query = c
        .prepare("INSERT INTO t VALUES ($1, $2)".into(), None)
        .await?;
    let schema = Schema::new(vec![
        Field::new("$1", DataType::Int32, false),
        Field::new("$2", DataType::Utf8, false),
    ]);
    as_query.set_parameters(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int32Array::from_iter_values(1000..9000)),
            Arc::new(StringArray::from_iter_values(
                (1000..9000).map(|i| format!("q{i}")),
            )),
        ],
    )?)?;
    let info = as_query.execute().await?;
    assert_eq!(int64s(&collect(&mut c, info.clone()).await?, 0), vec![8000]);
    // Fetching its ticket again returns the count again and inserts nothing more.
    assert_eq!(int64s(&collect(&mut c, info).await?, 0), vec![8000]);
    let batches = query(&mut c, "SELECT count(*) FROM t WHERE id >= 1000").await?;
    assert_eq!(int64s(&batches, 0), vec![8000]);

    // A bulk load: creates the table from the batches' schema, then appends, then replaces.
    let load_schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let batch = |from: i64, n: i64| {
        RecordBatch::try_new(
            Arc::clone(&load_schema),
            vec![
                Arc::new(Int64Array::from((from..from + n).collect::<Vec<_>>())),
                Arc::new(StringArray::from(
                    (from..from + n)
                        .map(|i| format!("v{i}"))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
    };
    let load =
        |if_not_exist: TableNotExistOption, if_exists: TableExistsOption| CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: if_not_exist.into(),
                if_exists: if_exists.into(),
            }),
            table: "loaded".into(),
            schema: Some("public".into()),
            ..Default::default()
        };
    let batches: Vec<_> = (0..10)
        .map(|i| batch(i * 10_000, 10_000))
        .collect::<Result<_, _>>()?;
    let loaded = c
        .execute_ingest(
            load(TableNotExistOption::Create, TableExistsOption::Fail),
            futures::stream::iter(batches.into_iter().map(Ok)),
        )
        .await?;
    assert_eq!(loaded, 100_000);
    let appended = c
        .execute_ingest(
            load(TableNotExistOption::Fail, TableExistsOption::Append),
            futures::stream::iter(vec![batch(100_000, 5)?].into_iter().map(Ok)),
        )
        .await?;
    assert_eq!(appended, 5);
    let batches = query(
        &mut c,
        "SELECT count(*), count(DISTINCT k), max(k) FROM loaded",
    )
    .await?;
    assert_eq!(int64s(&batches, 0), vec![100_005]);
    assert_eq!(int64s(&batches, 1), vec![100_005]);
    assert_eq!(int64s(&batches, 2), vec![100_004]);
    // Loading again into an existing table with "fail" is refused and changes nothing.
    let err = c
        .execute_ingest(
            load(TableNotExistOption::Create, TableExistsOption::Fail),
            futures::stream::iter(vec![batch(0, 1)?].into_iter().map(Ok)),
        )
        .await
        .expect_err("the table exists");
    let (status, message) = code(&err);
    assert_eq!(status, Code::AlreadyExists, "{message}");
    assert!(message.contains("already exists"), "{message}");
    // Appending a column the table lacks names it.
    let extra = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("nope", DataType::Utf8, true),
    ]));
    let err = c
        .execute_ingest(
            load(TableNotExistOption::Fail, TableExistsOption::Append),
            futures::stream::iter(vec![Ok(RecordBatch::try_new(
                extra,
                vec![
                    Arc::new(Int64Array::from(vec![1])),
                    Arc::new(StringArray::from(vec!["x"])),
                ],
            )?)]),
        )
        .await
        .expect_err("no such column");
    let (status, message) = code(&err);
    assert_eq!(status, Code::InvalidArgument, "{message}");
    assert!(message.contains("\"nope\""), "{message}");
    // Appending to a missing table with "fail" is NotFound.
    let mut missing = load(TableNotExistOption::Fail, TableExistsOption::Append);
    missing.table = "absent".into();
    let err = c
        .execute_ingest(
            missing,
            futures::stream::iter(vec![batch(0, 1)?].into_iter().map(Ok)),
        )
        .await
        .expect_err("no such table");
    assert_eq!(code(&err).0, Code::NotFound, "{err}");
    let batches = query(&mut c, "SELECT count(*) FROM loaded").await?;
    assert_eq!(int64s(&batches, 0), vec![100_005]);
    // Replace takes the new schema too.
    let other = Arc::new(Schema::new(vec![Field::new("only", DataType::Utf8, true)]));
    let replaced = c
        .execute_ingest(
            load(TableNotExistOption::Fail, TableExistsOption::Replace),
            futures::stream::iter(vec![Ok(RecordBatch::try_new(
                other,
                vec![Arc::new(StringArray::from(vec!["x", "y"]))],
            )?)]),
        )
        .await?;
    assert_eq!(replaced, 2);
    let batches = query(&mut c, "SELECT only FROM loaded ORDER BY only").await?;
    assert_eq!(rows(&batches), 2);

    // Metadata: the table, its schema, the public schema, server facts.
    let info = c
        .get_tables(CommandGetTables {
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("t".into()),
            include_schema: true,
            ..Default::default()
        })
        .await?;
    let batches = collect(&mut c, info).await?;
    assert_eq!(rows(&batches), 1);
    assert_eq!(strings(&batches, 3), ["TABLE"]);
    let schema_bytes = batches[0]
        .column_by_name("table_schema")
        .expect("table_schema")
        .as_binary::<i32>()
        .value(0)
        .to_vec();
    let schema = Schema::try_from(arrow_flight::IpcMessage(schema_bytes.into()))?;
    assert_eq!(schema.field(0).name(), "id");
    assert_eq!(schema.field(0).data_type(), &DataType::Int32);
    // The same columns and types a query of the table returns.
    let queried = c
        .execute("SELECT * FROM t".into(), None)
        .await?
        .try_decode_schema()?;
    let types = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(types(&schema), types(&queried));
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("tarn".into()),
            db_schema_filter_pattern: None,
        })
        .await?;
    let batches = collect(&mut c, info).await?;
    let schemas = strings(&batches, 1);
    assert!(schemas.contains(&"public".to_owned()), "{schemas:?}");
    assert!(schemas.contains(&"system".to_owned()), "{schemas:?}");
    let info = c.get_sql_info(vec![SqlInfo::FlightSqlServerName]).await?;
    assert_eq!(rows(&collect(&mut c, info).await?), 1);
    let info = c.get_xdbc_type_info(Default::default()).await?;
    assert!(rows(&collect(&mut c, info).await?) > 5);
    for info in [
        c.get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            table: "t".into(),
            ..Default::default()
        })
        .await?,
        c.get_exported_keys(arrow_flight::sql::CommandGetExportedKeys {
            table: "t".into(),
            ..Default::default()
        })
        .await?,
        c.get_imported_keys(arrow_flight::sql::CommandGetImportedKeys {
            table: "t".into(),
            ..Default::default()
        })
        .await?,
    ] {
        assert_eq!(rows(&collect(&mut c, info).await?), 0);
    }
    server.shutdown().await;
    Ok(())
}

/// The ticket of a `FlightInfo`'s one endpoint.
fn ticket(info: &FlightInfo) -> anyhow::Result<Ticket> {
    info.endpoint
        .first()
        .and_then(|e| e.ticket.clone())
        .ok_or_else(|| anyhow::anyhow!("no ticket"))
}

fn rows_sent(server: &Server) -> Option<u64> {
    server.flight_queries().first().map(|q| q.rows_sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_queries_back_and_gone_clients_stop_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = tarn_tests::start_server(dir.path()).await?;
    let mut c = client(&server).await?;
    // Endless for practical purposes: 10^11 rows.
    let endless = "SELECT value FROM range(0, 100000000000)";

    // A client that reads one batch and stops: the server produces only what the transport
    // buffers, not the result.
    let info = c.execute(endless.into(), None).await?;
    let mut stream = c.do_get(ticket(&info)?).await?;
    let first = stream.next().await.expect("a batch")?;
    assert!(first.num_rows() > 0);
    eventually("the query to register", || rows_sent(&server).is_some()).await?;
    let mut last = rows_sent(&server);
    let mut steady_since = Instant::now();
    eventually("the producer to stop for want of a reader", || {
        let now = rows_sent(&server);
        if now != last {
            last = now;
            steady_since = Instant::now();
        }
        steady_since.elapsed() > Duration::from_millis(500)
    })
    .await?;
    let held = last.unwrap_or(0);
    eprintln!("rows produced for a client that read one batch: {held}");
    assert!(
        held < 2_000_000,
        "{held} rows produced for a client that read one batch"
    );
    // Reading resumes the stream where it stopped.
    let more = stream.next().await.expect("more")?;
    assert!(more.num_rows() > 0);

    // The client goes away: the query stops and leaves the registry.
    drop(stream);
    eventually("the abandoned query to stop", || {
        server.flight_queries().is_empty()
    })
    .await?;

    // CancelFlightInfo on a running query: the stream ends with CANCELLED.
    let info = c.execute(endless.into(), None).await?;
    let mut stream = c.do_get(ticket(&info)?).await?;
    stream.next().await.expect("a batch")?;
    assert_eq!(cancel(&mut c, &info).await?, CancelStatus::Cancelled);
    let ended = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break code(&e),
            None => anyhow::bail!("the cancelled stream ended without an error"),
        }
    };
    assert_eq!(ended.0, Code::Cancelled, "{}", ended.1);
    eventually("the cancelled query to leave", || {
        server.flight_queries().is_empty()
    })
    .await?;

    // The same ticket fetched twice is two queries; cancelling stops both, even though
    // neither client is reading.
    let info = c.execute(endless.into(), None).await?;
    let mut one = c.do_get(ticket(&info)?).await?;
    let mut two = c.do_get(ticket(&info)?).await?;
    one.next().await.expect("a batch")?;
    two.next().await.expect("a batch")?;
    eventually("both to register", || server.flight_queries().len() == 2).await?;
    assert_eq!(cancel(&mut c, &info).await?, CancelStatus::Cancelled);
    eventually("both to stop without a reader", || {
        server.flight_queries().is_empty()
    })
    .await?;
    drop((one, two));

    // A command has run by the time its FlightInfo exists: not cancellable.
    let info = c.execute("CREATE TABLE made (a INT)".into(), None).await?;
    assert_eq!(cancel(&mut c, &info).await?, CancelStatus::NotCancellable);
    assert_eq!(rows(&query(&mut c, "SELECT * FROM made").await?), 0);

    // Cancelled before DoGet: the DoGet fails at once.
    let info = c.execute(endless.into(), None).await?;
    assert_eq!(cancel(&mut c, &info).await?, CancelStatus::Cancelled);
    let err = match c.do_get(ticket(&info)?).await {
        Ok(mut s) => s.next().await.and_then(Result::err).expect("cancelled"),
        Err(e) => e,
    };
    assert_eq!(code(&err).0, Code::Cancelled);

    // And the server serves on.
    let batches = query(&mut c, "SELECT 41 + 1").await?;
    assert_eq!(int64s(&batches, 0), vec![42]);
    server.shutdown().await;
    Ok(())
}

async fn cancel(c: &mut Client, info: &FlightInfo) -> anyhow::Result<CancelStatus> {
    use prost::Message;
    let request = CancelFlightInfoRequest::new(info.clone());
    let mut results = c
        .do_action(Action::new("CancelFlightInfo", request.encode_to_vec()))
        .await?;
    let result = results.next().await.expect("a result")?;
    let result = CancelFlightInfoResult::decode(result.body.as_ref())?;
    Ok(CancelStatus::try_from(result.status)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_status_and_the_server_serves_on() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = tarn_tests::start_server(dir.path()).await?;
    let mut c = client(&server).await?;
    let expect = |result: Result<FlightInfo, FlightError>, want: Code, text: &str| {
        let err = result.expect_err(text);
        let (got, message) = code(&err);
        assert_eq!(got, want, "{message}");
        assert!(
            message.contains(text),
            "{message:?} should mention {text:?}"
        );
    };
    expect(
        c.execute("SELEC 1".into(), None).await,
        Code::InvalidArgument,
        "SELEC",
    );
    expect(
        c.execute("SELECT * FROM nowhere".into(), None).await,
        Code::NotFound,
        "nowhere",
    );
    expect(
        c.execute("SELECT 1; SELECT 2".into(), None).await,
        Code::InvalidArgument,
        "one statement",
    );
    expect(
        c.execute("SELECT 1".into(), Some("tx".into())).await,
        Code::Unimplemented,
        "transactions",
    );

    // A ticket tarn did not make.
    let garbage = Ticket::new(b"not a ticket".to_vec());
    let err = c.do_get(garbage).await.expect_err("garbage ticket");
    assert_eq!(code(&err).0, Code::InvalidArgument, "{err}");
    let forged = arrow_flight::sql::TicketStatementQuery {
        statement_handle: b"forged".to_vec().into(),
    };
    use arrow_flight::sql::ProstMessageExt;
    let err = c
        .do_get(Ticket::new(prost::Message::encode_to_vec(&forged.as_any())))
        .await
        .expect_err("forged handle");
    let (status, message) = code(&err);
    assert_eq!(status, Code::InvalidArgument);
    assert!(
        message.contains("unknown prepared statement handle"),
        "{message}"
    );

    // A parameter of the wrong type, and the wrong number of parameters.
    c.execute_update("CREATE TABLE p (id INT)".into(), None)
        .await?;
    let mut prepared = c
        .prepare("SELECT id FROM p WHERE id = $1".into(), None)
        .await?;
    let text = Schema::new(vec![Field::new("$1", DataType::Utf8, false)]);
    prepared.set_parameters(RecordBatch::try_new(
        Arc::new(text),
        vec![Arc::new(StringArray::from(vec!["abc"]))],
    )?)?;
    let err = prepared.execute().await.expect_err("abc is no INT");
    let (status, message) = code(&err);
    assert_eq!(status, Code::InvalidArgument, "{message}");
    assert!(message.contains("$1"), "{message}");
    let mut prepared = c
        .prepare("SELECT id FROM p WHERE id = $1".into(), None)
        .await?;
    let two = Schema::new(vec![
        Field::new("$1", DataType::Int32, false),
        Field::new("$2", DataType::Int32, false),
    ]);
    prepared.set_parameters(RecordBatch::try_new(
        Arc::new(two),
        vec![
            Arc::new(Int32Array::from(vec![1])),
            Arc::new(Int32Array::from(vec![2])),
        ],
    )?)?;
    let err = prepared
        .execute()
        .await
        .expect_err("two values for one parameter");
    assert_eq!(code(&err).0, Code::InvalidArgument);
    // Executing without binding.
    let mut unbound = c
        .prepare("SELECT id FROM p WHERE id = $1".into(), None)
        .await?;
    let info = unbound.execute().await?;
    let err = match c.do_get(ticket(&info)?).await {
        Ok(mut s) => s.next().await.and_then(Result::err).expect("unbound"),
        Err(e) => e,
    };
    let (status, message) = code(&err);
    assert_eq!(status, Code::InvalidArgument);
    assert!(message.contains("none are bound"), "{message}");

    // A command that is not Flight SQL's, and an unknown action.
    let descriptor = arrow_flight::FlightDescriptor::new_cmd(b"\x0a\x03abc".to_vec());
    let err = c
        .inner_mut()
        .get_flight_info(descriptor)
        .await
        .expect_err("unknown command");
    assert!(
        matches!(err.code(), Code::InvalidArgument | Code::Unimplemented),
        "{err}"
    );
    let err = c
        .do_action(Action::new("Explode", Vec::new()))
        .await
        .expect_err("unknown action");
    assert_eq!(code(&err).0, Code::InvalidArgument);

    // A message over the size limit (64 MiB by default) is refused by the transport.
    let huge = Ticket::new(vec![0u8; 65 << 20]);
    let err = c.do_get(huge).await.expect_err("oversize");
    assert!(
        matches!(code(&err).0, Code::ResourceExhausted | Code::OutOfRange),
        "{err}"
    );

    // A parameter number past Postgres' limit is refused before anything is allocated.
    expect(
        c.execute("SELECT $4000000000".into(), None).await,
        Code::InvalidArgument,
        "at most 65535 parameters",
    );
    // More bound rows than a call may carry.
    let mut many = c.prepare("INSERT INTO p VALUES ($1)".into(), None).await?;
    let one = Schema::new(vec![Field::new("$1", DataType::Int32, false)]);
    many.set_parameters(RecordBatch::try_new(
        Arc::new(one),
        vec![Arc::new(Int32Array::from_iter_values(0..100_001))],
    )?)?;
    let err = many.execute_update().await.expect_err("too many rows");
    let (status, message) = code(&err);
    assert_eq!(status, Code::InvalidArgument, "{message}");
    assert!(message.contains("at most 100000"), "{message}");

    let batches = query(&mut c, "SELECT count(*) FROM p").await?;
    assert_eq!(int64s(&batches, 0), vec![0]);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_users_must_authenticate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let overrides = tarn_server::Overrides {
        warehouse: Some(dir.path().display().to_string()),
        pg_addr: Some("127.0.0.1:0".into()),
        http_addr: Some("127.0.0.1:0".into()),
        flight_addr: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let mut config = TarnConfig::load(&overrides)?;
    config
        .auth
        .users
        .insert("alice".into(), tarn_catalog::Secret::new("s3cret"));
    let server = Server::start(config).await?;

    let mut anonymous = client(&server).await?;
    let err = anonymous
        .execute("SELECT 1".into(), None)
        .await
        .expect_err("no credentials");
    assert_eq!(code(&err).0, Code::Unauthenticated);
    // The client flattens handshake statuses into text.
    for (user, password) in [("alice", "wrong"), ("mallory", "s3cret")] {
        let err = anonymous
            .handshake(user, password)
            .await
            .expect_err("bad credentials");
        let text = err.to_string();
        assert!(
            text.contains("invalid user name or password")
                && text.contains("valid authentication credentials"),
            "{text}"
        );
    }

    let mut alice = client(&server).await?;
    alice.handshake("alice", "s3cret").await?;
    let token = alice.token().cloned().expect("a bearer token");
    let batches = query(&mut alice, "SELECT 7").await?;
    assert_eq!(int64s(&batches, 0), vec![7]);
    // Queries run as their user.
    let info = alice
        .execute("SELECT value FROM range(0, 100000000000)".into(), None)
        .await?;
    let mut stream = alice.do_get(ticket(&info)?).await?;
    stream.next().await.expect("a batch")?;
    let running = server.flight_queries();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].user.as_deref(), Some("alice"));
    drop(stream);

    // The token works on another connection; a tampered one does not.
    let mut reuse = client(&server).await?;
    reuse.set_token(token.clone());
    assert_eq!(int64s(&query(&mut reuse, "SELECT 8").await?, 0), vec![8]);
    let mut tampered = client(&server).await?;
    tampered.set_token(format!("{token}x"));
    let err = tampered
        .execute("SELECT 1".into(), None)
        .await
        .expect_err("tampered");
    assert_eq!(code(&err).0, Code::Unauthenticated);
    server.shutdown().await;
    Ok(())
}

/// An aggregate's output is handed out as slices of one large batch. Each slice goes out in
/// one message of thousands of rows, not in many messages of a few rows each: the encoder sizes
/// messages by the buffers a batch holds, so tarn copies slices that hold far more than they use.
#[tokio::test]
async fn large_results_go_out_in_large_messages() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = tarn_tests::start_server(dir.path()).await?;
    let mut c = client(&server).await?;
    let groups = 1_000_000;
    let batches = query(
        &mut c,
        &format!(
            "SELECT value % {groups} AS k, count(*) AS n FROM range(0, {}) GROUP BY k",
            2 * groups
        ),
    )
    .await?;
    assert_eq!(rows(&batches), groups);
    assert!(int64s(&batches, 1).iter().all(|&n| n == 2));
    // Batches of 8,192 rows: 123 messages, and a few more where partitions end. Uncompacted,
    // every slice counted as its partition's whole output (8 MB) and went out as 4 messages.
    let messages = batches.len();
    assert!(messages <= 200, "{messages} messages for {groups} rows");
    Ok(())
}
