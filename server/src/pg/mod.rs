//! The Postgres wire: pgwire's protocol machinery, datafusion-postgres's type encoding and
//! tarn's sessions, settings (`SET`/`SHOW`) and transaction blocks. One [`Session`] per connection.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;
use datafusion::sql::sqlparser::ast::CloseCursor;
use datafusion::sql::sqlparser::ast::{Declare, Statement as SqlStatement};
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{
    arrow_schema_to_pg_fields, encode_recordbatch, field_into_pg_type,
};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{Describe, Execute};
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;
use tarn_sql::Statement;
use tarn_sql::params::{parameter_fields, parameter_types, resolve_parameter_types};
use tarn_sql::{CommandTag, QueryOutput, Session};

mod auth;
mod control;
mod copy;
mod cursor;
mod settings;
mod text;
mod transaction;

pub use text::{float4_text, float8_text};

pub(crate) use auth::{PgAuth, tls};
use control::{Control, Running, Statements, TarnCancelHandler};

/// A prepared statement: the parsed statement, its plan, and the Postgres names of its
/// result columns where they differ from the plan's.
#[derive(Debug, Clone)]
pub(crate) struct PgStatement {
    statement: Statement,
    plan: LogicalPlan,
    names: Option<Vec<Option<String>>>,
}

/// What every connection shares: who may log in, and the statements that can be cancelled.
#[derive(Debug)]
pub(crate) struct PgShared {
    auth: Arc<PgAuth>,
    statements: Arc<Statements>,
    /// `pg.max_copy_bytes`.
    max_copy_bytes: usize,
}

impl PgShared {
    pub(crate) fn new(auth: PgAuth, max_copy_bytes: usize) -> Self {
        Self {
            auth: Arc::new(auth),
            statements: Arc::default(),
            max_copy_bytes,
        }
    }
}

/// Maps a tarn error to an `ERROR` the client can show; the connection stays up.
pub(crate) fn pg_error(e: tarn_sql::Error) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        e.sqlstate().to_owned(),
        e.to_string(),
    )))
}

fn tag(tag: CommandTag) -> Tag {
    let t = Tag::new(tag.command);
    match (tag.command, tag.rows) {
        ("INSERT", Some(rows)) => t.with_oid(0).with_rows(rows as usize),
        (_, Some(rows)) => t.with_rows(rows as usize),
        _ => t,
    }
}

/// The handlers of one connection.
pub(crate) struct ConnectionHandlers {
    query: Arc<TarnQueryHandler>,
    startup: Arc<auth::TarnStartupHandler>,
    cancel: Arc<TarnCancelHandler>,
}

impl ConnectionHandlers {
    /// `permit`: a place under `pg.max_connections`; `None` refuses the login.
    pub(crate) fn new(
        session: Session,
        shared: &PgShared,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Self {
        let session = Arc::new(session);
        let running = Arc::new(Running::default());
        let cursors = Arc::new(cursor::Cursors::default());
        Self {
            query: Arc::new(TarnQueryHandler {
                parser: Arc::new(TarnQueryParser {
                    session: Arc::clone(&session),
                    cursors: Arc::clone(&cursors),
                }),
                session: Arc::clone(&session),
                running: Arc::clone(&running),
                block: Arc::default(),
                cursors,
                incoming: std::sync::Mutex::default(),
                max_copy_bytes: shared.max_copy_bytes,
            }),
            startup: Arc::new(auth::TarnStartupHandler::new(
                Arc::clone(&shared.auth),
                permit,
                session,
                running,
                Arc::clone(&shared.statements),
            )),
            cancel: Arc::new(TarnCancelHandler {
                statements: Arc::clone(&shared.statements),
            }),
        }
    }
}

impl ConnectionHandlers {
    /// The client closed the connection: a statement that reads stops (57014, which no one
    /// receives); one that writes runs to its end, as in Postgres.
    pub(crate) fn hung_up(&self) {
        self.query.running.hung_up();
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.query)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.query)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrorHandler)
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.query)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Errors raised inside DataFusion while rows stream out arrive here as API errors; give
/// them their SQLSTATE like every other error.
struct SqlStateErrorHandler;

impl ErrorHandler for SqlStateErrorHandler {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(inner) = error {
            let (code, message) = match inner.downcast_ref::<datafusion::error::DataFusionError>() {
                Some(e) => (tarn_sql::datafusion_sqlstate(e), e.to_string()),
                None => ("XX000", inner.to_string()),
            };
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                code.to_owned(),
                message,
            )));
        }
        if let PgWireError::UserError(info) = error {
            tracing::debug!(code = %info.code, message = %info.message, "query failed");
        }
    }
}

pub(crate) struct TarnQueryHandler {
    session: Arc<Session>,
    parser: Arc<TarnQueryParser>,
    running: Arc<Running>,
    block: Arc<transaction::Block>,
    cursors: Arc<cursor::Cursors>,
    /// The COPY FROM STDIN under way.
    incoming: std::sync::Mutex<Option<copy::Incoming>>,
    /// The most data a COPY FROM STDIN takes.
    max_copy_bytes: usize,
}

/// The `DECLARE … CURSOR FOR query` in `statement`, if it is one: the declaration and the
/// query, as a statement of its own.
fn declared_cursor(statement: &SqlStatement) -> Option<(&Declare, Statement)> {
    let SqlStatement::Declare { stmts } = statement else {
        return None;
    };
    let [declare] = stmts.as_slice() else {
        return None;
    };
    let query = declare.for_query.as_ref()?;
    let query = Statement::Sql(datafusion::sql::parser::Statement::Statement(Box::new(
        SqlStatement::Query(query.clone()),
    )));
    Some((declare, query))
}

