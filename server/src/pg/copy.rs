//! `COPY … TO STDOUT` and `COPY … FROM STDIN`: how psql's `\copy`, pandas, DBeaver and
//! pgjdbc's `CopyManager` (Metabase's CSV uploads) move data in and out, in Postgres's text
//! and CSV formats.
//!
//! Out, the query's rows stream as they are computed, one `CopyData` per row, written as the
//! text results are (Postgres's text forms of dates, times and intervals). In, the data is
//! read when the client ends it (`CopyDone`), parsed, and appended to the table in one
//! commit, its columns cast to the table's types: nothing is written if any row is bad, and
//! the data is held in memory until then. The binary format is not supported (0A000).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Query, Statement as SqlStatement,
};
use datafusion_postgres::arrow_pg::encoder::encode_value;
use pgwire::api::results::{CopyCsvOptions, CopyEncoder, CopyTextOptions, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;

fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// A data format of COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    /// Postgres's default: `delimiter`-separated (a tab), backslash escapes, `null` (`\N`).
    Text { delimiter: char, null: String },
    /// Comma-separated, fields with a delimiter, quote or newline quoted; `null` unquoted
    /// (empty) is NULL.
    Csv {
        delimiter: char,
        quote: char,
        escape: char,
        null: String,
        header: bool,
    },
}

/// Where the rows come from (COPY TO) or go (COPY FROM).
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Table {
        name: ObjectName,
        columns: Vec<Ident>,
    },
    Query(Box<Query>),
}

/// A `COPY … TO STDOUT` (`to`) or `COPY … FROM STDIN`.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub(crate) source: Source,
    pub(crate) to: bool,
    pub(crate) format: Format,
}

impl Copy {
    /// The query of a `COPY … TO STDOUT`, as SQL.
    pub(crate) fn query_sql(&self) -> String {
        match &self.source {
            Source::Query(query) => query.to_string(),
            Source::Table { name, columns } if columns.is_empty() => {
                format!("SELECT * FROM {name}")
            }
            Source::Table { name, columns } => {
                let columns: Vec<String> = columns.iter().map(ToString::to_string).collect();
                format!("SELECT {} FROM {name}", columns.join(", "))
            }
        }
    }
}

/// The COPY to or from the client in `statement`, if it is one; `None` for other statements
/// and for a COPY of a file (DataFusion's `COPY … TO 'path'`).
pub(crate) fn copy_of(statement: &SqlStatement) -> Option<PgWireResult<Copy>> {
    let SqlStatement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return None;
    };
    match (target, to) {
        (CopyTarget::Stdout, true) | (CopyTarget::Stdin, false) => {}
        _ => return None,
    }
    let source = match source {
        CopySource::Table {
            table_name,
            columns,
        } => Source::Table {
            name: table_name.clone(),
            columns: columns.clone(),
        },
        CopySource::Query(_) if !to => {
            return Some(Err(error("42601", "COPY FROM takes a table, not a query")));
        }
        CopySource::Query(query) => Source::Query(query.clone()),
    };
    Some(format_of(options, legacy_options).map(|format| Copy {
        source,
        to: *to,
        format,
    }))
}

fn format_of(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<Format> {
    let unsupported = |what: &str| error("0A000", format!("COPY {what} is not supported"));
    let mut csv = false;
    let mut delimiter = None;
    let mut null = None;
    let mut header = false;
    let mut quote = '"';
    let mut escape = None;
    for option in options {
        match option {
            CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                "text" => csv = false,
                "csv" => csv = true,
                "binary" => return Err(unsupported("in the binary format")),
                other => {
                    return Err(error(
                        "22023",
                        format!("COPY format \"{other}\" not recognized"),
                    ));
                }
            },
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = *c,
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(&format!("with {other}"))),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => return Err(unsupported("in the binary format")),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Csv(csv_options) => {
                csv = true;
                for o in csv_options {
                    match o {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = *c,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        other => return Err(unsupported(&format!("with {other}"))),
                    }
                }
            }
            CopyLegacyOption::Header => header = true,
            other => return Err(unsupported(&format!("with {other}"))),
        }
    }
    if csv {
        Ok(Format::Csv {
            delimiter: delimiter.unwrap_or(','),
            quote,
            escape: escape.unwrap_or(quote),
            null: null.unwrap_or_default(),
            header,
        })
    } else if header {
        Err(error("0A000", "COPY HEADER is available only in CSV mode"))
    } else {
        Ok(Format::Text {
            delimiter: delimiter.unwrap_or('\t'),
            null: null.unwrap_or_else(|| "\\N".to_owned()),
        })
    }
}

