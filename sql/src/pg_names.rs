//! Result column names as Postgres gives them: `count` for `count(*)`, `?column?` for `1 + 1`,
//! `int4` for `CAST(1 AS int)` (Postgres' FigureColname). DataFusion names columns after the
//! whole expression (`count(*)`, `Int64(1) + Int64(1)`); BI tools show the names, and some
//! read columns by them.

use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, Function, ObjectNamePart, Query, Select, SelectItem, SetExpr,
    Statement,
};

/// The Postgres name of each output column of `statement`, where it differs from what the plan
/// calls it; `None` where the plan's name stands (wildcards, aliases, statements without rows).
pub fn column_names(statement: &Statement, columns: usize) -> Option<Vec<Option<String>>> {
    let Statement::Query(query) = statement else {
        return None;
    };
    let select = first_select(query)?;
    let explicit = select
        .projection
        .iter()
        .filter(|item| {
            matches!(
                item,
                SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
            )
        })
        .count();
    let wildcards = select.projection.len() - explicit;
    // One wildcard's width is what is left; with several, which is which is unknown.
    let wildcard_width = match wildcards {
        0 if explicit == columns => 0,
        1 if columns >= explicit => columns - explicit,
        _ => return None,
    };
    let mut names = Vec::with_capacity(columns);
    for item in &select.projection {
        match item {
            SelectItem::UnnamedExpr(expr) => names.push(Some(figure_name(expr))),
            SelectItem::ExprWithAlias { alias, .. } => {
                names.push(unmarked(&alias.value).map(str::to_owned));
            }
            _ => names.extend(std::iter::repeat_n(None, wildcard_width)),
        }
    }
    (names.len() == columns).then_some(names)
}

/// Ends the alias tarn gives a select-list item whose name an earlier item has, before a
/// number: Postgres allows several output columns with one name (`SELECT count(*),
/// count(*)`), DataFusion refuses them. [`column_names`] gives the client the name before it.
const DUPLICATE_MARK: &str = "\u{1f}tarn#";

/// `name` without the mark [`alias_duplicates`] gave it; `None` for a name without one.
pub fn unmarked(name: &str) -> Option<&str> {
    name.split_once(DUPLICATE_MARK).map(|(name, _)| name)
}

/// Gives the select-list items of `statement`'s top-level selects whose names an earlier
/// item of the same list has (as DataFusion names them) aliases of their own, which
/// [`column_names`] turns back into the Postgres names.
pub(crate) fn alias_duplicates(statement: &mut Statement) {
    let Statement::Query(query) = statement else {
        return;
    };
    let mut bodies = vec![query.body.as_mut()];
    while let Some(body) = bodies.pop() {
        match body {
            SetExpr::Select(select) => alias_duplicate_items(&mut select.projection),
            SetExpr::SetOperation { left, right, .. } => {
                bodies.push(left.as_mut());
                bodies.push(right.as_mut());
            }
            SetExpr::Query(inner) => bodies.push(inner.body.as_mut()),
            _ => {}
        }
    }
}

fn alias_duplicate_items(projection: &mut [SelectItem]) {
    // what DataFusion names an item, near enough: a column by its name, an alias by itself
    let key = |item: &SelectItem| match item {
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(ident_name(i)),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(ident_name),
        // DataFusion names every subquery alike (`f((<subquery>))`: a regclass literal
        // becomes one), and a cast after what it casts (`0.1::float8` and `0.1::real` are
        // both `Utf8("0.1")`)
        SelectItem::UnnamedExpr(e) => {
            let mut e = e.clone();
            let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(&mut e, |e| {
                loop {
                    match e {
                        Expr::Subquery(_) => {
                            *e = Expr::Identifier(datafusion::sql::sqlparser::ast::Ident::new(
                                "<subquery>",
                            ))
                        }
                        Expr::Cast { expr, .. } => {
                            *e = std::mem::replace(
                                expr.as_mut(),
                                Expr::value(datafusion::sql::sqlparser::ast::Value::Null),
                            );
                            continue;
                        }
                        _ => {}
                    }
                    break;
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            Some(e.to_string())
        }
        SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
        _ => None,
    };
    let keys: Vec<Option<String>> = projection.iter().map(key).collect();
    for (i, item) in projection.iter_mut().enumerate() {
        if keys[i].is_none() || !keys[..i].contains(&keys[i]) {
            continue;
        }
        let (expr, name) = match item {
            SelectItem::UnnamedExpr(e) => (e.clone(), figure_name(e)),
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), ident_name(alias)),
            _ => continue,
        };
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: datafusion::sql::sqlparser::ast::Ident::with_quote(
                '"',
                format!("{name}{DUPLICATE_MARK}{}", i + 1),
            ),
        };
    }
}

