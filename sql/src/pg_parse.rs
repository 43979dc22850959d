//! Postgres SQL as `datafusion-pg-catalog` parses it (the rewrites BI tools and psql need, and
//! its replacements of whole client queries), except one rewrite that changes answers:
//! `RemoveSubqueryFromProjection` turns every correlated scalar subquery in a select list
//! into NULL, and stamps `LIMIT 1` on the others. Over user tables that is a wrong answer
//! (`SELECT n, (SELECT count(*) FROM c WHERE c.k = n.k) FROM n` gave NULLs) and a hidden error
//! (a subquery of several rows must fail with 21000); over the catalog it is a wrong answer
//! too (a column's type looked up in `pg_type` came back NULL). tarn plans subqueries over
//! user tables as written, and makes the lookups clients write over `pg_catalog` and
//! `information_schema` plannable instead ([`CatalogScalarSubqueries`]).

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, CharacterLength, DataType as SqlDataType, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, JoinOperator, LimitClause,
    ObjectName, ObjectNamePart, OrderBy, OrderByExpr, OrderByKind, Query, SelectItem, SetExpr,
    Statement, TableFactor, TableWithJoins, Value, Visit, VisitMut, Visitor, VisitorMut,
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
        let mut tarn = with(Arc::new(CatalogScalarSubqueries));
        tarn.push(Arc::new(InnerColumnNames));
        Self {
            crate_parser: PostgresCompatibilityParser::new(),
            all: with(Arc::new(RemoveSubqueryFromProjection)),
            tarn,
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
    /// `postgres`: whether a Postgres client sent `sql`, whose statements then read
    /// Postgres's `information_schema` views and may repeat output names.
    pub(crate) fn parse(&self, sql: &str, postgres: bool) -> Result<Vec<Statement>, ParserError> {
        let lower = sql.to_ascii_lowercase();
        let mut statements = self.parse_with_crate_rules(sql, &lower)?;
        // a view's columns are named as Postgres names a query's (`count`, not `count(*)`),
        // from the query as written (`x::varchar` is `x`, not the function it becomes)
        for statement in &mut statements {
            if let Statement::CreateView(view) = statement
                && view.columns.is_empty()
            {
                name_outputs(&mut view.query);
            }
        }
        if lower.contains("generate_subscripts")
            || lower.contains("regtype")
            || lower.contains("_pg_expandarray")
            || lower.contains(").")
            || lower.contains("regproc")
            || lower.contains("proargtypes")
            || lower.contains("user")
            || lower.contains("unnest")
            || lower.contains("generate_series")
            || lower.contains("array_fill")
            || lower.contains("array_length")
            || lower.contains("cardinality")
            || lower.contains("interval")
            || lower.contains("double")
            || lower.contains("float")
            || lower.contains("real")
            || lower.contains("typbasetype")
            || lower.contains("bytea")
            || lower.contains("varchar")
            || lower.contains("varying")
            || lower.contains("json")
        {
            for statement in &mut statements {
                let _ = VisitMut::visit(statement, &mut ExpressionRewrites { postgres });
            }
        }
        if postgres {
            // the names Postgres gives the columns, from the statements as written
            if let Ok(written) = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                && written.len() == statements.len()
            {
                for (written, statement) in written.iter().zip(&mut statements) {
                    crate::pg_names::keep_written_names(written, statement);
                }
            }
            for statement in &mut statements {
                if lower.contains("information_schema") {
                    crate::pg_information_schema::rewrite(statement);
                }
                let _ = VisitMut::visit(statement, &mut SeriesInSelectLists);
                let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(statement, |e| {
                    if let Some(plain) = exponent_literal(e) {
                        *e = plain;
                    }
                    ControlFlow::<()>::Continue(())
                });
                crate::pg_names::alias_duplicates(statement);
            }
        }
        Ok(statements)
    }

    /// `lower`: `sql` in lower case.
    fn parse_with_crate_rules(
        &self,
        sql: &str,
        lower: &str,
    ) -> Result<Vec<Statement>, ParserError> {
        let parsed = self.crate_parser.parse(sql)?;
        // A subquery needs a second SELECT; the description functions,
        // pg_table_is_visible and pg_get_viewdef become subqueries.
        if lower.matches("select").count() < 2
            && !lower.contains("_description")
            && !lower.contains("pg_table_is_visible")
            && !lower.contains("pg_get_viewdef")
        {
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

/// `generate_series(a, b)` in a select list as `unnest(generate_series(a, b))`: in Postgres a
/// set-returning function there makes a row per value (in step with the list's other
/// set-returning functions); DataFusion's `generate_series` is one array. The item keeps
/// the name `generate_series`.
struct SeriesInSelectLists;

impl VisitorMut for SeriesInSelectLists {
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
            let Expr::Function(f) = expr else { continue };
            if !is_call(f, "generate_series") || f.over.is_some() {
                continue;
            }
            let Some(unnested) = parse_expr(&format!("unnest({expr})")) else {
                continue;
            };
            *item = match item {
                SelectItem::ExprWithAlias { alias, .. } => SelectItem::ExprWithAlias {
                    expr: unnested,
                    alias: alias.clone(),
                },
                _ => SelectItem::ExprWithAlias {
                    expr: unnested,
                    alias: Ident::with_quote('"', "generate_series"),
                },
            };
        }
        ControlFlow::Continue(())
    }
}

/// The columns of derived tables and `WITH` queries under the names Postgres gives them
/// (`count`, `sum`, `lower`), which the query around them refers to: Superset wraps a
/// virtual dataset's SQL in `SELECT … FROM (<sql>) AS virtual_table`. DataFusion names them
/// after the whole expression (`count(*)`). A name two columns would share is left alone
/// (DataFusion refuses duplicates); so are expressions Postgres calls `?column?`.
#[derive(Debug)]
struct InnerColumnNames;

impl SqlStatementRewriteRule for InnerColumnNames {
    fn rewrite(&self, mut statement: Statement) -> Statement {
        let _ = VisitMut::visit(&mut statement, &mut InnerNames);
        statement
    }
}

struct InnerNames;

impl VisitorMut for InnerNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &mut query.with {
            for cte in &mut with.cte_tables {
                name_outputs(&mut cte.query);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Derived { subquery, .. } = factor {
            name_outputs(subquery);
        }
        ControlFlow::Continue(())
    }
}

/// Aliases the unnamed expressions of the select that names `query`'s columns.
fn name_outputs(query: &mut Query) {
    let mut body = query.body.as_mut();
    let select = loop {
        match body {
            SetExpr::Select(select) => break select,
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            _ => return,
        }
    };
    let names: Vec<Option<String>> = select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => crate::pg_names::strength_name(e),
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    for (item, name) in select.projection.iter_mut().zip(&names) {
        if let SelectItem::UnnamedExpr(expr) = item
            && !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
            && let Some(name) = name
            && names.iter().filter(|n| n.as_ref() == Some(name)).count() == 1
        {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::with_quote('"', name.clone()),
            };
        }
    }
}

/// The rewrites of single expressions every statement gets, each where the crate's
/// parse leaves something DataFusion cannot run or answers differently from Postgres.
struct ExpressionRewrites {
    /// Whether a Postgres client sent the statement: `user` is then `current_user`, and
    /// `array_length` an `int4`.
    postgres: bool,
}

impl VisitorMut for ExpressionRewrites {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(rewritten) = regtype_as_text(expr)
            .or_else(|| generate_subscripts(expr))
            .or_else(|| expand_array(expr))
            .or_else(|| field_of_composite(expr))
            .or_else(|| regproc_by_name(expr))
            .or_else(|| oidvector_as_array(expr))
            .or_else(|| type_names_as_text(expr))
            .or_else(|| self.postgres.then(|| user_as_session_user(expr)).flatten())
            .or_else(|| array_of_unnest(expr))
            .or_else(|| array_of_series(expr))
            .or_else(|| array_fill(expr))
            .or_else(|| float_literal(expr))
            .or_else(|| interval_literal(expr))
            .or_else(|| domain_base_type(expr))
            .or_else(|| bytea_literal(expr))
            .or_else(|| self.postgres.then(|| marked_cast(expr)).flatten())
            .or_else(|| json_agg(expr))
        {
            *expr = rewritten;
        }
        // also over what a rewrite above made (`array_length` of a split `proargtypes`);
        // Postgres's type, for a Postgres client
        if self.postgres
            && let Some(rewritten) = int4_length(expr)
        {
            *expr = rewritten;
        }
        ControlFlow::Continue(())
    }
}

/// `x::regtype::text` as `format_type(x, NULL)`: the type's name, as Postgres writes a
/// regtype (pgcli's column list, psql's `\d`). The crate keeps a regtype as its number, so
/// the text was `20` where Postgres says `bigint`.
fn regtype_as_text(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        expr: inner,
        data_type: text,
        ..
    } = expr
    else {
        return None;
    };
    let Expr::Cast {
        expr: oid,
        data_type: regtype,
        ..
    } = inner.as_ref()
    else {
        return None;
    };
    let is_text = matches!(
        text,
        SqlDataType::Text | SqlDataType::Varchar(_) | SqlDataType::String(_)
    );
    let is_regtype = regtype
        .to_string()
        .to_ascii_lowercase()
        .ends_with("regtype");
    if !(is_text && is_regtype) {
        return None;
    }
    parse_expr(&format!("format_type({oid}, NULL)"))
}

