//! Delivery statements (`CREATE DELIVERY STREAM`, `DROP DELIVERY STREAM`, `SHOW DELIVERY
//! STREAMS`), the `system.deliveries` table, and the rows a query over a delivered table adds
//! from records not yet delivered.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session as CatalogSession;
use datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, TableType, UserDefinedLogicalNodeCore,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use tarn_catalog::TableRef;
use tarn_ingest::delivery::{
    Deliveries, DeliverySource, MAX_BUFFER_BYTES, MAX_BUFFER_INTERVAL_SECS, NewDelivery,
    Partitioning,
};

use crate::crawl::{syntax, with_options, word};
use crate::engine::{CommandTag, QueryOutput, Session};
use crate::error::{Error, Result};

/// How long `DROP DELIVERY STREAM` waits for the buffer to be delivered.
const DROP_GRACE: Duration = Duration::from_secs(30);

/// A delivery statement, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub enum DeliveryStatement {
    Create {
        name: String,
        stream: Option<String>,
        /// `[database.]table`, as written.
        table: Vec<String>,
        options: Vec<(String, String)>,
        if_not_exists: bool,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
}

fn tokens(sql: &str) -> Option<Vec<Token>> {
    let dialect = PostgreSqlDialect {};
    Some(
        datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
            .tokenize()
            .ok()?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect(),
    )
}

/// `SHOW DELIVERY STREAMS`.
pub(crate) fn is_show_deliveries(sql: &str) -> bool {
    let Some(tokens) = tokens(sql) else {
        return false;
    };
    let words: Vec<Option<String>> = tokens
        .iter()
        .filter(|t| **t != Token::SemiColon && **t != Token::EOF)
        .map(word)
        .collect();
    words
        == [
            Some("SHOW".to_owned()),
            Some("DELIVERY".to_owned()),
            Some("STREAMS".to_owned()),
        ]
}

/// Recognises `CREATE|DROP DELIVERY STREAM …`; `None` for any other statement.
pub(crate) fn parse_delivery_statement(sql: &str) -> Option<Result<DeliveryStatement>> {
    let tokens = tokens(sql)?;
    let first = tokens.first().and_then(word)?;
    let second = tokens.get(1).and_then(word)?;
    if !matches!(first.as_str(), "CREATE" | "DROP") || second != "DELIVERY" {
        return None;
    }
    Some(parse_tokens(sql))
}

fn parse_tokens(sql: &str) -> Result<DeliveryStatement> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(syntax)?;
    let expect_word = |p: &mut Parser, expected: &str| -> Result<()> {
        let t = p.next_token();
        if word(&t.token).as_deref() == Some(expected) {
            Ok(())
        } else {
            p.expected(expected, t).map_err(syntax)
        }
    };
    let statement = if p.parse_keyword(Keyword::CREATE) {
        expect_word(&mut p, "DELIVERY")?;
        expect_word(&mut p, "STREAM")?;
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = p.parse_identifier().map_err(syntax)?.value;
        let stream = if p.parse_keyword(Keyword::FROM) {
            expect_word(&mut p, "STREAM")?;
            Some(p.parse_identifier().map_err(syntax)?.value)
        } else {
            None
        };
        p.expect_keyword(Keyword::INTO).map_err(syntax)?;
        let mut table = vec![p.parse_identifier().map_err(syntax)?.value];
        while p.consume_token(&Token::Period) {
            table.push(p.parse_identifier().map_err(syntax)?.value);
        }
        let options = with_options(&mut p)?;
        DeliveryStatement::Create {
            name,
            stream,
            table,
            options,
            if_not_exists,
        }
    } else {
        p.expect_keyword(Keyword::DROP).map_err(syntax)?;
        expect_word(&mut p, "DELIVERY")?;
        expect_word(&mut p, "STREAM")?;
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_identifier().map_err(syntax)?.value;
        DeliveryStatement::Drop { name, if_exists }
    };
    let _ = p.consume_token(&Token::SemiColon);
    let rest = p.peek_token();
    if rest.token != Token::EOF {
        return p.expected("end of statement", rest).map_err(syntax);
    }
    Ok(statement)
}

fn bad(option: &str, reason: impl Into<String>) -> Error {
    Error::DeliveryOption {
        option: option.to_owned(),
        reason: reason.into(),
    }
}

