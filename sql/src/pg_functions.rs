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
    let PgTypes {
        oids: type_oids,
        names: type_names,
        bases,
    } = pg_types(ctx).await?;
    ctx.register_udf(to_regtype(type_oids));
    ctx.register_udf(domain_base_type(bases));
    for name in [
        "pg_function_is_visible",
        "pg_type_is_visible",
        "pg_collation_is_visible",
    ] {
        ctx.register_udf(always_visible(name));
    }
    ctx.register_udf(pg_size_pretty());
    ctx.register_udf(ScalarUDF::new_from_impl(Varchar::new()));
    for name in ["tarn_json", "tarn_to_json", "tarn_json_array"] {
        ctx.register_udf(ScalarUDF::new_from_impl(Json::new(name)));
    }
    ctx.register_udf(pg_get_serial_sequence());
    ctx.register_udf(pg_encoding_to_char());
    // tarn takes no advisory locks (pg_advisory_lock is not a function here), so a session
    // holds none to release; asyncpg's pool resets a connection with this
    ctx.register_udf(create_udf(
        "pg_advisory_unlock_all",
        vec![],
        DataType::Null,
        Volatility::Volatile,
        Arc::new(|_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Null))),
    ));
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
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(Format::new()));
    for udf in function_signatures(ctx, &type_names).await? {
        ctx.register_udf(udf);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(TypeNames::new(type_names)));
    Ok(())
}

/// What the functions need of `pg_type`, read once (tarn's types are fixed).
struct PgTypes {
    /// Each type's OID by its `typname` (for `to_regtype`).
    oids: HashMap<String, i32>,
    /// Each type's name as `format_type(oid, NULL)` and a regtype's text write it.
    names: HashMap<i32, String>,
    /// Each type's `typbasetype` (0 but for a domain).
    bases: HashMap<i32, i32>,
}

async fn pg_types(ctx: &SessionContext) -> Result<PgTypes> {
    let mut type_oids = HashMap::new();
    let mut type_names = HashMap::new();
    let mut bases = HashMap::new();
    let types = ctx
        .sql(
            "SELECT CAST(oid AS INT), format_type(oid, NULL), typname, \
             CAST(typbasetype AS INT) FROM pg_catalog.pg_type",
        )
        .await?
        .collect()
        .await?;
    for batch in types {
        let oids = batch
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let base_types = batch
            .column(3)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let formatted = datafusion::arrow::compute::cast(batch.column(1), &DataType::Utf8)?;
        let formatted = formatted.as_string::<i32>();
        let typnames = datafusion::arrow::compute::cast(batch.column(2), &DataType::Utf8)?;
        let typnames = typnames.as_string::<i32>();
        for i in 0..batch.num_rows() {
            if !oids.is_valid(i) {
                continue;
            }
            if typnames.is_valid(i) {
                type_oids.insert(typnames.value(i).to_owned(), oids.value(i));
            }
            let base = if base_types.is_valid(i) {
                base_types.value(i)
            } else {
                0
            };
            bases.insert(oids.value(i), base);
            // the crate's format_type writes `oid(2276)` for the pseudo-types, which
            // Postgres writes by name (`"any"`, `record`, `anyelement`)
            let name = match (formatted.is_valid(i), typnames.is_valid(i)) {
                (true, _) if !formatted.value(i).starts_with("oid(") => {
                    formatted.value(i).to_owned()
                }
                (_, true) if typnames.value(i) == "any" => "\"any\"".to_owned(),
                (_, true) => typnames.value(i).to_owned(),
                _ => continue,
            };
            type_names.insert(oids.value(i), name);
        }
    }
    Ok(PgTypes {
        oids: type_oids,
        names: type_names,
        bases,
    })
}