/// Whether `statement` ends a transaction (its cursors close then).
fn ends_transaction(statement: &SqlStatement) -> bool {
    matches!(
        statement,
        SqlStatement::Commit { .. }
            | SqlStatement::Rollback {
                savepoint: None,
                ..
            }
    )
}

/// Sends the `ParameterStatus` messages of settings that changed.
async fn report<C>(client: &mut C, statuses: Vec<(String, String)>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (name, value) in statuses {
        client
            .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name, value,
            )))
            .await?;
    }
    Ok(())
}

/// Sends warnings and notices, ahead of the statement's response.
async fn notify<C>(client: &mut C, notices: Vec<ErrorInfo>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in notices {
        client
            .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                notice,
            )))
            .await?;
    }
    Ok(())
}

/// The block's status after `response`.
fn status_after(status: TransactionStatus, response: &Response) -> TransactionStatus {
    match response {
        Response::TransactionStart(_) => status.to_in_transaction_state(),
        Response::TransactionEnd(_) => status.to_idle_state(),
        Response::Error(_) => status.to_error_state(),
        _ => status,
    }
}

impl TarnQueryHandler {
    /// `ROLLBACK TO SAVEPOINT` of a savepoint the aborted block has brings it back: the
    /// status pgwire reports afterwards must start from "in a transaction".
    fn reopen_for<C: ClientInfo>(&self, client: &mut C, statement: Option<&SqlStatement>) {
        if client.transaction_status() == TransactionStatus::Error
            && let Some(SqlStatement::Rollback {
                savepoint: Some(name),
                ..
            }) = statement
            && self.block.has_savepoint(name)
        {
            client.set_transaction_status(TransactionStatus::Transaction);
        }
    }

    /// Refuses a write where the transaction is read-only; the write's command, if it is one.
    fn check_write<C: ClientInfo>(
        &self,
        client: &C,
        statement: &Statement,
    ) -> PgWireResult<Option<String>> {
        let command = statement.write_command();
        self.running.writing(command.is_some());
        match &command {
            Some(command) if settings::read_only(client.metadata()) => {
                Err(transaction::read_only(command))
            }
            _ => Ok(command),
        }
    }

    /// Starts a statement: cancellable from now, under the connection's statement_timeout.
    fn start<C: ClientInfo>(&self, client: &C) -> Control {
        self.running
            .start(settings::statement_timeout(client.metadata()))
    }

    /// `SET`, `SHOW`, `RESET`, `DISCARD`, `SELECT set_config(…)`.
    async fn settings<C>(
        &self,
        client: &mut C,
        statement: &SqlStatement,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if matches!(
            statement,
            SqlStatement::Discard {
                object_type: datafusion::sql::sqlparser::ast::DiscardObject::ALL
            }
        ) {
            // a pool hands the connection to someone else: nothing of this session stays
            self.cursors.close_all().await;
        }
        let outcome = settings::execute(&self.session, client.metadata_mut(), statement);
        // What a statement changed, even one that failed part-way.
        if !matches!(statement, SqlStatement::ShowVariable { .. }) {
            settings::publish(&self.session, client.metadata());
        }
        match outcome? {
            settings::Outcome::Done(command, statuses) => {
                report(client, statuses).await?;
                Ok(Response::Execution(Tag::new(command)))
            }
            settings::Outcome::Rows(batch, statuses) => {
                report(client, statuses).await?;
                let df = self
                    .session
                    .context()
                    .read_batch(batch)
                    .map_err(|e| pg_error(tarn_sql::Error::from(e)))?;
                let options = Arc::new(settings::format_options(client.metadata()));
                let control = self.start(client);
                encode_rows(self.session.executor(), df, format, options, None, &control)
                    .await
                    .map(Response::Query)
            }
        }
    }

