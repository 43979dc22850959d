//! Arrow Flight SQL: results as Arrow, streamed batch by batch, and bulk loads the same way.
//!
//! One [`Session`] per call (Flight SQL has no connection state; handles carry what a client
//! keeps, see [`handle`]). Results are never collected: the plan's stream feeds the gRPC
//! response, which HTTP/2 flow control paces, so a slow client holds the query back instead
//! of filling server memory. A client that goes away drops the stream, which stops the query.

mod auth;
mod handle;
mod metadata;
mod running;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, Criteria,
    Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, PollInfo, SchemaAsIpc, SchemaResult, Ticket,
};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tarn_catalog::TableRef;
use tarn_sql::params::{bind_row, cast_parameters, parameter_types, resolve_parameter_types};
use tarn_sql::{IfExists, IfMissing, QueryEngine, QueryOutput, Session};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

pub(crate) use running::Running;
pub use running::RunningQuery;

use crate::config::FlightConfig;
use auth::{Auth, Caller};
use handle::Handle;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The Flight SQL service: the engine, the running queries, and who may call.
pub(crate) struct FlightSql {
    engine: QueryEngine,
    running: Running,
    auth: Arc<Auth>,
    files: crate::config::FileAccess,
}

/// The service with authentication in front of every call but the handshake.
pub(crate) struct Authenticated {
    inner: FlightSql,
}

/// Builds the service from its configuration and the users (`[auth]`).
pub(crate) fn service(
    engine: QueryEngine,
    config: &FlightConfig,
    users: &crate::config::AuthConfig,
    running: Running,
) -> Result<FlightServiceServer<Authenticated>, String> {
    let auth = Arc::new(Auth::new(
        &users.users,
        Duration::from_secs(config.token_ttl_secs),
    )?);
    let service = Authenticated {
        inner: FlightSql {
            engine,
            running,
            auth,
            files: users.file_access(),
        },
    };
    Ok(FlightServiceServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes))
}

/// The gRPC server, with TLS when `[flight.tls]` is set: the files are read and the key
/// checked now, so a bad certificate stops start-up.
pub(crate) fn server(config: &FlightConfig) -> Result<tonic::transport::Server, String> {
    let builder = tonic::transport::Server::builder();
    let Some(tls) = &config.tls else {
        return Ok(builder);
    };
    // Both rustls back ends are in the build; tarn uses ring, as everywhere else.
    let _already = rustls::crypto::ring::default_provider().install_default();
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("flight.tls.{what}: {}: {e}", path.display()))
    };
    let identity = Identity::from_pem(read(&tls.cert, "cert")?, read(&tls.key, "key")?);
    builder
        .tls_config(ServerTlsConfig::new().identity(identity))
        .map_err(|e| {
            let mut message = format!("flight.tls: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                message.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            message
        })
}

/// Serves Flight SQL on `listener` until `cancel`.
pub(crate) async fn serve(
    listener: TcpListener,
    mut server: tonic::transport::Server,
    service: FlightServiceServer<Authenticated>,
    cancel: CancellationToken,
) {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = server
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "Flight SQL server stopped");
    }
}

/// A tarn error as a gRPC status: the closest code, the message, and the SQLSTATE in the
/// `x-tarn-sqlstate` header.
pub(crate) fn status(e: tarn_sql::Error) -> Status {
    use tonic::Code;
    // A status raised inside a stream of results keeps its own code.
    if let tarn_sql::Error::DataFusion(datafusion::error::DataFusionError::External(inner)) = &e
        && let Some(status) = inner.downcast_ref::<Status>()
    {
        return status.clone();
    }
    let sqlstate = e.sqlstate();
    let code = match sqlstate {
        "42P01" | "3F000" | "42704" | "26000" => Code::NotFound,
        "42P07" | "42P06" | "42710" => Code::AlreadyExists,
        "0A000" => Code::Unimplemented,
        "42501" => Code::PermissionDenied,
        "57014" => Code::Cancelled,
        "53200" | "53300" => Code::ResourceExhausted,
        "55000" | "F0000" | "2BP01" => Code::FailedPrecondition,
        s if s.starts_with("42") || s.starts_with("22") || s.starts_with("23") => {
            Code::InvalidArgument
        }
        "58P01" => Code::NotFound,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, e.to_string());
    status
        .metadata_mut()
        .insert("x-tarn-sqlstate", MetadataValue::from_static(sqlstate));
    status
}

fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default()
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// A schema in the IPC form Flight SQL puts in prepared-statement results.
fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let options = arrow_ipc::writer::IpcWriteOptions::default();
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(internal)?;
    Ok(bytes)
}

/// The schema a statement's results have: none for DDL.
fn result_schema(plan: &LogicalPlan) -> SchemaRef {
    match plan {
        LogicalPlan::Ddl(_) => Arc::new(Schema::empty()),
        plan => Arc::new(plan.schema().as_arrow().clone()),
    }
}

/// The schema clients are promised: the result's, with dictionaries as their values (the
/// encoder sends them so) and nullable where the plan says so before parameters are bound.
fn flight_schema(plan: &LogicalPlan) -> SchemaRef {
    let schema = result_schema(plan);
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(hydrated(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn hydrated(data_type: &DataType) -> DataType {
    let field = |f: &arrow::datatypes::FieldRef| {
        Arc::new(f.as_ref().clone().with_data_type(hydrated(f.data_type())))
    };
    match data_type {
        DataType::Dictionary(_, values) => hydrated(values),
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        other => other.clone(),
    }
}

/// `batch` as `schema` says: columns cast where their types differ (dictionaries), fields
/// relabelled (nullability).
fn conform_batch(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, datafusion::error::DataFusionError> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The most a Flight data message carries before the encoder cuts a batch in several (the
/// encoder's default, named here so that [`compact_batch`] agrees with it).
const MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// `batch` in buffers of its own when it uses a small part of the buffers it holds.
///
/// The Flight encoder cuts a batch into messages by the size of the buffers it holds, not of
/// the part it uses. DataFusion hands out an aggregate's or a sort's output as slices of one
/// large batch, so each 8,192-row slice of a 10-million-group result counted as the whole
/// result and went out as messages of a few rows: the H2O benchmark's q10 took 37 s over ADBC
/// against 1.5 s in process. A copy of the rows the slice uses costs less than that.
fn compact_batch(batch: RecordBatch) -> Result<RecordBatch, datafusion::error::DataFusionError> {
    use arrow::array::{Array, AsArray, MutableArrayData, make_array};
    let held: usize = batch
        .columns()
        .iter()
        .map(|c| c.get_buffer_memory_size())
        .sum();
    if held <= MESSAGE_BYTES {
        return Ok(batch);
    }
    let data: Vec<_> = batch.columns().iter().map(|c| c.to_data()).collect();
    let mut used = 0;
    for column in &data {
        used += column.get_slice_memory_size()?;
    }
    if held <= 2 * used {
        return Ok(batch);
    }
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (column, data) in batch.columns().iter().zip(&data) {
        columns.push(match column.data_type() {
            // Views point into shared data buffers: gc keeps only the strings the rows use.
            DataType::Utf8View => Arc::new(column.as_string_view().gc()) as Arc<dyn Array>,
            DataType::BinaryView => Arc::new(column.as_binary_view().gc()),
            _ => {
                let mut copy = MutableArrayData::new(vec![data], false, data.len());
                copy.try_extend(0, 0, data.len())?;
                make_array(copy.freeze())
            }
        });
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Statements that change something rather than read: run at `GetFlightInfo`, once, so
/// that a client which never fetches (or abandons the fetch) still gets the change.
fn is_command(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Extension(_)
            | LogicalPlan::Statement(_)
    )
}

fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(internal)?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1);
    Ok(Response::new(info))
}

/// Batches in hand as a `DoGet` stream.
fn batches_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let batches = batches
        .into_iter()
        .map(|b| compact_batch(b).map_err(|e| FlightError::ExternalError(Box::new(e))));
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(MESSAGE_BYTES)
        .build(futures::stream::iter(batches))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// One batch as a `DoGet` stream.
fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    batches_stream(batch.schema(), vec![batch])
}

/// The `FlightInfo` of a metadata command: its ticket is the command itself.
fn command_info(
    command: &impl ProstMessageExt,
    schema: &Schema,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )
}

fn transactions_unsupported(transaction_id: Option<&bytes::Bytes>) -> Result<(), Status> {
    match transaction_id {
        Some(_) => Err(Status::unimplemented("transactions are not supported")),
        None => Ok(()),
    }
}

/// Reads the batches of a `DoPut` (the first message carries the schema and the command).
fn put_batches(request: Request<PeekableFlightDataStream>) -> FlightRecordBatchStream {
    // A message may carry only the command (the Rust client's prepared update does): no
    // IPC message to decode.
    let data = request
        .into_inner()
        .try_filter(|d| futures::future::ready(!d.data_header.is_empty()));
    FlightRecordBatchStream::new_from_flight_data(data.map_err(FlightError::from))
}

/// The rows of a `DoPut` of parameters, at most `limit` bytes of them.
async fn put_parameters(
    request: Request<PeekableFlightDataStream>,
    limit: usize,
) -> Result<Vec<RecordBatch>, Status> {
    let mut stream = put_batches(request);
    let mut batches = Vec::new();
    let mut size = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
        size += batch.get_array_memory_size();
        if size > limit {
            return Err(Status::invalid_argument(format!(
                "more than {limit} bytes of parameters in one call"
            )));
        }
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    Ok(batches)
}

/// A `count` result: what an `INSERT` planned as a query returns.
fn is_count_schema(schema: &Schema) -> bool {
    matches!(schema.fields().as_ref(), [f] if f.name() == "count" && f.data_type() == &DataType::UInt64)
}

impl FlightSql {
    /// A session for `who`'s call.
    fn session(&self, who: &Caller) -> Result<Session, Status> {
        let session = self.engine.session().map_err(status)?;
        if let Some(user) = &who.user {
            session.set_user(user);
        }
        session.set_file_access(self.files.allows(who.user.as_deref()));
        Ok(session)
    }

    /// Parses and plans `sql`, which must be one statement.
    async fn plan_one(&self, session: &Session, sql: &str) -> Result<LogicalPlan, Status> {
        let mut statements = session.parse(sql).map_err(status)?;
        let statement = match statements.len() {
            1 => statements.remove(0),
            0 => return Err(Status::invalid_argument("the query is empty")),
            _ => {
                return Err(Status::invalid_argument(
                    "a query must be one statement; send scripts as updates",
                ));
            }
        };
        let plan = session.plan(&statement).await.map_err(status)?;
        let plan = resolve_parameter_types(plan).map_err(status)?;
        // Checks the parameter numbers now, when the statement is prepared or described.
        parameter_types(&plan).map_err(status)?;
        Ok(plan)
    }

    /// Runs `plan` once per bound row (once if none are bound) and streams the results.
    async fn run(
        &self,
        session: Arc<Session>,
        plan: LogicalPlan,
        params: Vec<RecordBatch>,
    ) -> Result<SendableRecordBatchStream, Status> {
        let types = parameter_types(&plan).map_err(status)?;
        let schema = result_schema(&plan);
        if params.is_empty() {
            if !types.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "the statement has {} parameter(s) and none are bound",
                    types.len()
                )));
            }
            let output = session.execute(plan).await.map_err(status)?;
            return output_stream(session.executor(), output, schema).await;
        }
        bound_rows(&params)?;
        let mut plans = Vec::new();
        for batch in &params {
            for row in 0..batch.num_rows() {
                let values = bind_row(&types, batch, row).map_err(status)?;
                let bound = plan
                    .clone()
                    .replace_params_with_values(&values)
                    .map_err(|e| status(e.into()))?;
                plans.push(bound);
            }
        }
        if plans.len() == 1
            && let Some(plan) = plans.pop()
        {
            let output = session.execute(plan).await.map_err(status)?;
            return output_stream(session.executor(), output, schema).await;
        }
        // One result per bound row, one after the other.
        let stream_schema = Arc::clone(&schema);
        let results = futures::stream::iter(plans)
            .then(move |plan| {
                let session = Arc::clone(&session);
                let schema = Arc::clone(&stream_schema);
                async move {
                    let output = session
                        .execute(plan)
                        .await
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                    output_stream(session.executor(), output, schema)
                        .await
                        .map_err(|s| datafusion::error::DataFusionError::External(Box::new(s)))
                }
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, results)))
    }

    /// The `FlightInfo` of a statement: a ticket to stream a query, or for a command, which
    /// runs now, a ticket holding its result.
    async fn statement_info(
        &self,
        mut handle: Handle,
        descriptor: FlightDescriptor,
        who: &Caller,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = Arc::new(self.session(who)?);
        let plan = self.plan_one(&session, &handle.sql).await?;
        let mut schema = flight_schema(&plan);
        if matches!(plan, LogicalPlan::Dml(_)) {
            // One count for all bound rows, as an update reports it.
            let params = handle.params()?;
            let rows = self.update(session, plan, params).await?;
            let count = UInt64Array::from(vec![u64::try_from(rows).unwrap_or(0)]);
            let batch =
                RecordBatch::try_new(count_schema(), vec![Arc::new(count)]).map_err(internal)?;
            schema = batch.schema();
            handle = handle.with_result(&schema, &[batch])?;
        } else if is_command(&plan) {
            let params = handle.params()?;
            let mut stream = self.run(session, plan, params).await?;
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                batches.push(batch.map_err(|e| status(e.into()))?);
            }
            schema = stream.schema();
            handle = handle.with_result(&schema, &batches)?;
        }
        handle.query_id = Some(Uuid::new_v4());
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode(),
        };
        flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// Streams a query's results to the client, registered as running.
    async fn stream_query(
        &self,
        handle: Handle,
        who: Caller,
    ) -> Result<Response<DoGetStream>, Status> {
        if let Some((schema, batches)) = handle.result()? {
            return Ok(batches_stream(schema, batches));
        }
        let session = Arc::new(self.session(&who)?);
        let plan = self.plan_one(&session, &handle.sql).await?;
        let schema = flight_schema(&plan);
        let params = handle.params()?;
        let id = handle.query_id.unwrap_or_else(Uuid::new_v4);
        let stream = self.run(session, plan, params).await?;
        let promised = Arc::clone(&schema);
        let stream = stream.map(move |batch| {
            batch
                .and_then(|b| conform_batch(b, &promised))
                .and_then(compact_batch)
        });
        let tracked = self
            .running
            .start(id, who.user, handle.sql.clone(), Box::pin(stream))
            .ok_or_else(|| Status::cancelled("the query was cancelled before it started"))?;
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(MESSAGE_BYTES)
            .build(tracked)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }

    /// Runs an update (`CommandStatementUpdate` or a prepared one): the rows it changed.
    async fn update(
        &self,
        session: Arc<Session>,
        plan: LogicalPlan,
        params: Vec<RecordBatch>,
    ) -> Result<i64, Status> {
        if let Some(rows) = self.insert_values(&session, &plan, &params).await? {
            return Ok(rows);
        }
        let mut stream = self.run(session, plan, params).await?;
        count_rows(&mut stream).await
    }

    /// `INSERT INTO t VALUES ($1, …)` with many bound rows (a driver's `executemany`): one
    /// insert of all the rows, one Delta commit, instead of one per row. `None`: not such a
    /// statement.
    async fn insert_values(
        &self,
        session: &Session,
        plan: &LogicalPlan,
        params: &[RecordBatch],
    ) -> Result<Option<i64>, Status> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        let rows = bound_rows(params)?;
        let LogicalPlan::Dml(dml) = plan else {
            return Ok(None);
        };
        if rows < 2 {
            return Ok(None);
        }
        if !matches!(dml.op, datafusion::logical_expr::WriteOp::Insert(_)) {
            return Ok(None);
        }
        let mut lists = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::Values(v) = node {
                lists.push(v.clone());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .map_err(|e| status(e.into()))?;
        // One VALUES list of one row: the row the parameters fill.
        let [template] = lists.as_slice() else {
            return Ok(None);
        };
        if template.values.len() != 1 {
            return Ok(None);
        }
        let types = parameter_types(plan).map_err(status)?;
        // Bind each row into the VALUES list alone, then put all the rows in one list.
        let mut all_rows = Vec::with_capacity(rows);
        for batch in params {
            for row in 0..batch.num_rows() {
                let values = bind_row(&types, batch, row).map_err(status)?;
                let bound = LogicalPlan::Values(template.clone())
                    .replace_params_with_values(&values)
                    .map_err(|e| status(e.into()))?;
                if let LogicalPlan::Values(v) = bound {
                    all_rows.extend(v.values);
                }
            }
        }
        let mut merged = template.clone();
        merged.values = all_rows;
        let mut replaced = Some(merged);
        let plan = plan
            .clone()
            .transform_up(|node| match node {
                LogicalPlan::Values(_) => match replaced.take() {
                    Some(v) => Ok(Transformed::yes(LogicalPlan::Values(v))),
                    None => Ok(Transformed::no(node)),
                },
                node => Ok(Transformed::no(node)),
            })
            .map_err(|e| status(e.into()))?
            .data;
        let output = session.execute(plan).await.map_err(status)?;
        output_count(session.executor(), output).await.map(Some)
    }
}