/// `_pg_domain_base_type(oid)`: the type a domain is ultimately over, following
/// `typbasetype` through domains over domains; 0 for a type that is not a domain, NULL for
/// an OID that is not a type. The statement rewrite of asyncpg's recursive lookup calls it.
fn domain_base_type(bases: HashMap<i32, i32>) -> ScalarUDF {
    create_udf(
        "_pg_domain_base_type",
        vec![DataType::Int32],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let oids = args[0].as_primitive::<datafusion::arrow::datatypes::Int32Type>();
            let mut out = Int32Builder::with_capacity(oids.len());
            for oid in oids.iter() {
                let mut base = oid.and_then(|oid| bases.get(&oid).copied());
                // a chain is as long as the nesting of domains; `pg_type` has no cycles, but
                // a bound keeps a bad catalog from hanging a query
                for _ in 0..bases.len() {
                    match base.and_then(|b| bases.get(&b)) {
                        Some(&next) if next != 0 => base = Some(next),
                        _ => break,
                    }
                }
                out.append_option(base);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// `_pg_type_names(oids)`: an array of type OIDs as the type names Postgres writes for
/// `oids::regtype[]::text[]` (pgcli's function list). The statement rewrite calls it: the
/// crate holds a regtype as its number, so the text was the number.
#[derive(Debug, PartialEq, Eq)]
struct TypeNames {
    names: HashMap<i32, String>,
    signature: datafusion::logical_expr::Signature,
}

impl std::hash::Hash for TypeNames {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.names.len().hash(state);
    }
}

impl TypeNames {
    fn new(names: HashMap<i32, String>) -> Self {
        Self {
            names,
            signature: datafusion::logical_expr::Signature::array(Volatility::Stable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for TypeNames {
    fn name(&self) -> &str {
        "_pg_type_names"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new_list_field(DataType::Utf8, true),
        )))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        use datafusion::arrow::array::{ListBuilder, StringBuilder};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let lists = datafusion::arrow::compute::cast(
            &arrays[0],
            &DataType::List(Arc::new(
                datafusion::arrow::datatypes::Field::new_list_field(DataType::Int64, true),
            )),
        )?;
        let lists = lists.as_list::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        for list in lists.iter() {
            match list {
                None => out.append_null(),
                Some(oids) => {
                    for oid in oids.as_primitive::<Int64Type>().iter() {
                        let name = oid.map(|o| {
                            i32::try_from(o)
                                .ok()
                                .and_then(|o| self.names.get(&o).cloned())
                                .unwrap_or_else(|| o.to_string())
                        });
                        out.values().append_option(name);
                    }
                    out.append(true);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `pg_get_function_result(oid)`, `pg_get_function_arguments(oid)` and
/// `pg_get_function_identity_arguments(oid)` (psql's `\df`, pgjdbc's `getFunctions`,
/// Metabase's routine sync), as Postgres writes them, from `pg_proc` and `pg_type`: the
/// functions `pg_proc` lists are fixed, so each signature is written once, here. Argument
/// defaults are left out: `pg_proc` holds them as expression trees tarn cannot print.
async fn function_signatures(
    ctx: &SessionContext,
    type_names: &HashMap<i32, String>,
) -> Result<Vec<ScalarUDF>> {
    let procs = ctx
        .sql(
            "SELECT CAST(oid AS INT), proretset, CAST(prorettype AS INT), proargtypes, \
             array_to_string(proallargtypes, ','), array_to_string(proargmodes, ','), \
             array_to_string(proargnames, ',') FROM pg_catalog.pg_proc",
        )
        .await?
        .collect()
        .await?;
    let (mut results, mut arguments, mut identities) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    for batch in procs {
        let oids = batch
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let retset = batch.column(1).as_boolean();
        let rettype = batch
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let texts = (3..7)
            .map(|i| datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let [argtypes, allargtypes, modes, names] =
            [0, 1, 2, 3].map(|i| texts[i].as_string::<i32>());
        for i in 0..batch.num_rows() {
            let signature = FunctionSignature::new(
                text_or_empty(argtypes, i),
                text_or_empty(allargtypes, i),
                text_or_empty(modes, i),
                text_or_empty(names, i),
            );
            let oid = oids.value(i);
            let type_name = |t: i32| type_names.get(&t).cloned().unwrap_or_else(|| t.to_string());
            results.insert(
                oid,
                signature.result(retset.value(i), &type_name(rettype.value(i)), &type_name),
            );
            arguments.insert(oid, signature.arguments(false, &type_name));
            identities.insert(oid, signature.arguments(true, &type_name));
        }
    }
    Ok([
        ("pg_get_function_result", results),
        ("pg_get_function_arguments", arguments),
        ("pg_get_function_identity_arguments", identities),
    ]
    .into_iter()
    .map(|(name, texts)| oid_lookup(name, texts))
    .collect())
}

fn text_or_empty(array: &datafusion::arrow::array::StringArray, i: usize) -> &str {
    if array.is_valid(i) {
        array.value(i)
    } else {
        ""
    }
}

/// A function of an OID that answers `texts`' entry for it, NULL for an OID not there.
fn oid_lookup(name: &'static str, texts: HashMap<i32, String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let oids = args[0].as_primitive::<Int64Type>();
            let mut out = StringBuilder::new();
            for oid in oids.iter() {
                let text = oid
                    .and_then(|o| i32::try_from(o).ok())
                    .and_then(|o| texts.get(&o));
                out.append_option(text);
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// One `pg_proc` row's arguments: (mode, name, type OID) each, from `proallargtypes` when
/// it has OUT arguments, else `proargtypes`.
struct FunctionSignature {
    args: Vec<(char, String, i32)>,
}

/// The items of one of the crate's array texts (`[25, 18]`, `['o', 'o']`) or of an
/// oidvector (`23 23`).
fn array_items(text: &str) -> Vec<String> {
    let inner = text
        .trim()
        .trim_start_matches(['[', '{'])
        .trim_end_matches([']', '}']);
    if inner.trim().is_empty() {
        return Vec::new();
    }
    // an unnamed argument has an empty name, which keeps its place
    let separator = if inner.contains(',') { ',' } else { ' ' };
    inner
        .split(separator)
        .map(|item| item.trim().trim_matches(['\'', '"']).to_owned())
        .collect()
}

impl FunctionSignature {
    fn new(argtypes: &str, allargtypes: &str, modes: &str, names: &str) -> Self {
        let types: Vec<i32> = array_items(if allargtypes.trim().is_empty() {
            argtypes
        } else {
            allargtypes
        })
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect();
        let modes = array_items(modes);
        let names = array_items(names);
        let args = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mode = modes.get(i).and_then(|m| m.chars().next()).unwrap_or('i');
                (mode, names.get(i).cloned().unwrap_or_default(), *t)
            })
            .collect();
        Self { args }
    }

    /// `pg_get_function_result`: `TABLE(…)` for a function of TABLE arguments, else the
    /// return type, after `SETOF` for a set.
    fn result(&self, retset: bool, rettype: &str, type_name: &dyn Fn(i32) -> String) -> String {
        let table: Vec<String> = self
            .args
            .iter()
            .filter(|(mode, ..)| *mode == 't')
            .map(|(_, name, t)| format!("{name} {}", type_name(*t)))
            .collect();
        if !table.is_empty() {
            return format!("TABLE({})", table.join(", "));
        }
        if retset {
            format!("SETOF {rettype}")
        } else {
            rettype.to_owned()
        }
    }

    /// `pg_get_function_arguments`, or with `identity` `pg_get_function_identity_arguments`
    /// (the arguments that tell overloads apart: no OUT ones).
    fn arguments(&self, identity: bool, type_name: &dyn Fn(i32) -> String) -> String {
        self.args
            .iter()
            .filter(|(mode, ..)| *mode != 't' && !(identity && *mode == 'o'))
            .map(|(mode, name, t)| {
                let mode = match mode {
                    'o' => "OUT ",
                    'b' => "INOUT ",
                    'v' => "VARIADIC ",
                    _ => "",
                };
                let name = if name.is_empty() {
                    String::new()
                } else {
                    format!("{name} ")
                };
                format!("{mode}{name}{}", type_name(*t))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Postgres's `format(formatstr, arg…)`: `%s` an argument as text (NULL as nothing), `%I` as
/// an identifier (quoted when it must be), `%L` as a literal (`NULL` unquoted), `%%` a
/// percent sign. Metabase's field sync formats `schema.table` names with it. Argument
/// positions (`%1$s`) and widths are not supported yet, and are refused.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: datafusion::logical_expr::Signature,
}

impl Format {
    fn new() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Stable),
        }
    }
}

/// One row of `format`, or why its format string is bad.
fn format_row(format: &str, args: &[Option<&str>]) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(format.len());
    let mut next = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let kind = chars
            .next()
            .ok_or_else(|| "unterminated format() type specifier".to_owned())?;
        if kind == '%' {
            out.push('%');
            continue;
        }
        if !matches!(kind, 's' | 'I' | 'L') {
            return Err(format!(
                "unrecognized format() type specifier \"{kind}\" (tarn takes %s, %I, %L and %%)"
            ));
        }
        let arg = next
            .next()
            .ok_or_else(|| "too few arguments for format()".to_owned())?;
        match (kind, arg) {
            ('s', Some(v)) => out.push_str(v),
            ('s', None) => {}
            ('I', Some(v)) => out.push_str(&quote_ident(v)),
            ('I', None) => {
                return Err("null values cannot be formatted as an SQL identifier".to_owned());
            }
            ('L', Some(v)) => {
                out.push('\'');
                out.push_str(&v.replace('\'', "''"));
                out.push('\'');
            }
            _ => out.push_str("NULL"),
        }
    }
    Ok(out)
}

/// `name` as Postgres's `quote_ident` writes it: bare when it is lower case letters, digits
/// and underscores not starting with a digit, else double-quoted.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
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
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|a| {
                let array = a.to_array(rows)?;
                Ok(datafusion::arrow::compute::cast(&array, &DataType::Utf8)?)
            })
            .collect::<datafusion::common::Result<Vec<ArrayRef>>>()?;
        let Some((format, values)) = texts.split_first() else {
            return datafusion::common::plan_err!("format() takes a format string");
        };
        let format = format.as_string::<i32>();
        let values: Vec<_> = values.iter().map(|v| v.as_string::<i32>()).collect();
        let mut out = StringBuilder::new();
        let mut row_args = Vec::with_capacity(values.len());
        for i in 0..rows {
            if format.is_null(i) {
                out.append_null();
                continue;
            }
            row_args.clear();
            row_args.extend(values.iter().map(|v| v.is_valid(i).then(|| v.value(i))));
            match format_row(format.value(i), &row_args) {
                Ok(text) => out.append_value(text),
                Err(message) => {
                    return Err(datafusion::common::DataFusionError::Execution(format!(
                        "format(): {message}"
                    )));
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `information_schema._pg_expandarray(a)`, the set of `(x, n)` rows of `a`'s elements and
/// their positions (pgjdbc's `getPrimaryKeys` / `getIndexInfo`, Metabase's index sync), as
/// one array of those rows: the statement rewrite unnests it where it is called, so it
/// advances with the select list's other set-returning functions, as in Postgres.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: datafusion::logical_expr::Signature,
}

impl ExpandArray {
    fn new() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::array(Volatility::Immutable),
        }
    }

    /// The type of one row: `x` the element, `n` its position from 1 (int4).
    fn row_type(element: &DataType) -> DataType {
        use datafusion::arrow::datatypes::Field;
        DataType::Struct(
            vec![
                Field::new("x", element.clone(), true),
                Field::new("n", DataType::Int32, false),
            ]
            .into(),
        )
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "_pg_expandarray"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        use datafusion::arrow::datatypes::Field;
        match args {
            [DataType::List(element)] => Ok(DataType::List(Arc::new(Field::new_list_field(
                Self::row_type(element.data_type()),
                true,
            )))),
            other => datafusion::common::plan_err!(
                "_pg_expandarray takes an array, not {}",
                other
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        use datafusion::arrow::array::{Int32Array, ListArray, StructArray};
        use datafusion::arrow::datatypes::Field;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let lists = arrays[0].as_list::<i32>();
        let DataType::List(element) = lists.data_type() else {
            return datafusion::common::plan_err!("_pg_expandarray takes an array");
        };
        let offsets = lists.value_offsets();
        let start = offsets.first().copied().unwrap_or(0);
        let positions: Int32Array = offsets.windows(2).flat_map(|w| 1..=(w[1] - w[0])).collect();
        let values = lists.values().slice(start as usize, positions.len());
        let DataType::Struct(fields) = Self::row_type(element.data_type()) else {
            unreachable!("row_type is a struct")
        };
        let rows = StructArray::try_new(fields, vec![values, Arc::new(positions)], None)?;
        let rebased = offsets.iter().map(|o| o - start).collect::<Vec<_>>();
        let out = ListArray::try_new(
            Arc::new(Field::new_list_field(rows.data_type().clone(), true)),
            datafusion::arrow::buffer::OffsetBuffer::new(rebased.into()),
            Arc::new(rows),
            lists.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
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
    fn function_signatures_as_postgres_writes_them() {
        let names = |t: i32| {
            match t {
                25 => "text",
                18 => "\"char\"",
                23 => "integer",
                2249 => "record",
                2276 => "\"any\"",
                _ => "?",
            }
            .to_owned()
        };
        // SELECT pg_get_function_result(oid), pg_get_function_arguments(oid) in PostgreSQL 16
        let keywords = FunctionSignature::new("", "[25, 18]", "['o', 'o']", "['word', 'catcode']");
        assert_eq!(keywords.result(true, "record", &names), "SETOF record");
        assert_eq!(
            keywords.arguments(false, &names),
            "OUT word text, OUT catcode \"char\""
        );
        assert_eq!(keywords.arguments(true, &names), "");
        let series = FunctionSignature::new("23 23", "", "", "");
        assert_eq!(series.result(true, "integer", &names), "SETOF integer");
        assert_eq!(series.arguments(false, &names), "integer, integer");
        let concat = FunctionSignature::new("2276", "[2276]", "['v']", "");
        assert_eq!(concat.arguments(false, &names), "VARIADIC \"any\"");
        let table = FunctionSignature::new("23", "[23, 25]", "['i', 't']", "['n', 'word']");
        let unnamed = FunctionSignature::new("23 25", "", "", ",word");
        assert_eq!(unnamed.arguments(false, &names), "integer, word text");
        assert_eq!(table.result(true, "record", &names), "TABLE(word text)");
        assert_eq!(table.arguments(false, &names), "n integer");
    }

    #[test]
    fn format_writes_as_postgres_does() {
        // SELECT format(…) in PostgreSQL 16
        assert_eq!(
            format_row("%I.%I", &[Some("demo"), Some("Orders")]).expect("formats"),
            "demo.\"Orders\""
        );
        assert_eq!(
            format_row("%s|%s|%L|%L|100%%", &[Some("a"), None, Some("it's"), None])
                .expect("formats"),
            "a||'it''s'|NULL|100%"
        );
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
        assert!(format_row("%s %s", &[Some("a")]).is_err());
        assert!(format_row("%1$s", &[Some("a")]).is_err());
        assert!(format_row("%I", &[None]).is_err());
    }

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

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
        Ok(json_field(self.name()))
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
        let json: Vec<bool> = args.arg_fields.iter().map(|f| is_json(f)).collect();
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let mut pairs = Vec::with_capacity(columns.len() / 2);
            for (i, pair) in columns.chunks(2).enumerate() {
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
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                pairs.push(format!(
                    "{} : {}",
                    serde_json::Value::String(key),
                    json_text(&value, json[2 * i + 1])
                ));
            }
            // Postgres's layout: `{"a" : 1, "b" : "x"}`
            out.append_value(format!("{{{}}}", pairs.join(", ")));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// A result field of Postgres's type `json`: text, marked so (see [`JSON_EXTENSION`]).
fn json_field(name: &str) -> datafusion::arrow::datatypes::FieldRef {
    marked_text(name, JSON_EXTENSION, None)
}

/// Whether `field` holds JSON text (a `json` result), which goes into JSON as it is.
fn is_json(field: &datafusion::arrow::datatypes::Field) -> bool {
    field.extension_type_name() == Some(JSON_EXTENSION)
}

/// `value` as JSON text: `null`, itself where it is JSON (`json`), a number or boolean as
/// itself, the rest as a JSON string of its text.
fn json_text(value: &ScalarValue, json: bool) -> String {
    match value {
        v if v.is_null() => "null".to_owned(),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
            if json =>
        {
            s.clone()
        }
        // numeric: its digits, as Postgres writes them
        ScalarValue::Decimal128(..) | ScalarValue::Decimal256(..) => value.to_string(),
        v => json_value(v).to_string(),
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

/// The Arrow extension types (`ARROW:extension:name`) that mark a text column whose
/// Postgres type is not `text`: `varchar` (its length, if any, as the extension's metadata)
/// and `json` (Arrow's canonical JSON type). The Postgres server reads them. A cast drops an
/// extension type (`CAST(v AS text)` is `text`), as DataFusion drops one through any cast.
pub const VARCHAR_EXTENSION: &str = "tarn.varchar";
pub const JSON_EXTENSION: &str = "arrow.json";

/// A text result field of the extension type `name`, with `metadata`.
fn marked_text(
    field: &str,
    name: &str,
    metadata: Option<String>,
) -> datafusion::arrow::datatypes::FieldRef {
    use arrow_schema::extension::{EXTENSION_TYPE_METADATA_KEY, EXTENSION_TYPE_NAME_KEY};
    let mut keys = HashMap::from([(EXTENSION_TYPE_NAME_KEY.to_owned(), name.to_owned())]);
    if let Some(metadata) = metadata {
        keys.insert(EXTENSION_TYPE_METADATA_KEY.to_owned(), metadata);
    }
    Arc::new(
        datafusion::arrow::datatypes::Field::new(field, DataType::Utf8, true).with_metadata(keys),
    )
}

/// `tarn_varchar(text [, length])`: `CAST(x AS varchar[(length)])` over the Postgres wire
/// (see `pg_parse`). Arrow has one string type, so `varchar` was reported as `text`; this
/// marks its result `varchar` (and its length, see [`VARCHAR_EXTENSION`]) for the
/// RowDescription, and cuts longer
/// values to `length` characters, as Postgres's explicit cast does.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Varchar {
    signature: datafusion::logical_expr::Signature,
}

impl Varchar {
    fn new() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Varchar {
    fn name(&self) -> &str {
        "tarn_varchar"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// Text as `Utf8`; the length keeps its integer type, so that it stays a literal the
    /// result's type can be read from.
    fn coerce_types(&self, args: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        match args {
            [_] => Ok(vec![DataType::Utf8]),
            [_, length] if length.is_integer() => Ok(vec![DataType::Utf8, length.clone()]),
            _ => datafusion::common::plan_err!("tarn_varchar takes text and an integer length"),
        }
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
        let length = varchar_length(args.scalar_arguments.get(1).copied().flatten())?;
        Ok(marked_text(
            self.name(),
            VARCHAR_EXTENSION,
            length.map(|n| n.to_string()),
        ))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let length = match args.args.get(1) {
            Some(ColumnarValue::Scalar(length)) => varchar_length(Some(length))?,
            Some(ColumnarValue::Array(_)) => {
                return datafusion::common::exec_err!("a varchar's length must be a constant");
            }
            None => None,
        };
        let Some(length) = length else {
            return Ok(args.args[0].clone());
        };
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        let cut = |v: &str| match v.char_indices().nth(length) {
            Some((end, _)) => v[..end].to_owned(),
            None => v.to_owned(),
        };
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(v)) => {
                ColumnarValue::Scalar(ScalarValue::Utf8(v.as_deref().map(cut)))
            }
            ColumnarValue::Scalar(other) => {
                return datafusion::common::exec_err!("tarn_varchar of {}", other.data_type());
            }
            ColumnarValue::Array(values) => {
                let values = values.as_string::<i32>();
                let mut out = StringBuilder::with_capacity(values.len(), values.value_data().len());
                for v in values.iter() {
                    out.append_option(v.map(cut));
                }
                ColumnarValue::Array(Arc::new(out.finish()))
            }
        })
    }
}

/// A `varchar`'s length: 1 to 10485760, as Postgres requires.
fn varchar_length(length: Option<&ScalarValue>) -> datafusion::common::Result<Option<i32>> {
    match length {
        None => Ok(None),
        Some(length) if length.is_null() => Ok(None),
        Some(length) => match length.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(n)) if n < 1 => {
                datafusion::common::plan_err!("length for type varchar must be at least 1")
            }
            ScalarValue::Int64(Some(n)) if n > 10_485_760 => {
                datafusion::common::plan_err!("length for type varchar cannot exceed 10485760")
            }
            ScalarValue::Int64(Some(n)) => Ok(Some(n as i32)),
            _ => datafusion::common::plan_err!("a varchar's length must be an integer"),
        },
    }
}

/// The JSON functions `pg_parse` rewrites Postgres's into, each returning `json` text:
/// - `tarn_json(text)`: `CAST(x AS json)`. The text must be JSON (22P02 otherwise, as in
///   Postgres); it is kept as written.
/// - `tarn_to_json(x)`: `x` as JSON text (`json_agg`'s elements): JSON as it is, a number or
///   boolean as itself, NULL as `null`, the rest as a JSON string.
/// - `tarn_json_array(list)`: a list of JSON texts as one JSON array, in Postgres's layout
///   (`[1, {"a" : 2}]`); NULL for a NULL list. `json_agg(x …)` is `tarn_json_array(array_agg(
///   tarn_to_json(x) …))`, so its `ORDER BY`, `DISTINCT` and `FILTER` are `array_agg`'s.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Json {
    name: &'static str,
    signature: datafusion::logical_expr::Signature,
}

impl Json {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            signature: datafusion::logical_expr::Signature::any(1, Volatility::Immutable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Json {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(
        &self,
        _args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
        Ok(json_field(self.name()))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let json = args.arg_fields.first().is_some_and(|f| is_json(f));
        let values = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = StringBuilder::new();
        match (self.name, values[0].data_type()) {
            ("tarn_json", DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {
                let texts = datafusion::arrow::compute::cast(&values[0], &DataType::Utf8)?;
                for text in texts.as_string::<i32>().iter().flatten() {
                    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
                        return Err(datafusion::common::DataFusionError::ArrowError(
                            Box::new(datafusion::arrow::error::ArrowError::ParseError(format!(
                                "invalid input syntax for type json: {e}"
                            ))),
                            None,
                        ));
                    }
                }
                return Ok(ColumnarValue::Array(texts));
            }
            ("tarn_to_json", _) => {
                for row in 0..args.number_rows {
                    let value = ScalarValue::try_from_array(&values[0], row)?;
                    out.append_value(json_text(&value, json));
                }
            }
            ("tarn_json_array", DataType::List(_)) => {
                for list in values[0].as_list::<i32>().iter() {
                    let Some(list) = list else {
                        out.append_null();
                        continue;
                    };
                    let texts = datafusion::arrow::compute::cast(&list, &DataType::Utf8)?;
                    let texts: Vec<&str> = texts
                        .as_string::<i32>()
                        .iter()
                        .map(|t| t.unwrap_or("null"))
                        .collect();
                    out.append_value(format!("[{}]", texts.join(", ")));
                }
            }
            (name, other) => return datafusion::common::exec_err!("{name} of {other}"),
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
