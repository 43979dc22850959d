//! SQL cursors: `DECLARE name CURSOR FOR query`, `FETCH`, `MOVE` and `CLOSE`, as psycopg's
//! named cursors, SQLAlchemy's `stream_results` and pandas' `chunksize` use them to read a
//! large result a part at a time.
//!
//! A cursor is the query's running stream, read forward as far as each `FETCH` asks: rows
//! are computed as they are fetched (a couple of batches ahead), not all when the cursor is
//! declared. Cursors only go
//! forward (Postgres's `NO SCROLL`); a backward fetch gets 55000, as from such a cursor in
//! Postgres. A cursor lives until `CLOSE`, or the end of its transaction unless declared
//! `WITH HOLD`; outside a transaction block only a `WITH HOLD` cursor can be declared
//! (25P01). Protocol-level portals (asyncpg's cursors, which it moves with `MOVE … "portal"`)
//! are pgwire's; the handler moves those through pgwire's portal states.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{FetchDirection, Statement as SqlStatement, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use tokio::sync::Mutex;

fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn no_such_cursor(name: &str) -> PgWireError {
    error("34000", format!("cursor \"{name}\" does not exist"))
}

/// How far a `FETCH` or `MOVE` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// Up to this many rows forward.
    Rows(usize),
    /// Every row left.
    All,
}

/// A `FETCH` or `MOVE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub(crate) cursor: String,
    pub(crate) count: Count,
}

/// The `FETCH` in `statement`, if it is one; a direction tarn's forward-only cursors cannot
/// take is an error.
pub(crate) fn fetch_of(statement: &SqlStatement) -> Option<PgWireResult<Fetch>> {
    let SqlStatement::Fetch {
        name,
        direction,
        into,
        ..
    } = statement
    else {
        return None;
    };
    if into.is_some() {
        return Some(Err(error("0A000", "FETCH … INTO is not supported")));
    }
    Some(count_of(direction).map(|count| Fetch {
        cursor: name.value.clone(),
        count,
    }))
}

fn count_of(direction: &FetchDirection) -> PgWireResult<Count> {
    let number = |v: &Value| -> PgWireResult<i64> {
        match v {
            Value::Number(n, _) => n
                .parse::<i64>()
                .map_err(|_| error("22003", format!("{n} is out of range for a row count"))),
            other => Err(error(
                "42601",
                format!("syntax error at or near \"{other}\""),
            )),
        }
    };
    let backward = || {
        Err(error(
            "55000",
            "cursor can only scan forward: tarn's cursors are NO SCROLL",
        ))
    };
    let forward = |n: i64| match n {
        0 => Err(error(
            "0A000",
            "FETCH 0 (the current row again) is not supported",
        )),
        n if n < 0 => backward(),
        n => Ok(Count::Rows(usize::try_from(n).unwrap_or(usize::MAX))),
    };
    match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Ok(Count::Rows(1)),
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => {
            forward(number(&limit.value)?)
        }
        FetchDirection::All | FetchDirection::ForwardAll => Ok(Count::All),
        FetchDirection::Relative { limit } if number(&limit.value)? > 0 => {
            forward(number(&limit.value)?)
        }
        _ => backward(),
    }
}

/// `MOVE [direction] [FROM | IN] name`, which sqlparser does not parse: `None` if `sql` is
/// not a MOVE. The direction is read as FETCH's.
pub(crate) fn parse_move(sql: &str) -> Option<PgWireResult<Fetch>> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    let first = trimmed.split_whitespace().next()?;
    if !first.eq_ignore_ascii_case("MOVE") {
        return None;
    }
    let rest = trimmed[first.len()..].trim();
    let has_position = {
        let lower = rest.to_ascii_lowercase();
        lower.starts_with("from ")
            || lower.starts_with("in ")
            || lower.contains(" from ")
            || lower.contains(" in ")
    };
    // as FETCH, which needs FROM or IN; asyncpg writes neither
    let fetch = if has_position {
        format!("FETCH {rest}")
    } else {
        match rest.rsplit_once(char::is_whitespace) {
            Some((direction, name)) => format!("FETCH {direction} FROM {name}"),
            None => format!("FETCH FROM {rest}"),
        }
    };
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &fetch);
    Some(match parsed.as_deref() {
        Ok([statement]) => {
            fetch_of(statement).unwrap_or_else(|| Err(error("42601", "syntax error in MOVE")))
        }
        Ok(_) => Err(error("42601", "syntax error in MOVE")),
        Err(e) => Err(error("42601", format!("syntax error in MOVE: {e}"))),
    })
}

struct Cursor {
    stream: SendableRecordBatchStream,
    /// What the stream gave past the last fetch.
    pending: Option<RecordBatch>,
    /// The Postgres column names, where they differ from the schema's.
    names: Option<Vec<Option<String>>>,
    /// `WITH HOLD`: it outlives its transaction, once that commits.
    hold: bool,
    /// Whether the transaction it was declared in has committed (or there was none).
    settled: bool,
}

impl Count {
    /// How many rows at most (`ALL`: every one).
    fn rows(self) -> usize {
        match self {
            Count::Rows(n) => n,
            Count::All => usize::MAX,
        }
    }
}

impl Cursor {
    /// Up to `wanted` of the next rows, from what the last read left over or the stream; `None`
    /// once `wanted` is 0 or the stream has ended.
    async fn next_rows(&mut self, wanted: usize) -> PgWireResult<Option<RecordBatch>> {
        if wanted == 0 {
            return Ok(None);
        }
        let batch = match self.pending.take() {
            Some(batch) => batch,
            None => match self.stream.next().await {
                Some(batch) => batch.map_err(|e| super::pg_error(tarn_sql::Error::from(e)))?,
                None => return Ok(None),
            },
        };
        if batch.num_rows() > wanted {
            self.pending = Some(batch.slice(wanted, batch.num_rows() - wanted));
            return Ok(Some(batch.slice(0, wanted)));
        }
        Ok(Some(batch))
    }
}

