//! Date, time and interval values in the text form PostgreSQL writes them, for the result
//! columns a client reads as text.
//!
//! pgwire writes a `timestamptz` with the hours of its offset only (`+05`), so a client in
//! a zone such as Asia/Kolkata (+05:30) read every instant half an hour off; it writes six
//! fraction digits always (`03:04:05.000000`), and a NULL interval as `00:00:00`. Postgres
//! writes `2024-01-02 08:34:05+05:30`, `03:04:05.5` and NULL. Such columns are written here
//! as text, which pgwire passes through; the RowDescription keeps their types. Binary
//! results stay pgwire's, whose values are exact, but for intervals: pgwire wrote a NULL
//! interval as zero there too, so an interval column with NULLs is written here in
//! Postgres's binary form. Only the ISO DateStyle (Postgres's default) is written here.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, IntervalMonthDayNanoType, IntervalUnit,
    Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};

/// `batch` with its text-format timestamp, time and interval columns as Postgres's text.
pub(crate) fn postgres_text_forms(
    fields: &[FieldInfo],
    batch: RecordBatch,
) -> PgWireResult<RecordBatch> {
    let ours = |field: &FieldInfo, column: &ArrayRef| {
        let options = field.format_options();
        if field.format() == FieldFormat::Binary {
            return matches!(column.data_type(), DataType::Interval(_)) && column.null_count() > 0;
        }
        field.format() == FieldFormat::Text
            && match column.data_type() {
                DataType::Timestamp(..) | DataType::Time64(_) => {
                    options.date_style.trim_start().starts_with("ISO")
                }
                DataType::Interval(_) => options.interval_style.eq_ignore_ascii_case("postgres"),
                DataType::Float32 | DataType::Float64 => true,
                DataType::List(item) | DataType::LargeList(item) => {
                    matches!(item.data_type(), DataType::Float32 | DataType::Float64)
                }
                _ => false,
            }
    };
    let rewrite: Vec<usize> = fields
        .iter()
        .zip(batch.columns())
        .enumerate()
        .filter(|(_, (field, column))| ours(field, column))
        .map(|(i, _)| i)
        .collect();
    if rewrite.is_empty() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    for i in rewrite {
        let options = fields[i].format_options();
        let session_zone = options.time_zone.parse::<Tz>().ok();
        let extra_float_digits = i32::from(options.extra_float_digits);
        columns[i] = match fields[i].format() {
            FieldFormat::Binary => binary_intervals(&columns[i]),
            FieldFormat::Text => text_column(&columns[i], session_zone, extra_float_digits),
        }
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    }
    // the same names, now text
    let schema = datafusion::arrow::datatypes::Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// An interval `column` in Postgres's binary form, NULLs kept: microseconds (8 bytes), days
/// and months (4 bytes each), big-endian.
fn binary_intervals(column: &ArrayRef) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::BinaryBuilder;
    let parts =
        datafusion::arrow::compute::cast(column, &DataType::Interval(IntervalUnit::MonthDayNano))?;
    let parts = parts.as_primitive::<IntervalMonthDayNanoType>();
    let mut out = BinaryBuilder::with_capacity(parts.len(), parts.len() * 16);
    for value in parts.iter() {
        match value {
            Some(v) => {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&(v.nanoseconds / 1000).to_be_bytes());
                bytes[8..12].copy_from_slice(&v.days.to_be_bytes());
                bytes[12..].copy_from_slice(&v.months.to_be_bytes());
                out.append_value(bytes);
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `column` as text; a `timestamptz` in `session_zone` (the connection's TimeZone), as
/// Postgres shows every instant, else in the column's own zone; a float (or an array of
/// them) with the digits `extra_float_digits` asks for.
fn text_column(
    column: &ArrayRef,
    session_zone: Option<Tz>,
    extra_float_digits: i32,
) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::compute::cast;
    let mut out = StringBuilder::with_capacity(column.len(), column.len() * 24);
    match column.data_type() {
        DataType::Float32 => {
            for value in column.as_primitive::<Float32Type>().iter() {
                match value {
                    Some(v) => out.append_value(float4_text(v, extra_float_digits)),
                    None => out.append_null(),
                }
            }
        }
        DataType::Float64 => {
            for value in column.as_primitive::<Float64Type>().iter() {
                match value {
                    Some(v) => out.append_value(float8_text(v, extra_float_digits)),
                    None => out.append_null(),
                }
            }
        }
        // each element as text, which pgwire writes as an array's elements (`{1.5,NULL}`)
        DataType::List(item) | DataType::LargeList(item) => {
            let list = cast(column, &DataType::List(Arc::clone(item)))?;
            let list = list.as_list::<i32>();
            let values = text_column(list.values(), session_zone, extra_float_digits)?;
            let field = Arc::new(item.as_ref().clone().with_data_type(DataType::Utf8));
            return Ok(Arc::new(datafusion::arrow::array::ListArray::try_new(
                field,
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?));
        }
        DataType::Timestamp(_, zone) => {
            let micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let micros = micros.as_primitive::<TimestampMicrosecondType>();
            let zone: Option<Tz> = match zone {
                Some(own) => Some(session_zone.map_or_else(|| own.parse(), Ok)?),
                None => None,
            };
            for value in micros.iter() {
                let Some(value) = value.and_then(DateTime::from_timestamp_micros) else {
                    out.append_null();
                    continue;
                };
                match &zone {
                    Some(zone) => {
                        let local = zone.from_utc_datetime(&value.naive_utc());
                        out.append_value(timestamptz_text(&local.fixed_offset()));
                    }
                    None => out.append_value(timestamp_text(&value.naive_utc())),
                }
            }
        }
        DataType::Time64(_) => {
            let micros = cast(column, &DataType::Time64(TimeUnit::Microsecond))?;
            let micros = micros.as_primitive::<Time64MicrosecondType>();
            for value in micros.iter() {
                match value {
                    Some(v) => out.append_value(time_text(v)),
                    None => out.append_null(),
                }
            }
        }
        DataType::Interval(_) => {
            let parts = cast(column, &DataType::Interval(IntervalUnit::MonthDayNano))?;
            let parts = parts.as_primitive::<IntervalMonthDayNanoType>();
            for value in parts.iter() {
                match value {
                    Some(v) => {
                        out.append_value(interval_text(v.months, v.days, v.nanoseconds / 1000))
                    }
                    None => out.append_null(),
                }
            }
        }
        _ => return Ok(Arc::clone(column)),
    }
    Ok(Arc::new(out.finish()))
}

/// A `float8` as Postgres's `float8out` writes it: with `extra_float_digits` above 0 (its
/// default, 1) the fewest digits that read back as the same value, else rounded to
/// 15 + `extra_float_digits` digits (`%g`); `NaN`, `Infinity`, `-0`, `1e+20`.
pub fn float8_text(value: f64, extra_float_digits: i32) -> String {
    if extra_float_digits > 0 {
        float_text(value, &format!("{value:e}"), 15)
    } else {
        let digits = (15 + extra_float_digits).max(1);
        float_text(
            value,
            &format!("{value:.*e}", (digits - 1) as usize),
            digits,
        )
    }
}

/// A `float4` as Postgres's `float4out` writes it: as [`float8_text`], with 6 digits where
/// a `float8` has 15.
pub fn float4_text(value: f32, extra_float_digits: i32) -> String {
    if extra_float_digits > 0 {
        float_text(f64::from(value), &format!("{value:e}"), 6)
    } else {
        let digits = (6 + extra_float_digits).max(1);
        float_text(
            f64::from(value),
            &format!("{value:.*e}", (digits - 1) as usize),
            digits,
        )
    }
}

/// `scientific` (Rust's `{:e}` of `value`: `-1.50e-7`) as Postgres writes it: in positional
/// notation when the exponent is at least -4 and below `positional_below`, else as `1.5e-07`;
/// trailing zeros dropped.
fn float_text(value: f64, scientific: &str, positional_below: i32) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    if (-4..positional_below).contains(&exponent) {
        let point = exponent + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if digits.len() <= point as usize {
            format!("{digits}{}", "0".repeat(point as usize - digits.len()))
        } else {
            let (whole, part) = digits.split_at(point as usize);
            format!("{whole}.{part}")
        };
        return format!("{sign}{body}");
    }
    let (first, rest) = digits.split_at(1);
    let point = if rest.is_empty() { "" } else { "." };
    let exp_sign = if exponent < 0 { '-' } else { '+' };
    format!(
        "{sign}{first}{point}{rest}e{exp_sign}{:02}",
        exponent.unsigned_abs()
    )
}

/// An interval as Postgres writes it (IntervalStyle `postgres`): `1 year 2 mons 3 days
/// 04:05:06`, `-1 days +02:00:00`, `00:00:00` (its `EncodeInterval`).
fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::new();
    let (mut is_zero, mut is_before) = (true, false);
    for (value, unit) in [
        (i64::from(months / 12), "year"),
        (i64::from(months % 12), "mon"),
        (i64::from(days), "day"),
    ] {
        if value == 0 {
            continue;
        }
        let space = if is_zero { "" } else { " " };
        let plus = if is_before && value > 0 { "+" } else { "" };
        let plural = if value == 1 { "" } else { "s" };
        out.push_str(&format!("{space}{plus}{value} {unit}{plural}"));
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || micros != 0 {
        let space = if is_zero { "" } else { " " };
        let sign = if micros < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        let abs = micros.unsigned_abs();
        let seconds = abs / 1_000_000;
        let rest = u32::try_from(abs % 1_000_000).unwrap_or(0);
        out.push_str(&format!(
            "{space}{sign}{:02}:{:02}:{:02}{}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            fraction(rest)
        ));
    }
    out
}

/// `.5`, `.123456`, or nothing for whole seconds: Postgres's fraction of a second.
fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let digits = format!(".{micros:06}");
    digits.trim_end_matches('0').to_owned()
}

fn timestamp_text(value: &NaiveDateTime) -> String {
    format!(
        "{}{}",
        value.format("%Y-%m-%d %H:%M:%S"),
        fraction(value.and_utc().timestamp_subsec_micros())
    )
}

fn timestamptz_text(value: &DateTime<FixedOffset>) -> String {
    let offset = value.offset().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs();
    let (hours, minutes, seconds) = (offset / 3600, offset / 60 % 60, offset % 60);
    let zone = match (minutes, seconds) {
        (0, 0) => format!("{sign}{hours:02}"),
        (_, 0) => format!("{sign}{hours:02}:{minutes:02}"),
        _ => format!("{sign}{hours:02}:{minutes:02}:{seconds:02}"),
    };
    format!(
        "{}{}{zone}",
        value.naive_local().format("%Y-%m-%d %H:%M:%S"),
        fraction(value.timestamp_subsec_micros())
    )
}

fn time_text(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let rest = u32::try_from(micros.rem_euclid(1_000_000)).unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}{}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        fraction(rest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(column: ArrayRef) -> Vec<Option<String>> {
        let out = text_column(&column, None, 1).expect("converts");
        out.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    #[test]
    fn intervals_are_written_as_postgres_writes_them() {
        // SELECT INTERVAL '…' in PostgreSQL 16
        let hour = 3_600_000_000_i64;
        assert_eq!(
            interval_text(0, 1, 2 * hour + 3 * 60_000_000 + 4_000_000),
            "1 day 02:03:04"
        );
        assert_eq!(interval_text(0, -1, 2 * hour), "-1 days +02:00:00");
        assert_eq!(interval_text(14, 0, 0), "1 year 2 mons");
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(interval_text(0, 0, -1_500_000), "-00:00:01.5");
        assert_eq!(interval_text(-13, 2, 0), "-1 years -1 mons +2 days");
        assert_eq!(interval_text(0, 0, 30 * hour), "30:00:00");
        use datafusion::arrow::array::IntervalMonthDayNanoArray;
        use datafusion::arrow::datatypes::IntervalMonthDayNano;
        let column = Arc::new(IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(0, 1, 0)),
            None,
        ]));
        assert_eq!(texts(column), [Some("1 day".to_owned()), None]);
    }

    #[test]
    fn binary_intervals_keep_nulls() {
        use datafusion::arrow::array::IntervalMonthDayNanoArray;
        use datafusion::arrow::datatypes::IntervalMonthDayNano;
        let column: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(14, -3, 1_500_000)),
            None,
        ]));
        let out = binary_intervals(&column).expect("converts");
        let out = out.as_binary::<i32>();
        // what PostgreSQL 16 sends for '1 year 2 mons -3 days 0.0015 secs' in binary
        assert_eq!(
            out.value(0),
            [
                0, 0, 0, 0, 0, 0, 0x05, 0xdc, 0xff, 0xff, 0xff, 0xfd, 0, 0, 0, 14
            ]
        );
        assert!(out.is_null(1));
    }

    #[test]
    fn timestamps_are_written_as_postgres_writes_them() {
        use datafusion::arrow::array::{Time64NanosecondArray, TimestampNanosecondArray};
        // 2024-01-02 03:04:05 UTC, and half a second later
        let instant = 1_704_164_645_000_000_000_i64;
        let zoned = |zone: &str| {
            Arc::new(
                TimestampNanosecondArray::from(vec![
                    Some(instant),
                    Some(instant + 500_000_000),
                    None,
                ])
                .with_timezone(zone),
            ) as ArrayRef
        };
        // SELECT TIMESTAMPTZ '2024-01-02 03:04:05+00' in PostgreSQL 16 under each TimeZone
        assert_eq!(
            texts(zoned("Asia/Kolkata")),
            [
                Some("2024-01-02 08:34:05+05:30".to_owned()),
                Some("2024-01-02 08:34:05.5+05:30".to_owned()),
                None
            ]
        );
        assert_eq!(
            texts(zoned("UTC"))[0].as_deref(),
            Some("2024-01-02 03:04:05+00")
        );
        // a UTC column under a session in Asia/Kolkata
        let session = text_column(&zoned("UTC"), "Asia/Kolkata".parse().ok(), 1).expect("converts");
        assert_eq!(
            session.as_string::<i32>().value(0),
            "2024-01-02 08:34:05+05:30"
        );
        assert_eq!(
            texts(zoned("America/New_York"))[0].as_deref(),
            Some("2024-01-01 22:04:05-05")
        );
        let naive = Arc::new(TimestampNanosecondArray::from(vec![instant + 123_456_000]));
        assert_eq!(
            texts(naive)[0].as_deref(),
            Some("2024-01-02 03:04:05.123456")
        );
        let times = Arc::new(Time64NanosecondArray::from(vec![
            43_200_000_000_000,
            1_500_000_000,
        ]));
        assert_eq!(
            texts(times),
            [Some("12:00:00".to_owned()), Some("00:00:01.5".to_owned())]
        );
    }

    #[test]
    fn floats_are_written_as_postgres_writes_them() {
        // SET extra_float_digits = …; SELECT x::float8, …::real in PostgreSQL 15
        let doubles = [
            100.0,
            1e15,
            1e14,
            123_456_789_012_345_680.0,
            0.0001,
            0.00001,
            1.5e-7,
            1e100,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.0,
            0.1,
            1.0 / 3.0,
        ];
        let written = |digits: i32| -> Vec<String> {
            doubles.iter().map(|v| float8_text(*v, digits)).collect()
        };
        assert_eq!(
            written(1).join("|"),
            "100|1e+15|100000000000000|1.2345678901234568e+17|0.0001|1e-05|1.5e-07|1e+100|\
             Infinity|-Infinity|NaN|-0|0.1|0.3333333333333333"
        );
        assert_eq!(
            written(0).join("|"),
            "100|1e+15|100000000000000|1.23456789012346e+17|0.0001|1e-05|1.5e-07|1e+100|\
             Infinity|-Infinity|NaN|-0|0.1|0.333333333333333"
        );
        assert_eq!(
            written(-3).join("|"),
            "100|1e+15|1e+14|1.23456789012e+17|0.0001|1e-05|1.5e-07|1e+100|\
             Infinity|-Infinity|NaN|-0|0.1|0.333333333333"
        );
        let singles = [
            1e6_f32,
            123_456.0,
            1_234_567.0,
            0.1,
            1.0 / 3.0,
            1e-5,
            f32::NEG_INFINITY,
        ];
        let written = |digits: i32| -> Vec<String> {
            singles.iter().map(|v| float4_text(*v, digits)).collect()
        };
        assert_eq!(
            written(1).join("|"),
            "1e+06|123456|1.234567e+06|0.1|0.33333334|1e-05|-Infinity"
        );
        assert_eq!(
            written(0).join("|"),
            "1e+06|123456|1.23457e+06|0.1|0.333333|1e-05|-Infinity"
        );
        assert_eq!(
            written(-3).join("|"),
            "1e+06|1.23e+05|1.23e+06|0.1|0.333|1e-05|-Infinity"
        );
        // an array's elements alike
        let list = datafusion::arrow::array::ListArray::from_iter_primitive::<Float64Type, _, _>([
            Some(vec![Some(1.5), Some(100.0), None]),
            None,
        ]);
        let out = text_column(&(Arc::new(list) as ArrayRef), None, 1).expect("converts");
        let out = out.as_list::<i32>();
        assert!(out.is_null(1));
        let first: Vec<Option<String>> = out
            .value(0)
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect();
        assert_eq!(
            first,
            [Some("1.5".to_owned()), Some("100".to_owned()), None]
        );
    }
}