/// Writes rows in `format`.
pub(crate) struct Writer {
    encoder: CopyEncoder,
    fields: Arc<Vec<FieldInfo>>,
    /// The CSV header line, until it is written ahead of the first row.
    header: Option<Bytes>,
}

impl Writer {
    /// `fields`: the result's columns, in the text format.
    pub(crate) fn new(fields: Arc<Vec<FieldInfo>>, format: &Format) -> Self {
        let (encoder, header) = match format {
            Format::Text { delimiter, null } => (
                CopyEncoder::new_text(
                    Arc::clone(&fields),
                    CopyTextOptions {
                        delimiter: delimiter.to_string().into(),
                        null_string: null.as_str().into(),
                    },
                ),
                None,
            ),
            Format::Csv {
                delimiter,
                quote,
                escape,
                null,
                header,
            } => {
                let names: Vec<String> = fields
                    .iter()
                    .map(|f| csv_field(f.name(), *delimiter, *quote, *escape))
                    .collect();
                let line = format!("{}\n", names.join(&delimiter.to_string()));
                (
                    CopyEncoder::new_csv(
                        Arc::clone(&fields),
                        CopyCsvOptions {
                            delimiter: delimiter.to_string().into(),
                            quote: quote.to_string().into(),
                            escape: escape.to_string().into(),
                            null_string: null.as_str().into(),
                            force_quote: vec![],
                        },
                    ),
                    header.then(|| Bytes::from(line)),
                )
            }
        };
        Self {
            encoder,
            fields,
            header,
        }
    }

    /// `batch`'s rows (its columns already in their text forms), one `CopyData` each.
    pub(crate) fn rows(&mut self, batch: &RecordBatch) -> PgWireResult<Vec<CopyData>> {
        let schema = batch.schema();
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            for (column, (array, pg_field)) in
                batch.columns().iter().zip(self.fields.iter()).enumerate()
            {
                encode_value(
                    &mut self.encoder,
                    array,
                    row,
                    schema.field(column),
                    pg_field,
                )?;
            }
            let data = self.encoder.take_copy();
            out.push(match self.header.take() {
                // the header rides with the first row: pgwire counts a message as a row
                Some(header) => {
                    let mut both = BytesMut::with_capacity(header.len() + data.data.len());
                    both.put_slice(&header);
                    both.put_slice(&data.data);
                    CopyData::new(both.freeze())
                }
                None => data,
            });
        }
        Ok(out)
    }

    /// The header, if no row took it (an empty result).
    pub(crate) fn unwritten_header(&mut self) -> Option<CopyData> {
        self.header.take().map(CopyData::new)
    }
}

