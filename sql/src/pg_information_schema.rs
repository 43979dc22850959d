//! `information_schema` as Postgres clients read it, over the Postgres wire.
//!
//! DataFusion serves an `information_schema` of its own, and a session answers every
//! `information_schema.*` name from it before the catalog is asked. Its `columns` names
//! Arrow types (`Int64`, `Utf8View`) and lacks `udt_name`, `is_identity` and the rest of the
//! SQL standard's columns; it has no `table_constraints` or `key_column_usage` at all. Metabase's
//! field sync reads exactly those (`udt_schema`, `udt_name`, a primary-key join), as do dbt,
//! DBeaver and other JDBC tools.
//!
//! Postgres defines `information_schema` as views over `pg_catalog`; so does tarn. A
//! statement that names one of the views below has it replaced by the view's query, as a
//! derived table under the same name, so Postgres's types and names reach the client and
//! `pg_catalog` stays the one source of truth. The views of constraints are empty: tarn
//! tables have no primary, unique or foreign keys, no check constraints (`pg_constraint`
//! is empty too). `tables`, `schemata` and the rest are DataFusion's, whose columns
//! and values already match Postgres's for what clients read from them.
//! Flight SQL and in-process sessions keep DataFusion's views (with Arrow type names).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, TableAlias, TableFactor, VisitMut, VisitorMut,
};

use crate::pg_parse::parse_query;

/// `information_schema.columns` as Postgres defines it, for the relations `pg_class` lists.
/// Numeric precision and scale come from the typmod that `pg_attribute` carries; tarn has no
/// column defaults, identity or generated columns, and its tables take `INSERT` only.
const COLUMNS: &str = "
SELECT CAST(current_database() AS TEXT) AS table_catalog,
       n.nspname AS table_schema,
       c.relname AS table_name,
       a.attname AS column_name,
       CAST(a.attnum AS INT) AS ordinal_position,
       CAST(NULL AS TEXT) AS column_default,
       CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
       CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN 'ARRAY'
            ELSE format_type(a.atttypid, NULL) END AS data_type,
       CAST(NULL AS INT) AS character_maximum_length,
       CAST(CASE WHEN a.atttypid IN (25, 1042, 1043) THEN 1073741824 END AS INT)
           AS character_octet_length,
       CAST(CASE a.atttypid WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 WHEN 700 THEN 24
                            WHEN 701 THEN 53
                            WHEN 1700 THEN CASE WHEN a.atttypmod <> -1
                                                THEN (a.atttypmod - 4) / 65536 END
            END AS INT) AS numeric_precision,
       CAST(CASE WHEN a.atttypid IN (20, 21, 23, 700, 701) THEN 2
                 WHEN a.atttypid = 1700 THEN 10 END AS INT) AS numeric_precision_radix,
       CAST(CASE WHEN a.atttypid IN (20, 21, 23) THEN 0
                 WHEN a.atttypid = 1700 AND a.atttypmod <> -1 THEN (a.atttypmod - 4) % 65536
            END AS INT) AS numeric_scale,
       CAST(CASE WHEN a.atttypid = 1082 THEN 0
                 WHEN a.atttypid IN (1083, 1114, 1184, 1186, 1266) THEN 6 END AS INT)
           AS datetime_precision,
       CAST(NULL AS TEXT) AS interval_type,
       CAST(NULL AS INT) AS interval_precision,
       CAST(NULL AS TEXT) AS character_set_catalog,
       CAST(NULL AS TEXT) AS character_set_schema,
       CAST(NULL AS TEXT) AS character_set_name,
       CAST(NULL AS TEXT) AS collation_catalog,
       CAST(NULL AS TEXT) AS collation_schema,
       CAST(NULL AS TEXT) AS collation_name,
       CAST(NULL AS TEXT) AS domain_catalog,
       CAST(NULL AS TEXT) AS domain_schema,
       CAST(NULL AS TEXT) AS domain_name,
       CAST(current_database() AS TEXT) AS udt_catalog,
       nt.nspname AS udt_schema,
       t.typname AS udt_name,
       CAST(NULL AS TEXT) AS scope_catalog,
       CAST(NULL AS TEXT) AS scope_schema,
       CAST(NULL AS TEXT) AS scope_name,
       CAST(NULL AS INT) AS maximum_cardinality,
       CAST(a.attnum AS TEXT) AS dtd_identifier,
       'NO' AS is_self_referencing,
       'NO' AS is_identity,
       CAST(NULL AS TEXT) AS identity_generation,
       CAST(NULL AS TEXT) AS identity_start,
       CAST(NULL AS TEXT) AS identity_increment,
       CAST(NULL AS TEXT) AS identity_maximum,
       CAST(NULL AS TEXT) AS identity_minimum,
       'NO' AS identity_cycle,
       'NEVER' AS is_generated,
       CAST(NULL AS TEXT) AS generation_expression,
       'NO' AS is_updatable
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON a.attrelid = c.oid
JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid
LEFT JOIN pg_catalog.pg_type t ON a.atttypid = t.oid
LEFT JOIN pg_catalog.pg_namespace nt ON t.typnamespace = nt.oid
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'f', 'p', 'm')";

