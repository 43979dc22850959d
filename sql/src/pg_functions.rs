//! Postgres functions BI tools and drivers call that `datafusion-pg-catalog` does not have:
//! `version()`, `to_regtype`, the `*_is_visible` checks, `pg_size_pretty`, and the lookups
//! that have no answer in a lake (`pg_get_serial_sequence`: tarn has no sequences;
//! `pg_get_constraintdef`, `pg_get_indexdef`, `pg_get_expr`: no constraints, no indexes,
//! no column defaults).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

use crate::error::Result;

/// The Postgres release tarn answers as: drivers and BI tools read it (`server_version`,
/// `version()`) to decide which catalog queries to send.
pub const PG_SERVER_VERSION: &str = "16.6";

/// Registers the functions on `ctx`, whose `pg_catalog` is already set up.
pub(crate) async fn register(ctx: &SessionContext) -> Result<()> {
    ctx.register_udf(version());
    ctx.register_udf(to_regtype(type_oids(ctx).await?));
    for name in [
        "pg_function_is_visible",
        "pg_type_is_visible",
        "pg_collation_is_visible",
    ] {
        ctx.register_udf(always_visible(name));
    }
    ctx.register_udf(pg_size_pretty());
    ctx.register_udf(pg_get_serial_sequence());
    ctx.register_udf(pg_encoding_to_char());
    // tarn has no constraints, no indexes and no column defaults (its pg_constraint, pg_index
    // and pg_attrdef are empty): no OID names one, and Postgres answers NULL for an OID that
    // names nothing. No expression tree (`pg_get_expr`) either: the crate's answers "".
    for (name, arities) in [
        ("pg_get_constraintdef", &[1, 2][..]),
        ("pg_get_indexdef", &[1, 3][..]),
        ("pg_get_expr", &[2, 3][..]),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(NoSuchObject::new(name, arities)));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
    Ok(())
}

/// `version()` as Postgres words it, which tools parse (`PostgreSQL 16.6 …`).
fn version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {PG_SERVER_VERSION} (tarn {}, Apache DataFusion {}) on {}-{}",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
    );
    constant_text("version", Some(text), Volatility::Immutable)
}

/// A function of no arguments that answers `value` (`version()`, `session_user`,
/// `current_schema()`).
pub(crate) fn constant_text(
    name: &str,
    value: Option<String>,
    volatility: Volatility,
) -> ScalarUDF {
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        volatility,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value.clone())))
        }),
    )
}

/// `pg_type`'s names and OIDs, read once: types never change in tarn.
async fn type_oids(ctx: &SessionContext) -> Result<HashMap<String, i32>> {
    let batches = ctx
        .sql("SELECT typname, CAST(oid AS INT) FROM pg_catalog.pg_type")
        .await?
        .collect()
        .await?;
    let mut oids = HashMap::new();
    for batch in batches {
        let names = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let values = batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        for i in 0..batch.num_rows() {
            if names.is_valid(i) && values.is_valid(i) {
                oids.insert(names.value(i).to_owned(), values.value(i));
            }
        }
    }
    Ok(oids)
}

/// The `pg_type` name a type name written in SQL stands for: `integer` is `int4`,
/// `text[]` is `_text`, `pg_catalog.` and quotes are dropped. `None`: not a type name.
fn type_name(written: &str) -> Option<String> {
    let mut name = written.trim().to_lowercase();
    if let Some(rest) = name.strip_prefix("pg_catalog.") {
        name = rest.to_owned();
    }
    let name = name.replace('"', "");
    if let Some(element) = name.strip_suffix("[]") {
        return type_name(element).map(|e| format!("_{e}"));
    }
    // A length or precision, `varchar(20)`, `numeric(10,2)`, names the same type.
    let base = match name.find('(') {
        Some(at) if name.ends_with(')') => name[..at].trim_end().to_owned(),
        Some(_) => return None,
        None => name,
    };
    let canonical = match base.as_str() {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        "bit varying" => "varbit",
        other => other,
    };
    Some(canonical.to_owned())
}

