//! Crawler statements: `CREATE CRAWLER`, `RUN CRAWLER`, `DROP CRAWLER`, `SHOW CRAWLERS`, and
//! the Delta reader crawlers use.

use std::sync::Arc;

use arrow::array::{BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::Utc;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::logical_expr::{Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use tarn_catalog::{
    CrawlOutcome, CrawlRun, Crawler, CrawlerOptions, DeltaSchemas, Op, Schedule, SchemaChangePolicy,
};
use tarn_ingest::Ingester;
use url::Url;

use crate::engine::{CommandTag, QueryEngine, QueryOutput, Session};
use crate::error::{Error, Result};

/// A crawler statement, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub enum CrawlerStatement {
    Create {
        name: String,
        location: String,
        database: String,
        options: Vec<(String, String)>,
        if_not_exists: bool,
    },
    Run {
        name: String,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
}

/// A parser error as a SQL syntax error (`42601`).
pub(crate) fn syntax(e: datafusion::sql::sqlparser::parser::ParserError) -> Error {
    Error::DataFusion(datafusion::error::DataFusionError::SQL(Box::new(e), None))
}

/// An optional `WITH (key = value, …)` of tarn's statements: keys lower-cased, values quoted
/// strings, numbers or bare words.
pub(crate) fn with_options(p: &mut Parser) -> Result<Vec<(String, String)>> {
    let mut options = Vec::new();
    if !p.parse_keyword(Keyword::WITH) {
        return Ok(options);
    }
    p.expect_token(&Token::LParen).map_err(syntax)?;
    loop {
        let key = p
            .parse_identifier()
            .map_err(syntax)?
            .value
            .to_ascii_lowercase();
        p.expect_token(&Token::Eq).map_err(syntax)?;
        let t = p.next_token();
        let value = match t.token {
            Token::SingleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            _ => return p.expected("a value", t).map_err(syntax),
        };
        options.push((key, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen).map_err(syntax)?;
    Ok(options)
}

pub(crate) fn word(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Recognises `CREATE|RUN|START|DROP CRAWLER …`; `None` for any other statement. `SHOW
/// CRAWLERS` is rewritten to a query by the caller.
pub(crate) fn parse_crawler_statement(sql: &str) -> Option<Result<CrawlerStatement>> {
    let dialect = PostgreSqlDialect {};
    let tokens: Vec<Token> = datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
        .tokenize()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let first = tokens.first().and_then(word)?;
    let second = tokens.get(1).and_then(word)?;
    let third = tokens.get(2).and_then(word);
    let is_crawler = match first.as_str() {
        "CREATE" | "RUN" | "START" | "DROP" => second == "CRAWLER",
        _ => false,
    } || (first == "CREATE"
        && second == "OR"
        && third.as_deref() == Some("REPLACE")
        && tokens.get(3).and_then(word).as_deref() == Some("CRAWLER"));
    if !is_crawler {
        return None;
    }
    Some(parse_tokens(sql))
}

fn parse_tokens(sql: &str) -> Result<CrawlerStatement> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(syntax)?;
    let expect_crawler = |p: &mut Parser| -> Result<()> {
        let t = p.next_token();
        match word(&t.token).as_deref() {
            Some("CRAWLER") => Ok(()),
            _ => p.expected("CRAWLER", t).map_err(syntax),
        }
    };
    let statement = if p.parse_keyword(Keyword::CREATE) {
        if p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]) {
            return Err(Error::not_supported(
                "CREATE OR REPLACE CRAWLER (drop the crawler and create it again)",
            ));
        }
        expect_crawler(&mut p)?;
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = p.parse_identifier().map_err(syntax)?.value;
        p.expect_keyword(Keyword::ON).map_err(syntax)?;
        let location = p.parse_literal_string().map_err(syntax)?;
        p.expect_keyword(Keyword::INTO).map_err(syntax)?;
        let database = p.parse_identifier().map_err(syntax)?.value;
        let options = with_options(&mut p)?;
        CrawlerStatement::Create {
            name,
            location,
            database,
            options,
            if_not_exists,
        }
    } else if p.parse_keyword(Keyword::DROP) {
        expect_crawler(&mut p)?;
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_identifier().map_err(syntax)?.value;
        CrawlerStatement::Drop { name, if_exists }
    } else {
        // RUN | START
        p.next_token();
        expect_crawler(&mut p)?;
        let name = p.parse_identifier().map_err(syntax)?.value;
        CrawlerStatement::Run { name }
    };
    let _ = p.consume_token(&Token::SemiColon);
    let rest = p.peek_token();
    if rest.token != Token::EOF {
        return p.expected("end of statement", rest).map_err(syntax);
    }
    Ok(statement)
}

/// Builds a crawler's settings from `WITH (…)`, refusing unknown keys and bad values.
pub fn crawler_options(options: &[(String, String)]) -> Result<CrawlerOptions> {
    let bad = |key: &str, reason: String| -> Error {
        tarn_catalog::Error::CrawlerOption {
            option: key.to_owned(),
            reason,
        }
        .into()
    };
    let mut out = CrawlerOptions::default();
    for (key, value) in options {
        match key.as_str() {
            "table_level" => {
                out.table_level = Some(value.parse().map_err(|_| {
                    bad(key, format!("{value:?} is not a folder depth (0, 1, 2, …)"))
                })?);
            }
            "schema_change" | "schema_change_policy" => {
                out.schema_change = SchemaChangePolicy::parse(value).ok_or_else(|| {
                    bad(key, format!("{value:?}: expected add_columns, log or fail"))
                })?;
            }
            "unnamed_partitions" => {
                out.unnamed_partitions = match value.to_ascii_lowercase().as_str() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    _ => return Err(bad(key, format!("{value:?}: expected true or false"))),
                };
            }
            "table_prefix" => {
                tarn_catalog::validate_name(&format!("{value}x"))
                    .map_err(|e| bad(key, e.to_string()))?;
                out.table_prefix = value.clone();
            }
            "schedule" => {
                let schedule = Schedule::parse(value).map_err(|e| bad(key, e))?;
                if schedule.next_after(Utc::now()).is_none() {
                    return Err(bad(key, format!("{value:?} never fires")));
                }
                out.schedule = Some(value.clone());
            }
            _ => {
                return Err(bad(
                    key,
                    "unknown; known: table_level, schema_change, unnamed_partitions, table_prefix, schedule"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(out)
}

/// The plan node of a crawler statement; `RUN CRAWLER` returns one row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CrawlerCommand {
    pub(crate) statement: CrawlerStatement,
    schema: DFSchemaRef,
}

/// The row `RUN CRAWLER` answers with.
pub(crate) fn run_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run", DataType::Int64, false),
        Field::new("succeeded", DataType::Boolean, false),
        Field::new("tables_created", DataType::Int64, false),
        Field::new("tables_updated", DataType::Int64, false),
        Field::new("partitions_added", DataType::Int64, false),
        Field::new("files_read", DataType::Int64, false),
        Field::new("files_skipped", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

impl CrawlerCommand {
    pub(crate) fn plan(statement: CrawlerStatement) -> Result<LogicalPlan> {
        let schema = match statement {
            CrawlerStatement::Run { .. } => Arc::new(DFSchema::try_from(run_schema())?),
            _ => Arc::new(DFSchema::empty()),
        };
        Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(Self { statement, schema }),
        }))
    }
}

impl PartialOrd for CrawlerCommand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.statement.partial_cmp(&other.statement)
    }
}

impl UserDefinedLogicalNodeCore for CrawlerCommand {
    fn name(&self) -> &str {
        "CrawlerCommand"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<datafusion::prelude::Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "CrawlerCommand: {:?}", self.statement)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<datafusion::prelude::Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::common::Result<Self> {
        Ok(self.clone())
    }
}

/// Reads Delta schemas for crawlers the way `CREATE EXTERNAL TABLE … STORED AS DELTA` does, so
/// a crawled Delta table scans with exactly the schema the catalog holds.
pub(crate) struct DeltaReader<'a> {
    pub(crate) ingester: &'a Ingester,
}

