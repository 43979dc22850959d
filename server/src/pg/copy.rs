//! `COPY … TO STDOUT` and `COPY … FROM STDIN`: how psql's `\copy`, pandas, DBeaver and
//! pgjdbc's `CopyManager` (Metabase's CSV uploads) move data in and out, in Postgres's text
//! and CSV formats.
//!
//! Out, the rows are computed and written before the response starts, so an error on the
//! way is an ErrorResponse (a server cannot fail a COPY once begun), the statement can be
//! cancelled, and the export is held in memory; then one `CopyData` per row, written from
//! the Postgres text forms of the values. In, the data is read when the client ends it
//! (`CopyDone`), parsed, and appended to the table in one commit, its columns cast to the
//! table's types (`bytea` read from its input form): nothing is written if any row is bad, and
//! the data is held in memory until then. The binary format is not supported (0A000).

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Query, Statement as SqlStatement,
};
use datafusion_postgres::arrow_pg::datatypes::encode_recordbatch;
use pgwire::api::results::FieldInfo;
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
    /// Postgres's default: `delimiter`-separated (a tab), backslash escapes, `null` (`\N`);
    /// a header line of column names since PostgreSQL 15.
    Text {
        delimiter: char,
        null: String,
        header: bool,
    },
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
    let one_byte = |c: char| c.len_utf8() == 1 && c != '\n' && c != '\r';
    let delimiter_char = delimiter.unwrap_or(if csv { ',' } else { '\t' });
    if !one_byte(delimiter_char) || (!csv && delimiter_char == '\\') {
        return Err(error(
            "22023",
            "COPY delimiter must be a single one-byte character, not a line break or backslash",
        ));
    }
    if csv && (!one_byte(quote) || !escape.is_none_or(one_byte)) {
        return Err(error(
            "22023",
            "COPY quote and escape must be single one-byte characters",
        ));
    }
    if csv && delimiter_char == quote {
        return Err(error("22023", "COPY delimiter and quote must be different"));
    }
    if null.as_deref().is_some_and(|n| n.contains(delimiter_char)) {
        return Err(error(
            "22023",
            "COPY delimiter character must not appear in the NULL specification",
        ));
    }
    if csv {
        Ok(Format::Csv {
            delimiter: delimiter.unwrap_or(','),
            quote,
            escape: escape.unwrap_or(quote),
            null: null.unwrap_or_default(),
            header,
        })
    } else {
        Ok(Format::Text {
            delimiter: delimiter.unwrap_or('\t'),
            null: null.unwrap_or_else(|| "\\N".to_owned()),
            header,
        })
    }
}

/// Writes rows in `format`, from their Postgres text forms.
pub(crate) struct Writer {
    fields: Arc<Vec<FieldInfo>>,
    format: Format,
    /// The CSV header line, until it is written ahead of the first row.
    header: Option<Vec<u8>>,
}

impl Writer {
    /// `fields`: the result's columns, in the text format.
    pub(crate) fn new(fields: Arc<Vec<FieldInfo>>, format: &Format) -> Self {
        let header = match format {
            Format::Csv { header: true, .. } | Format::Text { header: true, .. } => {
                let mut line = Vec::new();
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        push_char(&mut line, format.delimiter());
                    }
                    write_value(&mut line, format, Some(field.name().as_bytes()));
                }
                line.push(b'\n');
                Some(line)
            }
            _ => None,
        };
        Self {
            fields,
            format: format.clone(),
            header,
        }
    }

    /// `batch`'s rows (its columns already in their text forms), one `CopyData` each.
    pub(crate) fn rows(&mut self, batch: RecordBatch) -> PgWireResult<Vec<CopyData>> {
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in encode_recordbatch(Arc::clone(&self.fields), batch) {
            let row = row?;
            // the header rides with the first row: pgwire counts a message as a row
            let mut line = self.header.take().unwrap_or_default();
            for (i, value) in data_row_values(&row.data).enumerate() {
                if i > 0 {
                    push_char(&mut line, self.format.delimiter());
                }
                write_value(&mut line, &self.format, value);
            }
            line.push(b'\n');
            out.push(CopyData::new(Bytes::from(line)));
        }
        Ok(out)
    }

    /// The header, if no row took it (an empty result).
    pub(crate) fn unwritten_header(&mut self) -> Option<CopyData> {
        self.header.take().map(|h| CopyData::new(Bytes::from(h)))
    }
}