/// `to_regtype(text)`: the type's OID, or NULL for a name that is not a type (psycopg
/// looks types up this way, e.g. `hstore` when SQLAlchemy connects).
fn to_regtype(oids: HashMap<String, i32>) -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let names = datafusion::arrow::compute::cast(&args[0], &DataType::Utf8)?;
            let names = names.as_string::<i32>();
            let mut out = Int32Builder::with_capacity(names.len());
            for name in names.iter() {
                out.append_option(name.and_then(type_name).and_then(|n| oids.get(&n).copied()));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// `pg_function_is_visible(oid)`, `pg_type_is_visible(oid)`, `pg_collation_is_visible(oid)`:
/// every function, type and collation is in `pg_catalog`, always on the search path. Any
/// integer is taken as an OID, as Postgres takes an integer constant.
fn always_visible(name: &str) -> ScalarUDF {
    ScalarUDF::new_from_impl(AlwaysVisible {
        name: name.to_owned(),
        signature: datafusion::logical_expr::Signature::any(1, Volatility::Stable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AlwaysVisible {
    name: String,
    signature: datafusion::logical_expr::Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for AlwaysVisible {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        match &args[0] {
            DataType::Null | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                Ok(DataType::Boolean)
            }
            DataType::UInt32 | DataType::UInt64 => Ok(DataType::Boolean),
            other => datafusion::common::plan_err!(
                "function {}({other}) does not exist: it takes an oid",
                self.name
            ),
        }
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let oids = ColumnarValue::values_to_arrays(&args.args)?;
        let visible: BooleanArray = (0..oids[0].len())
            .map(|i| oids[0].is_valid(i).then_some(true))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(visible)))
    }
}

/// `pg_size_pretty(bigint)`: bytes in the largest unit that keeps at least 10 of it, as
/// Postgres rounds them (`10 kB`, `1536 kB`, `2 GB`).
fn pg_size_pretty() -> ScalarUDF {
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let sizes = args[0].as_primitive::<Int64Type>();
            let mut out = StringBuilder::new();
            for size in sizes.iter() {
                out.append_option(size.map(size_pretty));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// Postgres' `pg_size_pretty` (dbsize.c): each unit is kept while the size is below its
/// limit; past `bytes` the value carries one extra bit, halved with rounding at the end.
fn size_pretty(bytes: i64) -> String {
    // (name, limit, rounds, bits)
    const UNITS: [(&str, u64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let mut size = bytes;
    for (i, &(name, limit, round, bits)) in UNITS.iter().enumerate() {
        let Some(&(_, _, next_round, next_bits)) = UNITS.get(i + 1) else {
            return finish(size, name, round);
        };
        if size.unsigned_abs() < limit {
            return finish(size, name, round);
        }
        let shift = next_bits - bits - u32::from(next_round) + u32::from(round);
        // Division, not a shift: negative sizes round like positive ones.
        size /= 1i64 << shift;
    }
    unreachable!("the last unit returns")
}

fn finish(size: i64, unit: &str, round: bool) -> String {
    let size = if round {
        (size + if size < 0 { -1 } else { 1 }) / 2
    } else {
        size
    };
    format!("{size} {unit}")
}

/// `pg_get_serial_sequence(table, column)`: tarn has no sequences, so NULL, as Postgres
/// answers for a column without one.
fn pg_get_serial_sequence() -> ScalarUDF {
    create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_null_array(&DataType::Utf8, args[0].len()),
            ))
        }),
    )
}

/// Postgres' encoding names by id (its `pg_enc`); tarn's databases are all 6, `UTF8`.
const ENCODINGS: &[&str] = &[
    "SQL_ASCII",
    "EUC_JP",
    "EUC_CN",
    "EUC_KR",
    "EUC_TW",
    "EUC_JIS_2004",
    "UTF8",
    "MULE_INTERNAL",
    "LATIN1",
    "LATIN2",
    "LATIN3",
    "LATIN4",
    "LATIN5",
    "LATIN6",
    "LATIN7",
    "LATIN8",
    "LATIN9",
    "LATIN10",
    "WIN1256",
    "WIN1258",
    "WIN866",
    "WIN874",
    "KOI8R",
    "WIN1251",
    "WIN1252",
    "ISO_8859_5",
    "ISO_8859_6",
    "ISO_8859_7",
    "ISO_8859_8",
    "WIN1250",
    "WIN1253",
    "WIN1254",
    "WIN1255",
    "WIN1257",
    "KOI8U",
    "SJIS",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
    "SHIFT_JIS_2004",
];

/// `pg_encoding_to_char(id)` with Postgres' names (`UTF8`; the crate's says `UTF-8`, which
/// pgcli and psql's `\l` show), and `''` for an id that names none, as Postgres answers.
fn pg_encoding_to_char() -> ScalarUDF {
    create_udf(
        "pg_encoding_to_char",
        vec![DataType::Int32],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let ids = args[0].as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            let names: datafusion::arrow::array::StringArray = ids
                .iter()
                .map(|id| {
                    id.map(|id| {
                        usize::try_from(id)
                            .ok()
                            .and_then(|i| ENCODINGS.get(i))
                            .copied()
                            .unwrap_or("")
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(names)))
        }),
    )
}

/// A `pg_get_*(…)` of objects tarn never has: NULL for every argument. Any argument types,
/// since drivers bind the flags as text or bool.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoSuchObject {
    name: &'static str,
    signature: datafusion::logical_expr::Signature,
}