/// Applies `WITH (…)` to `new`, refusing unknown keys and bad values.
fn apply_options(new: &mut NewDelivery, options: &[(String, String)]) -> Result<()> {
    for (key, value) in options {
        let seconds = |max: u64| -> Result<u64> {
            value
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= max)
                .ok_or_else(|| {
                    bad(
                        key,
                        format!("{value:?}: expected whole seconds, 0 to {max}"),
                    )
                })
        };
        match key.as_str() {
            "buffer_size_mb" => {
                let mb: f64 = value
                    .parse()
                    .map_err(|_| bad(key, format!("{value:?} is not a number")))?;
                let bytes = (mb * f64::from(1u32 << 20)).round();
                if !(bytes >= 1.0 && bytes <= MAX_BUFFER_BYTES as f64) {
                    return Err(bad(
                        key,
                        format!(
                            "{value}: expected more than 0 and at most {}",
                            MAX_BUFFER_BYTES >> 20
                        ),
                    ));
                }
                new.buffer_bytes = bytes as u64;
            }
            "buffer_interval_seconds" => {
                new.buffer_interval_secs = seconds(MAX_BUFFER_INTERVAL_SECS)?
            }
            "idle_flush_seconds" => new.idle_flush_secs = seconds(MAX_BUFFER_INTERVAL_SECS)?,
            "partition_by" => {
                new.partitioning = Some(Partitioning::parse(value).map_err(|e| bad(key, e))?);
            }
            "start" | "starting_position" => {
                new.from_trim_horizon = match value.to_ascii_lowercase().as_str() {
                    "latest" => false,
                    "trim_horizon" => true,
                    _ => {
                        return Err(bad(
                            key,
                            format!("{value:?}: expected latest or trim_horizon"),
                        ));
                    }
                };
            }
            _ => {
                return Err(bad(
                    key,
                    "unknown; known: buffer_size_mb, buffer_interval_seconds, idle_flush_seconds, partition_by, start",
                ));
            }
        }
    }
    Ok(())
}

/// The plan node of a delivery statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DeliveryCommand {
    pub(crate) statement: DeliveryStatement,
    schema: DFSchemaRef,
}

impl DeliveryCommand {
    pub(crate) fn plan(statement: DeliveryStatement) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(Self {
                statement,
                schema: Arc::new(DFSchema::empty()),
            }),
        })
    }
}

impl PartialOrd for DeliveryCommand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.statement.partial_cmp(&other.statement)
    }
}

impl UserDefinedLogicalNodeCore for DeliveryCommand {
    fn name(&self) -> &str {
        "DeliveryCommand"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "DeliveryCommand: {:?}", self.statement)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(self.clone())
    }
}

impl Session {
    fn deliveries(&self) -> Result<&Arc<Deliveries>> {
        self.engine
            .deliveries
            .as_ref()
            .ok_or_else(|| Error::not_supported("deliveries in an engine without stream logs"))
    }

    pub(crate) async fn execute_delivery(
        &self,
        statement: &DeliveryStatement,
    ) -> Result<QueryOutput> {
        let deliveries = self.deliveries()?;
        match statement {
            DeliveryStatement::Create {
                name,
                stream,
                table,
                options,
                if_not_exists,
            } => {
                let table = match table.as_slice() {
                    [t] => self.resolve(&datafusion::common::TableReference::bare(t.as_str()))?,
                    [d, t] => TableRef::new(d.as_str(), t.as_str()),
                    _ => {
                        return Err(Error::not_supported(format!(
                            "the table name {} (write database.table)",
                            table.join(".")
                        )));
                    }
                };
                let mut new = NewDelivery::new(name.clone(), table);
                new.source_stream = stream.clone();
                apply_options(&mut new, options)?;
                match deliveries.create(new) {
                    Err(tarn_ingest::delivery::DeliveryError::InUse { .. }) if *if_not_exists => {}
                    other => {
                        other?;
                    }
                }
                Ok(QueryOutput::Command(CommandTag::new(
                    "CREATE DELIVERY STREAM",
                )))
            }
            DeliveryStatement::Drop { name, if_exists } => {
                match deliveries.delete(name, DROP_GRACE).await {
                    Err(tarn_ingest::delivery::DeliveryError::NotFound { .. }) if *if_exists => {}
                    other => other?,
                }
                Ok(QueryOutput::Command(CommandTag::new(
                    "DROP DELIVERY STREAM",
                )))
            }
        }
    }
}

/// `SHOW DELIVERY STREAMS`, as a query.
pub(crate) fn show_deliveries_sql(system: &str) -> String {
    format!(
        "SELECT name, source, source_stream, database, \"table\", partition_by, \
         buffer_size_mb, buffer_interval_seconds, records_delivered, error_records, \
         last_commit_at, last_error FROM {system}.deliveries ORDER BY name"
    )
}

/// `system.deliveries`: every delivery and how it is doing.
#[derive(Debug)]
pub(crate) struct DeliveriesTable {
    pub(crate) deliveries: Option<Arc<Deliveries>>,
}

fn deliveries_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let text = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let int = |n: &str| Field::new(n, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        text("name", false),
        text("source", false),
        text("source_stream", true),
        text("database", false),
        text("table", false),
        text("error_table", false),
        text("partition_by", false),
        Field::new("buffer_size_mb", DataType::Float64, false),
        int("buffer_interval_seconds"),
        int("idle_flush_seconds"),
        Field::new("created_at", ts.clone(), false),
        int("records_delivered"),
        int("rows_written"),
        int("error_records"),
        int("commits"),
        int("buffered_records"),
        Field::new("last_commit_at", ts, true),
        text("last_error", true),
    ]))
}

