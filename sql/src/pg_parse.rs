//! Postgres SQL as `datafusion-pg-catalog` parses it (the rewrites BI tools and psql need, and
//! its replacements of whole client queries), except one rewrite that changes answers:
//! `RemoveSubqueryFromProjection` turns every correlated scalar subquery in a select list
//! into NULL, and stamps `LIMIT 1` on the others. Over user tables that is a wrong answer
//! (`SELECT n, (SELECT count(*) FROM c WHERE c.k = n.k) FROM n` gave NULLs) and a hidden error
//! (a subquery of several rows must fail with 21000). tarn keeps that rewrite for subqueries
//! that read only `pg_catalog` and `information_schema`, where the crate's catalog has no
//! better answer, and plans the rest as written.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Query, SelectItem, SetExpr, Statement, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    RemoveSubqueryFromProjection, ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation,
    RewritePgCatalogOperator, RewriteRegCastToSubquery, SqlStatementRewriteRule,
    StripCallableQualifier, StripCollate,
};

#[derive(Debug)]
pub(crate) struct PgParser {
    crate_parser: PostgresCompatibilityParser,
    /// The crate's rules, in its order.
    all: Vec<Arc<dyn SqlStatementRewriteRule>>,
    /// The same, with the projection-subquery rewrite kept to catalog subqueries.
    tarn: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl Default for PgParser {
    fn default() -> Self {
        let before: Vec<Arc<dyn SqlStatementRewriteRule>> = vec![
            Arc::new(AliasDuplicatedProjectionRewrite),
            Arc::new(ResolveUnqualifiedIdentifier),
            Arc::new(RewriteArrayAnyAllOperation),
            Arc::new(PrependUnqualifiedPgTableName),
            Arc::new(StripCallableQualifier),
            Arc::new(FixArrayLiteral),
            Arc::new(CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(StripCollate),
            Arc::new(RewritePgCatalogOperator),
            Arc::new(RewriteRegCastToSubquery::new()),
        ];
        let with = |middle: Arc<dyn SqlStatementRewriteRule>| {
            let mut rules = before.clone();
            rules.push(middle);
            rules.push(Arc::new(FixVersionColumnName));
            rules
        };
        Self {
            crate_parser: PostgresCompatibilityParser::new(),
            all: with(Arc::new(RemoveSubqueryFromProjection)),
            tarn: with(Arc::new(CatalogSubqueriesOnly)),
        }
    }
}

fn apply(rules: &[Arc<dyn SqlStatementRewriteRule>], mut statement: Statement) -> Statement {
    for rule in rules {
        statement = rule.rewrite(statement);
    }
    statement
}

fn same(a: &[Statement], b: &[Statement]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_string() == b.to_string())
}

impl PgParser {
    pub(crate) fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let parsed = self.crate_parser.parse(sql)?;
        // A subquery needs a second SELECT.
        if sql.to_ascii_lowercase().matches("select").count() < 2 {
            return Ok(parsed);
        }
        let Ok(plain) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
            return Ok(parsed);
        };
        let full: Vec<Statement> = plain.iter().cloned().map(|s| apply(&self.all, s)).collect();
        if !same(&full, &parsed) {
            // The crate replaced a whole client query (its blacklist): keep its replacement.
            return Ok(parsed);
        }
        Ok(plain.into_iter().map(|s| apply(&self.tarn, s)).collect())
    }
}

/// `RemoveSubqueryFromProjection`, for subqueries that read only catalog tables.
#[derive(Debug)]
struct CatalogSubqueriesOnly;

impl SqlStatementRewriteRule for CatalogSubqueriesOnly {
    fn rewrite(&self, mut statement: Statement) -> Statement {
        let _ = VisitMut::visit(&mut statement, &mut CatalogSubqueries);
        statement
    }
}

struct CatalogSubqueries;

impl VisitorMut for CatalogSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in &mut select.projection {
            let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
            else {
                continue;
            };
            if let Expr::Subquery(subquery) = expr
                && reads_only_catalog(subquery)
                && let Some(rewritten) = crate_rewrite(subquery)
            {
                *expr = rewritten;
            }
        }
        ControlFlow::Continue(())
    }
}

/// The crate's rewrite of `subquery` as a select-list item on its own.
fn crate_rewrite(subquery: &Query) -> Option<Expr> {
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT ({subquery})"))
        .ok()?
        .pop()?;
    let Statement::Query(query) = RemoveSubqueryFromProjection.rewrite(statement) else {
        return None;
    };
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    match select.projection.into_iter().next()? {
        SelectItem::UnnamedExpr(expr) => Some(expr),
        _ => None,
    }
}

/// Whether every table `query` reads is in `pg_catalog` or `information_schema`.
fn reads_only_catalog(query: &Query) -> bool {
    struct Tables {
        catalog: usize,
        other: usize,
    }
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            let schema = relation
                .0
                .first()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_lowercase());
            if relation.0.len() > 1
                && matches!(schema.as_deref(), Some("pg_catalog" | "information_schema"))
            {
                self.catalog += 1;
            } else {
                self.other += 1;
            }
            ControlFlow::Continue(())
        }
    }
    let mut tables = Tables {
        catalog: 0,
        other: 0,
    };
    let _ = query.visit(&mut tables);
    tables.catalog > 0 && tables.other == 0
}

#[cfg(test)]
mod tests {
    use super::PgParser;

    fn parsed(sql: &str) -> String {
        PgParser::default()
            .parse(sql)
            .expect("parses")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn subqueries_over_user_tables_stay_as_written() {
        let sql = "SELECT n.k, (SELECT count(*) FROM c WHERE c.k = n.k) AS m FROM n";
        assert_eq!(parsed(sql), sql);
        let sql = "SELECT (SELECT name FROM demo.nation) AS one";
        assert_eq!(parsed(sql), sql);
    }

    #[test]
    fn catalog_subqueries_keep_the_crate_rewrite() {
        assert_eq!(
            parsed(
                "SELECT c.relname, (SELECT d.description FROM pg_catalog.pg_description d \
                 WHERE d.objoid = c.oid) AS comment FROM pg_catalog.pg_class c"
            ),
            "SELECT c.relname, NULL AS comment FROM pg_catalog.pg_class c"
        );
    }
}