impl NoSuchObject {
    fn new(name: &'static str, arities: &[usize]) -> Self {
        let signatures = arities
            .iter()
            .map(|n| datafusion::logical_expr::TypeSignature::Any(*n))
            .collect();
        Self {
            name,
            signature: datafusion::logical_expr::Signature::one_of(signatures, Volatility::Stable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for NoSuchObject {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        _args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_named_as_postgres_names_them() {
        // SELECT pg_encoding_to_char(n) in PostgreSQL 16
        assert_eq!(ENCODINGS[6], "UTF8");
        assert_eq!(ENCODINGS[0], "SQL_ASCII");
        assert_eq!(ENCODINGS[8], "LATIN1");
        assert_eq!(ENCODINGS[41], "SHIFT_JIS_2004");
    }

    #[test]
    fn type_names_fold_to_pg_type_names() {
        assert_eq!(type_name("integer").as_deref(), Some("int4"));
        assert_eq!(type_name("pg_catalog.INT8").as_deref(), Some("int8"));
        assert_eq!(
            type_name("character varying(20)").as_deref(),
            Some("varchar")
        );
        assert_eq!(type_name("text[]").as_deref(), Some("_text"));
        assert_eq!(type_name("\"hstore\"").as_deref(), Some("hstore"));
        assert_eq!(type_name("numeric(10").as_deref(), None);
    }

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        // Each checked against PostgreSQL 16's pg_size_pretty.
        for (bytes, text) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (1_572_864, "1536 kB"),
            (10_485_247, "10239 kB"),
            (10_485_760, "10 MB"),
            (2_147_483_648, "2048 MB"),
            (21_474_836_480, "20 GB"),
            (-10240, "-10 kB"),
        ] {
            assert_eq!(size_pretty(bytes), text, "{bytes}");
        }
    }
}

/// `json_build_object(key, value, …)`: a JSON object, as text (SQLAlchemy's column
/// reflection builds identity and collation details with it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: datafusion::logical_expr::Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return datafusion::common::plan_err!(
                "argument list must have even number of elements"
            );
        }
        let rows = args.number_rows;
        let columns = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in columns.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return datafusion::common::exec_err!("null value not allowed for object key");
                }
                let key = match key {
                    ScalarValue::Utf8(Some(k))
                    | ScalarValue::LargeUtf8(Some(k))
                    | ScalarValue::Utf8View(Some(k)) => k,
                    other => other.to_string(),
                };
                let value = json_value(&ScalarValue::try_from_array(&pair[1], row)?);
                object.insert(key, value);
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// A SQL value as JSON: numbers and booleans as themselves, the rest as their text.
fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if value.is_null() {
        return Value::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(v)) => Value::from(*v),
        ScalarValue::Int16(Some(v)) => Value::from(*v),
        ScalarValue::Int32(Some(v)) => Value::from(*v),
        ScalarValue::Int64(Some(v)) => Value::from(*v),
        ScalarValue::UInt8(Some(v)) => Value::from(*v),
        ScalarValue::UInt16(Some(v)) => Value::from(*v),
        ScalarValue::UInt32(Some(v)) => Value::from(*v),
        ScalarValue::UInt64(Some(v)) => Value::from(*v),
        ScalarValue::Float32(Some(v)) => serde_json::Number::from_f64(f64::from(*v))
            .map_or_else(|| Value::String(v.to_string()), Value::Number),
        ScalarValue::Float64(Some(v)) => serde_json::Number::from_f64(*v)
            .map_or_else(|| Value::String(v.to_string()), Value::Number),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// `current_setting(name [, missing_ok])` over one connection's settings (lower-case names),
