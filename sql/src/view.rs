//! Views (`CREATE [OR REPLACE] VIEW`, `DROP VIEW`), kept in the catalog as their SQL and
//! planned again each time they are read, so they see the tables as they are then.
//!
//! A view's columns are fixed when it is created, as in Postgres and Athena. A read whose
//! query no longer gives those columns (a table column dropped or retyped underneath) fails:
//! the view is stale and must be created again. New columns of a `SELECT *` are left out.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session as DfSession, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    CreateView, DropView, Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown,
    TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use tarn_catalog::{Op, TableRef, View};

use crate::engine::{CommandTag, Session};
use crate::error::{Error, Result};

tokio::task_local! {
    /// The views being planned on this task, outermost first: a view that reads itself,
    /// directly or through others, is refused instead of planned forever.
    static EXPANDING: Vec<TableRef>;
}

/// The settings a view's query is planned with as they were when it was created: they
/// change what literals and time zones mean, and so the columns' types.
const PLANNING_SETTINGS: [&str; 3] = [
    "datafusion.sql_parser.parse_float_as_decimal",
    "datafusion.sql_parser.enable_ident_normalization",
    "datafusion.execution.time_zone",
];

/// How many views deep a read may go.
const MAX_DEPTH: usize = 32;

impl Session {
    pub(crate) async fn create_view(&self, cmd: CreateView) -> Result<CommandTag> {
        if cmd.temporary {
            return Err(Error::not_supported("temporary views"));
        }
        let name = self.resolve(&cmd.name)?;
        if cmd.or_replace
            && self
                .engine
                .catalog
                .snapshot()
                .table(&name.database, &name.table)
                .is_some()
        {
            return Err(not_a(&name, "view", "DROP TABLE first"));
        }
        if !cmd.input.get_parameter_types()?.is_empty() {
            return Err(Error::View {
                sqlstate: "42P02",
                message: "a view's query cannot have parameters ($1)".to_owned(),
            });
        }
        if crate::ddl::RESERVED_SCHEMAS.contains(&name.database.as_str()) {
            return Err(tarn_catalog::Error::InvalidName {
                name: name.database,
                reason: "is reserved for tarn's own tables",
            }
            .into());
        }
        let definition = cmd
            .definition
            .as_deref()
            .ok_or_else(|| Error::not_supported("a view without its SQL"))?;
        let query = view_query(definition)?;
        // The query's own column names, which reads match the view's columns by.
        let own = crate::engine::plan_statement(
            &self.ctx.state(),
            DfStatement::Statement(Box::new(SqlStatement::Query(Box::new(query.clone())))),
        )
        .await?;
        self.check_not_recursive(&name, &own).await?;
        let own_names: Vec<String> = own
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let schema = cmd.input.schema().as_arrow();
        let mut seen = std::collections::HashSet::new();
        for field in schema.fields() {
            if !seen.insert(field.name()) {
                return Err(Error::View {
                    sqlstate: "42701",
                    message: format!("column \"{}\" specified more than once", field.name()),
                });
            }
        }
        // The view's names (a column list renames), with the query's names as metadata.
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .zip(&own_names)
            .map(|(f, own)| {
                // Postgres's views never say a column has no NULLs (`attnotnull`): what the
                // query gives may change while the view stays
                let mut metadata = f.metadata().clone();
                metadata.insert(QUERY_COLUMN.to_owned(), own.clone());
                f.as_ref()
                    .clone()
                    .with_nullable(true)
                    .with_metadata(metadata)
            })
            .collect();
        let state = self.ctx.state();
        let default_database = state.config_options().catalog.default_schema.clone();
        // what else planning depends on: the view reads the same in every session
        let settings = state
            .config_options()
            .entries()
            .into_iter()
            .filter(|e| PLANNING_SETTINGS.contains(&e.key.as_str()))
            .filter_map(|e| Some((e.key, e.value?)))
            .collect();
        let now = Utc::now();
        let view = View {
            database: name.database,
            name: name.table,
            sql: query.to_string(),
            default_database,
            settings,
            schema: Arc::new(Schema::new(fields)),
            created_at: now,
            updated_at: now,
        };
        self.engine
            .catalog
            .commit(vec![Op::CreateView {
                view,
                replace: cmd.or_replace,
            }])
            .await?;
        Ok(CommandTag::new("CREATE VIEW"))
    }