/// `value` as a CSV field: quoted if it holds a delimiter, quote, escape or line break.
fn csv_field(value: &str, delimiter: char, quote: char, escape: char) -> String {
    if !value.contains([delimiter, quote, escape, '\n', '\r']) && !value.is_empty() {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push(quote);
    for c in value.chars() {
        if c == quote || c == escape {
            out.push(escape);
        }
        out.push(c);
    }
    out.push(quote);
    out
}

/// The rows of COPY FROM's `data`, each with `columns` fields (NULL as `None`).
pub(crate) fn parse_rows(
    format: &Format,
    data: &[u8],
    columns: usize,
) -> PgWireResult<Vec<Vec<Option<String>>>> {
    let text = std::str::from_utf8(data).map_err(|e| {
        error(
            "22021",
            format!("invalid byte sequence for encoding \"UTF8\": {e}"),
        )
    })?;
    let rows = match format {
        Format::Text { delimiter, null } => text_rows(text, *delimiter, null)?,
        Format::Csv {
            delimiter,
            quote,
            escape,
            null,
            header,
        } => {
            let mut rows = csv_rows(text, *delimiter, *quote, *escape, null)?;
            if *header && !rows.is_empty() {
                rows.remove(0);
            }
            rows
        }
    };
    for (i, row) in rows.iter().enumerate() {
        if row.len() != columns {
            let what = if row.len() > columns {
                "extra data after last expected column"
            } else {
                "missing data for a column"
            };
            return Err(error(
                "22P04",
                format!(
                    "{what}: line {} has {} fields, the COPY {columns}",
                    i + 1,
                    row.len()
                ),
            ));
        }
    }
    Ok(rows)
}

fn text_rows(text: &str, delimiter: char, null: &str) -> PgWireResult<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let mut row = Vec::new();
        let mut raw = String::new();
        let mut value = String::new();
        let mut chars = line.chars().peekable();
        let finish = |raw: &mut String, value: &mut String, row: &mut Vec<Option<String>>| {
            row.push((raw.as_str() != null).then(|| std::mem::take(value)));
            raw.clear();
            value.clear();
        };
        while let Some(c) = chars.next() {
            if c == delimiter {
                finish(&mut raw, &mut value, &mut row);
                continue;
            }
            raw.push(c);
            if c != '\\' {
                value.push(c);
                continue;
            }
            let Some(e) = chars.next() else {
                return Err(error("22P02", "a COPY line ends in a lone backslash"));
            };
            raw.push(e);
            match e {
                'b' => value.push('\u{8}'),
                'f' => value.push('\u{c}'),
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                'v' => value.push('\u{b}'),
                '0'..='7' => {
                    let mut n = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match chars.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                n = n * 8 + d;
                                raw.push(chars.next().unwrap_or('0'));
                            }
                            None => break,
                        }
                    }
                    value.push(char::from(u8::try_from(n & 0xff).unwrap_or(0)));
                }
                'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
                    let mut n = 0;
                    for _ in 0..2 {
                        match chars.peek().and_then(|d| d.to_digit(16)) {
                            Some(d) => {
                                n = n * 16 + d;
                                raw.push(chars.next().unwrap_or('0'));
                            }
                            None => break,
                        }
                    }
                    value.push(char::from(u8::try_from(n).unwrap_or(0)));
                }
                other => value.push(other),
            }
        }
        finish(&mut raw, &mut value, &mut row);
        rows.push(row);
    }
    Ok(rows)
}

fn csv_rows(
    text: &str,
    delimiter: char,
    quote: char,
    escape: char,
    null: &str,
) -> PgWireResult<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut value = String::new();
    let mut quoted = false; // the field had quotes: never NULL
    let mut in_quotes = false;
    let mut started = false; // the line has a field
    let mut chars = text.chars().peekable();
    let finish = |row: &mut Vec<Option<String>>, value: &mut String, quoted: bool| {
        let field = std::mem::take(value);
        row.push((quoted || field != null).then_some(field));
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == escape && chars.peek() == Some(&quote) {
                // an escaped quote (doubled, with the default escape)
                chars.next();
                value.push(quote);
            } else if c == quote {
                in_quotes = false;
            } else if c == escape && chars.peek() == Some(&escape) && escape != quote {
                chars.next();
                value.push(escape);
            } else {
                value.push(c);
            }
            continue;
        }
        if c == quote {
            in_quotes = true;
            quoted = true;
            started = true;
        } else if c == delimiter {
            finish(&mut row, &mut value, quoted);
            quoted = false;
            started = true;
        } else if c == '\n' || c == '\r' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            if started || !value.is_empty() {
                finish(&mut row, &mut value, quoted);
                rows.push(std::mem::take(&mut row));
            }
            quoted = false;
            started = false;
        } else {
            // the end-of-data marker alone on a line
            if !started && value.is_empty() && c == '\\' && chars.peek() == Some(&'.') {
                let mut ahead = chars.clone();
                ahead.next();
                if matches!(ahead.peek(), None | Some('\n' | '\r')) {
                    break;
                }
            }
            value.push(c);
            started = true;
        }
    }
    if in_quotes {
        return Err(error("22P04", "unterminated CSV quoted field"));
    }
    if started || !value.is_empty() {
        finish(&mut row, &mut value, quoted);
        rows.push(row);
    }
    Ok(rows)
}