/// The rows a statement changed (a command's count) or returned.
async fn output_count(executor: &tarn_sql::Executor, output: QueryOutput) -> Result<i64, Status> {
    match output {
        QueryOutput::Command(tag) => Ok(i64::try_from(tag.rows.unwrap_or(0)).unwrap_or(i64::MAX)),
        rows @ QueryOutput::Rows(_) => {
            let mut stream = output_stream(executor, rows, Arc::new(Schema::empty())).await?;
            count_rows(&mut stream).await
        }
    }
}

/// The rows a command reports: its count, or the rows it returned.
async fn count_rows(stream: &mut SendableRecordBatchStream) -> Result<i64, Status> {
    let mut rows = 0u64;
    let counted = is_count_schema(&stream.schema());
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| status(e.into()))?;
        if counted {
            if let Some(counts) = batch.column(0).as_any().downcast_ref::<UInt64Array>() {
                rows += counts.iter().flatten().sum::<u64>();
            }
        } else {
            rows += batch.num_rows() as u64;
        }
    }
    Ok(i64::try_from(rows).unwrap_or(i64::MAX))
}

/// A statement's output as a stream: its rows, or for a command its count (an `INSERT`) or
/// nothing.
async fn output_stream(
    executor: &tarn_sql::Executor,
    output: QueryOutput,
    schema: SchemaRef,
) -> Result<SendableRecordBatchStream, Status> {
    match output {
        // Computed on the query pool, so a long query does not hold up the gRPC server.
        QueryOutput::Rows(df) => Ok(executor.stream(df)),
        QueryOutput::Command(tag) => {
            // Only a count becomes a row; other commands answer with no rows.
            let batches = if is_count_schema(&schema) {
                let count = UInt64Array::from(vec![tag.rows.unwrap_or(0)]);
                vec![
                    RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(count)])
                        .map_err(internal)?,
                ]
            } else {
                Vec::new()
            };
            let stream = futures::stream::iter(batches.into_iter().map(Ok));
            Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
        }
    }
}