/// `generate_subscripts(a, d)` in a select list, beside `unnest(a)` (SQLAlchemy's key and
/// index reflection numbers key columns so), as DataFusion can run it:
/// `unnest(generate_series(1, array_length(a, d)))`. Unnests in one select list advance
/// together, as set-returning functions do in Postgres.
fn generate_subscripts(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if f.over.is_some() || !is_call(f, "generate_subscripts") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(array), FunctionArg::Unnamed(dimension)] = list.args.as_slice()
    else {
        return None;
    };
    parse_expr(&format!(
        "unnest(generate_series(1, array_length({array}, {dimension})))"
    ))
}

/// `ARRAY(SELECT f(x) FROM unnest(a) x)` as `coalesce(array_transform(a, x -> f(x)),
/// make_array())`: each element of `a` through `f`, in order, and `{}` for a NULL `a`
/// (psql's `\d+`: `array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)`).
/// DataFusion cannot run a subquery over a function of the outer row.
fn array_of_unnest(expr: &Expr) -> Option<Expr> {
    let (select, item) = array_of_one_item(expr)?;
    if select.selection.is_some() {
        return None;
    }
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = &from.relation
    else {
        return None;
    };
    let is_unnest = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("unnest"));
    let ([FunctionArg::Unnamed(FunctionArgExpr::Expr(array))], true) =
        (args.args.as_slice(), is_unnest && from.joins.is_empty())
    else {
        return None;
    };
    // `unnest(a) x` names the element `x`; `unnest(a) t(x)` names it `x` too
    let element = match alias.columns.as_slice() {
        [] => &alias.name,
        [column] => &column.name,
        _ => return None,
    };
    // a subquery, or an aggregate over the elements, is not one value per element
    if columns_read(item, &[]).2 || has_aggregate(item) || has_window(item) {
        return None;
    }
    transformed_or_empty(&array.to_string(), &element.to_string(), &item.to_string())
}

/// `ARRAY(query)` where `query` is one select of one item, without grouping, `DISTINCT`,
/// `HAVING`, ordering or a limit (so its rows are its `FROM`'s, in order): the select and
/// its item.
fn array_of_one_item(expr: &Expr) -> Option<(&datafusion::sql::sqlparser::ast::Select, &Expr)> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let FunctionArguments::Subquery(query) = &f.args else {
        return None;
    };
    if !is_call(f, "array")
        || query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.having.is_some()
        || select.distinct.is_some()
        || !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
    {
        return None;
    }
    let [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }] =
        select.projection.as_slice()
    else {
        return None;
    };
    Some((select, item))
}

/// `coalesce(array_transform(array, parameter -> body), make_array())`: each element of
/// `array` through `body`, and `{}` for a NULL `array`, as `ARRAY(…)` of no rows is.
fn transformed_or_empty(array: &str, parameter: &str, body: &str) -> Option<Expr> {
    // DataFusion plans lambdas; sqlparser reads them in DuckDB's dialect
    let lambda = Parser::new(&datafusion::sql::sqlparser::dialect::DuckDbDialect {})
        .try_with_sql(&format!("array_transform({array}, {parameter} -> {body})"))
        .ok()?
        .parse_expr()
        .ok()?;
    let mut out = parse_expr("coalesce(NULL, make_array())")?;
    if let Expr::Function(c) = &mut out
        && let FunctionArguments::List(list) = &mut c.args
        && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) = list.args.first_mut()
    {
        *first = lambda;
    }
    Some(out)
}

/// Whether `f` calls `name` (unqualified or in `pg_catalog`).
fn is_call(f: &Function, name: &str) -> bool {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case(name))
}

/// `ARRAY(SELECT f(generate_series(a, b)))`, with no `FROM`, as
/// `coalesce(array_transform(generate_series(a, b), tarn_g -> f(tarn_g)), make_array())`
/// (Metabase's routine sync names unnamed arguments `ARRAY(SELECT 'arg' ||
/// generate_series(1, n))`): DataFusion's `generate_series` is the array of the values.
fn array_of_series(expr: &Expr) -> Option<Expr> {
    let (select, item) = array_of_one_item(expr)?;
    if !select.from.is_empty() || select.selection.is_some() {
        return None;
    }
    // the one generate_series call, replaced by the lambda's parameter
    let mut series = Vec::new();
    let mut body = item.clone();
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut body, |e| {
        if let Expr::Function(g) = e
            && is_call(g, "generate_series")
        {
            series.push(e.clone());
            *e = Expr::Identifier(Ident::new("tarn_g"));
        }
        ControlFlow::<()>::Continue(())
    });
    let [series] = series.as_slice() else {
        return None;
    };
    transformed_or_empty(&series.to_string(), "tarn_g", &body.to_string())
}

/// `array_length(a, d)` and `cardinality(a)` as the `int4` Postgres answers: DataFusion's
/// are unsigned 64-bit, and mixed with a signed number (`COALESCE(array_length(a, 1), 0)`)
/// they became a `numeric(20)` that `generate_series` refused (Metabase's routine sync).
fn int4_length(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if !(is_call(f, "array_length") || is_call(f, "cardinality")) || f.over.is_some() {
        return None;
    }
    parse_expr(&format!("CAST({expr} AS INT)"))
}

/// `array_fill(v, ARRAY[n])`, a one-dimensional array of `n` times `v`, as
/// `array_repeat(v, n)` (Metabase's routine sync).
fn array_fill(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if !is_call(f, "array_fill") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [
        FunctionArg::Unnamed(FunctionArgExpr::Expr(value)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Array(dims))),
    ] = list.args.as_slice()
    else {
        return None;
    };
    let [length] = dims.elem.as_slice() else {
        return None;
    };
    parse_expr(&format!("array_repeat({value}, CAST({length} AS BIGINT))"))
}

/// An interval literal with a Postgres time part (`INTERVAL '1 day 02:03:04'`,
/// `'-01:30'::interval`) written in the units DataFusion reads (`1 day 2 hours 3 minutes 4
/// seconds`); DataFusion refused the time part.
fn interval_literal(expr: &Expr) -> Option<Expr> {
    let text = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    match expr {
        Expr::Interval(interval)
            if interval.leading_field.is_none() && interval.last_field.is_none() =>
        {
            let words = interval_words(&text(&interval.value)?)?;
            let mut out = interval.clone();
            out.value = Box::new(Expr::value(Value::SingleQuotedString(words)));
            Some(Expr::Interval(out))
        }
        Expr::Cast {
            expr: inner,
            data_type:
                SqlDataType::Interval {
                    fields: None,
                    precision: None,
                },
            ..
        } => {
            let words = interval_words(&text(inner)?)?;
            parse_expr(&format!("INTERVAL '{}'", words.replace('\'', "''")))
        }
        _ => None,
    }
}