    /// Opens the cursor `declare` names over `plan`, its query with its parameters bound.
    async fn declare(
        &self,
        declare: &Declare,
        plan: LogicalPlan,
        names: Option<Vec<Option<String>>>,
        status: TransactionStatus,
    ) -> PgWireResult<Response> {
        let hold = declare.hold == Some(true);
        if !hold && status == TransactionStatus::Idle {
            return Err(transaction::error(
                "25P01",
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        if declare.scroll == Some(true) {
            return Err(transaction::error(
                "0A000",
                "SCROLL cursors are not supported: tarn's cursors only go forward",
            ));
        }
        if declare.binary == Some(true) {
            return Err(transaction::error(
                "0A000",
                "BINARY cursors are not supported: fetch in binary with the extended protocol",
            ));
        }
        let [name] = declare.names.as_slice() else {
            return Err(transaction::error("42601", "DECLARE names one cursor"));
        };
        let QueryOutput::Rows(df) = self.session.execute(plan).await.map_err(pg_error)? else {
            return Err(transaction::error(
                "42P11",
                "a cursor's query must return rows",
            ));
        };
        let stream = self.session.executor().stream(df);
        let in_block = status != TransactionStatus::Idle;
        self.cursors
            .declare(&name.value, stream, names, hold, in_block)
            .await?;
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }

    /// The rows `fetch` asks for (FETCH), or their count (MOVE).
    async fn fetch<C: ClientInfo>(
        &self,
        client: &C,
        fetch: &cursor::Fetch,
        format: &Format,
        rows: bool,
    ) -> PgWireResult<Response> {
        // rows are computed as they are fetched: a cancel or statement_timeout stops that,
        // and the cursor, whose position is then unknown, closes (its transaction fails)
        let control = self.start(client);
        if !rows {
            let moved = control.run(self.cursors.skip(fetch)).await;
            if moved.is_err() {
                let _ = self.cursors.close(&fetch.cursor).await;
            }
            return Ok(Response::Execution(Tag::new("MOVE").with_rows(moved?)));
        }
        let fetched = control.run(self.cursors.fetch(fetch)).await;
        if fetched.is_err() {
            let _ = self.cursors.close(&fetch.cursor).await;
        }
        let (schema, names, batches) = fetched?;
        let options = Arc::new(settings::format_options(client.metadata()));
        let mut response = encode_batches(
            &schema,
            futures::stream::iter(batches.into_iter().map(Ok)),
            format,
            options,
            names.as_deref(),
            &control,
        )?;
        response.set_command_tag("FETCH");
        Ok(Response::Query(response))
    }

    /// `CLOSE name` or `CLOSE ALL`.
    async fn close(&self, cursor: &CloseCursor) -> PgWireResult<Response> {
        match cursor {
            CloseCursor::All => {
                self.cursors.close_all().await;
                Ok(Response::Execution(Tag::new("CLOSE CURSOR ALL")))
            }
            CloseCursor::Specific { name } => {
                self.cursors.close(&name.value).await?;
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
        }
    }

    /// Runs `portal`'s statement (a query, a write or a DECLARE) with its bound parameters.
    async fn run_portal<C: ClientInfo>(
        &self,
        client: &C,
        portal: &Portal<PgStatement>,
        status: TransactionStatus,
    ) -> PgWireResult<Response> {
        let PgStatement {
            statement,
            plan,
            names,
        } = &portal.statement.statement;
        let write = self.check_write(client, statement)?;
        let types = parameter_types(plan).map_err(pg_error)?;
        let type_refs: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let params = deserialize_parameters(portal, &type_refs)?;
        let plan = plan
            .clone()
            .replace_params_with_values(&params)
            .map_err(|e| pg_error(tarn_sql::Error::from(e)))?;
        if let Some((declare, _)) = statement.as_sql().and_then(declared_cursor) {
            return self.declare(declare, plan, names.clone(), status).await;
        }
        let control = self.start(client);
        let session = Arc::clone(&self.session);
        let held = self.session.held_writes();
        let work = async move { session.execute(plan).await.map_err(pg_error) };
        let output = control.run(on_executor(&self.session, work)).await?;
        if write.is_some() {
            self.block.wrote(status, self.session.held_writes() > held);
        }
        let options = Arc::new(settings::format_options(client.metadata()));
        self.respond(
            output,
            &portal.result_column_format,
            options,
            names.as_deref(),
            &control,
        )
        .await
    }

    /// `MOVE` over a protocol portal (asyncpg's `Cursor.forward`, which names the portal it
    /// bound): skips its next rows, running it first if no Execute has yet.
    async fn move_portal<C>(&self, client: &C, fetch: &cursor::Fetch) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        use pgwire::api::portal::PortalExecutionState;
        use pgwire::api::store::{Entry, MemPortalStore};
        let portal = client
            .portal_store()
            .as_any()
            .downcast_ref::<MemPortalStore<PgStatement>>()
            .and_then(|store| match store.get_portal(&fetch.cursor) {
                Some(Entry::Value(portal)) => Some(portal),
                _ => None,
            })
            .ok_or_else(|| {
                transaction::error(
                    "34000",
                    format!("cursor \"{}\" does not exist", fetch.cursor),
                )
            })?;
        let started = !matches!(*portal.state.lock().await, PortalExecutionState::Initial);
        let statement = &portal.statement.statement;
        let rows = statement.statement.write_command().is_none()
            && !matches!(statement.plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_))
            && !statement.plan.schema().fields().is_empty();
        if !rows {
            // not run: a MOVE must not write
            return Err(transaction::error(
                "42P11",
                format!("portal \"{}\" does not return rows", fetch.cursor),
            ));
        }
        if !started {
            match self
                .run_portal(client, &portal, client.transaction_status())
                .await?
            {
                Response::Query(rows) => portal.start(rows).await,
                _ => {
                    return Err(transaction::error(
                        "42P11",
                        format!("portal \"{}\" does not return rows", fetch.cursor),
                    ));
                }
            }
        }
        let max_rows = match fetch.count {
            cursor::Count::Rows(n) => n,
            cursor::Count::All => 0,
        };
        let mut skipped = portal.fetch(max_rows).await?.response;
        let mut count = 0;
        while let Some(row) = skipped.data_rows().next().await {
            row?;
            count += 1;
        }
        Ok(Response::Execution(Tag::new("MOVE").with_rows(count)))
    }

    /// `COPY … TO STDOUT`: the rows stream out as they are computed.
    async fn copy_out<C: ClientInfo>(
        &self,
        client: &C,
        copy: copy::Copy,
    ) -> PgWireResult<Response> {
        use pgwire::api::results::CopyResponse;
        let statement = match copy.source {
            copy::Source::Query(ref query) => {
                Statement::Sql(datafusion::sql::parser::Statement::Statement(Box::new(
                    SqlStatement::Query(query.clone()),
                )))
            }
            copy::Source::Table { .. } => {
                let mut parsed = self.session.parse(&copy.query_sql()).map_err(pg_error)?;
                if parsed.len() != 1 {
                    return Err(transaction::error("42601", "COPY copies one table"));
                }
                parsed.remove(0)
            }
        };
        let plan = self.session.plan(&statement).await.map_err(pg_error)?;
        let names = pg_names(&statement, &plan);
        let QueryOutput::Rows(df) = self.session.execute(plan).await.map_err(pg_error)? else {
            return Err(transaction::error("0A000", "COPY TO copies a query's rows"));
        };
        let options = Arc::new(settings::format_options(client.metadata()));
        let fields = Arc::new(pg_fields(
            df.schema().as_arrow(),
            &Format::UnifiedText,
            Some(options),
            names.as_deref(),
        )?);
        let columns = fields.len();
        // The rows are computed and written before the response starts: an error on the way
        // is then an ErrorResponse (a server cannot fail a COPY once it has begun: CopyFail
        // is the client's message), the statement can be cancelled and time out, and a
        // later statement of the same query string cannot change what it copies.
        let mut writer = copy::Writer::new(Arc::clone(&fields), &copy.format);
        let control = self.start(client);
        let mut batches = self.session.executor().stream(df);
        let collect = async {
            let mut out = Vec::new();
            while let Some(batch) = batches.next().await {
                let batch = batch.map_err(|e| pg_error(tarn_sql::Error::from(e)))?;
                let batch = text::postgres_text_forms(&fields, batch)?;
                out.extend(writer.rows(batch)?);
            }
            Ok(out)
        };
        let mut rows = control.run(collect).await?;
        // an empty result still has its header
        rows.extend(writer.unwritten_header());
        Ok(Response::CopyOut(CopyResponse::new(
            0,
            columns,
            futures::stream::iter(rows.into_iter().map(Ok)),
        )))
    }

    /// `COPY table [(columns)] FROM STDIN`: checks the table and columns, and asks for the
    /// data (which [`pgwire::api::copy::CopyHandler`] receives).
    async fn copy_in<C: ClientInfo>(
        &self,
        client: &C,
        statement: &Statement,
        copy: copy::Copy,
    ) -> PgWireResult<Response> {
        use pgwire::api::results::CopyResponse;
        self.check_write(client, statement)?;
        let copy::Source::Table { name, columns } = &copy.source else {
            return Err(transaction::error("42601", "COPY FROM takes a table"));
        };
        let normal = |i: &datafusion::sql::sqlparser::ast::Ident| match i.quote_style {
            Some(_) => i.value.clone(),
            None => i.value.to_lowercase(),
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(normal)
            .collect();
        let default = self
            .session
            .context()
            .state()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        let (database, table) = match parts.as_slice() {
            [table] => (default, table.clone()),
            [database, table] => (database.clone(), table.clone()),
            [catalog, database, table] if catalog == tarn_sql::CATALOG_NAME => {
                (database.clone(), table.clone())
            }
            _ => {
                return Err(transaction::error(
                    "42P01",
                    format!("relation \"{name}\" does not exist"),
                ));
            }
        };
        let reference = datafusion::common::TableReference::full(
            tarn_sql::CATALOG_NAME,
            database.clone(),
            table.clone(),
        );
        let provider = self
            .session
            .context()
            .table_provider(reference)
            .await
            .map_err(|_| {
                transaction::error("42P01", format!("relation \"{name}\" does not exist"))
            })?;
        let schema = provider.schema();
        let columns: Vec<String> = if columns.is_empty() {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            let mut out = Vec::with_capacity(columns.len());
            for column in columns {
                let column = normal(column);
                if schema.field_with_name(&column).is_err() {
                    return Err(transaction::error(
                        "42703",
                        format!("column \"{column}\" of relation \"{table}\" does not exist"),
                    ));
                }
                out.push(column);
            }
            out
        };
        let count = columns.len();
        let binary = columns
            .iter()
            .map(|c| {
                schema.field_with_name(c).is_ok_and(|f| {
                    matches!(
                        f.data_type(),
                        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                    )
                })
            })
            .collect();
        *self
            .incoming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(copy::Incoming {
            table: tarn_catalog::TableRef::new(&database, &table),
            too_large: false,
            columns,
            binary,
            format: copy.format,
            data: Vec::new(),
        });
        Ok(Response::CopyIn(CopyResponse::new(
            0,
            count,
            futures::stream::empty(),
        )))
    }

    /// A cursor statement of a simple query (the query of a DECLARE is planned here); `None`
    /// for other statements.
    async fn cursor_statement<C: ClientInfo>(
        &self,
        client: &C,
        statement: &SqlStatement,
        status: TransactionStatus,
    ) -> Option<PgWireResult<Response>> {
        if let Some((declare, query)) = declared_cursor(statement) {
            let planned = self.session.plan(&query).await.map_err(pg_error);
            return Some(match planned {
                Ok(plan) => {
                    let names = pg_names(&query, &plan);
                    self.declare(declare, plan, names, status).await
                }
                Err(e) => Err(e),
            });
        }
        if let Some(fetch) = cursor::fetch_of(statement) {
            return Some(match fetch {
                Ok(fetch) => self.fetch(client, &fetch, &Format::UnifiedText, true).await,
                Err(e) => Err(e),
            });
        }
        if let SqlStatement::Close { cursor } = statement {
            return Some(self.close(cursor).await);
        }
        None
    }

    async fn respond(
        &self,
        output: QueryOutput,
        format: &Format,
        options: Arc<FormatOptions>,
        names: Option<&[Option<String>]>,
        control: &Control,
    ) -> PgWireResult<Response> {
        match output {
            QueryOutput::Command(t) => Ok(Response::Execution(tag(t))),
            QueryOutput::Rows(df) => {
                encode_rows(self.session.executor(), df, format, options, names, control)
                    .await
                    .map(Response::Query)
            }
        }
    }
}

/// Runs a statement's work on the query pool: a long computation there leaves this
/// connection free to notice a cancel or a timeout, and the server free to serve others.
async fn on_executor<T: Send + 'static>(
    session: &Session,
    work: impl std::future::Future<Output = PgWireResult<T>> + Send + 'static,
) -> PgWireResult<T> {
    session
        .executor()
        .run(work)
        .await
        .map_err(|e| pg_error(tarn_sql::Error::from(e)))?
}

impl TarnQueryHandler {
    /// Before `COMMIT` ends a block (`status`): writes the inserts the block held. If that
    /// fails, the COMMIT fails and the block is aborted; its `ROLLBACK` then ends it.
    async fn commit_held(
        &self,
        statement: &SqlStatement,
        status: TransactionStatus,
    ) -> PgWireResult<()> {
        if !matches!(statement, SqlStatement::Commit { .. })
            || status != TransactionStatus::Transaction
            || self.session.held_writes() == 0
        {
            return Ok(());
        }
        let session = Arc::clone(&self.session);
        let work = async move { session.commit_held_writes().await.map_err(pg_error) };
        on_executor(&self.session, work).await
    }
}

/// `df`'s rows in the client's formats, under Postgres' column names, stopped by `control`.
async fn encode_rows(
    executor: &tarn_sql::Executor,
    df: DataFrame,
    format: &Format,
    options: Arc<FormatOptions>,
    names: Option<&[Option<String>]>,
    control: &Control,
) -> PgWireResult<QueryResponse> {
    let schema = Arc::clone(df.schema().inner());
    encode_batches(
        &schema,
        executor.stream(df),
        format,
        options,
        names,
        control,
    )
}

/// `batches`' rows in the client's formats, in their order, under Postgres' column names,
/// stopped by `control`.
fn encode_batches(
    schema: &datafusion::arrow::datatypes::Schema,
    batches: impl futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
    format: &Format,
    options: Arc<FormatOptions>,
    names: Option<&[Option<String>]>,
    control: &Control,
) -> PgWireResult<QueryResponse> {
    let fields = pg_fields(schema, format, Some(options), names)?;
    let fields = Arc::new(fields);
    let row_fields = Arc::clone(&fields);
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => match text::postgres_text_forms(&row_fields, batch) {
                    Ok(batch) => encode_recordbatch(Arc::clone(&row_fields), batch),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                },
                Err(e) => Box::new(std::iter::once(Err(PgWireError::ApiError(Box::new(e))))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    let mut response = QueryResponse::new(fields, rows);
    response.data_rows = control.guard(response.data_rows);
    Ok(response)
}

/// The RowDescription of a result of `schema`: each column's type, its size (`typlen`) and
/// modifier (a numeric's precision and scale) as Postgres describes them, under the
/// Postgres names in `names`.
fn pg_fields(
    schema: &datafusion::arrow::datatypes::Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
    names: Option<&[Option<String>]>,
) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_schema_to_pg_fields(schema, format, options)?
        .into_iter()
        .zip(schema.fields())
        .map(|(info, field)| {
            let info = match oid_array(field).or_else(|| marked_type(field)) {
                Some(t) => FieldInfo::new(info.name().to_owned(), None, None, t, info.format())
                    .with_format_options(Arc::clone(info.format_options())),
                None => info,
            };
            let info = with_origin(info, field);
            let size = type_size(info.datatype());
            let info = info.with_type_size(size);
            match varchar_typmod(field).or_else(|| tarn_sql::numeric_typmod(field.data_type())) {
                Some(typmod) => info.with_type_modifier(typmod),
                None => info,
            }
        })
        .collect();
    Ok(rename(fields, names))
}

/// `info` with the table OID and column number of the table column `field` is read from,
/// where the engine marked it (see `tarn_sql::TABLE_OID`).
fn with_origin(info: FieldInfo, field: &datafusion::arrow::datatypes::Field) -> FieldInfo {
    let number = |key: &str| field.metadata().get(key).and_then(|v| v.parse().ok());
    let (Some(table), Some(column)) = (
        number(tarn_sql::TABLE_OID),
        number(tarn_sql::COLUMN_NUMBER).and_then(|n: i32| i16::try_from(n).ok()),
    ) else {
        return info;
    };
    FieldInfo::new(
        info.name().to_owned(),
        Some(table),
        Some(column),
        info.datatype().clone(),
        info.format(),
    )
    .with_format_options(Arc::clone(info.format_options()))
}

/// The type a ParameterDescription gives a parameter of `field`: an `oid` where it is
/// compared with one (`pg_type.oid = $1`) and `oid[]` for `$1::oid[]` (asyncpg's type
/// introspection, whose `int4[]` would itself need introspecting), else as a result column.
fn parameter_type(field: &FieldRef) -> PgWireResult<Type> {
    match oid_array(field) {
        Some(t) => Ok(t),
        None => field_into_pg_type(field),
    }
}

/// `oid[]` for an array whose elements say they are `oid`s (arrow-pg reads the metadata of
/// a column, not of its elements).
fn oid_array(field: &datafusion::arrow::datatypes::Field) -> Option<Type> {
    let DataType::List(element) = field.data_type() else {
        return None;
    };
    (field_into_pg_type(element).ok()? == Type::OID).then_some(Type::OID_ARRAY)
}

/// The type the engine marked a text column with, where it is not `text` (`varchar`,
/// `json`; see `tarn_sql::VARCHAR_EXTENSION`).
fn marked_type(field: &datafusion::arrow::datatypes::Field) -> Option<Type> {
    if !matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View) {
        return None;
    }
    match field.extension_type_name()? {
        tarn_sql::VARCHAR_EXTENSION => Some(Type::VARCHAR),
        tarn_sql::JSON_EXTENSION => Some(Type::JSON),
        _ => None,
    }
}

/// A `varchar(n)`'s type modifier, `n + 4` (Postgres's `atttypmod`).
fn varchar_typmod(field: &datafusion::arrow::datatypes::Field) -> Option<i32> {
    if field.extension_type_name()? != tarn_sql::VARCHAR_EXTENSION {
        return None;
    }
    let length: i32 = field.extension_type_metadata()?.parse().ok()?;
    Some(length + 4)
}

/// `pg_type.typlen` of `t`: its fixed width in bytes, -1 for a variable-width type.
fn type_size(t: &Type) -> i16 {
    match *t {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::TIMETZ => 12,
        Type::INTERVAL | Type::UUID => 16,
        _ => -1,
    }
}

/// `fields` under the Postgres names in `names`, where there is one.
fn rename(fields: Vec<FieldInfo>, names: Option<&[Option<String>]>) -> Vec<FieldInfo> {
    // without Postgres names (several wildcards), a marked alias still loses its mark
    let unmarked: Vec<Option<String>>;
    let names = match names.filter(|n| n.len() == fields.len()) {
        Some(names) => names,
        None => {
            unmarked = fields
                .iter()
                .map(|f| tarn_sql::pg_names::unmarked(f.name()).map(str::to_owned))
                .collect();
            &unmarked
        }
    };
    fields
        .into_iter()
        .zip(names)
        .map(|(field, name)| match name {
            Some(name) if name != field.name() => FieldInfo::new(
                name.clone(),
                field.table_id(),
                field.column_id(),
                field.datatype().clone(),
                field.format(),
            )
            .with_format_options(Arc::clone(field.format_options()))
            .with_type_size(field.type_size())
            .with_type_modifier(field.type_modifier()),
            _ => field,
        })
        .collect()
}

/// The Postgres column names of `statement`'s result, if it has rows.
fn pg_names(statement: &Statement, plan: &LogicalPlan) -> Option<Vec<Option<String>>> {
    tarn_sql::pg_names::column_names(statement.as_sql()?, plan.schema().fields().len())
}

#[async_trait]
impl pgwire::api::copy::CopyHandler for TarnQueryHandler {
    async fn on_copy_data<C>(
        &self,
        _client: &mut C,
        copy_data: pgwire::messages::copy::CopyData,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self
            .incoming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            // past the limit the data is dropped, and the COPY fails at its end (the client
            // sends its data first, then reads the answer)
            Some(incoming) if incoming.data.len() + copy_data.data.len() > self.max_copy_bytes => {
                incoming.too_large = true;
                incoming.data = Vec::new();
                Ok(())
            }
            Some(incoming) => {
                if !incoming.too_large {
                    incoming.data.extend_from_slice(&copy_data.data);
                }
                Ok(())
            }
            None => Err(transaction::error(
                "08P01",
                "CopyData outside a COPY FROM STDIN",
            )),
        }
    }