/// Aliases the items of `rewritten`'s select list that the rewrites renamed with the names
/// Postgres gives the items of `written`, the statement as the client wrote it
/// (`current_user` became `session_user`, a catalog lookup an aggregate).
pub(crate) fn keep_written_names(written: &Statement, rewritten: &mut Statement) {
    let (Statement::Query(written), Statement::Query(rewritten)) = (written, rewritten) else {
        return;
    };
    let Some(written) = first_select(written) else {
        return;
    };
    let Some(rewritten) = first_select_mut(rewritten) else {
        return;
    };
    if written.projection.len() != rewritten.projection.len() {
        return;
    }
    for (before, after) in written.projection.iter().zip(&mut rewritten.projection) {
        let (SelectItem::UnnamedExpr(before), SelectItem::UnnamedExpr(expr)) = (before, &*after)
        else {
            continue;
        };
        let name = figure_name(before);
        if name != figure_name(expr) {
            *after = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: datafusion::sql::sqlparser::ast::Ident::with_quote('"', name),
            };
        }
    }
}

fn first_select_mut(query: &mut Query) -> Option<&mut Select> {
    let mut body = query.body.as_mut();
    loop {
        match body {
            SetExpr::Select(select) => return Some(select),
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            _ => return None,
        }
    }
}

/// The `SELECT` whose list names the columns: the first branch of a set operation, as in
/// Postgres.
fn first_select(query: &Query) -> Option<&Select> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(select),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            _ => return None,
        }
    }
}

fn figure_name(expr: &Expr) -> String {
    strength_name(expr).unwrap_or_else(|| "?column?".to_owned())
}

/// Postgres' FigureColnameInternal: a name when the expression has one.
pub(crate) fn strength_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident_name(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name),
        Expr::Function(f) => Some(function_name(f)),
        Expr::Nested(inner) => strength_name(inner),
        // `(composite).field` is `field`
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last()? {
            datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field)) => {
                Some(ident_name(field))
            }
            _ => None,
        },
        // `a::text` is `a`; `'x'::text` and `CAST(1 AS int)` are named after the type.
        Expr::Cast {
            expr, data_type, ..
        } => strength_name(expr).or_else(|| Some(type_name(data_type))),
        Expr::Case { .. } => Some("case".to_owned()),
        Expr::Exists { .. } => Some("exists".to_owned()),
        Expr::Array(_) => Some("array".to_owned()),
        Expr::Subquery(query) => {
            let select = first_select(query)?;
            match select.projection.first()? {
                SelectItem::UnnamedExpr(e) => strength_name(e),
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            }
        }
        Expr::Extract { .. } => Some("extract".to_owned()),
        Expr::Substring { .. } => Some("substring".to_owned()),
        Expr::Trim { .. } => Some("btrim".to_owned()),
        Expr::Position { .. } => Some("position".to_owned()),
        Expr::Overlay { .. } => Some("overlay".to_owned()),
        Expr::Ceil { .. } => Some("ceil".to_owned()),
        Expr::Floor { .. } => Some("floor".to_owned()),
        Expr::Interval(_) => Some("interval".to_owned()),
        Expr::TypedString(typed) => Some(type_name(&typed.data_type)),
        // `true` is `?column?` since PostgreSQL 15 (a boolean constant, no longer a cast)
        _ => None,
    }
}