/// `text` with each `[-]H:M[:S[.f]]` part written as hours, minutes and seconds; `None`
/// when it has none.
fn interval_words(text: &str) -> Option<String> {
    if !text.contains(':') {
        return None;
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(|word| {
            let (sign, time) = match word.strip_prefix('-') {
                Some(rest) => ("-", rest),
                None => ("", word.strip_prefix('+').unwrap_or(word)),
            };
            let parts: Vec<&str> = time.split(':').collect();
            let digits = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
            let seconds = |p: &str| {
                let (whole, fraction) = p.split_once('.').unwrap_or((p, "0"));
                digits(whole) && digits(fraction)
            };
            match parts.as_slice() {
                // `02:03` is hours and minutes, `02:03.5` minutes and seconds
                [h, m] if digits(h) && digits(m) => {
                    format!("{sign}{h} hours {sign}{m} minutes")
                }
                [m, s] if digits(m) && seconds(s) => {
                    format!("{sign}{m} minutes {sign}{s} seconds")
                }
                [h, m, s] if digits(h) && digits(m) && seconds(s) => {
                    format!("{sign}{h} hours {sign}{m} minutes {sign}{s} seconds")
                }
                _ => word.to_owned(),
            }
        })
        .collect();
    Some(words.join(" "))
}

/// A number literal with an exponent (`1e3`, `2.5E-4`) written without one (`1000.0`,
/// `0.00025`), a numeric as in Postgres: DataFusion reads `1e3` as a decimal of negative
/// scale, which no Postgres type holds. One that needs more than 38 digits is a double.
fn exponent_literal(expr: &Expr) -> Option<Expr> {
    let Expr::Value(v) = expr else {
        return None;
    };
    let Value::Number(text, long) = &v.value else {
        return None;
    };
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let exponent: i64 = exponent.parse().ok()?;
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // the decimal point's place in `digits`
    let point = i64::try_from(whole.len()).ok()? + exponent;
    let plain = if point <= 0 {
        let zeros = usize::try_from(-point).ok()?;
        format!("0.{}{digits}", "0".repeat(zeros))
    } else {
        let point = usize::try_from(point).ok()?;
        if point >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    let significant = plain.trim_start_matches(['0', '.']).replace('.', "").len();
    if plain.len() > 40 || significant > 38 {
        return parse_expr(&format!("CAST('{text}' AS DOUBLE PRECISION)"));
    }
    Some(Expr::value(Value::Number(plain, *long)))
}

/// A number literal cast to a floating-point type (`CAST(1e100 AS double precision)`) as the
/// cast of its text: a Postgres client's `1e100` is a numeric, and a numeric of such a
/// scale converts to a double through a power of ten, inexactly (`1.0000000000000002e100`);
/// from its text it converts exactly, as in Postgres.
fn float_literal(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    let Expr::Value(v) = inner.as_ref() else {
        return None;
    };
    let Value::Number(number, _) = &v.value else {
        return None;
    };
    let is_float = matches!(
        data_type,
        SqlDataType::Float(_)
            | SqlDataType::Float4
            | SqlDataType::Float8
            | SqlDataType::Float32
            | SqlDataType::Float64
            | SqlDataType::Real
            | SqlDataType::Double(_)
            | SqlDataType::DoublePrecision
    );
    is_float.then(|| parse_expr(&format!("CAST('{number}' AS {data_type})")))?
}

/// A text literal cast to `bytea` (`'\x00ff'::bytea`) as the bytes Postgres reads from it:
/// `decode('00ff', 'hex')`. DataFusion's cast takes the text's own bytes (`\x00ff` was six
/// bytes). Both of Postgres's input forms are read: hex (`\x` then pairs of digits, spaces
/// between pairs allowed) and escape (`\\` a backslash, `\ooo` an octal byte). Text that is
/// neither stays as written.
fn bytea_literal(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        expr: inner,
        data_type: SqlDataType::Bytea,
        ..
    } = expr
    else {
        return None;
    };
    let Expr::Value(v) = inner.as_ref() else {
        return None;
    };
    let Value::SingleQuotedString(text) = &v.value else {
        return None;
    };
    let bytes = bytea_input(text)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parse_expr(&format!("decode('{hex}', 'hex')"))
}

/// A cast to a Postgres type Arrow has no type for, as the function that marks its result
/// so for the RowDescription (see `pg_functions`):
/// - `CAST(x AS varchar[(n)])` (`x::varchar`, `character varying`) as
///   `tarn_varchar(CAST(x AS text)[, n])`: the RowDescription said `text` (pgjdbc's
///   `getColumnTypeName`). Longer values are cut to `n` characters, as Postgres's cast does.
/// - `CAST(x AS json)` (`'[]'::json`) as `tarn_json(CAST(x AS text))`: text that must be
///   JSON (Metabase's routine sync).
fn marked_cast(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        kind: CastKind::Cast | CastKind::DoubleColon,
        expr: inner,
        data_type,
        array: false,
        format: None,
    } = expr
    else {
        return None;
    };
    let (function, length) = match data_type {
        SqlDataType::Varchar(length)
        | SqlDataType::CharacterVarying(length)
        | SqlDataType::CharVarying(length) => ("tarn_varchar", length.as_ref()),
        SqlDataType::JSON => ("tarn_json", None),
        _ => return None,
    };
    let length = match length {
        None => String::new(),
        Some(CharacterLength::IntegerLength { length, .. }) => format!(", {length}"),
        Some(CharacterLength::Max) => return None,
    };
    parse_expr(&format!("{function}(CAST({inner} AS text){length})"))
}

/// `json_agg(x [ORDER BY …]) [FILTER (…)]` as `tarn_json_array(array_agg(tarn_to_json(x)
/// [ORDER BY …]) [FILTER (…)])`: the JSON array of the values, in `array_agg`'s order, NULL
/// over no rows, as in Postgres (Metabase's routine sync lists each routine's parameters so).
fn json_agg(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if f.over.is_some() || !is_call(f, "json_agg") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(value))] = list.args.as_slice() else {
        return None;
    };
    let mut inner = f.clone();
    inner.name = ObjectName::from(vec![Ident::new("array_agg")]);
    let mut args = list.clone();
    args.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(parse_expr(
        &format!("tarn_to_json({value})"),
    )?))];
    inner.args = FunctionArguments::List(args);
    parse_expr(&format!("tarn_json_array({inner})"))
}

/// The bytes of Postgres's `bytea` input `text`; `None` if it is not valid input.
pub fn bytea_input(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        // pairs of hex digits, with white space allowed between pairs only
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut digits = hex.bytes();
        while let Some(high) = digits.next() {
            if high.is_ascii_whitespace() {
                continue;
            }
            let low = digits.next()?;
            let pair = [high, low];
            out.push(u8::from_str_radix(std::str::from_utf8(&pair).ok()?, 16).ok()?);
        }
        return Some(out);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'\\' {
            out.push(b);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', more @ ..] => {
                out.push(b'\\');
                rest = more;
            }
            [a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', more @ ..] => {
                out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
                rest = more;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `user`, Postgres's other spelling of `current_user`, as `session_user` (the crate turns
/// `current_user` into that, and leaves `user`, which DataFusion took for a column).
fn user_as_session_user(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return None;
    };
    (matches!(f.args, FunctionArguments::None)
        && name.quote_style.is_none()
        && name.value.eq_ignore_ascii_case("user"))
    .then(|| parse_expr("session_user"))?
}

/// Whether `expr` is `pg_proc.proargtypes`, an `oidvector` the crate holds as its text
/// (`23 23`), as Postgres writes it.
fn is_oidvector(expr: &Expr) -> bool {
    let name = match expr {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(name) => name,
            None => return false,
        },
        _ => return false,
    };
    name.value.eq_ignore_ascii_case("proargtypes")
}

/// `proargtypes` where an array is wanted, as `string_to_array(proargtypes, ' ')`: cast to
/// an array type (`proargtypes::regtype[]`, pgcli's function list) or given to an array
/// function (`array_length(p.proargtypes, 1)`, Metabase's routine sync).
fn oidvector_as_array(expr: &Expr) -> Option<Expr> {
    let as_array = |e: &Expr| format!("string_to_array({e}, ' ')");
    match expr {
        Expr::Cast {
            expr: inner,
            data_type: SqlDataType::Array(_),
            ..
        } if is_oidvector(inner) => {
            let Expr::Cast { data_type, .. } = expr else {
                return None;
            };
            parse_expr(&format!("CAST({} AS {data_type})", as_array(inner)))
        }
        Expr::Function(f) => {
            let name = f.name.0.last()?.as_ident()?.value.to_ascii_lowercase();
            if !matches!(
                name.as_str(),
                "array_length" | "array_upper" | "array_lower" | "cardinality" | "unnest"
            ) {
                return None;
            }
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            let (FunctionArg::Unnamed(FunctionArgExpr::Expr(first)), rest) =
                (list.args.first()?, &list.args[1..])
            else {
                return None;
            };
            if !is_oidvector(first) {
                return None;
            }
            let rest: Vec<String> = rest.iter().map(ToString::to_string).collect();
            let args = std::iter::once(as_array(first))
                .chain(rest)
                .collect::<Vec<_>>()
                .join(", ");
            parse_expr(&format!("{name}({args})"))
        }
        _ => None,
    }
}

/// The lookup of a domain's base type in asyncpg's type introspection: a recursive CTE that
/// follows `pg_type.typbasetype` from the outer type to the deepest base. It is correlated
/// and ends in `ORDER BY … LIMIT 1`, which DataFusion cannot decorrelate, so the whole
/// introspection query failed to plan and asyncpg could not decode an `int4[]`. It becomes
/// `_pg_domain_base_type(outer)`, the same chain followed over `pg_type`. Only this lookup,
/// as asyncpg writes it, is recognised.
fn domain_base_type(expr: &Expr) -> Option<Expr> {
    const LOOKUP: &str = "(WITH RECURSIVE typebases(oid, depth) AS (\
        SELECT t2.typbasetype AS oid, 0 AS depth FROM pg_type t2 WHERE t2.oid = {outer} \
        UNION ALL \
        SELECT t2.typbasetype AS oid, tb.depth + 1 AS depth FROM pg_type t2, typebases tb \
        WHERE tb.oid = t2.oid AND t2.typbasetype != 0) \
        SELECT oid FROM typebases ORDER BY depth DESC LIMIT 1)";
    let Expr::Subquery(query) = expr else {
        return None;
    };
    let with = query.with.as_ref().filter(|w| w.recursive)?;
    let [cte] = with.cte_tables.as_slice() else {
        return None;
    };
    let SetExpr::SetOperation { left, .. } = cte.query.body.as_ref() else {
        return None;
    };
    let SetExpr::Select(anchor) = left.as_ref() else {
        return None;
    };
    let Some(Expr::BinaryOp {
        op: BinaryOperator::Eq,
        right: outer,
        ..
    }) = &anchor.selection
    else {
        return None;
    };
    // as the crate's rules leave it: tables qualified, `!=` as `<>`
    let normal = |sql: String| sql.replace("pg_catalog.", "").replace("!=", "<>");
    let expected = parse_expr(&LOOKUP.replace("{outer}", &outer.to_string()))?;
    (normal(expr.to_string()) == normal(expected.to_string()))
        .then(|| parse_expr(&format!("_pg_domain_base_type({outer})")))
        .flatten()
}