    /// Parses the data and appends it to the table in one commit.
    async fn on_copy_done<C>(
        &self,
        client: &mut C,
        _done: pgwire::messages::copy::CopyDone,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let incoming = self
            .incoming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| transaction::error("08P01", "CopyDone outside a COPY FROM STDIN"))?;
        if incoming.too_large {
            return Err(transaction::error(
                "54000",
                format!(
                    "COPY FROM STDIN takes at most {} bytes at once (pg.max_copy_bytes); \
                     split the data",
                    self.max_copy_bytes
                ),
            ));
        }
        let status = client.transaction_status();
        let session = Arc::clone(&self.session);
        // parsed and written on the query pool, not on the connection's task
        let work = async move {
            let rows = copy::parse_rows(&incoming.format, &incoming.data, incoming.columns.len())?;
            if rows.is_empty() {
                return Ok(0);
            }
            let batch = copy::text_batch(&incoming.columns, &incoming.binary, &rows)?;
            drop(rows);
            let table = incoming.table;
            {
                let schema = batch.schema();
                let source = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema,
                    futures::stream::once(async move { Ok(batch) }),
                );
                session
                    .ingest(
                        table,
                        Box::pin(source),
                        tarn_sql::IfMissing::Fail,
                        tarn_sql::IfExists::Append,
                    )
                    .await
                    .map_err(pg_error)
            }
        };
        let control = self.start(client);
        let held = self.session.held_writes();
        let written = control.run(on_executor(&self.session, work)).await?;
        if written > 0 {
            self.block.wrote(status, self.session.held_writes() > held);
        }
        let rows = usize::try_from(written).unwrap_or(usize::MAX);
        client
            .send(PgWireBackendMessage::CommandComplete(
                Tag::new("COPY").with_rows(rows).into(),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(
        &self,
        _client: &mut C,
        fail: pgwire::messages::copy::CopyFail,
    ) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.incoming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        transaction::error("57014", format!("COPY from stdin failed: {}", fail.message))
    }
}