/// Cancels the query a `FlightInfo` from this server names.
fn cancel(running: &Running, info: &FlightInfo) -> Result<CancelStatus, Status> {
    let not_ours = || Status::not_found("this FlightInfo does not name a query of this server");
    let ticket = info
        .endpoint
        .first()
        .and_then(|e| e.ticket.as_ref())
        .ok_or_else(not_ours)?;
    let any = Any::decode(ticket.ticket.as_ref()).map_err(|_| not_ours())?;
    let ticket: TicketStatementQuery =
        any.unpack().map_err(|_| not_ours())?.ok_or_else(not_ours)?;
    let handle = Handle::decode(&ticket.statement_handle)?;
    if handle.result()?.is_some() {
        // A command ran when its FlightInfo was made: there is nothing left to stop.
        return Ok(CancelStatus::NotCancellable);
    }
    let id = handle.query_id.ok_or_else(not_ours)?;
    match running.cancel(id) {
        running::Cancelled::Running | running::Cancelled::NotStarted => Ok(CancelStatus::Cancelled),
        running::Cancelled::TooMany => Err(Status::resource_exhausted(
            "too many cancellations of queries not started yet; try again later",
        )),
    }
}

/// Bound rows a call may carry: each is an execution (or, for `INSERT … VALUES`, a row of
/// one), planned in memory. Loads go through `CommandStatementIngest`.
const MAX_BOUND_ROWS: usize = 100_000;