/// `oids::regtype[]::text[]` (or of `COALESCE(a::regtype[], b::regtype[])`, pgcli's
/// function list) as `_pg_type_names(oids)`: the type names, as Postgres writes a regtype.
/// The crate holds a regtype as its number, so the text was `{25}` where Postgres says
/// `{text}`.
fn type_names_as_text(expr: &Expr) -> Option<Expr> {
    let is_array_of = |t: &SqlDataType, name: &str| {
        matches!(t, SqlDataType::Array(_))
            && t.to_string()
                .to_ascii_lowercase()
                .trim_end_matches("[]")
                .ends_with(name)
    };
    let Expr::Cast {
        expr: inner,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    if !is_array_of(data_type, "text") {
        return None;
    }
    let regtypes =
        |e: &Expr| matches!(e, Expr::Cast { data_type, .. } if is_array_of(data_type, "regtype"));
    let inner = match inner.as_ref() {
        Expr::Nested(e) => e.as_ref(),
        e => e,
    };
    let all_regtypes = match inner {
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("coalesce") => {
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            list.args
                .iter()
                .all(|a| matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if regtypes(e)))
        }
        e => regtypes(e),
    };
    all_regtypes.then(|| parse_expr(&format!("_pg_type_names({inner})")))?
}

/// `pg_type`'s function columns (`typinput`, …), which the crate holds as the function's
/// name, and so Postgres displays them.
const REGPROC_NAME_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
];

/// `typinput = 'pg_catalog.array_in'::regproc` (pgjdbc's type cache and `getTypeInfo`) as
/// `typinput = 'array_in'`. The crate turns the cast into the OID of a `pg_proc` row and
/// holds `typinput` as the function's name, so the comparison cast `boolin` to a number
/// and failed; compared by name it is Postgres's answer.
fn regproc_by_name(expr: &Expr) -> Option<Expr> {
    let Expr::BinaryOp { left, op, right } = expr else {
        return None;
    };
    if !matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
        return None;
    }
    let is_name_column = |e: &Expr| {
        let name = match e {
            Expr::Identifier(i) => i,
            Expr::CompoundIdentifier(parts) => parts.last()?,
            _ => return None,
        };
        REGPROC_NAME_COLUMNS
            .contains(&name.value.to_ascii_lowercase().as_str())
            .then_some(())
    };
    // the crate's `(SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'name')`, or that
    // as a lookup aggregate (`first_value(oid)`, [`CatalogScalarSubqueries`])
    let proc_name = |e: &Expr| {
        let Expr::Subquery(query) = e else {
            return None;
        };
        let text = query.to_string();
        let name = text
            .strip_prefix("SELECT oid FROM pg_catalog.pg_proc WHERE proname = '")
            .or_else(|| {
                text.strip_prefix(
                    "SELECT first_value(oid) FROM pg_catalog.pg_proc WHERE proname = '",
                )
            })?
            .strip_suffix('\'')?;
        let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
        (!name.contains('\'')).then(|| name.to_owned())
    };
    let (column, name) = match (is_name_column(left), proc_name(right)) {
        (Some(()), Some(name)) => (left, name),
        _ => (
            right,
            proc_name(left).filter(|_| is_name_column(right).is_some())?,
        ),
    };
    parse_expr(&format!("{column} {op} '{name}'"))
}

/// `(composite).field` as `get_field(composite, 'field')`, which DataFusion plans (its SQL
/// planner takes `.field` only after a column name): pgjdbc's
/// `(information_schema._pg_expandarray(i.indkey)).n` and `(result.keys).x`. An unquoted
/// field name is folded to lower case, as Postgres folds identifiers.
fn field_of_composite(expr: &Expr) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::AccessExpr;
    let Expr::CompoundFieldAccess { root, access_chain } = expr else {
        return None;
    };
    // `t.a[1]` is a column of `t`, subscripted: Postgres reads a field only of `(…)`
    if !matches!(root.as_ref(), Expr::Nested(_)) {
        return None;
    }
    let mut out = root.to_string();
    let mut rewritten = false;
    for access in access_chain {
        match access {
            AccessExpr::Dot(Expr::Identifier(field)) => {
                let name = match field.quote_style {
                    Some(_) => field.value.clone(),
                    None => field.value.to_lowercase(),
                };
                out = format!("get_field({out}, '{}')", name.replace('\'', "''"));
                rewritten = true;
            }
            other => out.push_str(&other.to_string()),
        }
    }
    if !rewritten {
        return None;
    }
    parse_expr(&out)
}

/// `[information_schema.]_pg_expandarray(a)` as `unnest(_pg_expandarray(a))`: the function
/// gives the `(x, n)` rows as one array, and `unnest` makes them the set Postgres returns.
fn expand_array(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if f.over.is_some() || !is_call(f, "_pg_expandarray") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(array)] = list.args.as_slice() else {
        return None;
    };
    parse_expr(&format!("unnest(_pg_expandarray({array}))"))
}

/// Scalar subqueries over catalog tables, anywhere in a statement, made plannable. Clients
/// write them to look one row up (`(SELECT typname FROM pg_type WHERE oid = a.atttypid)`),
/// and DataFusion decorrelates a correlated scalar subquery only when it aggregates. So one
/// whose select list is a single plain expression becomes `first_value(expr)`: the same
/// answer for the zero or one row such a lookup finds (NULL for none). Conditions in its
/// `WHERE` that read only the outer query's columns (SQLAlchemy's
/// `WHERE pg_attribute.atthasdef AND …`), which DataFusion cannot decorrelate, move out into
/// `CASE WHEN … THEN (subquery) END`, again the same answer. Subqueries over user tables
/// are never touched: there a subquery of several rows must fail with 21000.
#[derive(Debug)]
struct CatalogScalarSubqueries;

impl SqlStatementRewriteRule for CatalogScalarSubqueries {
    fn rewrite(&self, mut statement: Statement) -> Statement {
        let _ = VisitMut::visit(&mut statement, &mut ScalarSubqueries);
        statement
    }
}

struct ScalarSubqueries;

impl VisitorMut for ScalarSubqueries {
    type Break = ();

    // A lookup DataFusion cannot decorrelate even so (psql's `\d` compares collations with
    // `<>` across the two queries) gets the crate's rewrite when it is a select-list item on
    // its own, as before: NULL. Elsewhere it stays as written and fails to plan, as before.
    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let catalog = reads_only_catalog(query);
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        for item in &mut select.projection {
            if catalog
                && let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                && let Some(typed) = oid_array_agg(expr)
            {
                *expr = typed;
            }
            // What is rewritten keeps the name Postgres gives it (`collname`, `array`,
            // `obj_description`), not the rewrite's (`first_value`, `coalesce`).
            if let SelectItem::UnnamedExpr(expr) = item
                && let Some(name) = name_of_rewritten(expr)
            {
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::with_quote('"', name),
                };
            }
            let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item
            else {
                continue;
            };
            if let Expr::Subquery(subquery) = expr
                && reads_only_catalog(subquery)
                && lookup_as_aggregate(subquery).is_none()
                && !decorrelatable(subquery)
                && let Some(rewritten) = crate_rewrite(subquery)
            {
                *expr = rewritten;
            }
        }
        ControlFlow::Continue(())
    }

    // After the children, so that nested subqueries are rewritten first and what this one
    // becomes is not visited again.
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(lookup) = function_lookup(expr) {
            *expr = Expr::Subquery(Box::new(lookup));
        }
        match expr {
            Expr::Subquery(query) if reads_only_catalog(query) => {
                if let Some(rewritten) = lookup_as_aggregate(query) {
                    *expr = rewritten;
                }
            }
            Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("array")
                    && let FunctionArguments::Subquery(query) = &f.args
                    && reads_only_catalog(query) =>
            {
                if let Some(rewritten) = array_as_aggregate(query) {
                    *expr = rewritten;
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Catalog columns that are `oid`s.
const OID_COLUMNS: &[&str] = &[
    "oid",
    "atttypid",
    "attrelid",
    "typelem",
    "typarray",
    "typbasetype",
    "typrelid",
    "typnamespace",
    "reltype",
    "relnamespace",
    "prorettype",
    "pronamespace",
    "conrelid",
    "confrelid",
    "contypid",
    "indexrelid",
    "indrelid",
    "classoid",
    "objoid",
];

/// `array_agg(c)` of an `oid` column of the catalog as `CAST(array_agg(c) AS oid[])`:
/// DataFusion's `array_agg` drops the column's type, so the result was an `int4[]` where
/// Postgres has an `oid[]` (asyncpg's type introspection reads one, and would have to
/// introspect `int4[]` in turn).
fn oid_array_agg(expr: &Expr) -> Option<Expr> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if !is_call(f, "array_agg") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
        return None;
    };
    let column = match arg {
        Expr::Identifier(i) => i,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    OID_COLUMNS
        .contains(&column.value.to_ascii_lowercase().as_str())
        .then(|| parse_expr(&format!("CAST({expr} AS oid[])")))
        .flatten()
}

/// The OIDs of the catalogs `obj_description(oid, catalog)` names: fixed in PostgreSQL
/// (its catalog headers), and the `classoid`s of the descriptions tarn ships.
const CATALOG_OIDS: &[(&str, u32)] = &[
    ("pg_am", 2601),
    ("pg_cast", 2605),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_conversion", 2607),
    ("pg_database", 1262),
    ("pg_extension", 3079),
    ("pg_language", 2612),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_operator", 2617),
    ("pg_opfamily", 2753),
    ("pg_proc", 1255),
    ("pg_tablespace", 1213),
    ("pg_trigger", 2620),
    ("pg_ts_config", 3602),
    ("pg_ts_dict", 3600),
    ("pg_ts_parser", 3601),
    ("pg_ts_template", 3764),
    ("pg_type", 1247),
];

/// `obj_description(oid, 'catalog')`, `col_description(table, column)` and
/// `shobj_description(oid, 'catalog')` as the lookups in `pg_description` /
/// `pg_shdescription` that Postgres defines them as; `pg_table_is_visible(oid)` as the
/// lookup in [`table_visibility`].
fn function_lookup(expr: &Expr) -> Option<Query> {
    let Expr::Function(f) = expr else {
        return None;
    };
    let name = f.name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let catalog = |e: &Expr| -> Option<u32> {
        let Expr::Value(v) = e else { return None };
        let Value::SingleQuotedString(text) = &v.value else {
            return None;
        };
        let text = text.strip_prefix("pg_catalog.").unwrap_or(text);
        CATALOG_OIDS
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, oid)| *oid)
    };
    let (table, condition) = match (name.as_str(), args.as_slice()) {
        ("obj_description", [object, class]) => (
            "pg_description",
            format!(
                "tarn_d.objoid = {object} AND tarn_d.classoid = {} AND tarn_d.objsubid = 0",
                catalog(class)?
            ),
        ),
        ("col_description", [table, column]) => {
            let condition = format!("tarn_d.classoid = 1259 AND tarn_d.objsubid = {column}");
            if let Some(name) = relation_name_cast(table) {
                return described_relation(name, &condition);
            }
            (
                "pg_description",
                format!("tarn_d.objoid = {table} AND {condition}"),
            )
        }
        ("shobj_description", [object, class]) => (
            "pg_shdescription",
            format!(
                "tarn_d.objoid = {object} AND tarn_d.classoid = {}",
                catalog(class)?
            ),
        ),
        ("pg_table_is_visible", [relation]) => return table_visibility(relation),
        ("pg_get_viewdef", [relation] | [relation, _]) => return view_definition(relation),
        _ => return None,
    };
    let sql =
        format!("SELECT tarn_d.description FROM pg_catalog.{table} AS tarn_d WHERE {condition}");
    parse_query(&sql)
}