#[async_trait]
impl SimpleQueryHandler for TarnQueryHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            let first = self
                .session
                .parse(&query.query)
                .ok()
                .and_then(|mut s| (!s.is_empty()).then(|| s.swap_remove(0)));
            self.reopen_for(client, first.as_ref().and_then(Statement::as_sql));
        }
        self._on_query(client, query).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(fetch) = cursor::parse_move(query) {
            if client.transaction_status() == TransactionStatus::Error {
                return Ok(vec![error_response(transaction::aborted())]);
            }
            let moved = match fetch {
                Ok(fetch) if self.cursors.shape(&fetch.cursor).await.is_some() => {
                    self.fetch(client, &fetch, &Format::UnifiedText, false)
                        .await
                }
                Ok(fetch) => self.move_portal(client, &fetch).await,
                Err(e) => Err(e),
            };
            return Ok(vec![moved.unwrap_or_else(error_response)]);
        }
        let statements = self.session.parse(query).map_err(pg_error)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let count = statements.len();
        let mut responses = Vec::with_capacity(count);
        let mut status = client.transaction_status();
        'statements: for (i, statement) in statements.into_iter().enumerate() {
            if let Some(s) = statement.as_sql()
                && let Err(e) = self.commit_held(s, status).await
            {
                responses.push(error_response(e));
                break 'statements;
            }
            if let Some(s) = statement.as_sql()
                && let Some(answer) =
                    self.block
                        .answer(&self.session, client.metadata_mut(), s, status)
            {
                match answer {
                    Ok(answer) => {
                        if ends_transaction(s) {
                            let committed = matches!(s, SqlStatement::Commit { .. })
                                && status != TransactionStatus::Error;
                            self.cursors.end_transaction(committed).await;
                        }
                        notify(client, answer.notices).await?;
                        status = status_after(status, &answer.response);
                        responses.push(answer.response);
                        continue 'statements;
                    }
                    Err(e) => {
                        responses.push(error_response(e));
                        break 'statements;
                    }
                }
            }
            if status == TransactionStatus::Error {
                responses.push(error_response(transaction::aborted()));
                break 'statements;
            }
            if let Some(response) = deallocate(client.portal_store(), &statement) {
                responses.push(response);
                continue 'statements;
            }
            // COPY, cursors and settings: statements the handler answers itself
            let answered = match statement.as_sql() {
                Some(s) => match copy::copy_of(s) {
                    Some(Ok(copy)) if copy.to => Some(self.copy_out(client, copy).await),
                    Some(Ok(_)) if i + 1 < count => Some(Err(transaction::error(
                        "0A000",
                        "COPY FROM STDIN must be the last statement of a query string",
                    ))),
                    Some(Ok(copy)) => Some(self.copy_in(client, &statement, copy).await),
                    Some(Err(e)) => Some(Err(e)),
                    None => match self.cursor_statement(client, s, status).await {
                        Some(response) => Some(response),
                        None if settings::handles(s) => {
                            Some(self.settings(client, s, &Format::UnifiedText).await)
                        }
                        None => None,
                    },
                },
                None => None,
            };
            match answered {
                Some(Ok(r)) => {
                    responses.push(r);
                    continue 'statements;
                }
                Some(Err(e)) => {
                    responses.push(error_response(e));
                    break 'statements;
                }
                None => {}
            }
            let write = match self.check_write(client, &statement) {
                Ok(write) => write,
                Err(e) => {
                    responses.push(error_response(e));
                    break 'statements;
                }
            };
            let control = self.start(client);
            let session = Arc::clone(&self.session);
            let held = self.session.held_writes();
            let work = async move {
                let plan = session.plan(&statement).await.map_err(pg_error)?;
                let names = pg_names(&statement, &plan);
                let output = match session.execute(plan).await.map_err(pg_error)? {
                    // Earlier statements' rows are read before later statements run.
                    QueryOutput::Rows(df) if i + 1 < count => {
                        QueryOutput::Rows(session.materialize(df).await.map_err(pg_error)?)
                    }
                    output => output,
                };
                Ok((output, names))
            };
            let result = control.run(on_executor(&self.session, work)).await;
            match result {
                Ok((output, names)) => {
                    if write.is_some() {
                        self.block.wrote(status, self.session.held_writes() > held);
                    }
                    let options = Arc::new(settings::format_options(client.metadata()));
                    let response = self
                        .respond(
                            output,
                            &Format::UnifiedText,
                            options,
                            names.as_deref(),
                            &control,
                        )
                        .await;
                    match response {
                        Ok(r) => responses.push(r),
                        Err(e) => {
                            responses.push(error_response(e));
                            break;
                        }
                    }
                }
                Err(e) => {
                    // Postgres stops at the first failing statement of a simple query.
                    responses.push(error_response(e));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// `DEALLOCATE` of protocol-level prepared statements, which live in pgwire's store rather
/// than in DataFusion's (that one holds what SQL `PREPARE` makes, and DataFusion deallocates
/// those itself). Drivers send it: psycopg `DEALLOCATE ALL` after DDL, and `DEALLOCATE name`
/// past its cache size. `None`: not such a statement.
fn deallocate<P: PortalStore>(store: &P, statement: &Statement) -> Option<Response> {
    let Some(SqlStatement::Deallocate { name, .. }) = statement.as_sql() else {
        return None;
    };
    if name.value.eq_ignore_ascii_case("all") && name.quote_style.is_none() {
        // pgwire's store cannot list its statements; they are freed when the connection
        // closes.
        return Some(Response::Execution(Tag::new("DEALLOCATE ALL")));
    }
    store.get_statement(&name.value)?;
    store.rm_statement(&name.value);
    Some(Response::Execution(Tag::new("DEALLOCATE")))
}

fn error_response(e: PgWireError) -> Response {
    match e {
        PgWireError::UserError(info) => Response::Error(info),
        other => Response::Error(Box::new(ErrorInfo::new(
            "ERROR".to_owned(),
            "XX000".to_owned(),
            other.to_string(),
        ))),
    }
}

pub(crate) struct TarnQueryParser {
    session: Arc<Session>,
    /// The connection's cursors: a FETCH describes itself with its cursor's columns.
    cursors: Arc<cursor::Cursors>,
}

/// A plan with no input and `schema`'s columns: what a settings or transaction statement
/// describes itself as.
fn empty_plan(schema: datafusion::arrow::datatypes::SchemaRef) -> PgWireResult<LogicalPlan> {
    let schema = datafusion::common::DFSchema::try_from(schema)
        .map_err(|e| pg_error(tarn_sql::Error::from(e)))?;
    Ok(LogicalPlan::EmptyRelation(
        datafusion::logical_expr::EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(schema),
        },
    ))
}

#[async_trait]
impl QueryParser for TarnQueryParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.session.parse(sql).map_err(pg_error)?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "42601".to_owned(),
                "cannot insert multiple commands into a prepared statement".to_owned(),
            ))));
        }
        let statement = statements.remove(0);
        if let Some(s) = statement.as_sql() {
            // Transaction and settings statements describe themselves as no rows, or SHOW's.
            if transaction::handles(s) || settings::handles(s) {
                let plan = empty_plan(settings::schema(s))?;
                return Ok(Some(PgStatement {
                    statement,
                    plan,
                    names: None,
                }));
            }
        }
        if client.transaction_status() == TransactionStatus::Error {
            return Err(transaction::aborted());
        }
        if let Some(s) = statement.as_sql() {
            // DECLARE: its query's plan, with its parameters; it returns no rows itself
            if let Some((_, query)) = declared_cursor(s) {
                let plan = self.session.plan(&query).await.map_err(pg_error)?;
                let plan = resolve_parameter_types(plan).map_err(pg_error)?;
                let names = pg_names(&query, &plan);
                return Ok(Some(PgStatement {
                    statement,
                    plan,
                    names,
                }));
            }
            // FETCH: the cursor's columns
            if let Some(fetch) = cursor::fetch_of(s) {
                let fetch = fetch?;
                let (schema, names) = self.cursors.shape(&fetch.cursor).await.ok_or_else(|| {
                    transaction::error(
                        "34000",
                        format!("cursor \"{}\" does not exist", fetch.cursor),
                    )
                })?;
                let plan = empty_plan(schema)?;
                return Ok(Some(PgStatement {
                    statement,
                    plan,
                    names,
                }));
            }
            if matches!(s, SqlStatement::Close { .. }) {
                let plan = empty_plan(Arc::new(datafusion::arrow::datatypes::Schema::empty()))?;
                return Ok(Some(PgStatement {
                    statement,
                    plan,
                    names: None,
                }));
            }
        }
        let plan = self.session.plan(&statement).await.map_err(pg_error)?;
        let plan = resolve_parameter_types(plan).map_err(pg_error)?;
        let names = pg_names(&statement, &plan);
        Ok(Some(PgStatement {
            statement,
            plan,
            names,
        }))
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        parameter_fields(&stmt.plan)
            .map_err(pg_error)?
            .iter()
            .map(|f| f.as_ref().map_or(Ok(Type::UNKNOWN), parameter_type))
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        if matches!(stmt.plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_))
            || stmt
                .statement
                .as_sql()
                .is_some_and(|s| declared_cursor(s).is_some())
        {
            return Ok(vec![]);
        }
        pg_fields(
            stmt.plan.schema().as_arrow(),
            column_format.unwrap_or(&Format::UnifiedText),
            None,
            stmt.names.as_deref(),
        )
    }
}