fn bound_rows(params: &[RecordBatch]) -> Result<usize, Status> {
    let rows: usize = params.iter().map(RecordBatch::num_rows).sum();
    if rows > MAX_BOUND_ROWS {
        return Err(Status::invalid_argument(format!(
            "{rows} rows of parameters bound; at most {MAX_BOUND_ROWS} per call \
             (bulk loads: adbc_ingest, CommandStatementIngest)"
        )));
    }
    Ok(rows)
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

fn ingest_options(cmd: &CommandStatementIngest) -> Result<(IfMissing, IfExists), Status> {
    let Some(options) = &cmd.table_definition_options else {
        return Ok((IfMissing::Create, IfExists::Fail));
    };
    let if_missing = match TableNotExistOption::try_from(options.if_not_exist) {
        Ok(TableNotExistOption::Create) => IfMissing::Create,
        Ok(TableNotExistOption::Fail) => IfMissing::Fail,
        _ => {
            return Err(Status::invalid_argument(
                "table_definition_options.if_not_exist must be CREATE or FAIL",
            ));
        }
    };
    let if_exists = match TableExistsOption::try_from(options.if_exists) {
        Ok(TableExistsOption::Fail) => IfExists::Fail,
        Ok(TableExistsOption::Append) => IfExists::Append,
        Ok(TableExistsOption::Replace) => IfExists::Replace,
        _ => {
            return Err(Status::invalid_argument(
                "table_definition_options.if_exists must be FAIL, APPEND or REPLACE",
            ));
        }
    };
    Ok((if_missing, if_exists))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(auth::basic_credentials);
        let who = match header {
            Some((user, password)) => self.auth.check_password(&user, &password)?,
            None if !self.auth.enabled() => Caller::default(),
            None => {
                // Older clients put `BasicAuth` in the first message instead of a header.
                let mut stream = request.into_inner();
                let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
                let credentials = match first {
                    Ok(Some(Ok(message))) => {
                        arrow_flight::BasicAuth::decode(message.payload.as_ref()).ok()
                    }
                    _ => None,
                };
                let credentials = credentials.ok_or_else(|| {
                    Status::unauthenticated(
                        "handshake without credentials: send Basic authorization",
                    )
                })?;
                self.auth
                    .check_password(&credentials.username, &credentials.password)?
            }
        };
        let token = self.auth.issue(&who);
        let bearer = MetadataValue::try_from(format!("Bearer {token}")).map_err(internal)?;
        let output = futures::stream::once(async move {
            Ok(HandshakeResponse {
                protocol_version: 0,
                payload: token.into(),
            })
        });
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(output));
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        transactions_unsupported(query.transaction_id.as_ref())?;
        let who = caller(&request);
        self.statement_info(Handle::new(query.query), request.into_inner(), &who)
            .await
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported; send SQL",
        ))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let who = caller(&request);
        self.statement_info(handle, request.into_inner(), &who)
            .await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &query.clone().into_builder().schema(), request)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &query.clone().into_builder().schema(), request)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &query.into_builder().schema(), request)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(
            &query,
            &query.clone().into_builder(&metadata::SQL_INFO).schema(),
            request,
        )
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::primary_keys_schema(), request)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(
            &query,
            &query.into_builder(&metadata::XDBC_TYPES).schema(),
            request,
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = Handle::decode(&ticket.statement_handle)?;
        self.stream_query(handle, caller(&request)).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        self.stream_query(handle, caller(&request)).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(tarn_sql::CATALOG_NAME);
        Ok(batch_stream(builder.build().map_err(internal)?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&caller(&request))?;
        Ok(batch_stream(metadata::db_schemas(&session, query)?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        // The catalog as of the metadata TTL, as queries see it.
        self.engine.catalog_snapshot().await;
        let session = self.session(&caller(&request))?;
        Ok(batch_stream(metadata::tables(&session, query).await?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in metadata::TABLE_TYPES {
            builder.append(table_type);
        }
        Ok(batch_stream(builder.build().map_err(internal)?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&metadata::SQL_INFO)
            .build()
            .map_err(internal)?;
        Ok(batch_stream(batch))
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::primary_keys_schema(),
        )))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(
            metadata::foreign_keys_schema(),
        )))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query
            .into_builder(&metadata::XDBC_TYPES)
            .build()
            .map_err(internal)?;
        Ok(batch_stream(batch))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        transactions_unsupported(cmd.transaction_id.as_ref())?;
        let session = self.session(&caller(&request))?;
        let outputs = session.sql(&cmd.query).await.map_err(status)?;
        let mut rows = 0i64;
        for output in outputs {
            rows = rows.saturating_add(output_count(session.executor(), output).await?);
        }
        Ok(rows)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        transactions_unsupported(cmd.transaction_id.as_ref())?;
        let who = caller(&request);
        if cmd.temporary {
            return Err(Status::unimplemented("temporary tables are not supported"));
        }
        if let Some(key) = cmd.options.keys().next() {
            return Err(Status::invalid_argument(format!(
                "unknown ingest option {key:?}; tarn takes none"
            )));
        }
        if let Some(catalog) = cmd.catalog.as_deref().filter(|c| !c.is_empty())
            && catalog != tarn_sql::CATALOG_NAME
        {
            return Err(Status::not_found(format!(
                "catalog {catalog:?} does not exist; tarn has one, \"{}\"",
                tarn_sql::CATALOG_NAME
            )));
        }
        if cmd.table.is_empty() {
            return Err(Status::invalid_argument("the load names no table"));
        }
        let (if_missing, if_exists) = ingest_options(&cmd)?;
        let database = cmd
            .schema
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| tarn_sql::DEFAULT_DATABASE.to_owned());
        let table = TableRef::new(&database, &cmd.table);

        let mut batches = put_batches(request);
        let first = batches
            .next()
            .await
            .transpose()
            .map_err(|e| Status::invalid_argument(format!("the load's data: {e}")))?;
        let schema = match (&first, batches.schema()) {
            (Some(batch), _) => batch.schema(),
            (None, Some(schema)) => Arc::clone(schema),
            (None, None) => {
                return Err(Status::invalid_argument("the load sent no schema"));
            }
        };
        let expected = Arc::clone(&schema);
        let rest = batches.map(move |batch| match batch {
            Ok(b) if b.schema().fields() != expected.fields() => {
                Err(datafusion::error::DataFusionError::External(Box::new(
                    Status::invalid_argument("the load changed its schema part-way"),
                )))
            }
            Ok(b) => Ok(b),
            Err(e) => Err(datafusion::error::DataFusionError::External(Box::new(e))),
        });
        let source = futures::stream::iter(first.map(Ok)).chain(rest);
        let source: SendableRecordBatchStream =
            Box::pin(RecordBatchStreamAdapter::new(schema, source));
        let session = self.session(&who)?;
        let rows = session
            .ingest(table, source, if_missing, if_exists)
            .await
            .map_err(status)?;
        Ok(i64::try_from(rows).unwrap_or(i64::MAX))
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        let who = caller(&request);
        let params = put_parameters(request, handle::MAX_PARAMS_BYTES * 4).await?;
        let session = self.session(&who)?;
        let plan = self.plan_one(&session, &handle.sql).await?;
        let types = parameter_types(&plan).map_err(status)?;
        let params = params
            .iter()
            .map(|b| cast_parameters(&types, b))
            .collect::<tarn_sql::Result<Vec<_>>>()
            .map_err(status)?;
        let bound = handle.with_params(&params)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.encode()),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        let who = caller(&request);
        let mut params = put_parameters(request, 256 << 20).await?;
        if params.is_empty() {
            params = handle.params()?;
        }
        let session = Arc::new(self.session(&who)?);
        let plan = self.plan_one(&session, &handle.sql).await?;
        self.update(session, plan, params).await
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported; send SQL",
        ))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        transactions_unsupported(query.transaction_id.as_ref())?;
        let session = self.session(&caller(&request))?;
        let plan = self.plan_one(&session, &query.query).await?;
        let types = parameter_types(&plan).map_err(status)?;
        let parameters = Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Utf8),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Handle::new(query.query).encode(),
            dataset_schema: ipc_schema(&flight_schema(&plan))?,
            parameter_schema: ipc_schema(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles hold no server memory; closing one only checks it is one.
        Handle::decode(&query.prepared_statement_handle).map(|_| ())
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported; send SQL",
        ))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(Status::unimplemented(
            "transactions are not supported: every statement commits on its own",
        ))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(Status::unimplemented("savepoints are not supported"))
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info.as_ref())
            .map_err(|e| Status::invalid_argument(format!("FlightInfo: {e}")))?;
        let outcome = cancel(&self.running, &info)?;
        Ok(ActionCancelQueryResult {
            // CancelResult (not exported by arrow-flight) numbers its values as CancelStatus.
            result: outcome as i32,
        })
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: "CancelFlightInfo".to_owned(),
            description: "Cancels a query. Request: CancelFlightInfoRequest; \
                          result: CancelFlightInfoResult"
                .to_owned(),
        })])
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!(
                "unknown action {:?}",
                action.r#type
            )));
        }
        let request = CancelFlightInfoRequest::decode(action.body.as_ref())
            .map_err(|e| Status::invalid_argument(format!("CancelFlightInfoRequest: {e}")))?;
        let info = request
            .info
            .ok_or_else(|| Status::invalid_argument("CancelFlightInfoRequest has no info"))?;
        let result = CancelFlightInfoResult::new(cancel(&self.running, &info)?);
        let body = arrow_flight::Result::new(result.encode_to_vec());
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(body)
        }))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Authenticates, then hands the call to Flight SQL.