/// The text `x` of `CAST(x AS regclass)` (under a cast to `oid` or not) when `x` is text
/// computed in the statement (Metabase's `format('%I.%I', schema, table)::regclass`), which
/// the crate would cast to a number and fail on; `None` for anything else (`c.oid::regclass`
/// is a number already, a literal the crate looks up itself).
fn relation_name_cast(expr: &Expr) -> Option<&Expr> {
    let is = |data_type: &SqlDataType, name: &str| {
        data_type.to_string().to_ascii_lowercase().ends_with(name)
    };
    let expr = match expr {
        Expr::Cast {
            expr, data_type, ..
        } if is(data_type, "oid") => expr.as_ref(),
        other => other,
    };
    let Expr::Cast {
        expr: text,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    let computed_text = match text.as_ref() {
        Expr::Function(_) => true,
        Expr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => true,
        Expr::Cast { data_type, .. } => is(data_type, "text"),
        _ => false,
    };
    (is(data_type, "regclass") && computed_text).then_some(text.as_ref())
}

/// The description lookup (`condition` on `tarn_d`) of the relation named by the text
/// `name`, `schema.relation` as `format('%I.%I', …)` writes them, as Postgres reads a
/// regclass written so.
/// The qualified names are a column of a derived table: DataFusion decorrelates an
/// equality with one inner column, not with an expression over two inner tables.
fn described_relation(name: &Expr, condition: &str) -> Option<Query> {
    parse_query(&format!(
        "SELECT tarn_d.description FROM pg_catalog.pg_description AS tarn_d \
         JOIN (SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name \
               FROM pg_catalog.pg_class AS c \
               JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid) AS tarn_r \
         ON tarn_d.objoid = tarn_r.oid WHERE tarn_r.name = {name} AND {condition}"
    ))
}

/// `pg_get_viewdef(relation [, pretty])`: the view's query, from `pg_views`; NULL for an
/// OID that names no view, as in Postgres.
fn view_definition(relation: &Expr) -> Option<Query> {
    parse_query(&format!(
        "SELECT tarn_v.definition FROM pg_catalog.pg_views AS tarn_v \
         JOIN (SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class AS c \
               JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid) AS tarn_r \
         ON tarn_v.schemaname = tarn_r.nspname AND tarn_v.viewname = tarn_r.relname \
         WHERE tarn_r.oid = {relation}"
    ))
}

/// `pg_table_is_visible(relation)` as Postgres defines it: the relation's schema is on the
/// search path (`current_schemas(true)`, with `pg_catalog`), and no relation of the same
/// name is in a schema before it there. NULL for an OID that names no relation. (The
/// crate's answers true for every relation, so psql's `\dt` listed every schema's tables.)
fn table_visibility(relation: &Expr) -> Option<Query> {
    let sql = format!(
        "SELECT bool_and(array_position(current_schemas(true), tarn_n.nspname) IS NOT NULL \
         AND coalesce(array_position(current_schemas(true), tarn_n2.nspname) \
         >= array_position(current_schemas(true), tarn_n.nspname), true)) \
         FROM pg_catalog.pg_class AS tarn_c \
         JOIN pg_catalog.pg_namespace AS tarn_n ON tarn_n.oid = tarn_c.relnamespace \
         JOIN pg_catalog.pg_class AS tarn_c2 ON tarn_c2.relname = tarn_c.relname \
         JOIN pg_catalog.pg_namespace AS tarn_n2 ON tarn_n2.oid = tarn_c2.relnamespace \
         WHERE tarn_c.oid = {relation}"
    );
    parse_query(&sql)
}

/// The name Postgres gives a select-list item that [`ScalarSubqueries`] may rewrite (a
/// catalog subquery, `ARRAY(…)` of one, a function that becomes a lookup); `None` for
/// other items.
fn name_of_rewritten(expr: &Expr) -> Option<String> {
    let rewritten = match expr {
        Expr::Subquery(query) => reads_only_catalog(query),
        Expr::Function(f) => {
            matches!(&f.args, FunctionArguments::Subquery(q) if reads_only_catalog(q))
                || function_lookup(expr).is_some()
        }
        _ => false,
    };
    if rewritten {
        crate::pg_names::strength_name(expr)
    } else {
        None
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

/// Aggregate functions: a select list holding one is already an aggregate.
const AGGREGATES: &[&str] = &[
    "any_value",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "count",
    "every",
    "first_value",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_object_agg",
    "last_value",
    "max",
    "min",
    "stddev",
    "string_agg",
    "sum",
    "variance",
];

/// `query` as `first_value` of its single expression, with the outer-only conditions of its
/// `WHERE` moved out into a `CASE`; `None` when it is not such a lookup.
fn lookup_as_aggregate(query: &Query) -> Option<Expr> {
    as_aggregate(query, "first_value", true)
}

/// `ARRAY(query)` as `coalesce((SELECT array_agg(expr) …), make_array())`: the same
/// rows in the same order, and `{}` for none.
fn array_as_aggregate(query: &Query) -> Option<Expr> {
    let aggregated = as_aggregate(query, "array_agg", false)?;
    parse_expr(&format!("coalesce({aggregated}, make_array())"))
}

/// `query`, a select of one plain expression, as a subquery of `aggregate` of it, with
/// the outer-only conditions of its `WHERE` moved out into a `CASE`; `None` when it is not
/// one, or DataFusion could not decorrelate it even so. `LIMIT 1` is allowed where taking
/// the first is what `aggregate` does.
fn as_aggregate(query: &Query, aggregate: &str, limit_one: bool) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [item] = select.projection.as_slice() else {
        return None;
    };
    let (SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) = item
    else {
        return None;
    };
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    let limited = match &query.limit_clause {
        None => false,
        Some(LimitClause::LimitOffset {
            limit: Some(limit),
            offset: None,
            limit_by,
        }) if limit_one && limit.to_string() == "1" && limit_by.is_empty() => false,
        Some(_) => true,
    };
    if grouped
        || limited
        || select.having.is_some()
        || query.with.is_some()
        || query.fetch.is_some()
        || has_aggregate(value)
    {
        return None;
    }
    let order = match &query.order_by {
        None => String::new(),
        Some(OrderBy {
            kind: OrderByKind::Expressions(exprs),
            interpolate: None,
        }) => {
            // `ORDER BY 1` and `ORDER BY <alias>` name the selected expression, which an
            // aggregate's ORDER BY must spell out.
            let alias = match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
                _ => None,
            };
            let exprs: Vec<OrderByExpr> = exprs
                .iter()
                .map(|o| {
                    let names_value = match &o.expr {
                        Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n == "1"),
                        Expr::Identifier(i) => alias.as_deref() == Some(&*i.value.to_lowercase()),
                        _ => false,
                    };
                    let mut o = o.clone();
                    if names_value {
                        o.expr = value.clone();
                    }
                    o
                })
                .collect();
            format!(" ORDER BY {}", display_comma_separated(&exprs))
        }
        Some(_) => return None,
    };
    if reads_an_empty_table(&select.from) {
        return Some(Expr::Value(Value::Null.into()));
    }
    let mut inner = Query::clone(query);
    inner.order_by = None;
    inner.limit_clause = None;
    let SetExpr::Select(select) = inner.body.as_mut() else {
        return None;
    };
    select.projection = vec![SelectItem::UnnamedExpr(parse_expr(&format!(
        "{aggregate}({value}{order})"
    ))?)];
    let mut outer = Vec::new();
    if let Some(selection) = select.selection.take() {
        let names = relation_names(&select.from)?;
        let mut kept = Vec::new();
        for conjunct in conjuncts(selection) {
            match classify(&conjunct, &names) {
                Reads::Outer => outer.push(conjunct),
                Reads::Inner | Reads::Equality => kept.push(conjunct),
                Reads::Other => return None,
            }
        }
        select.selection = kept.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::And,
            right: Box::new(b),
        });
    }
    let lookup = Expr::Subquery(Box::new(inner));
    if outer.is_empty() {
        return Some(lookup);
    }
    let condition = outer
        .iter()
        .map(|c| format!("({c})"))
        .collect::<Vec<_>>()
        .join(" AND ");
    parse_expr(&format!("CASE WHEN {condition} THEN {lookup} END"))
}