/// The open cursors of one connection.
#[derive(Default)]
pub(crate) struct Cursors {
    open: Mutex<HashMap<String, Cursor>>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursors").finish_non_exhaustive()
    }
}

impl Cursors {
    /// Opens cursor `name` over `stream`; 42P03 if one of that name is open. `in_block`:
    /// declared in a transaction block (which may yet roll back).
    pub(crate) async fn declare(
        &self,
        name: &str,
        stream: SendableRecordBatchStream,
        names: Option<Vec<Option<String>>>,
        hold: bool,
        in_block: bool,
    ) -> PgWireResult<()> {
        let mut open = self.open.lock().await;
        if open.contains_key(name) {
            return Err(error("42P03", format!("cursor \"{name}\" already exists")));
        }
        open.insert(
            name.to_owned(),
            Cursor {
                stream,
                pending: None,
                names,
                hold,
                settled: !in_block,
            },
        );
        Ok(())
    }

    /// The schema and column names of cursor `name`'s rows, if it is open.
    pub(crate) async fn shape(
        &self,
        name: &str,
    ) -> Option<(SchemaRef, Option<Vec<Option<String>>>)> {
        let open = self.open.lock().await;
        let cursor = open.get(name)?;
        Some((cursor.stream.schema(), cursor.names.clone()))
    }

    /// The next rows of `fetch`'s cursor, with its schema and column names.
    pub(crate) async fn fetch(
        &self,
        fetch: &Fetch,
    ) -> PgWireResult<(SchemaRef, Option<Vec<Option<String>>>, Vec<RecordBatch>)> {
        let mut open = self.open.lock().await;
        let cursor = open
            .get_mut(&fetch.cursor)
            .ok_or_else(|| no_such_cursor(&fetch.cursor))?;
        let schema = cursor.stream.schema();
        let mut batches = Vec::new();
        let mut wanted = fetch.count.rows();
        while let Some(batch) = cursor.next_rows(wanted).await? {
            wanted -= batch.num_rows();
            batches.push(batch);
        }
        Ok((schema, cursor.names.clone(), batches))
    }

    /// Closes cursor `name`; 34000 if there is none.
    pub(crate) async fn close(&self, name: &str) -> PgWireResult<()> {
        self.open
            .lock()
            .await
            .remove(name)
            .map(drop)
            .ok_or_else(|| no_such_cursor(name))
    }

    pub(crate) async fn close_all(&self) {
        self.open.lock().await.clear();
    }

    /// At the end of a transaction: closes the cursors not declared `WITH HOLD`, and on a
    /// rollback also those the transaction declared.
    pub(crate) async fn end_transaction(&self, committed: bool) {
        self.open.lock().await.retain(|_, c| {
            let keep = c.hold && (committed || c.settled);
            c.settled |= keep;
            keep
        });
    }

    /// Skips the next rows of `fetch`'s cursor (MOVE); how many there were.
    pub(crate) async fn skip(&self, fetch: &Fetch) -> PgWireResult<usize> {
        let mut open = self.open.lock().await;
        let cursor = open
            .get_mut(&fetch.cursor)
            .ok_or_else(|| no_such_cursor(&fetch.cursor))?;
        let mut wanted = fetch.count.rows();
        let mut skipped = 0;
        while let Some(batch) = cursor.next_rows(wanted).await? {
            wanted -= batch.num_rows();
            skipped += batch.num_rows();
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> PgWireResult<Fetch> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        fetch_of(&statements[0]).expect("a FETCH")
    }

    fn fetch(sql: &str) -> Fetch {
        parsed(sql).expect("a forward fetch")
    }

    fn moved(sql: &str) -> Fetch {
        parse_move(sql).expect("a MOVE").expect("a forward move")
    }

    fn code(result: PgWireResult<Fetch>) -> String {
        match result {
            Err(PgWireError::UserError(info)) => info.code.clone(),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn forward_fetches_and_moves() {
        let c = |count| Fetch {
            cursor: "c".to_owned(),
            count,
        };
        assert_eq!(fetch("FETCH FORWARD 3 FROM c"), c(Count::Rows(3)));
        assert_eq!(fetch("FETCH 5 IN c"), c(Count::Rows(5)));
        assert_eq!(fetch("FETCH NEXT FROM c"), c(Count::Rows(1)));
        assert_eq!(fetch("FETCH ALL FROM c"), c(Count::All));
        assert_eq!(fetch("FETCH FORWARD ALL FROM c"), c(Count::All));
        // psycopg's scroll(), and asyncpg's forward() without FROM
        assert_eq!(moved("MOVE 10 FROM \"c\""), c(Count::Rows(10)));
        assert_eq!(moved("move forward 2 c;"), c(Count::Rows(2)));
        assert!(parse_move("SELECT 1").is_none());
    }

    #[test]
    fn backward_and_unsupported_fetches_are_errors() {
        assert_eq!(code(parsed("FETCH PRIOR FROM c")), "55000");
        assert_eq!(code(parsed("FETCH BACKWARD 2 FROM c")), "55000");
        assert_eq!(code(parsed("FETCH ABSOLUTE 3 FROM c")), "55000");
        assert_eq!(code(parsed("FETCH 0 FROM c")), "0A000");
        assert_eq!(code(parse_move("MOVE").expect("a MOVE")), "42601");
    }
}
