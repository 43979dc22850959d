use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::setup_pg_catalog;
use tarn_catalog::{Catalog, Database, Op};
use tarn_ingest::Ingester;

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::provider::LakeCatalogProvider;
use crate::stores::{SYSTEM_SCHEMA, StoreRegistry, system_schema};
use datafusion::catalog::CatalogProvider as _;

/// The one DataFusion catalog tarn exposes; its schemas are tarn databases.
pub const CATALOG_NAME: &str = "tarn";
/// Room for file listings in the listing cache (about 200 bytes per file).
const LIST_CACHE_BYTES: usize = 64 << 20;

/// The database unqualified names resolve in, created on first start.
pub const DEFAULT_DATABASE: &str = "public";

/// What [`QueryEngine::try_new`] needs.
#[derive(Debug)]
pub struct QueryEngineArgs {
    pub catalog: Arc<Catalog>,
    pub ingester: Arc<Ingester>,
    pub config: EngineConfig,
    /// The stream logs `stream('name')` reads; `None` in an engine without streams.
    pub streams: Option<Arc<tarn_ingest::stream::Streams>>,
    /// The deliveries (Firehose) into lake tables; `None` in an engine without streams.
    pub deliveries: Option<Arc<tarn_ingest::delivery::Deliveries>>,
}

/// Plans and runs SQL over the lake. Cheap to clone; every connection gets its own [`Session`].
#[derive(Debug, Clone)]
pub struct QueryEngine {
    inner: Arc<EngineInner>,
}

#[derive(Debug)]
pub(crate) struct EngineInner {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) ingester: Arc<Ingester>,
    /// How long metadata read from the store is reused (`engine.metadata_ttl_secs`).
    pub(crate) metadata_ttl: Duration,
    pub(crate) deliveries: Option<Arc<tarn_ingest::delivery::Deliveries>>,
    base: SessionState,
    pg_parser: crate::pg_parse::PgParser,
    /// Where queries run: a pool of their own, beside the server's runtime.
    executor: crate::Executor,
    /// The `pg_class` OIDs of lake tables, for RowDescriptions.
    pub(crate) table_oids: crate::origins::TableOids,
}

impl QueryEngine {
    pub(crate) fn from_inner(inner: Arc<EngineInner>) -> Self {
        Self { inner }
    }