/// Catalog tables that are empty in tarn, which has no column defaults and no sequences.
/// A lookup that must find a row in one is NULL; DataFusion could not plan some of them
/// (SQLAlchemy's identity lookup nests a `regclass` cast, itself a subquery, in its `WHERE`).
const EMPTY_TABLES: &[&str] = &["pg_attrdef", "pg_sequence"];

/// Whether a row of `from` needs a row of one of the [`EMPTY_TABLES`].
fn reads_an_empty_table(from: &[TableWithJoins]) -> bool {
    let empty = |factor: &TableFactor| {
        let TableFactor::Table { name, .. } = factor else {
            return false;
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| i.value.to_lowercase())
            .collect();
        matches!(parts.as_slice(), [schema, table]
            if schema == "pg_catalog" && EMPTY_TABLES.contains(&table.as_str()))
    };
    from.iter().any(|table| {
        empty(&table.relation)
            || table.joins.iter().any(|join| {
                matches!(
                    join.join_operator,
                    JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                ) && empty(&join.relation)
            })
    })
}

pub(crate) fn parse_query(sql: &str) -> Option<Query> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?.pop()? {
        Statement::Query(query) => Some(*query),
        _ => None,
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

fn display_comma_separated(items: &[impl std::fmt::Display]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `expr` calls a window function.
fn has_window(expr: &Expr) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(e, Expr::Function(f) if f.over.is_some()) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Whether `expr` calls an aggregate function (not as a window function).
fn has_aggregate(expr: &Expr) -> bool {
    let found = expr.visit(&mut FunctionVisitor(|f: &Function| {
        f.over.is_none()
            && f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|name| AGGREGATES.contains(&name.value.to_ascii_lowercase().as_str()))
    }));
    found.is_break()
}

struct FunctionVisitor<F>(F);

impl<F: FnMut(&Function) -> bool> Visitor for FunctionVisitor<F> {
    type Break = ();
    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) if (self.0)(f) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// The names a subquery's `FROM` gives its relations (aliases, else table names), lowercase;
/// `None` if one of them has no name that columns can be told apart by.
fn relation_names(from: &[TableWithJoins]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for table in from {
        for factor in
            std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation))
        {
            let name = match factor {
                TableFactor::Table {
                    alias: Some(alias), ..
                }
                | TableFactor::Derived {
                    alias: Some(alias), ..
                } => alias.name.value.clone(),
                TableFactor::Table {
                    name, alias: None, ..
                } => name.0.last()?.as_ident()?.value.clone(),
                _ => return None,
            };
            names.push(name.to_lowercase());
        }
    }
    Some(names)
}

/// `expr` split at its top-level `AND`s.
fn conjuncts(expr: Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(*left);
            all.extend(conjuncts(*right));
            all
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner)
        }
        other => vec![other],
    }
}

/// How a condition in a subquery's `WHERE` reads the rows of the queries around it.
#[derive(Debug, PartialEq)]
enum Reads {
    /// Only the subquery's own columns.
    Inner,
    /// Only outer columns: it can move out of the subquery.
    Outer,
    /// `inner = outer`, which DataFusion decorrelates.
    Equality,
    /// Anything else with outer columns (or a subquery), which it cannot.
    Other,
}

/// Which columns `expr` reads: (the subquery's own, outer, whether it holds a subquery). A
/// column is outer when its qualifier is not one of `inner`; unqualified ones count as inner.
fn columns_read(expr: &Expr, inner: &[String]) -> (usize, usize, bool) {
    struct Columns<'a> {
        inner: &'a [String],
        counts: (usize, usize, bool),
    }
    impl Visitor for Columns<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_) => self.counts.0 += 1,
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let qualifier = parts[parts.len() - 2].value.to_lowercase();
                    if self.inner.contains(&qualifier) {
                        self.counts.0 += 1;
                    } else {
                        self.counts.1 += 1;
                    }
                }
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    self.counts.2 = true;
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut columns = Columns {
        inner,
        counts: (0, 0, false),
    };
    let _ = expr.visit(&mut columns);
    columns.counts
}

fn classify(conjunct: &Expr, inner: &[String]) -> Reads {
    match columns_read(conjunct, inner) {
        (_, _, true) => Reads::Other,
        (_, 0, false) => Reads::Inner,
        (0, _, false) => Reads::Outer,
        _ => {
            if let Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = conjunct
            {
                let sides = (columns_read(left, inner), columns_read(right, inner));
                if matches!(
                    sides,
                    ((0, 1.., _), (1.., 0, _)) | ((1.., 0, _), (0, 1.., _))
                ) {
                    return Reads::Equality;
                }
            }
            Reads::Other
        }
    }
}