#[async_trait]
impl TableProvider for DeliveriesTable {
    fn schema(&self) -> SchemaRef {
        deliveries_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut rows = self
            .deliveries
            .as_ref()
            .map(|d| d.list())
            .unwrap_or_default();
        rows.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let strings = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                (0..rows.len()).map(f).collect::<Vec<_>>(),
            ))
        };
        let ints = |f: &dyn Fn(usize) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from((0..rows.len()).map(f).collect::<Vec<_>>()))
        };
        let times = |f: &dyn Fn(usize) -> Option<i64>| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from((0..rows.len()).map(f).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            )
        };
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let columns: Vec<ArrayRef> = vec![
            strings(&|i| Some(rows[i].0.name.clone())),
            strings(&|i| {
                Some(match rows[i].0.source {
                    DeliverySource::DirectPut => "direct_put".to_owned(),
                    DeliverySource::Stream { .. } => "stream".to_owned(),
                })
            }),
            strings(&|i| match &rows[i].0.source {
                DeliverySource::DirectPut => None,
                DeliverySource::Stream { name, .. } => Some(name.clone()),
            }),
            strings(&|i| Some(rows[i].0.table.database.clone())),
            strings(&|i| Some(rows[i].0.table.table.clone())),
            strings(&|i| Some(rows[i].0.error_table.table.clone())),
            strings(&|i| Some(rows[i].0.partitioning.describe())),
            Arc::new(Float64Array::from(
                rows.iter()
                    .map(|(d, _)| d.buffer_bytes as f64 / f64::from(1u32 << 20))
                    .collect::<Vec<_>>(),
            )),
            ints(&|i| n(rows[i].0.buffer_interval_secs)),
            ints(&|i| n(rows[i].0.idle_flush_secs)),
            times(&|i| Some(rows[i].0.created_at.timestamp_micros())),
            ints(&|i| n(rows[i].1.records_delivered)),
            ints(&|i| n(rows[i].1.rows_written)),
            ints(&|i| n(rows[i].1.error_records)),
            ints(&|i| n(rows[i].1.commits)),
            ints(&|i| n(rows[i].1.buffered_records)),
            times(&|i| rows[i].1.last_commit_at.map(|t| t.timestamp_micros())),
            strings(&|i| rows[i].1.last_error.clone()),
        ];
        let batch = RecordBatch::try_new(deliveries_schema(), columns)?;
        MemTable::try_new(deliveries_schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_statements_parse() {
        let create = parse_delivery_statement(
            "CREATE DELIVERY STREAM IF NOT EXISTS d FROM STREAM clicks INTO lake.events WITH (partition_by = 'arrival_time', buffer_size_mb = 1)",
        )
        .expect("recognised")
        .expect("parsed");
        assert_eq!(
            create,
            DeliveryStatement::Create {
                name: "d".into(),
                stream: Some("clicks".into()),
                table: vec!["lake".into(), "events".into()],
                options: vec![
                    ("partition_by".into(), "arrival_time".into()),
                    ("buffer_size_mb".into(), "1".into())
                ],
                if_not_exists: true,
            }
        );
        let drop = parse_delivery_statement("drop delivery stream if exists d;")
            .expect("recognised")
            .expect("parsed");
        assert_eq!(
            drop,
            DeliveryStatement::Drop {
                name: "d".into(),
                if_exists: true
            }
        );
        assert!(parse_delivery_statement("SELECT 1").is_none());
        assert!(
            parse_delivery_statement("CREATE DELIVERY STREAM d INTO")
                .expect("recognised")
                .is_err()
        );
        assert!(is_show_deliveries("show delivery streams;"));
        assert!(!is_show_deliveries("show delivery"));
    }

    #[test]
    fn options_are_checked() {
        let mut new = NewDelivery::new("d", TableRef::new("a", "b"));
        apply_options(
            &mut new,
            &[
                ("buffer_size_mb".into(), "0.5".into()),
                ("buffer_interval_seconds".into(), "1".into()),
                ("partition_by".into(), "kind, region".into()),
                ("start".into(), "TRIM_HORIZON".into()),
            ],
        )
        .expect("good options");
        assert_eq!(new.buffer_bytes, 512 << 10);
        assert_eq!(new.buffer_interval_secs, 1);
        assert!(new.from_trim_horizon);
        assert_eq!(
            new.partitioning,
            Some(Partitioning::Fields(vec!["kind".into(), "region".into()]))
        );
        for (k, v) in [
            ("buffer_size_mb", "0"),
            ("buffer_size_mb", "129"),
            ("buffer_interval_seconds", "901"),
            ("start", "middle"),
            ("colour", "red"),
        ] {
            let err = apply_options(&mut new, &[(k.into(), v.into())]).expect_err(k);
            assert!(err.to_string().contains(k), "{err}");
        }
    }
}