fn ident_name(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn function_name(f: &Function) -> String {
    match f.name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident_name(ident),
        Some(other) => other.to_string().to_lowercase(),
        None => "?column?".to_owned(),
    }
}

/// A type as Postgres names it in a column heading.
fn type_name(t: &SqlType) -> String {
    let name = t.to_string().to_lowercase();
    let base = name.split('(').next().unwrap_or(&name).trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "decimal" | "numeric" => "numeric",
        "character varying" | "varchar" => "varchar",
        "character" | "char" => "bpchar",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "time" | "time without time zone" => "time",
        other => return other.to_owned(),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str, columns: usize) -> Option<Vec<Option<String>>> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        column_names(&statements[0], columns)
    }

    fn named(sql: &str) -> Vec<String> {
        names(sql, 1).expect("named")[0]
            .clone()
            .into_iter()
            .collect()
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(named("SELECT count(*) FROM t"), ["count"]);
        assert_eq!(named("SELECT SUM(a) FROM t"), ["sum"]);
        assert_eq!(named("SELECT 1 + 1"), ["?column?"]);
        assert_eq!(named("SELECT 1"), ["?column?"]);
        assert_eq!(named("SELECT CAST(1 AS int)"), ["int4"]);
        assert_eq!(named("SELECT a::text FROM t"), ["a"]);
        assert_eq!(named("SELECT t.\"MixedCase\" FROM t"), ["MixedCase"]);
        assert_eq!(named("SELECT pg_catalog.version()"), ["version"]);
        assert_eq!(named("SELECT (SELECT max(a) FROM t)"), ["max"]);
        assert_eq!(named("SELECT CASE WHEN a THEN 1 END FROM t"), ["case"]);
        assert_eq!(named("SELECT now()"), ["now"]);
    }

    #[test]
    fn duplicate_names_reach_the_client() {
        for (sql, want) in [
            ("SELECT count(*), count(*) FROM t", ["count", "count"]),
            ("SELECT r_name, t.r_name FROM t", ["r_name", "r_name"]),
            ("SELECT 1 AS a, 'x' AS A", ["a", "a"]),
            ("SELECT NULL, NULL", ["?column?", "?column?"]),
            // DataFusion names both `f((<subquery>))`
            ("SELECT f((SELECT 1)), f((SELECT 2))", ["f", "f"]),
            // and a cast after what it casts
            ("SELECT 0.1::float8, 0.1::real", ["float8", "float4"]),
        ] {
            let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parses")
                .remove(0);
            alias_duplicates(&mut statement);
            let text = statement.to_string();
            assert!(text.contains(DUPLICATE_MARK), "{text}");
            let got: Vec<String> = column_names(&statement, 2)
                .expect("named")
                .into_iter()
                .map(|n| n.unwrap_or_else(|| "<plan>".to_owned()))
                .collect();
            let want: Vec<String> = match sql.contains(" AS ") {
                // the first keeps its alias as the plan's name
                true => vec!["<plan>".to_owned(), want[1].to_owned()],
                false => want.iter().map(|w| (*w).to_owned()).collect(),
            };
            assert_eq!(got, want, "{sql}");
        }
        let mut distinct = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT a, b, count(*)")
            .expect("parses")
            .remove(0);
        alias_duplicates(&mut distinct);
        assert_eq!(distinct.to_string(), "SELECT a, b, count(*)");
    }

    #[test]
    fn aliases_and_wildcards_keep_the_plan_names() {
        assert_eq!(
            names("SELECT a AS x, count(*) FROM t", 2),
            Some(vec![None, Some("count".to_owned())])
        );
        assert_eq!(
            names("SELECT *, 1 FROM t", 3),
            Some(vec![None, None, Some("?column?".to_owned())])
        );
        assert_eq!(names("SELECT *, * FROM t", 4), None);
        assert_eq!(
            names("SELECT a FROM t UNION SELECT b FROM u", 1),
            Some(vec![Some("a".to_owned())])
        );
    }
}