    /// Builds the engine: the shared memory pool and spill folder, and the default database.
    pub async fn try_new(args: QueryEngineArgs) -> Result<Self> {
        let QueryEngineArgs {
            catalog,
            ingester,
            config,
            streams,
            deliveries,
        } = args;
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = config.memory_limit_bytes()? {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let disk = match &config.spill_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::Config {
                    key: "engine.spill_dir",
                    reason: format!("cannot create {}: {e}", dir.display()),
                })?;
                DiskManagerMode::Directories(vec![dir.clone()])
            }
            None => DiskManagerMode::OsTmpDirectory,
        };
        runtime = runtime.with_disk_manager_builder(DiskManagerBuilder::default().with_mode(disk));
        let caches = match config.metadata_ttl_secs {
            0 => CacheManagerConfig::default().with_list_files_cache_limit(0),
            _ => CacheManagerConfig::default()
                .with_list_files_cache_limit(LIST_CACHE_BYTES)
                .with_list_files_cache_ttl(Some(config.metadata_ttl())),
        };
        runtime = runtime
            .with_cache_manager(caches)
            .with_object_store_registry(Arc::new(StoreRegistry::new(Arc::clone(
                ingester.stores(),
            ))));
        let runtime = Arc::new(runtime.build()?);

        if catalog.snapshot().database(DEFAULT_DATABASE).is_none() {
            let op = Op::CreateDatabase {
                database: Database {
                    name: DEFAULT_DATABASE.to_owned(),
                    properties: Default::default(),
                    created_at: chrono::Utc::now(),
                },
            };
            match catalog.commit(vec![op]).await {
                Ok(_) | Err(tarn_catalog::Error::DatabaseExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Twice the partitions a query uses: one query whose operators hold their threads
        // for long stretches leaves room for the next.
        let threads = 2 * match config.target_partitions {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let executor = crate::Executor::new(threads).map_err(|e| Error::Config {
            key: "engine.target_partitions",
            reason: format!("cannot start the query threads: {e}"),
        })?;
        let base = base_state(
            &config,
            &runtime,
            &catalog,
            &ingester,
            streams,
            deliveries.clone(),
        )
        .await?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                catalog,
                ingester,
                metadata_ttl: config.metadata_ttl(),
                deliveries,
                base,
                pg_parser: crate::pg_parse::PgParser::default(),
                executor,
                table_oids: crate::origins::TableOids::default(),
            }),
        })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// The query thread pool.
    pub fn executor(&self) -> &crate::Executor {
        &self.inner.executor
    }

    /// The catalog as of at most `engine.metadata_ttl_secs` ago: what other processes
    /// committed shows up within that time, as it does for queries.
    pub async fn catalog_snapshot(&self) -> Arc<tarn_catalog::CatalogSnapshot> {
        self.inner
            .catalog
            .snapshot_within(self.inner.metadata_ttl)
            .await
    }

    pub fn ingester(&self) -> &Arc<Ingester> {
        &self.inner.ingester
    }

    /// A new session: its own settings (`SET` never leaks between sessions), the shared catalog,
    /// memory pool and object stores. Cheap: a copy of a state built once.
    pub fn session(&self) -> Result<Session> {
        let state = SessionStateBuilder::new_from_existing(self.inner.base.clone())
            .with_session_id(uuid::Uuid::new_v4().to_string())
            .build();
        Ok(Session {
            ctx: SessionContext::new_with_state(state),
            engine: Arc::clone(&self.inner),
            file_access: std::sync::atomic::AtomicBool::new(true),
            postgres_wire: std::sync::atomic::AtomicBool::new(false),
            held: Default::default(),
        })
    }
}

/// `statement` planned in `state`, as tarn plans every statement of SQL (a session's, a
/// view's): DataFusion's plan, with integer literals typed as Postgres types them.
pub(crate) async fn plan_statement(
    state: &SessionState,
    statement: DfStatement,
) -> datafusion::common::Result<LogicalPlan> {
    let plan = state.statement_to_plan(statement).await?;
    crate::arithmetic::type_integer_literals(plan)
}