#[async_trait]
impl ExtendedQueryHandler for TarnQueryHandler {
    type Statement = PgStatement;
    type QueryParser = TarnQueryParser;

    /// pgwire answers a Describe of a statement that has parameters and returns no rows
    /// (`INSERT … VALUES ($1, $2)`) with a RowDescription of no columns, where Postgres
    /// answers NoData; pgjdbc then took its batch for queries and counted 0 rows updated by
    /// each. Such a statement is answered here as Postgres answers it.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::results::DescribeStatementResponse;
        use pgwire::messages::data::{NoData, ParameterDescription};
        let name = message
            .name
            .as_deref()
            .unwrap_or(pgwire::api::DEFAULT_NAME)
            .to_owned();
        if message.target_type == pgwire::messages::extendedquery::TARGET_TYPE_BYTE_STATEMENT
            && let Some(pgwire::api::store::Entry::Value(statement)) =
                client.portal_store().get_statement(&name)
        {
            let response: DescribeStatementResponse =
                self.do_describe_statement(client, &statement).await?;
            if response.fields.is_empty() {
                client
                    .send(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(
                            response.parameters.iter().map(Type::oid).collect(),
                        ),
                    ))
                    .await?;
                client
                    .send(PgWireBackendMessage::NoData(NoData::new()))
                    .await?;
                return Ok(());
            }
        }
        // psycopg describes a cursor it declared as a portal of that name
        if message.target_type == pgwire::messages::extendedquery::TARGET_TYPE_BYTE_PORTAL
            && client.portal_store().get_portal(&name).is_none()
            && let Some((schema, names)) = self.cursors.shape(&name).await
        {
            let fields = pg_fields(&schema, &Format::UnifiedText, None, names.as_deref())?;
            let response = pgwire::api::results::DescribePortalResponse::new(fields);
            return pgwire::api::query::send_describe_response(client, &response).await;
        }
        self._on_describe(client, message).await
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
            let statement = match client.portal_store().get_portal(name) {
                Some(pgwire::api::store::Entry::Value(portal)) => {
                    Some(portal.statement.statement.statement.clone())
                }
                _ => None,
            };
            self.reopen_for(client, statement.as_ref().and_then(Statement::as_sql));
        }
        self._on_execute(client, message).await
    }

    fn query_parser(&self) -> Arc<TarnQueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement.statement;
        let status = client.transaction_status();
        if let Some(s) = statement.as_sql() {
            self.commit_held(s, status).await?;
        }
        if let Some(s) = statement.as_sql()
            && let Some(answer) = self
                .block
                .answer(&self.session, client.metadata_mut(), s, status)
        {
            let answer = answer?;
            if ends_transaction(s) {
                let committed =
                    matches!(s, SqlStatement::Commit { .. }) && status != TransactionStatus::Error;
                self.cursors.end_transaction(committed).await;
            }
            notify(client, answer.notices).await?;
            return Ok(answer.response);
        }
        if status == TransactionStatus::Error {
            return Err(transaction::aborted());
        }
        if let Some(response) = deallocate(client.portal_store(), statement) {
            return Ok(response);
        }
        if let Some(s) = statement.as_sql()
            && settings::handles(s)
        {
            return self.settings(client, s, &portal.result_column_format).await;
        }
        if let Some(s) = statement.as_sql() {
            if let Some(fetch) = cursor::fetch_of(s) {
                return self
                    .fetch(client, &fetch?, &portal.result_column_format, true)
                    .await;
            }
            if let SqlStatement::Close { cursor } = s {
                return self.close(cursor).await;
            }
        }
        self.run_portal(client, portal, status).await
    }
}