/// Whether DataFusion can decorrelate `query` as written: every condition of its `WHERE`
/// reads only its own columns or equates one of them with an outer one.
fn decorrelatable(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let Some(selection) = &select.selection else {
        return true;
    };
    let Some(names) = relation_names(&select.from) else {
        return false;
    };
    conjuncts(selection.clone())
        .iter()
        .all(|c| matches!(classify(c, &names), Reads::Inner | Reads::Equality))
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
            .parse(sql, true)
            .expect("parses")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn varchar_and_json_casts_and_json_agg_are_rewritten() {
        assert_eq!(
            parsed("SELECT CAST(a AS varchar(3)) AS v, b::character varying AS w FROM t"),
            "SELECT tarn_varchar(CAST(a AS TEXT), 3) AS v, tarn_varchar(CAST(b AS TEXT)) AS w \
             FROM t"
        );
        // a try_cast, and a cast to text, stay
        assert_eq!(
            parsed("SELECT TRY_CAST(a AS varchar) AS v, a::text AS w FROM t"),
            "SELECT TRY_CAST(a AS VARCHAR) AS v, a::TEXT AS w FROM t"
        );
        assert_eq!(
            parsed(
                "SELECT COALESCE(json_agg(x ORDER BY y) FILTER (WHERE x > 0), '[]'::json) AS j \
                 FROM t"
            ),
            "SELECT COALESCE(tarn_json_array(array_agg(tarn_to_json(x) ORDER BY y) \
             FILTER (WHERE x > 0)), tarn_json(CAST('[]' AS TEXT))) AS j FROM t"
        );
    }

    #[test]
    fn subqueries_over_user_tables_stay_as_written() {
        let sql = "SELECT n.k, (SELECT count(*) FROM c WHERE c.k = n.k) AS m FROM n";
        assert_eq!(parsed(sql), sql);
        let sql = "SELECT (SELECT name FROM demo.nation) AS one";
        assert_eq!(parsed(sql), sql);
    }

    #[test]
    fn catalog_lookups_become_aggregates() {
        // in a select list
        assert_eq!(
            parsed(
                "SELECT c.relname, (SELECT d.description FROM pg_catalog.pg_description d \
                 WHERE d.objoid = c.oid) AS comment FROM pg_catalog.pg_class c"
            ),
            "SELECT c.relname, (SELECT first_value(d.description) FROM pg_catalog.pg_description d \
             WHERE d.objoid = c.oid) AS comment FROM pg_catalog.pg_class c"
        );
        // in a CASE, with a condition on the outer row only (as SQLAlchemy writes them)
        assert_eq!(
            parsed(
                "SELECT CASE WHEN a.attnum > 0 THEN (SELECT d.description \
                 FROM pg_catalog.pg_description d WHERE a.attnum > 0 AND d.objoid = a.attrelid \
                 AND d.objsubid = a.attnum) END FROM pg_catalog.pg_attribute a"
            ),
            "SELECT CASE WHEN a.attnum > 0 THEN CASE WHEN (a.attnum > 0) THEN (SELECT \
             first_value(d.description) FROM pg_catalog.pg_description d WHERE \
             d.objoid = a.attrelid AND d.objsubid = a.attnum) END END FROM pg_catalog.pg_attribute a"
        );
        // tarn has no column defaults: a lookup in pg_attrdef finds nothing
        assert_eq!(
            parsed(
                "SELECT CASE WHEN a.atthasdef THEN (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) \
                 FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) END \
                 FROM pg_catalog.pg_attribute a"
            ),
            "SELECT CASE WHEN a.atthasdef THEN NULL END FROM pg_catalog.pg_attribute a"
        );
        // ORDER BY … LIMIT 1 picks the first
        assert_eq!(
            parsed(
                "SELECT (SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid \
                 ORDER BY t.typname DESC LIMIT 1) FROM pg_catalog.pg_attribute a"
            ),
            "SELECT (SELECT first_value(t.typname ORDER BY t.typname DESC) FROM pg_catalog.pg_type t \
             WHERE t.oid = a.atttypid) AS \"typname\" FROM pg_catalog.pg_attribute a"
        );
        // aggregates, groups and other limits stay as written
        for sql in [
            "SELECT (SELECT count(*) FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) AS n FROM pg_catalog.pg_attribute a",
            "SELECT (SELECT t.typname FROM pg_catalog.pg_type t GROUP BY t.typname) AS n FROM pg_catalog.pg_attribute a",
            "SELECT (SELECT t.typname FROM pg_catalog.pg_type t LIMIT 2) AS n FROM pg_catalog.pg_attribute a",
        ] {
            assert_eq!(parsed(sql), sql);
        }
    }

    #[test]
    fn generate_subscripts_becomes_an_unnest() {
        assert_eq!(
            parsed(
                "SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) FROM pg_catalog.pg_index i"
            ),
            "SELECT unnest(i.indkey), unnest(generate_series(1, array_length(i.indkey, 1))) \
             AS \"generate_subscripts\" FROM pg_catalog.pg_index i"
        );
        // with a subquery, and a parameter for the dimension
        assert_eq!(
            parsed(
                "SELECT k FROM (SELECT generate_subscripts(i.indkey, $1) AS k \
                 FROM pg_catalog.pg_index i) AS s"
            ),
            "SELECT k FROM (SELECT unnest(generate_series(1, array_length(i.indkey, $1))) AS k \
             FROM pg_catalog.pg_index i) AS s"
        );
    }

    #[test]
    fn lookups_datafusion_cannot_decorrelate_are_null_in_a_select_list() {
        // psql's \d: `<>` between the two queries
        assert_eq!(
            parsed(
                "SELECT a.attname, (SELECT c.collname FROM pg_catalog.pg_collation c, \
                 pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid \
                 AND a.attcollation <> t.typcollation) AS attcollation FROM pg_catalog.pg_attribute a"
            ),
            "SELECT a.attname, NULL AS attcollation FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn catalog_arrays_become_array_agg() {
        assert_eq!(
            parsed(
                "SELECT r.rolname, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m \
                 JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid \
                 ORDER BY 1) AS memberof FROM pg_catalog.pg_roles r"
            ),
            "SELECT r.rolname, coalesce((SELECT array_agg(b.rolname ORDER BY b.rolname) \
             FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) \
             WHERE m.member = r.oid), make_array()) AS memberof FROM pg_catalog.pg_roles r"
        );
        // unnamed, it keeps Postgres' name
        assert_eq!(
            parsed("SELECT ARRAY(SELECT n.nspname FROM pg_catalog.pg_namespace n)"),
            "SELECT coalesce((SELECT array_agg(n.nspname) FROM pg_catalog.pg_namespace n), \
             make_array()) AS \"array\""
        );
    }

    #[test]
    fn regproc_columns_compare_by_name() {
        // pgjdbc's type cache
        assert_eq!(
            parsed(
                "SELECT typinput='pg_catalog.array_in'::regproc AS is_array FROM pg_catalog.pg_type"
            ),
            "SELECT typinput = 'array_in' AS is_array FROM pg_catalog.pg_type"
        );
        assert_eq!(
            parsed(
                "SELECT typinput='pg_catalog.array_in'::regproc AS is_array FROM pg_catalog.pg_type \
                 LEFT JOIN (SELECT ns.oid AS nspoid, r.r FROM pg_namespace AS ns JOIN (SELECT s.r, \
                 (current_schemas(false))[s.r] AS nspname FROM generate_series(1, 2) AS s(r)) AS r \
                 USING (nspname)) AS sp ON sp.nspoid = typnamespace"
            ),
            "SELECT typinput = 'array_in' AS is_array FROM pg_catalog.pg_type LEFT JOIN (SELECT \
             ns.oid AS nspoid, r.r FROM pg_catalog.pg_namespace AS ns JOIN (SELECT s.r, \
             (current_schemas(false))[s.r] AS nspname FROM generate_series(1, 2) AS s (r)) AS r \
             USING(nspname)) AS sp ON sp.nspoid = typnamespace"
        );
        assert_eq!(
            parsed("SELECT 1 FROM pg_catalog.pg_type t WHERE 'boolin'::regproc <> t.typinput"),
            "SELECT 1 FROM pg_catalog.pg_type t WHERE t.typinput <> 'boolin'"
        );
    }

    #[test]
    fn columns_keep_the_names_postgres_gives_them() {
        assert_eq!(
            parsed("SELECT current_user, user, session_user"),
            "SELECT session_user AS \"current_user\", session_user AS \"user\", session_user"
        );
        assert_eq!(
            parsed(
                "SELECT (SELECT typname FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) FROM pg_catalog.pg_attribute a"
            ),
            "SELECT (SELECT first_value(typname) FROM pg_catalog.pg_type t WHERE t.oid = \
             a.atttypid) AS \"typname\" FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn exponent_literals_are_plain_numerics() {
        assert_eq!(
            parsed("SELECT 1e3 AS a, 2.5E-4 AS b, 1.5e1 AS c, 1e100 AS d, x * 1e6 AS e FROM t"),
            "SELECT 1000.0 AS a, 0.00025 AS b, 15.0 AS c, CAST('1e100' AS DOUBLE PRECISION) \
             AS d, x * 1000000.0 AS e FROM t"
        );
    }

    #[test]
    fn interval_time_parts_become_units() {
        assert_eq!(
            parsed(
                "SELECT INTERVAL '1 day 02:03:04' AS a, '-01:30'::interval AS b, INTERVAL '2 hours' AS c"
            ),
            "SELECT INTERVAL '1 day 02 hours 03 minutes 04 seconds' AS a, \
             INTERVAL '-01 hours -30 minutes' AS b, INTERVAL '2 hours' AS c"
        );
        // minutes and seconds; with fields the text is read as Postgres reads it there
        assert_eq!(
            parsed("SELECT INTERVAL '02:03.5' AS a, '02:03'::interval minute to second AS b"),
            "SELECT INTERVAL '02 minutes 03.5 seconds' AS a, \
             '02:03'::INTERVAL MINUTE TO SECOND AS b"
        );
    }

    #[test]
    fn float_casts_of_literals_read_the_text() {
        assert_eq!(
            parsed("SELECT CAST(1e100 AS double precision) AS v, 1.5::real, CAST(2 AS numeric)"),
            "SELECT CAST('1e100' AS DOUBLE PRECISION) AS v, CAST('1.5' AS REAL), \
             CAST(2 AS NUMERIC)"
        );
    }

    #[test]
    fn series_are_sets_and_arrays_of_series_are_arrays() {
        // Metabase's routine sync
        assert_eq!(
            parsed(
                "SELECT unnest(COALESCE(p.proargnames::text[], ARRAY(SELECT 'arg' || \
                 generate_series(1, array_length(p.proargtypes, 1))))) AS param_name, \
                 array_fill('i'::text, ARRAY[3]) AS modes, \
                 generate_series(1, 3) AS param_position FROM pg_catalog.pg_proc p"
            ),
            "SELECT unnest(COALESCE(p.proargnames::TEXT[], coalesce(array_transform(\
             generate_series(1, CAST(array_length(string_to_array(p.proargtypes, ' '), 1) AS INT)), \
             tarn_g -> 'arg' || tarn_g), make_array()))) AS param_name, \
             array_repeat('i'::TEXT, CAST(3 AS BIGINT)) AS modes, unnest(generate_series(1, 3)) AS \
             param_position FROM pg_catalog.pg_proc p"
        );
        assert_eq!(
            parsed("SELECT generate_series(1, 3)"),
            "SELECT unnest(generate_series(1, 3)) AS \"generate_series\""
        );
        // in FROM it is a table already
        assert_eq!(
            parsed("SELECT x FROM generate_series(1, 3) AS t(x)"),
            "SELECT x FROM generate_series(1, 3) AS t (x)"
        );
    }

    #[test]
    fn arrays_of_unnested_outer_arrays() {
        // psql's \d+
        assert_eq!(
            parsed(
                "SELECT pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x \
                 from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c \
                 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)"
            ),
            "SELECT array_to_string(c.reloptions || coalesce(array_transform(\
             tc.reloptions, x -> 'toast.' || x), make_array()), ', ') FROM pg_catalog.pg_class c \
             LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)"
        );
    }

    #[test]
    fn oidvectors_and_regtype_arrays() {
        // pgcli's function list
        assert_eq!(
            parsed(
                "SELECT COALESCE(proallargtypes::regtype[], proargtypes::regtype[])::text[] \
                 FROM pg_catalog.pg_proc"
            ),
            "SELECT _pg_type_names(COALESCE(proallargtypes::regtype[], \
             CAST(string_to_array(proargtypes, ' ') AS regtype[]))) AS \"coalesce\" \
             FROM pg_catalog.pg_proc"
        );
        // Metabase's routine sync
        assert_eq!(
            parsed(
                "SELECT COALESCE(array_length(p.proargtypes, 1), 0), p.proargtypes::int[] \
                 FROM pg_catalog.pg_proc p"
            ),
            "SELECT COALESCE(CAST(array_length(string_to_array(p.proargtypes, ' '), 1) AS INT), 0), \
             CAST(string_to_array(p.proargtypes, ' ') AS INT[]) AS \"proargtypes\" \
             FROM pg_catalog.pg_proc p"
        );
    }

    #[test]
    fn expandarray_and_fields_of_composites() {
        // pgjdbc's getPrimaryKeys
        assert_eq!(
            parsed(
                "SELECT (information_schema._pg_expandarray(i.indkey)).n AS key_seq, \
                 information_schema._pg_expandarray(i.indkey) AS keys FROM pg_catalog.pg_index i"
            ),
            "SELECT get_field((unnest(_pg_expandarray(i.indkey))), 'n') AS key_seq, \
             unnest(_pg_expandarray(i.indkey)) AS keys FROM pg_catalog.pg_index i"
        );
        assert_eq!(
            parsed("SELECT (result.KEYS).\"X\", t.a[1] FROM t"),
            "SELECT get_field((result.KEYS), 'X') AS \"X\", t.a[1] FROM t"
        );
    }

    #[test]
    fn descriptions_of_relations_named_by_text() {
        // Metabase's field sync
        assert_eq!(
            parsed(
                "SELECT COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST(c.table_schema AS TEXT), \
                 CAST(c.table_name AS TEXT)) AS REGCLASS) AS OID), c.ordinal_position) AS fc \
                 FROM pg_catalog.pg_attribute c"
            ),
            "SELECT (SELECT first_value(tarn_d.description) FROM pg_catalog.pg_description AS \
             tarn_d JOIN (SELECT c.oid, format('%I.%I', n.nspname, c.relname) \
             AS name FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON \
             c.relnamespace = n.oid) AS tarn_r ON tarn_d.objoid = tarn_r.oid WHERE tarn_r.name = \
             FORMAT('%I.%I', CAST(c.table_schema AS TEXT), CAST(c.table_name AS TEXT)) AND \
             tarn_d.classoid = 1259 AND tarn_d.objsubid = c.ordinal_position) AS fc \
             FROM pg_catalog.pg_attribute c"
        );
        // a relation's OID is a number already
        assert_eq!(
            parsed(
                "SELECT col_description(a.attrelid::regclass, 1) FROM pg_catalog.pg_attribute a"
            ),
            "SELECT (SELECT first_value(tarn_d.description) FROM pg_catalog.pg_description AS \
             tarn_d WHERE tarn_d.objoid = a.attrelid::REGCLASS AND tarn_d.classoid = 1259 AND \
             tarn_d.objsubid = 1) AS \"col_description\" FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn descriptions_are_lookups_in_pg_description() {
        assert_eq!(
            parsed("SELECT obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c"),
            "SELECT (SELECT first_value(tarn_d.description) FROM pg_catalog.pg_description AS \
             tarn_d WHERE tarn_d.objoid = c.oid AND tarn_d.classoid = 1259 AND \
             tarn_d.objsubid = 0) AS \"obj_description\" FROM pg_catalog.pg_class c"
        );
        assert_eq!(
            parsed("SELECT col_description(16390, 2) AS d"),
            "SELECT (SELECT first_value(tarn_d.description) FROM pg_catalog.pg_description AS \
             tarn_d WHERE tarn_d.objoid = 16390 AND tarn_d.classoid = 1259 AND \
             tarn_d.objsubid = 2) AS d"
        );
        // a catalog Postgres does not have stays a call, and fails as Postgres does
        let sql = "SELECT obj_description(1, 'pg_nothing')";
        assert_eq!(parsed(sql), sql);
    }

    #[test]
    fn derived_tables_and_ctes_name_columns_as_postgres() {
        assert_eq!(
            parsed("SELECT t.count FROM (SELECT count(*) FROM demo.region) t"),
            "SELECT t.count FROM (SELECT count(*) AS \"count\" FROM demo.region) t"
        );
        assert_eq!(
            parsed("WITH t AS (SELECT lower(r_name), r_name FROM r) SELECT * FROM t"),
            "WITH t AS (SELECT lower(r_name) AS \"lower\", r_name FROM r) SELECT * FROM t"
        );
        // two columns named count, and ?column?: as written
        let sql = "SELECT * FROM (SELECT count(*), count(a), 1 + 1 FROM r) t";
        assert_eq!(parsed(sql), sql);
    }

    #[test]
    fn domain_base_type_lookups_become_a_function() {
        // asyncpg's type introspection
        let sql = "SELECT t.oid, (CASE WHEN t.typtype = 'd' THEN (WITH RECURSIVE \
                   typebases(oid, depth) AS (SELECT t2.typbasetype AS oid, 0 AS depth FROM \
                   pg_type t2 WHERE t2.oid = t.oid UNION ALL SELECT t2.typbasetype AS oid, \
                   tb.depth + 1 AS depth FROM pg_type t2, typebases tb WHERE tb.oid = t2.oid \
                   AND t2.typbasetype != 0) SELECT oid FROM typebases ORDER BY depth DESC \
                   LIMIT 1) ELSE NULL END) AS basetype FROM pg_catalog.pg_type AS t";
        assert_eq!(
            parsed(sql),
            "SELECT t.oid, (CASE WHEN t.typtype = 'd' THEN _pg_domain_base_type(t.oid) \
             ELSE NULL END) AS basetype FROM pg_catalog.pg_type AS t"
        );
        // another recursive lookup stays as written
        let other = sql.replace("t2.typbasetype != 0", "t2.typbasetype > 1");
        assert!(
            parsed(&other).contains("WITH RECURSIVE"),
            "{}",
            parsed(&other)
        );
    }

    #[test]
    fn arrays_of_catalog_oids_are_oid_arrays() {
        let sql = "SELECT t.oid, (SELECT array_agg(ia.atttypid ORDER BY ia.attnum) FROM \
                   pg_catalog.pg_attribute ia WHERE ia.attrelid = t.typrelid) AS attrtypoids \
                   FROM pg_catalog.pg_type t";
        assert!(
            parsed(sql)
                .contains("SELECT CAST(array_agg(ia.atttypid ORDER BY ia.attnum) AS oid[]) FROM"),
            "{}",
            parsed(sql)
        );
        // over a user table a column called oid is whatever it is
        let user = "SELECT (SELECT array_agg(x.oid) FROM demo.t x WHERE x.k = n.k) FROM n";
        assert_eq!(parsed(user), user);
    }

    #[test]
    fn bytea_literals_are_read_as_postgres_reads_them() {
        assert_eq!(
            parsed(r"SELECT CAST('\x00ff' AS bytea) AS a, '\x 0A 1b'::bytea AS b"),
            "SELECT decode('00ff', 'hex') AS a, decode('0a1b', 'hex') AS b"
        );
        assert_eq!(
            parsed(r"SELECT 'a\\b\001'::bytea AS c"),
            "SELECT decode('615c6201', 'hex') AS c"
        );
        // not bytea input: left to the engine
        assert_eq!(
            parsed(r"SELECT '\x0'::bytea AS d"),
            r"SELECT '\x0'::BYTEA AS d"
        );
        assert_eq!(
            parsed(r"SELECT '\q'::bytea AS e"),
            r"SELECT '\q'::BYTEA AS e"
        );
        // white space between pairs of digits only
        assert_eq!(super::bytea_input(r"\x0 0"), None);
        assert_eq!(super::bytea_input("\\x 00\tff "), Some(vec![0, 255]));
    }

    #[test]
    fn regtype_text_is_the_type_name() {
        assert_eq!(
            parsed("SELECT att.atttypid::regtype::text FROM pg_catalog.pg_attribute att"),
            "SELECT format_type(att.atttypid, NULL) AS \"atttypid\" FROM pg_catalog.pg_attribute att"
        );
        assert_eq!(
            parsed(
                "SELECT CAST(CAST(t.oid AS pg_catalog.regtype) AS VARCHAR) FROM pg_catalog.pg_type t"
            ),
            "SELECT format_type(t.oid, NULL) AS \"oid\" FROM pg_catalog.pg_type t"
        );
    }

    #[test]
    fn view_definitions_are_lookups() {
        let sql = parsed(
            "SELECT c.relname, pg_catalog.pg_get_viewdef(c.oid, true) FROM pg_catalog.pg_class c",
        );
        assert!(sql.contains("FROM pg_catalog.pg_views AS tarn_v"), "{sql}");
        assert!(sql.contains("WHERE tarn_r.oid = c.oid"), "{sql}");
        // Postgres's name for the column
        assert!(sql.contains("AS \"pg_get_viewdef\""), "{sql}");
    }
}