#[async_trait]
impl DeltaSchemas for DeltaReader<'_> {
    async fn delta_schema(
        &self,
        location: &Url,
    ) -> std::result::Result<(SchemaRef, Vec<String>), String> {
        let table = self
            .ingester
            .load_delta(location)
            .await
            .map_err(|e| format!("cannot read the Delta log: {e}"))?;
        let partitions = table
            .snapshot()
            .map(|s| s.metadata().partition_columns().to_vec())
            .unwrap_or_default();
        let provider = table
            .table_provider()
            .await
            .map_err(|e| format!("cannot be read as a Delta table: {e}"))?;
        Ok((provider.schema(), partitions))
    }
}

impl QueryEngine {
    /// Registers a crawler. The location is checked for syntax and store, not for contents.
    pub async fn create_crawler(
        &self,
        name: &str,
        location: &str,
        database: &str,
        options: CrawlerOptions,
        if_not_exists: bool,
    ) -> Result<()> {
        let url = tarn_catalog::parse_location(location)?;
        // Fails now, not at the first run, when no store serves the location.
        self.ingester().stores().store(&url)?;
        let mut location = url.to_string();
        if !location.ends_with('/') {
            location.push('/');
        }
        let crawler = Crawler {
            name: name.to_owned(),
            location,
            database: database.to_owned(),
            options,
            created_at: Utc::now(),
        };
        match self
            .catalog()
            .commit(vec![Op::CreateCrawler { crawler }])
            .await
        {
            Err(tarn_catalog::Error::CrawlerExists { .. }) if if_not_exists => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    pub async fn drop_crawler(&self, name: &str, if_exists: bool) -> Result<()> {
        match self
            .catalog()
            .commit(vec![Op::DropCrawler {
                name: name.to_owned(),
            }])
            .await
        {
            Err(tarn_catalog::Error::CrawlerNotFound { .. }) if if_exists => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Runs crawler `name` now and waits for it. Listings cached for the tables it changed
    /// are dropped, so the next query sees the new files.
    pub async fn run_crawler(&self, name: &str) -> Result<Arc<CrawlRun>> {
        let reader = DeltaReader {
            ingester: self.ingester(),
        };
        let CrawlOutcome {
            run,
            changed_locations,
        } = self
            .catalog()
            .crawl(name, self.ingester().stores(), &reader)
            .await?;
        let session = self.session()?;
        for location in changed_locations {
            session.forget_listings(&location);
            if let Ok(url) = Url::parse(&location) {
                self.ingester().forget_delta(&url);
            }
        }
        Ok(run)
    }
}

impl QueryEngine {
    /// The registered partitions of `table` whose values satisfy `expression`, a SQL condition
    /// over the partition columns (Glue's `GetPartitions` filter), in the order they were
    /// registered. A table without registered partitions has none.
    pub fn partitions_matching(
        &self,
        table: &tarn_catalog::Table,
        expression: Option<&str>,
    ) -> Result<Vec<tarn_catalog::Partition>> {
        let Some(partitions) = table.partitions.as_deref() else {
            return Ok(Vec::new());
        };
        if table.partition_columns.is_empty() {
            return Ok(Vec::new());
        }
        // Without an expression every partition is an answer: no session is needed.
        let Some(expression) = expression.map(str::trim).filter(|e| !e.is_empty()) else {
            return Ok(partitions.to_vec());
        };
        let fields: Vec<arrow_schema::FieldRef> = table
            .partition_columns
            .iter()
            .map(|name| Ok(Arc::new(table.schema.field_with_name(name)?.clone())))
            .collect::<std::result::Result<_, arrow_schema::ArrowError>>()
            .map_err(|e| Error::DataFusion(e.into()))?;
        let session = self.session()?;
        let schema = DFSchema::try_from(Schema::new(fields.clone()))?;
        let filter = session.ctx.parse_sql_expr(expression, &schema)?;
        let state = session.ctx.state();
        Ok(
            crate::table::prune_partitions(&state, partitions, &fields, &[&filter])?
                .into_iter()
                .map(|(p, _)| p.clone())
                .collect(),
        )
    }
}

impl Session {
    pub(crate) async fn execute_crawler(
        &self,
        statement: &CrawlerStatement,
    ) -> Result<QueryOutput> {
        let engine = QueryEngine::from_inner(Arc::clone(&self.engine));
        match statement {
            CrawlerStatement::Create {
                name,
                location,
                database,
                options,
                if_not_exists,
            } => {
                let options = crawler_options(options)?;
                engine
                    .create_crawler(name, location, database, options, *if_not_exists)
                    .await?;
                Ok(QueryOutput::Command(CommandTag::new("CREATE CRAWLER")))
            }
            CrawlerStatement::Drop { name, if_exists } => {
                engine.drop_crawler(name, *if_exists).await?;
                Ok(QueryOutput::Command(CommandTag::new("DROP CRAWLER")))
            }
            CrawlerStatement::Run { name } => {
                let run = engine.run_crawler(name).await?;
                let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                let batch = RecordBatch::try_new(
                    run_schema(),
                    vec![
                        Arc::new(Int64Array::from(vec![
                            i64::try_from(run.run).unwrap_or(i64::MAX),
                        ])),
                        Arc::new(BooleanArray::from(vec![run.succeeded])),
                        Arc::new(Int64Array::from(vec![as_i64(run.tables_created.len())])),
                        Arc::new(Int64Array::from(vec![as_i64(run.tables_updated.len())])),
                        Arc::new(Int64Array::from(vec![
                            i64::try_from(run.partitions_added).unwrap_or(i64::MAX),
                        ])),
                        Arc::new(Int64Array::from(vec![
                            i64::try_from(run.files_read).unwrap_or(i64::MAX),
                        ])),
                        Arc::new(Int64Array::from(vec![as_i64(run.files_skipped.len())])),
                        Arc::new(StringArray::from(vec![run.error.clone()])),
                    ],
                )
                .map_err(|e| Error::DataFusion(e.into()))?;
                Ok(QueryOutput::Rows(self.ctx.read_batch(batch)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawler_statements_parse() {
        let s = parse_crawler_statement(
            "create crawler c1 on 's3://b/p/' into lake with (table_level = 1, schema_change = 'log', unnamed_partitions = true);",
        )
        .expect("crawler")
        .expect("parses");
        assert_eq!(
            s,
            CrawlerStatement::Create {
                name: "c1".into(),
                location: "s3://b/p/".into(),
                database: "lake".into(),
                options: vec![
                    ("table_level".into(), "1".into()),
                    ("schema_change".into(), "log".into()),
                    ("unnamed_partitions".into(), "true".into()),
                ],
                if_not_exists: false,
            }
        );
        assert_eq!(
            parse_crawler_statement("RUN CRAWLER \"My C\"")
                .expect("crawler")
                .expect("parses"),
            CrawlerStatement::Run {
                name: "My C".into()
            }
        );
        assert!(parse_crawler_statement("SELECT 1").is_none());
        assert!(parse_crawler_statement("CREATE OR REPLACE VIEW v AS SELECT 1").is_none());
        assert!(parse_crawler_statement("CREATE TABLE t (a int)").is_none());
        assert!(
            parse_crawler_statement("CREATE CRAWLER c ON 'x'")
                .expect("crawler")
                .is_err()
        );
        assert!(
            parse_crawler_statement("DROP CRAWLER c extra")
                .expect("crawler")
                .is_err()
        );
    }

    #[test]
    fn bad_options_are_named() {
        let err = crawler_options(&[("schedule".into(), "61 * * * *".into())])
            .expect_err("bad schedule")
            .to_string();
        assert!(err.contains("schedule") && err.contains("minute"), "{err}");
        let err = crawler_options(&[("colour".into(), "red".into())])
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