/// The state every session starts from: settings, functions, the `tarn` catalog and
/// `pg_catalog`. Sessions copy it; what they change (settings, functions) is their own, and
/// the catalog list they share is never changed after this.
async fn base_state(
    config: &EngineConfig,
    runtime: &Arc<RuntimeEnv>,
    catalog: &Arc<Catalog>,
    ingester: &Arc<Ingester>,
    streams: Option<Arc<tarn_ingest::stream::Streams>>,
    deliveries: Option<Arc<tarn_ingest::delivery::Deliveries>>,
) -> Result<SessionState> {
    let mut session_config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_DATABASE)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    // Postgres sessions have a time zone; `timestamptz` and now() need one.
    session_config.options_mut().execution.time_zone = Some("UTC".to_owned());
    if config.target_partitions > 0 {
        session_config = session_config.with_target_partitions(config.target_partitions);
    }
    if config.batch_size > 0 {
        session_config = session_config.with_batch_size(config.batch_size);
    }
    // integer `+ - *` that fail on overflow, ahead of DataFusion's own planners
    let mut expr_planners: Vec<Arc<dyn datafusion::logical_expr::planner::ExprPlanner>> =
        vec![Arc::new(crate::arithmetic::CheckedIntegers::new())];
    expr_planners.extend(datafusion::execution::SessionStateDefaults::default_expr_planners());
    let state = SessionStateBuilder::new()
        .with_config(session_config)
        .with_runtime_env(Arc::clone(runtime))
        .with_default_features()
        // Lowers deltalake's own plan nodes (write metrics) inside our sessions.
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .with_optimizer_rule(Arc::new(crate::pg_rewrite::LikeEscape))
        .with_expr_planners(expr_planners)
        .build();
    let ctx = SessionContext::new_with_state(state);
    let lake = Arc::new(LakeCatalogProvider::new(
        Arc::clone(catalog),
        Arc::clone(ingester),
        config.metadata_ttl(),
        deliveries.clone(),
    ));
    let system = system_schema(ingester.stores())?;
    crate::system::register(system.as_ref(), catalog)?;
    let sizes = Arc::new(crate::table::TableSizes::new(
        Arc::clone(catalog),
        Arc::clone(ingester),
        config.metadata_ttl(),
    ));
    system.register_table(
        "table_sizes".to_owned(),
        Arc::clone(&sizes) as Arc<dyn datafusion::catalog::TableProvider>,
    )?;
    system.register_table(
        "deliveries".to_owned(),
        Arc::new(crate::delivery::DeliveriesTable { deliveries }),
    )?;
    lake.register_schema(SYSTEM_SCHEMA, system)?;
    ctx.register_catalog(CATALOG_NAME, lake);
    ctx.register_udtf(
        "stream",
        Arc::new(crate::stream_table::StreamFunction { streams }),
    );
    setup_pg_catalog(&ctx, CATALOG_NAME, EmptyContextProvider)
        .map_err(|e| Error::DataFusion(*e))?;
    if let Some(lake) = ctx.catalog(CATALOG_NAME)
        && let Some(crate_catalog) = lake.schema("pg_catalog")
    {
        lake.register_schema(
            "pg_catalog",
            Arc::new(crate::pg_catalog::TarnPgCatalog::new(
                crate_catalog,
                Arc::clone(ctx.state().catalog_list()),
            )),
        )?;
    }
    crate::pg_functions::register(&ctx).await?;
    // over the crate's, which answer 0
    for udf in crate::pg_catalog::RelationSize::udfs(&ctx.state(), &sizes) {
        ctx.register_udf(udf);
    }
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_type_planner(Arc::new(crate::pg_catalog::OidCasts))
        .build();
    Ok(state)
}

/// Whether `plan` is a query whose columns are its own (not a write's count, a command's
/// output, or an explanation).
pub(crate) fn returns_rows(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Extension(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
    )
}

/// `plan` with its unsigned integer output columns cast to the signed type Postgres has
/// (`row_number()` is a `bigint` in Postgres, an unsigned 64-bit integer in DataFusion, which
/// a Postgres client would read as a `numeric`). A value too large for `bigint` fails the
/// cast with 22003. Writes keep their count, which is the command tag's.
fn signed_outputs(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::arrow::datatypes::DataType;
    let signed = |t: &DataType| match t {
        DataType::UInt8 => Some(DataType::Int16),
        DataType::UInt16 => Some(DataType::Int32),
        DataType::UInt32 | DataType::UInt64 => Some(DataType::Int64),
        _ => None,
    };
    let schema = plan.schema();
    if !returns_rows(&plan)
        || !schema
            .fields()
            .iter()
            .any(|f| signed(f.data_type()).is_some())
    {
        return Ok(plan);
    }
    let exprs: Vec<datafusion::logical_expr::Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = datafusion::logical_expr::Expr::Column(datafusion::common::Column::new(
                qualifier.cloned(),
                field.name(),
            ));
            match signed(field.data_type()) {
                Some(t) => datafusion::logical_expr::cast(column, t)
                    .alias_qualified(qualifier.cloned(), field.name()),
                None => column,
            }
        })
        .collect();
    Ok(datafusion::logical_expr::LogicalPlanBuilder::from(plan)
        .project(exprs)?
        .build()?)
}

