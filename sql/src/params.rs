//! Statement parameters (`$1`, `$2`, …), shared by the Postgres wire and Flight SQL: their
//! types at prepare time, and binding rows of values to them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;

use crate::error::{Error, Result};

/// Gives every parameter a type, as Postgres does at Parse: the type DataFusion inferred
/// from its context (a comparison, an insert), else the type of a cast of the bare parameter
/// (`$1::int`), else an array of the element's type for `x = ANY($1)` (psycopg binds a list
/// of strings without a type), else `text`. The plan's schema is recomputed so Describe
/// reports it. A cast's field keeps its metadata: `$1::oid[]` is an array of `oid`s.
pub fn resolve_parameter_types(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::arrow::datatypes::Field;
    use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::expr::Placeholder;
    use datafusion::logical_expr::{Cast, Expr, ExprSchemable, TryCast};
    let mut types = plan.get_parameter_fields()?;
    if !types.values().any(Option::is_none) {
        return Ok(plan);
    }
    plan.apply_with_subqueries(|node| {
        // what the node's expressions read
        let schema = node
            .inputs()
            .into_iter()
            .map(|input| input.schema().as_ref().clone())
            .reduce(|mut a, b| {
                a.merge(&b);
                a
            })
            .unwrap_or_else(datafusion::common::DFSchema::empty);
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                    && let Expr::Placeholder(p) = expr.as_ref()
                    && let Some(slot @ None) = types.get_mut(&p.id)
                {
                    *slot = Some(Arc::clone(field));
                }
                // `x = ANY($1)`, as the pg-catalog parser writes it
                if let Expr::ScalarFunction(f) = e
                    && f.name() == "array_has"
                    && let [Expr::Placeholder(p), element] = f.args.as_slice()
                    && let Some(slot @ None) = types.get_mut(&p.id)
                    && let Ok(element) = element.get_type(&schema)
                {
                    let list = DataType::List(Arc::new(Field::new_list_field(element, true)));
                    *slot = Some(Arc::new(Field::new(&p.id, list, true)));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    plan.transform_up_with_subqueries(|node| {
        let node = node.map_expressions(|expr| {
            expr.transform(|e| match e {
                Expr::Placeholder(Placeholder { id, field: None }) => {
                    let field = match types.get(&id).cloned().flatten() {
                        Some(field) => field.as_ref().clone().with_name(&id),
                        None => Field::new(&id, DataType::Utf8, true),
                    };
                    let field = Some(Arc::new(field.with_nullable(true)));
                    Ok(Transformed::yes(Expr::Placeholder(Placeholder {
                        id,
                        field,
                    })))
                }
                e => Ok(Transformed::no(e)),
            })
        })?;
        if node.transformed {
            node.map_data(|n| n.recompute_schema())
        } else {
            Ok(node)
        }
    })
    .map(|t| t.data)
    .map_err(Error::from)
}

/// The highest parameter number, as in Postgres (whose protocol counts them in 16 bits).
pub const MAX_PARAMETERS: usize = 65_535;

/// Parameter types in `$1, $2, …` order.
pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    Ok(parameter_fields(plan)?
        .into_iter()
        .map(|field| field.map(|f| f.data_type().clone()))
        .collect())
}

/// Parameter fields in `$1, $2, …` order: their types with their metadata (an `oid` is an
/// Int32 that says so).
pub fn parameter_fields(plan: &LogicalPlan) -> Result<Vec<Option<FieldRef>>> {
    let types = plan.get_parameter_fields()?;
    let mut numbered: Vec<(usize, Option<FieldRef>)> = types
        .into_iter()
        .filter_map(|(name, ty)| Some((name.trim_start_matches('$').parse().ok()?, ty)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let max = numbered.last().map_or(0, |(n, _)| *n);
    if max > MAX_PARAMETERS {
        return Err(Error::Parameter(format!(
            "parameter ${max}: a statement has at most {MAX_PARAMETERS} parameters"
        )));
    }
    let mut ordered = vec![None; max];
    for (n, ty) in numbered {
        if n >= 1 {
            ordered[n - 1] = ty;
        }
    }
    Ok(ordered)
}

/// The values of row `row` of `batch` as parameters `$1, $2, …` (column i binds `$i+1`), each
/// cast to the type the statement gives it. A wrong count, or a value that does not convert,
/// is an [`Error::Parameter`].
pub fn bind_row(
    types: &[Option<DataType>],
    batch: &RecordBatch,
    row: usize,
) -> Result<ParamValues> {
    let row = cast_parameters(types, &batch.slice(row, 1))?;
    let values = row
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0).map(Into::into))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    Ok(ParamValues::List(values))
}

fn cast_parameter(column: &Arc<dyn Array>, ty: &DataType, index: usize) -> Result<Arc<dyn Array>> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(column, ty, &options).map_err(|e| {
        Error::Parameter(format!(
            "parameter ${} is {} but the statement needs {ty}: {e}",
            index + 1,
            column.data_type()
        ))
    })
}

/// Casts every column of `batch` to the statement's parameter types: the check done when
/// parameters are bound, so a bad value fails then, not at execution.
pub fn cast_parameters(types: &[Option<DataType>], batch: &RecordBatch) -> Result<RecordBatch> {
    if batch.num_columns() != types.len() {
        return Err(Error::Parameter(format!(
            "the statement has {} parameter(s) but {} value(s) were bound",
            types.len(),
            batch.num_columns()
        )));
    }
    let mut columns = Vec::with_capacity(types.len());
    let mut fields = Vec::with_capacity(types.len());
    for (i, ((column, field), ty)) in batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .zip(types)
        .enumerate()
    {
        let column = match ty {
            Some(ty) if column.data_type() != ty => cast_parameter(column, ty, i)?,
            _ => Arc::clone(column),
        };
        fields.push(
            field
                .as_ref()
                .clone()
                .with_data_type(column.data_type().clone())
                .with_nullable(true),
        );
        columns.push(column);
    }
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    Ok(RecordBatch::try_new(schema, columns)?)
}