    /// Refuses a view whose query reads the view itself, directly or through other views.
    async fn check_not_recursive(&self, name: &TableRef, query: &LogicalPlan) -> Result<()> {
        let state = self.ctx.state();
        let mut todo = views_read_by(query)?;
        let mut seen = std::collections::HashSet::new();
        while let Some(view) = todo.pop() {
            if view.table_ref() == *name {
                return Err(Error::View {
                    sqlstate: "42P17",
                    message: format!(
                        "infinite recursion detected: view \"{name}\" would read itself"
                    ),
                });
            }
            if !seen.insert(view.table_ref()) {
                continue;
            }
            // A view that cannot be planned now is not read through.
            if let Ok(plan) = LakeViewProvider::new(view).query_plan(&state).await {
                todo.extend(views_read_by(&plan)?);
            }
        }
        Ok(())
    }

    pub(crate) async fn drop_view(&self, cmd: DropView) -> Result<CommandTag> {
        let name = self.resolve(&cmd.name)?;
        let snapshot = self.engine.catalog.snapshot();
        if snapshot.view(&name.database, &name.table).is_none() {
            if snapshot.table(&name.database, &name.table).is_some() {
                return Err(not_a(&name, "view", "DROP TABLE"));
            }
            if cmd.if_exists {
                return Ok(CommandTag::new("DROP VIEW"));
            }
            return Err(tarn_catalog::Error::ViewNotFound { view: name }.into());
        }
        match self
            .engine
            .catalog
            .commit(vec![Op::DropView { view: name }])
            .await
        {
            // dropped meanwhile by another session
            Err(tarn_catalog::Error::ViewNotFound { .. }) if cmd.if_exists => {}
            other => {
                other?;
            }
        }
        Ok(CommandTag::new("DROP VIEW"))
    }
}

/// `"demo.v" is not a table` (42809), with the statement that does apply.
pub(crate) fn not_a(name: &TableRef, kind: &str, instead: &str) -> Error {
    Error::View {
        sqlstate: "42809",
        message: format!("\"{name}\" is not a {kind}; use {instead}"),
    }
}

/// The metadata key of a view column holding the name its query gives it.
const QUERY_COLUMN: &str = "tarn.view.query_column";

/// The query of a `CREATE VIEW` statement's text.
fn view_query(definition: &str) -> Result<datafusion::sql::sqlparser::ast::Query> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, definition)
        .map_err(|e| DataFusionError::SQL(Box::new(e), None))?;
    match statements.into_iter().next() {
        Some(SqlStatement::CreateView(v)) => Ok(*v.query),
        _ => Err(Error::not_supported("this form of CREATE VIEW")),
    }
}

/// A view as a table: reading it plans its query.
#[derive(Debug)]
pub(crate) struct LakeViewProvider {
    view: Arc<View>,
}

impl LakeViewProvider {
    pub(crate) fn new(view: Arc<View>) -> Self {
        Self { view }
    }

    pub(crate) fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// The view's query, planned in `state` as it is written.
    async fn query_plan(&self, state: &SessionState) -> DfResult<LogicalPlan> {
        let view = &self.view;
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, &view.sql)
            .map_err(|e| DataFusionError::SQL(Box::new(e), None))?;
        let [statement] = <[SqlStatement; 1]>::try_from(statements).map_err(|_| {
            DataFusionError::Internal(format!("view {} holds several statements", view.name))
        })?;
        let mut state = state.clone();
        let options = state.config_mut().options_mut();
        options.catalog.default_schema = view.default_database.clone();
        for (key, value) in &view.settings {
            options.set(key, value)?;
        }
        crate::engine::plan_statement(&state, DfStatement::Statement(Box::new(statement))).await
    }

    /// The view's query, planned in `state` and given the view's columns.
    async fn plan(&self, state: &SessionState) -> DfResult<LogicalPlan> {
        let view = &self.view;
        let plan = self.query_plan(state).await?;
        let schema = Arc::clone(plan.schema());
        let mut columns = Vec::with_capacity(view.schema.fields().len());
        for (i, field) in view.schema.fields().iter().enumerate() {
            let own = field
                .metadata()
                .get(QUERY_COLUMN)
                .unwrap_or_else(|| field.name());
            let found = schema
                .iter()
                .enumerate()
                .filter(|(_, (_, f))| f.name() == own)
                .collect::<Vec<_>>();
            // By name; by position where the query gives a name twice.
            let found = match found.as_slice() {
                [one] => Some(one.1),
                _ => found.iter().find(|(j, _)| *j == i).map(|(_, c)| *c),
            };
            let mut metadata = field.metadata().clone();
            metadata.remove(QUERY_COLUMN);
            match found {
                Some((_, f)) if *f.metadata() != metadata => {
                    return Err(stale(
                        view,
                        &format!("the field metadata of column \"{own}\" changed"),
                    ));
                }
                Some((qualifier, f)) if f.data_type() == field.data_type() => columns.push(
                    Expr::Column(Column::new(qualifier.cloned(), f.name())).alias(field.name()),
                ),
                Some((_, f)) => {
                    return Err(stale(
                        view,
                        &format!(
                            "column \"{own}\" is {} now, was {}",
                            f.data_type(),
                            field.data_type()
                        ),
                    ));
                }
                None => return Err(stale(view, &format!("its query has no column \"{own}\""))),
            }
        }
        LogicalPlanBuilder::from(plan).project(columns)?.build()
    }
}