/// The Postgres command `sql` starts with, if it is one tarn does not have and sqlparser
/// cannot parse: answered with 0A000 naming it rather than a syntax error.
fn unsupported_command(sql: &str) -> Option<&'static str> {
    let first = sql.split_whitespace().next()?.trim_end_matches(';');
    ["CLUSTER", "REINDEX", "CHECKPOINT", "NOTIFY"]
        .into_iter()
        .find(|c| c.eq_ignore_ascii_case(first))
}

/// A statement of tarn's own (crawlers, deliveries); `None` for any other.
fn parse_tarn_statement(sql: &str) -> Option<Result<Statement>> {
    if let Some(crawler) = crate::crawl::parse_crawler_statement(sql) {
        return Some(crawler.map(Statement::Crawler));
    }
    crate::delivery::parse_delivery_statement(sql).map(|d| d.map(Statement::Delivery))
}

/// `sql` split at top-level semicolons (none inside strings or comments), without empty
/// statements; `None` if it does not tokenize.
fn split_statements(sql: &str) -> Option<Vec<String>> {
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut pieces = Vec::new();
    let mut current = String::new();
    for token in tokens {
        if token == Token::SemiColon {
            pieces.push(std::mem::take(&mut current));
        } else {
            current.push_str(&token.to_string());
        }
    }
    pieces.push(current);
    pieces.retain(|p| !p.trim().is_empty());
    Some(pieces)
}

/// `REFRESH TABLE <rest>` → `<rest>`.
fn refresh_table_rest(sql: &str) -> Option<&str> {
    let mut words = sql.trim_start().splitn(3, char::is_whitespace);
    let first = words.next()?;
    let second = words.next()?;
    (first.eq_ignore_ascii_case("refresh") && second.eq_ignore_ascii_case("table"))
        .then(|| words.next())
        .flatten()
}

/// One parsed statement: SQL (Postgres or DataFusion syntax) or one of tarn's own.
#[derive(Debug, Clone)]
pub enum Statement {
    Sql(DfStatement),
    Crawler(crate::crawl::CrawlerStatement),
    Delivery(crate::delivery::DeliveryStatement),
}

impl Statement {
    /// The command, as Postgres names it in "cannot execute … in a read-only transaction",
    /// if this statement writes data or changes the catalog; `None` for reads.
    pub fn write_command(&self) -> Option<String> {
        use crate::crawl::CrawlerStatement as C;
        use crate::delivery::DeliveryStatement as D;
        let name = match self {
            Self::Crawler(C::Create { .. }) => "CREATE CRAWLER",
            Self::Crawler(C::Run { .. }) => "RUN CRAWLER",
            Self::Crawler(C::Drop { .. }) => "DROP CRAWLER",
            Self::Delivery(D::Create { .. }) => "CREATE DELIVERY STREAM",
            Self::Delivery(D::Drop { .. }) => "DROP DELIVERY STREAM",
            Self::Sql(DfStatement::CreateExternalTable(_)) => "CREATE EXTERNAL TABLE",
            Self::Sql(DfStatement::CopyTo(_)) => "COPY",
            Self::Sql(DfStatement::Statement(s)) => match s.as_ref() {
                SqlStatement::Insert(_) => "INSERT",
                SqlStatement::Update { .. } => "UPDATE",
                SqlStatement::Delete(_) => "DELETE",
                SqlStatement::Merge { .. } => "MERGE",
                SqlStatement::Truncate { .. } => "TRUNCATE TABLE",
                SqlStatement::Copy { .. } => "COPY",
                SqlStatement::CreateTable(_) => "CREATE TABLE",
                SqlStatement::CreateView { .. } => "CREATE VIEW",
                SqlStatement::CreateSchema { .. } => "CREATE SCHEMA",
                SqlStatement::CreateDatabase { .. } => "CREATE DATABASE",
                SqlStatement::AlterTable { .. } => "ALTER TABLE",
                SqlStatement::Drop { object_type, .. } => {
                    return Some(format!("DROP {object_type}"));
                }
                _ => return None,
            },
            Self::Sql(_) => return None,
        };
        Some(name.to_owned())
    }