impl Format {
    fn delimiter(&self) -> char {
        match self {
            Format::Text { delimiter, .. } | Format::Csv { delimiter, .. } => *delimiter,
        }
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// The values of a text-format DataRow's body: each a length (-1 for NULL) and its bytes.
fn data_row_values(data: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            rest = tail;
            return Some(None);
        }
        let len = usize::try_from(len).ok()?.min(tail.len());
        let (value, tail) = tail.split_at(len);
        rest = tail;
        Some(Some(value))
    })
}

/// One value as COPY writes it in `format`: in text, NULL as its marker and backslash escapes
/// for backslash, line breaks, tab and the delimiter; in CSV, NULL as its marker unquoted and
/// a value quoted when it holds the delimiter, a quote, a line break, or reads as the NULL
/// marker (so `""` is an empty string where the marker is empty).
fn write_value(out: &mut Vec<u8>, format: &Format, value: Option<&[u8]>) {
    match format {
        Format::Text {
            delimiter, null, ..
        } => match value {
            None => out.extend_from_slice(null.as_bytes()),
            Some(value) => {
                let text = String::from_utf8_lossy(value);
                for c in text.chars() {
                    match c {
                        '\\' => out.extend_from_slice(b"\\\\"),
                        '\n' => out.extend_from_slice(b"\\n"),
                        '\r' => out.extend_from_slice(b"\\r"),
                        '\t' => out.extend_from_slice(b"\\t"),
                        c if c == *delimiter => {
                            out.push(b'\\');
                            push_char(out, c);
                        }
                        c => push_char(out, c),
                    }
                }
            }
        },
        Format::Csv {
            delimiter,
            quote,
            escape,
            null,
            ..
        } => match value {
            None => out.extend_from_slice(null.as_bytes()),
            Some(value) => {
                let text = String::from_utf8_lossy(value);
                let quoted = text == *null
                    || text == "\\."
                    || text.contains([*delimiter, *quote, '\n', '\r']);
                if !quoted {
                    out.extend_from_slice(text.as_bytes());
                    return;
                }
                push_char(out, *quote);
                for c in text.chars() {
                    if c == *quote || c == *escape {
                        push_char(out, *escape);
                    }
                    push_char(out, c);
                }
                push_char(out, *quote);
            }
        },
    }
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
        Format::Text {
            delimiter,
            null,
            header,
        } => {
            let mut rows = text_rows(text, *delimiter, null)?;
            if *header && !rows.is_empty() {
                rows.remove(0);
            }
            rows
        }
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
    let mut lines: Vec<&str> = text.split('\n').collect();
    // the data ends with a line break: nothing after it is a row
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for line in lines {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        let mut row = Vec::new();
        let mut raw = String::new();
        // escapes give bytes (`\303\251` is é): a value is checked as UTF-8 when it ends
        let mut value: Vec<u8> = Vec::new();
        let finish = |raw: &mut String,
                      value: &mut Vec<u8>,
                      row: &mut Vec<Option<String>>|
         -> PgWireResult<()> {
            let bytes = std::mem::take(value);
            let text = String::from_utf8(bytes).map_err(|e| {
                error(
                    "22021",
                    format!("invalid byte sequence for encoding \"UTF8\": {e}"),
                )
            })?;
            row.push((raw.as_str() != null).then_some(text));
            raw.clear();
            Ok(())
        };
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == delimiter {
                finish(&mut raw, &mut value, &mut row)?;
                continue;
            }
            raw.push(c);
            if c != '\\' {
                push_char(&mut value, c);
                continue;
            }
            let Some(e) = chars.next() else {
                return Err(error("22P02", "a COPY line ends in a lone backslash"));
            };
            raw.push(e);
            match e {
                'b' => value.push(0x08),
                'f' => value.push(0x0c),
                'n' => value.push(b'\n'),
                'r' => value.push(b'\r'),
                't' => value.push(b'\t'),
                'v' => value.push(0x0b),
                '0'..='7' => {
                    let first = e.to_digit(8).unwrap_or(0);
                    value.push(digits(&mut chars, &mut raw, 8, first));
                }
                'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
                    value.push(digits(&mut chars, &mut raw, 16, 0));
                }
                other => push_char(&mut value, other),
            }
        }
        finish(&mut raw, &mut value, &mut row)?;
        rows.push(row);
    }
    Ok(rows)
}

