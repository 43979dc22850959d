//! Result column names as Postgres gives them: `count` for `count(*)`, `?column?` for `1 + 1`,
//! `int4` for `CAST(1 AS int)` (Postgres' FigureColname). DataFusion names columns after the
//! whole expression (`count(*)`, `Int64(1) + Int64(1)`); BI tools show the names, and some
//! read columns by them.

use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, Function, ObjectNamePart, Query, Select, SelectItem, SetExpr,
    Statement, Value,
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
            SelectItem::ExprWithAlias { .. } => names.push(None),
            _ => names.extend(std::iter::repeat_n(None, wildcard_width)),
        }
    }
    (names.len() == columns).then_some(names)
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
        Expr::Value(v) if matches!(v.value, Value::Boolean(_)) => Some("bool".to_owned()),
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