    /// The statement as sqlparser parsed it, if it is plain SQL.
    pub fn as_sql(&self) -> Option<&SqlStatement> {
        match self {
            Self::Sql(DfStatement::Statement(s)) => Some(s),
            _ => None,
        }
    }
}

fn is_show_crawlers(sql: &str) -> bool {
    let words: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    matches!(words.as_slice(), [a, b] if a.eq_ignore_ascii_case("show") && b.eq_ignore_ascii_case("crawlers"))
}

/// The result of one statement.
#[derive(Debug)]
pub enum QueryOutput {
    /// Rows, streamed when the frame is executed.
    Rows(DataFrame),
    /// A command that returns no rows: its Postgres command tag and, where it has one, a count.
    Command(CommandTag),
}

/// What a command did, as Postgres reports it (`CREATE TABLE`, `INSERT 0 3`, `SELECT 5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    pub command: &'static str,
    pub rows: Option<u64>,
}

impl CommandTag {
    pub(crate) fn new(command: &'static str) -> Self {
        Self {
            command,
            rows: None,
        }
    }

    pub(crate) fn with_rows(command: &'static str, rows: u64) -> Self {
        Self {
            command,
            rows: Some(rows),
        }
    }
}

/// One connection's SQL session.
pub struct Session {
    pub(crate) ctx: SessionContext,
    pub(crate) engine: Arc<EngineInner>,
    /// Whether statements may name files and object-store locations (`COPY … TO`,
    /// `CREATE EXTERNAL TABLE`, `CREATE CRAWLER`): what Postgres keeps to superusers and
    /// `pg_read_server_files`/`pg_write_server_files`.
    file_access: std::sync::atomic::AtomicBool,
    /// Whether a Postgres client asks: its statements then read Postgres's
    /// `information_schema` views and may repeat output names (see `pg_parse`).
    postgres_wire: std::sync::atomic::AtomicBool,
    /// Inserts held until the transaction block ends (see `held`).
    pub(crate) held: std::sync::Mutex<crate::held::HeldWrites>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.ctx.session_id())
            .finish()
    }
}

impl Session {
    /// The DataFusion context, for the wire protocols' type and parameter handling.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The query thread pool: run planning and writes with [`crate::Executor::run`], and read
    /// rows with [`crate::Executor::stream`].
    pub fn executor(&self) -> &crate::Executor {
        &self.engine.executor
    }

    /// `SHOW datafusion.x.y` as Postgres answers `SHOW`: one column named after the setting.
    async fn plan_show(&self, name: &str) -> Result<LogicalPlan> {
        let known = self
            .ctx
            .state()
            .config_options()
            .entries()
            .iter()
            .any(|e| e.key == name);
        if !known {
            return Err(Error::UnknownSetting {
                name: name.to_owned(),
            });
        }
        let sql = format!(
            "SELECT value AS \"{name}\" FROM information_schema.df_settings WHERE name = '{name}'"
        );
        Ok(self.ctx.state().create_logical_plan(&sql).await?)
    }

    /// Sets a DataFusion option (`datafusion.…`) for this session only.
    pub fn set_option(&self, key: &str, value: &str) -> Result<()> {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state.config_mut().options_mut().set(key, value)?;
        // Functions that read the configuration (now() and the time zone) pick up the change,
        // as they do after DataFusion's own `SET`.
        let options = state.config().options();
        let updated: Vec<_> = state
            .scalar_functions()
            .values()
            .filter_map(|udf| udf.inner().with_updated_config(options).map(Arc::new))
            .collect();
        for udf in updated {
            datafusion::execution::FunctionRegistry::register_udf(&mut *state, udf)?;
        }
        Ok(())
    }

