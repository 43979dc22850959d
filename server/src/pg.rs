//! The Postgres wire: pgwire's protocol machinery, datafusion-postgres's type encoding and
//! `SET`/`SHOW`/transaction hooks, and tarn's sessions. One [`Session`] per connection.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{Set, Statement as SqlStatement};
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::{deserialize_parameters, encode_dataframe};
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use tarn_sql::Statement;
use tarn_sql::params::{parameter_types, resolve_parameter_types};
use tarn_sql::{CommandTag, QueryOutput, Session};

/// A prepared statement: the text, the parsed statement and its plan.
#[derive(Debug, Clone)]
pub(crate) struct PgStatement {
    statement: Statement,
    plan: LogicalPlan,
}

/// Where a `SET` or `SHOW` goes.
enum SetShow {
    /// DataFusion's own options (`datafusion.…`): planned and run by the session.
    Session,
    /// Postgres settings that shape output (`DateStyle`, `application_name`, …): kept per
    /// connection by datafusion-postgres' hook, which the encoders read.
    Hook,
    /// Accepted and changes nothing: the value is the only one tarn has.
    NoOp,
    /// `search_path`: the session's default database, then the hook (for `SHOW`).
    SearchPath(String),
    /// `SET TIME ZONE`: the session's time zone, then the hook (for `SHOW`).
    TimeZone(String),
    Reject(&'static str, String),
}

/// Postgres settings the hook keeps and the encoders honour.
const FORMAT_SETTINGS: [&str; 5] = [
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
];
/// Settings `SHOW` answers through the hook.
const SHOWABLE: [&str; 12] = [
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
    "time zone",
    "timezone",
    "server_version",
    "statement_timeout",
    "transaction_isolation",
    "transaction isolation level",
];

fn unquoted(e: &datafusion::sql::sqlparser::ast::Expr) -> String {
    e.to_string()
        .trim_matches('\'')
        .trim_matches('"')
        .to_owned()
}

fn route_set_show(s: &SqlStatement) -> Option<SetShow> {
    let unrecognized = |var: &str| {
        SetShow::Reject(
            "42704",
            format!("unrecognized configuration parameter \"{var}\""),
        )
    };
    let unsupported =
        |what: String| SetShow::Reject("0A000", format!("{what} is not supported yet"));
    match s {
        SqlStatement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let var = variable.to_string().to_lowercase();
            let value = values.first().map(unquoted).unwrap_or_default();
            let is = |v: &str| value.eq_ignore_ascii_case(v);
            Some(match var.as_str() {
                v if v.starts_with("datafusion.") => SetShow::Session,
                v if FORMAT_SETTINGS.contains(&v) => SetShow::Hook,
                "search_path" => {
                    SetShow::SearchPath(value.split(',').next().unwrap_or("").trim().to_owned())
                }
                "timezone" => SetShow::TimeZone(value),
                "client_encoding" if is("utf8") || is("unicode") => SetShow::NoOp,
                "standard_conforming_strings" if is("on") => SetShow::NoOp,
                "statement_timeout" if value == "0" => SetShow::NoOp,
                "client_encoding" | "standard_conforming_strings" | "statement_timeout" => {
                    unsupported(format!("{var} = {value}"))
                }
                _ => unrecognized(&var),
            })
        }
        SqlStatement::Set(Set::SetTimeZone { value, .. }) => {
            Some(SetShow::TimeZone(unquoted(value)))
        }
        SqlStatement::Set(other) => Some(unsupported(other.to_string())),
        SqlStatement::ShowVariable { variable } => {
            let parts: Vec<String> = variable.iter().map(|v| v.value.to_lowercase()).collect();
            if parts.first().is_some_and(|p| p == "datafusion") {
                return Some(SetShow::Session);
            }
            let var = parts.join(" ");
            Some(match var.as_str() {
                "all" => SetShow::Session,
                v if SHOWABLE.contains(&v) => SetShow::Hook,
                _ => unrecognized(&var),
            })
        }
        _ => None,
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
    startup: Arc<TarnStartupHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnectionHandlers {
    pub(crate) fn new(session: Session, connections: Arc<ConnectionManager>) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> =
            vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)];
        let session = Arc::new(session);
        Self {
            query: Arc::new(TarnQueryHandler {
                parser: Arc::new(TarnQueryParser {
                    session: Arc::clone(&session),
                    hooks,
                }),
                session,
            }),
            startup: Arc::new(TarnStartupHandler {
                connections: Arc::clone(&connections),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
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

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

pub(crate) struct TarnStartupHandler {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for TarnStartupHandler {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.connections))
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
    /// Also holds the hooks, shared by both protocols.
    parser: Arc<TarnQueryParser>,
}

impl TarnQueryHandler {
    fn set_show(&self, s: &SqlStatement) -> PgWireResult<bool> {
        self.parser.set_show(s)
    }

    async fn respond(
        &self,
        output: QueryOutput,
        format: &Format,
        options: Arc<FormatOptions>,
    ) -> PgWireResult<Response> {
        match output {
            QueryOutput::Command(t) => Ok(Response::Execution(tag(t))),
            QueryOutput::Rows(df) => Ok(Response::Query(
                encode_dataframe(df, format, Some(options)).await?,
            )),
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for TarnQueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.session.parse(query).map_err(pg_error)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let count = statements.len();
        let mut responses = Vec::with_capacity(count);
        'statements: for (i, statement) in statements.into_iter().enumerate() {
            if let Some(response) = deallocate(client.portal_store(), &statement) {
                responses.push(response);
                continue 'statements;
            }
            if let Some(s) = statement.as_sql()
                && TarnQueryParser::hooks_apply(s)
            {
                match self.set_show(s) {
                    Ok(false) => {}
                    Ok(true) => {
                        responses.push(Response::Execution(Tag::new("SET")));
                        continue 'statements;
                    }
                    Err(e) => {
                        responses.push(error_response(e));
                        break 'statements;
                    }
                }
                for hook in &self.parser.hooks {
                    if let Some(result) = hook
                        .handle_simple_query(s, self.session.context(), client)
                        .await
                    {
                        match result {
                            Ok(r) => responses.push(r),
                            Err(e) => {
                                responses.push(error_response(e));
                                break 'statements;
                            }
                        }
                        continue 'statements;
                    }
                }
            }
            let result = async {
                let plan = self.session.plan(&statement).await?;
                match self.session.execute(plan).await? {
                    // Earlier statements' rows are read before later statements run.
                    QueryOutput::Rows(df) if i + 1 < count => {
                        Ok(QueryOutput::Rows(self.session.materialize(df).await?))
                    }
                    output => Ok(output),
                }
            }
            .await;
            match result {
                Ok(output) => {
                    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                    responses.push(self.respond(output, &Format::UnifiedText, options).await?);
                }
                Err(e) => {
                    // Postgres stops at the first failing statement of a simple query.
                    responses.push(error_response(pg_error(e)));
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
    hooks: Vec<Arc<dyn QueryHook>>,
}

impl TarnQueryParser {
    /// Applies the `SET`s tarn handles itself. `Ok(true)`: done, reply `SET`; `Ok(false)`:
    /// carry on to the hooks (or, for DataFusion options, to the session).
    fn set_show(&self, s: &SqlStatement) -> PgWireResult<bool> {
        match route_set_show(s) {
            None | Some(SetShow::Hook) | Some(SetShow::Session) => Ok(false),
            Some(SetShow::NoOp) => Ok(true),
            Some(SetShow::SearchPath(db)) => {
                self.session.set_default_database(&db).map_err(pg_error)?;
                Ok(false)
            }
            Some(SetShow::TimeZone(tz)) => {
                let key = "datafusion.execution.time_zone";
                self.session.set_option(key, &tz).map_err(pg_error)?;
                Ok(false)
            }
            Some(SetShow::Reject(code, message)) => Err(PgWireError::UserError(Box::new(
                ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message),
            ))),
        }
    }

    /// Whether the hooks may see `s`: not DataFusion's own options, which the session runs.
    fn hooks_apply(s: &SqlStatement) -> bool {
        !matches!(route_set_show(s), Some(SetShow::Session))
    }
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
        if let Some(s) = statement.as_sql()
            && Self::hooks_apply(s)
        {
            for hook in &self.hooks {
                if let Some(plan) = hook
                    .handle_extended_parse_query(s, self.session.context(), client)
                    .await
                {
                    return Ok(Some(PgStatement {
                        statement,
                        plan: plan?,
                    }));
                }
            }
        }
        let plan = self.session.plan(&statement).await.map_err(pg_error)?;
        let plan = resolve_parameter_types(plan).map_err(pg_error)?;
        Ok(Some(PgStatement { statement, plan }))
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        parameter_types(&stmt.plan)
            .map_err(pg_error)?
            .iter()
            .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        if matches!(stmt.plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) {
            return Ok(vec![]);
        }
        arrow_schema_to_pg_fields(
            stmt.plan.schema().as_arrow(),
            column_format.unwrap_or(&Format::UnifiedText),
            None,
        )
    }
}

#[async_trait]
impl ExtendedQueryHandler for TarnQueryHandler {
    type Statement = PgStatement;
    type QueryParser = TarnQueryParser;

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
        let PgStatement { statement, plan } = &portal.statement.statement;
        let types = parameter_types(plan).map_err(pg_error)?;
        let type_refs: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let params = deserialize_parameters(portal, &type_refs)?;
        if let Some(response) = deallocate(client.portal_store(), statement) {
            return Ok(response);
        }
        if let Some(s) = statement.as_sql()
            && TarnQueryParser::hooks_apply(s)
        {
            if self.set_show(s)? {
                return Ok(Response::Execution(Tag::new("SET")));
            }
            for hook in &self.parser.hooks {
                if let Some(result) = hook
                    .handle_extended_query(s, plan, &params, self.session.context(), client)
                    .await
                {
                    return result;
                }
            }
        }
        let plan = plan
            .clone()
            .replace_params_with_values(&params)
            .map_err(|e| pg_error(tarn_sql::Error::DataFusion(e)))?;
        let output = self.session.execute(plan).await.map_err(pg_error)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        self.respond(output, &portal.result_column_format, options)
            .await
    }
}