/// `rows` as a batch of text columns named `names`, for the load to cast to the table's
/// types.
pub(crate) fn text_batch(
    names: &[String],
    rows: &[Vec<Option<String>>],
) -> PgWireResult<RecordBatch> {
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(n, DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(StringArray::from_iter(rows.iter().map(|r| r[i].as_deref()))) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// A COPY FROM STDIN under way: where its rows go, and the data so far.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) table: tarn_catalog::TableRef,
    /// The columns the data has, in order.
    pub(crate) columns: Vec<String>,
    pub(crate) format: Format,
    pub(crate) data: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn copy(sql: &str) -> PgWireResult<Copy> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        copy_of(&statements[0]).expect("a COPY to or from the client")
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    }

    #[test]
    fn formats_and_options() {
        let text = copy("COPY t TO STDOUT").expect("copy");
        assert_eq!(
            text.format,
            Format::Text {
                delimiter: '\t',
                null: "\\N".to_owned()
            }
        );
        assert_eq!(text.query_sql(), "SELECT * FROM t");
        let csv = copy("COPY t (a, \"B\") TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')")
            .expect("copy");
        assert!(matches!(
            csv.format,
            Format::Csv {
                delimiter: ';',
                header: true,
                ..
            }
        ));
        assert_eq!(csv.query_sql(), "SELECT a, \"B\" FROM t");
        // psql's \copy … with csv header
        let legacy = copy("COPY t FROM STDIN WITH CSV HEADER").expect("copy");
        assert!(!legacy.to);
        assert!(matches!(legacy.format, Format::Csv { header: true, .. }));
        let code = |r: PgWireResult<Copy>| match r {
            Err(PgWireError::UserError(info)) => info.code.clone(),
            _ => panic!("not an error"),
        };
        assert_eq!(code(copy("COPY t TO STDOUT (FORMAT binary)")), "0A000");
        assert_eq!(code(copy("COPY t TO STDOUT (FORMAT xml)")), "22023");
        let file = Parser::parse_sql(&PostgreSqlDialect {}, "COPY t TO '/tmp/x'").expect("parses");
        assert!(copy_of(&file[0]).is_none());
    }

    #[test]
    fn text_rows_unescape_and_nulls() {
        let format = Format::Text {
            delimiter: '\t',
            null: "\\N".to_owned(),
        };
        let rows = parse_rows(
            &format,
            b"1\ta\\tb\\\\c\n2\t\\N\r\n3\t\\101\\x42\n\\.\nignored\n",
            2,
        )
        .expect("parses");
        assert_eq!(
            rows,
            vec![
                some(&["1", "a\tb\\c"]),
                vec![Some("2".to_owned()), None],
                some(&["3", "AB"]),
            ]
        );
        let err = parse_rows(&format, b"1\t2\t3\n", 2);
        assert!(matches!(err, Err(PgWireError::UserError(i)) if i.code == "22P04"));
    }

    #[test]
    fn csv_rows_quotes_nulls_and_header() {
        let format = Format::Csv {
            delimiter: ',',
            quote: '"',
            escape: '"',
            null: String::new(),
            header: true,
        };
        let rows = parse_rows(
            &format,
            b"id,name\n1,\"a, \"\"b\"\"\"\n2,\n3,\"\"\n4,\"two\nlines\"\r\n",
            2,
        )
        .expect("parses");
        assert_eq!(
            rows,
            vec![
                some(&["1", "a, \"b\""]),
                vec![Some("2".to_owned()), None],
                some(&["3", ""]),
                some(&["4", "two\nlines"]),
            ]
        );
        let err = parse_rows(&format, b"h\n\"open\n", 1);
        assert!(matches!(err, Err(PgWireError::UserError(i)) if i.code == "22P04"));
        assert_eq!(csv_field("a,b", ',', '"', '"'), "\"a,b\"");
        assert_eq!(csv_field("plain", ',', '"', '"'), "plain");
    }
}