    /// The user this session logged in as: what `current_user` and `session_user` answer.
    pub fn set_user(&self, user: &str) {
        let udf = crate::pg_functions::constant_text(
            "session_user",
            Some(user.to_owned()),
            datafusion::logical_expr::Volatility::Stable,
        );
        self.ctx.register_udf(udf);
        // and the role `pg_roles` lists for it
        self.ctx
            .state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(crate::pg_catalog::LoginUser(user.to_owned())));
    }

    /// Whether this session's statements may name files and object-store locations. Every
    /// session may until told otherwise: the servers take it away from users not listed in
    /// `[auth] file_access`.
    pub fn set_file_access(&self, allowed: bool) {
        self.file_access
            .store(allowed, std::sync::atomic::Ordering::Relaxed);
    }

    /// Refuses `plan` if it names a location and this session may not.
    fn check_file_access(&self, plan: &LogicalPlan) -> Result<()> {
        if self.file_access.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        use datafusion::common::tree_node::TreeNode;
        // The whole tree: `EXPLAIN ANALYZE COPY …` runs the copy too.
        let mut statement = None;
        plan.apply(|node| {
            statement = match node {
                LogicalPlan::Copy(_) => Some("COPY … TO"),
                LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_)) => {
                    Some("CREATE EXTERNAL TABLE")
                }
                LogicalPlan::Extension(ext)
                    if ext
                        .node
                        .as_any()
                        .downcast_ref::<crate::crawl::CrawlerCommand>()
                        .is_some_and(|c| {
                            matches!(c.statement, crate::crawl::CrawlerStatement::Create { .. })
                        }) =>
                {
                    Some("CREATE CRAWLER")
                }
                _ => None,
            };
            Ok(if statement.is_some() {
                datafusion::common::tree_node::TreeNodeRecursion::Stop
            } else {
                datafusion::common::tree_node::TreeNodeRecursion::Continue
            })
        })?;
        let Some(statement) = statement else {
            return Ok(());
        };
        Err(Error::FileAccess { statement })
    }

    /// The connection's Postgres settings, for `current_setting()` and `pg_settings`: the
    /// wire layer keeps them, and calls this at login and when they change. The session
    /// is a Postgres client's from then on.
    pub fn set_pg_settings(&self, settings: Vec<crate::pg_catalog::PgSetting>) {
        if !self
            .postgres_wire
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // `1.5` is a numeric in Postgres (`0.1 + 0.2` is exactly 0.3), a double in
            // DataFusion
            self.ctx
                .state_ref()
                .write()
                .config_mut()
                .options_mut()
                .sql_parser
                .parse_float_as_decimal = true;
        }
        let values = settings
            .iter()
            .map(|s| (s.name.to_lowercase(), s.setting.clone()))
            .collect();
        self.ctx
            .register_udf(crate::pg_functions::current_setting(values));
        // and the rows of `pg_settings`
        self.ctx
            .state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(crate::pg_catalog::PgSettings(settings)));
    }

    /// The schemas of Postgres' `search_path` that exist, in order: what `current_schema()`
    /// and `current_schemas()` answer.
    pub fn set_search_path(&self, path: &[&str]) {
        let snapshot = self.engine.catalog.snapshot();
        let existing: Vec<String> = path
            .iter()
            .filter(|s| {
                *s == &"pg_catalog" || *s == &"information_schema" || snapshot.database(s).is_some()
            })
            .map(|s| (*s).to_owned())
            .collect();
        for udf in crate::pg_functions::search_path_functions(&existing) {
            self.ctx.register_udf(udf);
        }
    }

    /// Makes unqualified table names resolve in `database` (Postgres' `search_path`).
    pub fn set_default_database(&self, database: &str) -> Result<()> {
        if self.engine.catalog.snapshot().database(database).is_none() {
            return Err(tarn_catalog::Error::DatabaseNotFound {
                database: database.to_owned(),
            }
            .into());
        }
        self.set_option("datafusion.catalog.default_schema", database)
    }

    /// Splits and parses `sql`. Postgres syntax first (with the rewrites BI tools and psql
    /// need); DataFusion's own statements (`CREATE EXTERNAL TABLE`, `COPY … TO`) otherwise.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        // tarn's own statements among others: each statement parsed on its own.
        if let Some(pieces) = split_statements(sql)
            && pieces.len() > 1
            && pieces.iter().any(|p| parse_tarn_statement(p).is_some())
        {
            let mut out = Vec::new();
            for piece in pieces {
                match parse_tarn_statement(&piece) {
                    Some(statement) => out.push(statement?),
                    None => out.extend(self.parse_sql(&piece)?.into_iter().map(Statement::Sql)),
                }
            }
            return Ok(out);
        }
        if let Some(statement) = parse_tarn_statement(sql) {
            return Ok(vec![statement?]);
        }
        Ok(self
            .parse_sql(sql)?
            .into_iter()
            .map(Statement::Sql)
            .collect())
    }

    fn parse_sql(&self, sql: &str) -> Result<Vec<DfStatement>> {
        // sqlparser has no `REFRESH TABLE`; Hive's `MSCK TABLE` is the same request.
        let rewritten;
        let sql = match refresh_table_rest(sql) {
            Some(rest) => {
                rewritten = format!("MSCK TABLE {rest}");
                rewritten.as_str()
            }
            None if crate::delivery::is_show_deliveries(sql) => {
                rewritten = crate::delivery::show_deliveries_sql(SYSTEM_SCHEMA);
                rewritten.as_str()
            }
            None if is_show_crawlers(sql) => {
                rewritten = format!(
                    "SELECT name, location, database, schedule, schema_change, last_run, \
                     last_run_succeeded, next_run_at FROM {SYSTEM_SCHEMA}.crawlers ORDER BY name"
                );
                rewritten.as_str()
            }
            None => sql,
        };
        // sqlparser accepts Hive's `CREATE EXTERNAL TABLE` and Postgres' `COPY`, but DataFusion
        // plans only its own forms of both: those go to DataFusion's parser.
        // (a COPY to or from the client is the Postgres server's to answer)
        let datafusion_only = |s: &SqlStatement| {
            use datafusion::sql::sqlparser::ast::CopyTarget;
            matches!(s, SqlStatement::CreateTable(t) if t.external)
                || matches!(s, SqlStatement::Copy { target, .. }
                    if !matches!(target, CopyTarget::Stdin | CopyTarget::Stdout))
        };
        let pg = self.engine.pg_parser.parse(
            sql,
            self.postgres_wire
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        if let Ok(statements) = &pg
            && !statements.iter().any(datafusion_only)
        {
            return Ok(statements
                .iter()
                .map(|s| DfStatement::Statement(Box::new(s.clone())))
                .collect());
        }
        let dialect = PostgreSqlDialect {};
        let df = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .and_then(|mut p| p.parse_statements());
        match (df, pg) {
            (Ok(statements), _) => Ok(statements.into_iter().collect()),
            // Postgres statements neither parser knows, and tarn has no use for.
            (Err(_), Err(_)) if let Some(command) = unsupported_command(sql) => {
                Err(Error::not_supported(command))
            }
            // The Postgres parser's complaint, where it has one: it knows most of the grammar.
            (Err(_), Err(pg_err)) => Err(Error::DataFusion(
                datafusion::error::DataFusionError::SQL(Box::new(pg_err), None),
            )),
            (Err(df_err), Ok(_)) => Err(Error::DataFusion(df_err)),
        }
    }

    /// Plans one statement. Does no IO for queries over catalog tables.
    pub async fn plan(&self, statement: &Statement) -> Result<LogicalPlan> {
        // What other processes committed to the catalog shows up within the metadata TTL.
        self.engine
            .catalog
            .snapshot_within(self.engine.metadata_ttl)
            .await;
        let plan = self.plan_statement(statement).await?;
        self.check_file_access(&plan)?;
        if self
            .postgres_wire
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return self.with_origins(signed_outputs(plan)?).await;
        }
        Ok(plan)
    }

    async fn plan_statement(&self, statement: &Statement) -> Result<LogicalPlan> {
        let statement = match statement {
            Statement::Crawler(c) => return crate::crawl::CrawlerCommand::plan(c.clone()),
            Statement::Delivery(d) => return Ok(crate::delivery::DeliveryCommand::plan(d.clone())),
            Statement::Sql(s) => s,
        };
        if let Some(plan) = crate::ddl::plan_special(statement)? {
            return Ok(plan);
        }
        if let DfStatement::Statement(s) = statement
            && let SqlStatement::ShowVariable { variable } = s.as_ref()
            && variable.len() > 1
        {
            return self
                .plan_show(
                    &variable
                        .iter()
                        .map(|v| v.value.to_lowercase())
                        .collect::<Vec<_>>()
                        .join("."),
                )
                .await;
        }
        Ok(plan_statement(&self.ctx.state(), statement.clone()).await?)
    }

    /// Runs a planned statement. DDL and inserts run now; queries run when their rows are read.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<QueryOutput> {
        // the rows this block holds as they are now (a prepared plan runs again later)
        let plan = self.with_held_rows(plan)?;
        match plan {
            LogicalPlan::Ddl(ddl) => self.execute_ddl(ddl).await.map(QueryOutput::Command),
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => {
                self.execute_insert(dml).await.map(QueryOutput::Command)
            }
            LogicalPlan::Extension(ext) => {
                let node = ext.node.as_any();
                if let Some(refresh) = node.downcast_ref::<crate::ddl::RefreshTable>() {
                    return self
                        .refresh_table(&refresh.name)
                        .await
                        .map(QueryOutput::Command);
                }
                if let Some(command) = node.downcast_ref::<crate::crawl::CrawlerCommand>() {
                    return self.execute_crawler(&command.statement).await;
                }
                if let Some(command) = node.downcast_ref::<crate::delivery::DeliveryCommand>() {
                    return self.execute_delivery(&command.statement).await;
                }
                Err(Error::not_supported(ext.node.name().to_owned()))
            }
            LogicalPlan::Copy(copy) => {
                // Runs now, so that listings cached for the target are dropped after the write.
                let target = copy.output_url.clone();
                let df = self
                    .ctx
                    .execute_logical_plan(LogicalPlan::Copy(copy))
                    .await?;
                let result = self.materialize(df).await;
                self.forget_listings(&target);
                Ok(QueryOutput::Rows(result?))
            }
            plan => Ok(QueryOutput::Rows(
                self.ctx.execute_logical_plan(plan).await?,
            )),
        }
    }

    /// Parses, plans and runs every statement in `sql`, in order. The rows of all but the last
    /// statement are read before the next one runs.
    pub async fn sql(&self, sql: &str) -> Result<Vec<QueryOutput>> {
        let statements = self.parse(sql)?;
        let count = statements.len();
        let mut outputs = Vec::with_capacity(count);
        for (i, statement) in statements.iter().enumerate() {
            let plan = self.plan(statement).await?;
            let output = match self.execute(plan).await? {
                QueryOutput::Rows(df) if i + 1 < count => {
                    QueryOutput::Rows(self.materialize(df).await?)
                }
                output => output,
            };
            outputs.push(output);
        }
        Ok(outputs)
    }

    /// Runs `df` now and returns a frame over its collected rows.
    pub async fn materialize(&self, df: DataFrame) -> Result<DataFrame> {
        let schema = Arc::clone(df.schema().inner());
        let batches: Vec<RecordBatch> = df.collect().await?;
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
        Ok(self.ctx.read_table(Arc::new(table))?)
    }

    /// `CREATE INDEX is not supported yet`: the statement in SQL words, not DataFusion's
    /// node name (`CreateIndex`).
    pub(crate) fn ddl_not_supported(ddl: &DdlStatement) -> Error {
        let mut words = String::new();
        for c in ddl.name().chars() {
            if c.is_ascii_uppercase() && !words.is_empty() {
                words.push(' ');
            }
            words.push(c.to_ascii_uppercase());
        }
        Error::not_supported(words)
    }
}