/// The views of constraints, with Postgres's columns and no rows: (view, columns).
const CONSTRAINT_VIEWS: &[(&str, &[&str])] = &[
    (
        "table_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "nulls_distinct",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position INT",
            "position_in_unique_constraint INT",
        ],
    ),
    (
        "referential_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ],
    ),
    (
        "constraint_column_usage",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
        ],
    ),
    (
        "check_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "check_clause",
        ],
    ),
];

/// `information_schema.views` as Postgres defines it (DataFusion's has `definition` where
/// Postgres has `view_definition`), over `pg_views`. tarn's views are read-only.
const VIEWS: &str = "
SELECT CAST(current_database() AS TEXT) AS table_catalog,
       v.schemaname AS table_schema,
       v.viewname AS table_name,
       v.definition AS view_definition,
       'NONE' AS check_option,
       'NO' AS is_updatable,
       'NO' AS is_insertable_into,
       'NO' AS is_trigger_updatable,
       'NO' AS is_trigger_deletable,
       'NO' AS is_trigger_insertable_into
FROM pg_catalog.pg_views AS v";

/// The query of view `name`, if it is one tarn defines.
fn view(name: &str) -> Option<String> {
    match name {
        "columns" => return Some(COLUMNS.to_owned()),
        "views" => return Some(VIEWS.to_owned()),
        _ => {}
    }
    let (_, columns) = CONSTRAINT_VIEWS.iter().find(|(v, _)| *v == name)?;
    let list: Vec<String> = columns
        .iter()
        .map(|c| {
            let (column, ty) = c.split_once(' ').unwrap_or((c, "TEXT"));
            format!("CAST(NULL AS {ty}) AS {column}")
        })
        .collect();
    Some(format!("SELECT {} WHERE false", list.join(", ")))
}

/// Replaces the views above in `statement` by their queries.
pub(crate) fn rewrite(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    let _ = VisitMut::visit(statement, &mut Views);
}

struct Views;

impl VisitorMut for Views {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(view_name) = information_schema_view(name) else {
            return ControlFlow::Continue(());
        };
        if !with_hints.is_empty() {
            return ControlFlow::Continue(());
        }
        let Some(subquery) = view(&view_name).and_then(|sql| parse_query(&sql)) else {
            return ControlFlow::Continue(());
        };
        let alias = alias.take().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new(view_name),
            columns: vec![],
            at: None,
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(subquery),
            alias: Some(alias),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

/// The view `name` names, `[catalog.]information_schema.view`, lower case.
fn information_schema_view(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect::<Option<_>>()?;
    let [.., schema, view_name] = parts.as_slice() else {
        return None;
    };
    if parts.len() > 3 || schema != "information_schema" {
        return None;
    }
    view(view_name).map(|_| view_name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn every_view_parses() {
        assert!(parse_query(COLUMNS).is_some());
        assert!(parse_query(VIEWS).is_some());
        for (name, _) in CONSTRAINT_VIEWS {
            assert!(
                view(name).and_then(|sql| parse_query(&sql)).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn views_become_derived_tables_under_their_names() {
        let sql = rewritten(
            "SELECT c.udt_name FROM \"information_schema\".\"columns\" AS c \
             LEFT JOIN information_schema.table_constraints tc ON true",
        );
        assert!(
            sql.contains("FROM (SELECT CAST(current_database()"),
            "{sql}"
        );
        assert!(
            sql.contains(") AS c LEFT JOIN (SELECT CAST(NULL AS TEXT) AS constraint_catalog"),
            "{sql}"
        );
        assert!(sql.ends_with("WHERE false) tc ON true"), "{sql}");
        let unaliased = rewritten("SELECT columns.column_name FROM information_schema.columns");
        assert!(unaliased.ends_with(") AS columns"), "{unaliased}");
    }

    #[test]
    fn other_tables_are_left_alone() {
        for sql in [
            "SELECT * FROM information_schema.tables",
            "SELECT * FROM information_schema.df_settings",
            "SELECT * FROM demo.columns",
            "SELECT * FROM columns",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