/// which the wire layer keeps and hands over whenever they change.
pub(crate) fn current_setting(settings: HashMap<String, String>) -> ScalarUDF {
    use datafusion::logical_expr::{Signature, TypeSignature};
    ScalarUDF::new_from_impl(CurrentSetting {
        settings,
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Stable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq)]
struct CurrentSetting {
    settings: HashMap<String, String>,
    signature: datafusion::logical_expr::Signature,
}

impl std::hash::Hash for CurrentSetting {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut names: Vec<_> = self.settings.iter().collect();
        names.sort();
        names.hash(state);
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let columns = ColumnarValue::values_to_arrays(&args.args)?;
        let names = columns[0].as_string::<i32>();
        let missing_ok = columns.get(1).map(|c| c.as_boolean().clone());
        let mut out = StringBuilder::new();
        for i in 0..names.len() {
            if names.is_null(i) {
                out.append_null();
                continue;
            }
            let name = names.value(i).to_lowercase();
            match self.settings.get(&name) {
                Some(value) => out.append_value(value),
                None if missing_ok
                    .as_ref()
                    .is_some_and(|m| m.is_valid(i) && m.value(i)) =>
                {
                    out.append_null();
                }
                None => {
                    return datafusion::common::plan_err!(
                        "unrecognized configuration parameter \"{name}\""
                    );
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `current_schema()` and `current_schemas(include_implicit)` over a search path's schemas
/// that exist, in order; `pg_catalog` is searched first unless the path names it.
pub(crate) fn search_path_functions(path: &[String]) -> [ScalarUDF; 2] {
    let current_schema = constant_text("current_schema", path.first().cloned(), Volatility::Stable);
    let explicit = path.to_vec();
    let mut implicit = path.to_vec();
    if !implicit.iter().any(|s| s == "pg_catalog") {
        implicit.insert(0, "pg_catalog".to_owned());
    }
    let item = Arc::new(datafusion::arrow::datatypes::Field::new(
        "item",
        DataType::Utf8,
        true,
    ));
    let list = |schemas: &[String]| {
        ScalarValue::List(ScalarValue::new_list_nullable(
            &schemas
                .iter()
                .map(|s| ScalarValue::Utf8(Some(s.clone())))
                .collect::<Vec<_>>(),
            &DataType::Utf8,
        ))
    };
    let (explicit, implicit) = (list(&explicit), list(&implicit));
    let current_schemas = create_udf(
        "current_schemas",
        vec![DataType::Boolean],
        DataType::List(item),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let include = args[0].as_boolean();
            let values: Vec<ScalarValue> = (0..include.len())
                .map(|i| {
                    if include.is_null(i) {
                        ScalarValue::try_from(&DataType::List(Arc::new(
                            datafusion::arrow::datatypes::Field::new("item", DataType::Utf8, true),
                        )))
                    } else if include.value(i) {
                        Ok(implicit.clone())
                    } else {
                        Ok(explicit.clone())
                    }
                })
                .collect::<datafusion::common::Result<_>>()?;
            Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
        }),
    );
    [current_schema, current_schemas]
}