#[tonic::async_trait]
impl FlightService for Authenticated {
    type HandshakeStream = <FlightSql as FlightService>::HandshakeStream;
    type ListFlightsStream = <FlightSql as FlightService>::ListFlightsStream;
    type DoGetStream = <FlightSql as FlightService>::DoGetStream;
    type DoPutStream = <FlightSql as FlightService>::DoPutStream;
    type DoActionStream = <FlightSql as FlightService>::DoActionStream;
    type ListActionsStream = <FlightSql as FlightService>::ListActionsStream;
    type DoExchangeStream = <FlightSql as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.inner.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let request = self.authorize(request)?;
        self.inner.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let request = self.authorize(request)?;
        check_any(&request.get_ref().cmd, "command")?;
        self.inner.get_flight_info(request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let request = self.authorize(request)?;
        self.inner.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let request = self.authorize(request)?;
        self.inner.get_schema(request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let request = self.authorize(request)?;
        check_any(&request.get_ref().ticket, "ticket")?;
        self.inner.do_get(request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let request = self.authorize(request)?;
        self.inner.do_put(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let request = self.authorize(request)?;
        self.inner.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let request = self.authorize(request)?;
        self.inner.list_actions(request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let request = self.authorize(request)?;
        self.inner.do_exchange(request).await
    }
}

/// Refuses bytes that are not a Flight SQL message, with a message a person can read (the
/// library's own answer is a debug dump of the decoder's error).
fn check_any(bytes: &[u8], what: &str) -> Result<(), Status> {
    match Any::decode(bytes) {
        Ok(any) if !any.type_url.is_empty() => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "the {what} is not a Flight SQL message (google.protobuf.Any)"
        ))),
    }
}

impl Authenticated {
    fn authorize<T>(&self, mut request: Request<T>) -> Result<Request<T>, Status> {
        let who = self.inner.auth.authenticate(request.metadata())?;
        request.extensions_mut().insert(who);
        Ok(request)
    }
}