/// Up to two more digits of an escape, in `radix`, after `first`: the byte they make.
fn digits(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    raw: &mut String,
    radix: u32,
    first: u32,
) -> u8 {
    let mut n = first;
    for _ in 0..2 {
        match chars.peek().and_then(|d| d.to_digit(radix)) {
            Some(d) => {
                n = n * radix + d;
                if let Some(d) = chars.next() {
                    raw.push(d);
                }
            }
            None => break,
        }
    }
    u8::try_from(n & 0xff).unwrap_or(0)
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
            // every line is a row, an empty one too (one unquoted empty field)
            finish(&mut row, &mut value, quoted);
            rows.push(std::mem::take(&mut row));
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

/// `rows` as a batch of columns named `names`, for the load to cast to the table's types:
/// text, but for `bytea` columns (`binary[i]`), whose input (`\x00ff`) is read as Postgres
/// reads it (22P02 if it is not bytea input).
pub(crate) fn text_batch(
    names: &[String],
    binary: &[bool],
    rows: &[Vec<Option<String>>],
) -> PgWireResult<RecordBatch> {
    let mut fields = Vec::with_capacity(names.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if binary.get(i).copied().unwrap_or(false) {
            let mut values = Vec::with_capacity(rows.len());
            for row in rows {
                values.push(match row[i].as_deref() {
                    None => None,
                    Some(text) => Some(tarn_sql::bytea_input(text).ok_or_else(|| {
                        error(
                            "22P02",
                            format!("invalid input syntax for type bytea: \"{text}\""),
                        )
                    })?),
                });
            }
            fields.push(Field::new(name, DataType::Binary, true));
            columns.push(Arc::new(datafusion::arrow::array::BinaryArray::from_iter(
                values.iter().map(Option::as_deref),
            )));
        } else {
            fields.push(Field::new(name, DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r[i].as_deref()),
            )));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// A COPY FROM STDIN under way: where its rows go, and the data so far.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The data went past `pg.max_copy_bytes`; what came is dropped.
    pub(crate) too_large: bool,
    pub(crate) table: tarn_catalog::TableRef,
    /// The columns the data has, in order.
    pub(crate) columns: Vec<String>,
    /// Which of them are `bytea` in the table.
    pub(crate) binary: Vec<bool>,
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
                null: "\\N".to_owned(),
                header: false,
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
        assert_eq!(code(copy("COPY t TO STDOUT (DELIMITER '\\')")), "22023");
        assert_eq!(
            code(copy("COPY t TO STDOUT (FORMAT csv, DELIMITER '\"')")),
            "22023"
        );
        assert_eq!(code(copy("COPY t TO STDOUT (FORMAT xml)")), "22023");
        let file = Parser::parse_sql(&PostgreSqlDialect {}, "COPY t TO '/tmp/x'").expect("parses");
        assert!(copy_of(&file[0]).is_none());
    }

    #[test]
    fn text_rows_unescape_and_nulls() {
        let format = Format::Text {
            delimiter: '\t',
            null: "\\N".to_owned(),
            header: false,
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
        // an empty line is a row of one empty string; escapes give bytes
        let one = parse_rows(&format, b"a\n\n\\303\\251\n", 1).expect("parses");
        assert_eq!(one, vec![some(&["a"]), some(&[""]), some(&["\u{e9}"])]);
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
        let csv = |v: Option<&str>| {
            let mut out = Vec::new();
            write_value(&mut out, &format, v.map(str::as_bytes));
            String::from_utf8(out).expect("utf-8")
        };
        assert_eq!(csv(Some("a,b")), "\"a,b\"");
        assert_eq!(csv(Some("plain")), "plain");
        // an empty string is quoted where NULL is the empty marker
        assert_eq!(
            (csv(Some("")), csv(None)),
            ("\"\"".to_owned(), String::new())
        );
        assert_eq!(csv(Some("say \"hi\"")), "\"say \"\"hi\"\"\"");
    }
}