impl LakeViewProvider {
    /// `e`, raised planning the view's query, saying which view it is about (a table the
    /// view reads was dropped), with its SQLSTATE. The view's own errors say so already.
    fn reading(&self, e: DataFusionError) -> DataFusionError {
        let e = Error::from(e);
        if matches!(e, Error::View { .. }) {
            return DataFusionError::External(Box::new(e));
        }
        DataFusionError::External(Box::new(Error::View {
            sqlstate: e.sqlstate(),
            message: format!("reading view \"{}\": {e}", self.view.table_ref()),
        }))
    }
}

/// The views `plan` reads directly (in subqueries too).
fn views_read_by(plan: &LogicalPlan) -> DfResult<Vec<Arc<View>>> {
    let mut views = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = datafusion::datasource::source_as_provider(&scan.source)
            && let Some(view) =
                (provider.as_ref() as &dyn std::any::Any).downcast_ref::<LakeViewProvider>()
        {
            views.push(Arc::clone(&view.view));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(views)
}

fn stale(view: &View, why: &str) -> DataFusionError {
    DataFusionError::External(Box::new(Error::View {
        sqlstate: "55000",
        message: format!(
            "view \"{}\" is stale: {why}; create it again (CREATE OR REPLACE VIEW)",
            view.table_ref()
        ),
    }))
}

#[async_trait]
impl TableProvider for LakeViewProvider {
    fn schema(&self) -> SchemaRef {
        // The view's columns without tarn's metadata.
        let fields: Vec<_> = self
            .view
            .schema
            .fields()
            .iter()
            .map(|f| {
                let mut metadata = f.metadata().clone();
                metadata.remove(QUERY_COLUMN);
                f.as_ref().clone().with_metadata(metadata)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.view.sql)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Each filter is put over the view's query, where the optimizer pushes it on.
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn insert_into(
        &self,
        _state: &dyn DfSession,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: datafusion::logical_expr::dml::InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::External(Box::new(Error::View {
            sqlstate: "55000",
            message: format!(
                "cannot insert into view \"{}\": views are read-only; insert into its tables",
                self.view.table_ref()
            ),
        })))
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("a view read outside a session".into()))?;
        let name = self.view.table_ref();
        let mut chain = EXPANDING.try_with(Clone::clone).unwrap_or_default();
        if chain.contains(&name) || chain.len() >= MAX_DEPTH {
            chain.push(name);
            let path: Vec<String> = chain.iter().map(ToString::to_string).collect();
            return Err(DataFusionError::External(Box::new(Error::View {
                sqlstate: "42P17",
                message: format!(
                    "infinite recursion detected in view \"{}\" ({})",
                    self.view.table_ref(),
                    path.join(" -> ")
                ),
            })));
        }
        chain.push(name);
        EXPANDING
            .scope(chain, async {
                let planned = self.plan(state).await.map_err(|e| self.reading(e))?;
                let mut plan = LogicalPlanBuilder::from(planned);
                if let Some(filter) = filters.iter().cloned().reduce(Expr::and) {
                    plan = plan.filter(unqualified(filter)?)?;
                }
                if let Some(projection) = projection {
                    let names = self.view.schema.fields();
                    plan = plan.project(
                        projection
                            .iter()
                            .map(|&i| Expr::Column(Column::new_unqualified(names[i].name()))),
                    )?;
                }
                if let Some(limit) = limit {
                    plan = plan.limit(0, Some(limit))?;
                }
                state.create_physical_plan(&plan.build()?).await
            })
            .await
    }
}

/// `filter` with its columns named as the view's columns (the reader's qualifier dropped).
fn unqualified(filter: Expr) -> DfResult<Expr> {
    filter
        .transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                c.name,
            )))),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_of_a_create_view() {
        let query = view_query("CREATE OR REPLACE VIEW v (a) AS SELECT x FROM t WHERE x > 1")
            .expect("parses");
        assert_eq!(query.to_string(), "SELECT x FROM t WHERE x > 1");
        assert!(view_query("SELECT 1").is_err());
    }
}
