//! Integer `+`, `-` and `*` that fail on overflow, as in PostgreSQL and Athena, where
//! DataFusion's wrap: `SELECT 9223372036854775807 + 1` answered -9223372036854775808, a wrong
//! number where Postgres says `bigint out of range` (SQLSTATE 22003).
//!
//! DataFusion's `BinaryExpr` can check for overflow, but its planners never ask it to, and
//! constant folding plans its own copy. So the SQL planner is given an [`ExprPlanner`] that
//! plans an integer `+ - *` as a function ([`CheckedArithmetic`]) using Arrow's checked
//! kernels, named as the operator would be (`a + Int64(1)`): column names, and the plan's
//! references to them, do not change. Other operand types keep DataFusion's operators.

use std::sync::Arc;

use datafusion::arrow::array::Datum;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, ExprSchema, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::physical_expr_common::datum::apply;
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Plans integer `+ - *` as [`CheckedArithmetic`].
#[derive(Debug)]
pub(crate) struct CheckedIntegers {
    add: Arc<ScalarUDF>,
    subtract: Arc<ScalarUDF>,
    multiply: Arc<ScalarUDF>,
}

impl CheckedIntegers {
    pub(crate) fn new() -> Self {
        Self {
            add: Arc::new(ScalarUDF::new_from_impl(CheckedArithmetic::new(Op::Add))),
            subtract: Arc::new(ScalarUDF::new_from_impl(CheckedArithmetic::new(
                Op::Subtract,
            ))),
            multiply: Arc::new(ScalarUDF::new_from_impl(CheckedArithmetic::new(
                Op::Multiply,
            ))),
        }
    }
}

impl ExprPlanner for CheckedIntegers {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> datafusion::common::Result<PlannerResult<RawBinaryExpr>> {
        let udf = match expr.op {
            BinaryOperator::Plus => &self.add,
            BinaryOperator::Minus => &self.subtract,
            BinaryOperator::Multiply => &self.multiply,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        // Both sides' types are known here only when neither is a parameter without one.
        let integer = |e: &Expr| {
            e.get_type(schema as &dyn ExprSchema)
                .ok()
                .and_then(|t| common(&t, &t))
        };
        match (integer(&expr.left), integer(&expr.right)) {
            (Some(_), Some(_)) => Ok(PlannerResult::Planned(Expr::ScalarFunction(
                ScalarFunction::new_udf(Arc::clone(udf), vec![expr.left, expr.right]),
            ))),
            _ => Ok(PlannerResult::Original(expr)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Subtract,
    Multiply,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Subtract => "-",
            Op::Multiply => "*",
        }
    }
}

/// `a + b`, `a - b` or `a * b` over signed integers of one width (the wider of the two
/// operands'), failing with SQLSTATE 22003 where the result does not fit it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedArithmetic {
    op: Op,
    name: &'static str,
    signature: Signature,
}

impl CheckedArithmetic {
    fn new(op: Op) -> Self {
        let name = match op {
            Op::Add => "checked_add",
            Op::Subtract => "checked_subtract",
            Op::Multiply => "checked_multiply",
        };
        Self {
            op,
            name,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The signed integer type both `a` and `b` widen to; `None` unless both are signed
/// integers.
fn common(a: &DataType, b: &DataType) -> Option<DataType> {
    let width = |t: &DataType| match t {
        DataType::Int8 => Some(1),
        DataType::Int16 => Some(2),
        DataType::Int32 => Some(4),
        DataType::Int64 => Some(8),
        _ => None,
    };
    Some(match width(a)?.max(width(b)?) {
        1 => DataType::Int8,
        2 => DataType::Int16,
        4 => DataType::Int32,
        _ => DataType::Int64,
    })
}

/// Postgres's name for an integer type, as its out-of-range errors give it.
fn pg_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        _ => "tinyint",
    }
}

impl ScalarUDFImpl for CheckedArithmetic {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        match args {
            [a, b] => match common(a, b) {
                Some(t) => Ok(vec![t.clone(), t]),
                None => datafusion::common::plan_err!(
                    "{}: operator does not exist: {a} {} {b}",
                    self.name,
                    self.op.symbol()
                ),
            },
            _ => datafusion::common::plan_err!("{} takes two arguments", self.name),
        }
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(args.first().cloned().unwrap_or(DataType::Int64))
    }

    /// What DataFusion names the operator: `a + Int64(1)`.
    fn schema_name(&self, args: &[Expr]) -> datafusion::common::Result<String> {
        match args {
            [a, b] => Ok(format!(
                "{} {} {}",
                a.schema_name(),
                self.op.symbol(),
                b.schema_name()
            )),
            _ => datafusion::common::plan_err!("{} takes two arguments", self.name),
        }
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return datafusion::common::exec_err!("{} takes two arguments", self.name);
        };
        let kernel = match self.op {
            Op::Add => numeric::add,
            Op::Subtract => numeric::sub,
            Op::Multiply => numeric::mul,
        };
        let out_of_range = pg_name(args.return_field.data_type());
        apply(a, b, |a: &dyn Datum, b: &dyn Datum| kernel(a, b)).map_err(|e| match e.find_root() {
            DataFusionError::ArrowError(inner, _)
                if matches!(inner.as_ref(), ArrowError::ArithmeticOverflow(_)) =>
            {
                DataFusionError::ArrowError(
                    Box::new(ArrowError::ArithmeticOverflow(format!(
                        "{out_of_range} out of range"
                    ))),
                    None,
                )
            }
            _ => e,
        })
    }
}

/// `plan` with its integer literals that fit 32 bits typed `integer` (Postgres's `int4`), as
/// Postgres and Athena type them; DataFusion types every one `bigint`, so `ARRAY[1, 2]` was
/// `int8[]` where Postgres says `int4[]`. Every plan tarn makes from SQL goes through here
/// (`engine::plan_statement`), before DataFusion's type coercion, which then widens where the
/// other side is wider (`bigint_column + 1` is `bigint`). The expressions keep the names the plan gave them.
/// `2147483647 + 1` then fails as in Postgres (`integer out of range`), where checked
/// arithmetic ([`CheckedIntegers`]) makes such sums fail rather than wrap.
pub(crate) fn type_integer_literals(plan: LogicalPlan) -> datafusion::common::Result<LogicalPlan> {
    // A recursive query's recursive term reads its work table with the types the planner
    // gave the first term, which a change there would no longer match.
    let mut recursive = false;
    plan.apply_with_subqueries(|plan| {
        recursive |= matches!(plan, LogicalPlan::RecursiveQuery(_));
        Ok(match recursive {
            true => TreeNodeRecursion::Stop,
            false => TreeNodeRecursion::Continue,
        })
    })?;
    if recursive {
        return Ok(plan);
    }
    // `VALUES` keeps the types it was planned with, `LIMIT` counts in `bigint`, and
    // statements and other crates' nodes keep theirs
    let kept = |plan: &LogicalPlan| {
        matches!(
            plan,
            LogicalPlan::Values(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Statement(_)
                | LogicalPlan::Extension(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
        )
    };
    let mut changed = false;
    let plan = plan
        .transform_up_with_subqueries(|plan| {
            if kept(&plan) {
                return Ok(Transformed::no(plan));
            }
            let names = NamePreserver::new(&plan);
            let rewritten = plan.map_expressions(|expr| {
                let name = names.save(&expr);
                let expr = expr.transform_down(|e| match e {
                    // a grouping set's literals are part of its name, which an alias would
                    // hide from the aggregate; `count(1)` is `count(*)`, which statistics answer
                    Expr::GroupingSet(_) => Ok(Transformed::new(e, false, TreeNodeRecursion::Jump)),
                    Expr::AggregateFunction(ref f) if f.func.name() == "count" => {
                        Ok(Transformed::new(e, false, TreeNodeRecursion::Jump))
                    }
                    Expr::Literal(ScalarValue::Int64(Some(v)), metadata) => {
                        match i32::try_from(v) {
                            Ok(v) => Ok(Transformed::yes(Expr::Literal(
                                ScalarValue::Int32(Some(v)),
                                metadata,
                            ))),
                            Err(_) => Ok(Transformed::no(Expr::Literal(
                                ScalarValue::Int64(Some(v)),
                                metadata,
                            ))),
                        }
                    }
                    e => Ok(Transformed::no(e)),
                })?;
                Ok(expr.update_data(|e| name.restore(e)))
            })?;
            changed |= rewritten.transformed;
            Ok(rewritten)
        })
        .data()?;
    if !changed {
        return Ok(plan);
    }
    // Every node's schema again, from the scans up: a parent (a projection over a derived
    // table, a union, an alias) keeps the types it was built with otherwise.
    plan.transform_up_with_subqueries(|plan| match plan {
        LogicalPlan::Union(union) => {
            let schema =
                datafusion::optimizer::analyzer::type_coercion::coerce_union_schema(&union.inputs)?;
            Ok(Transformed::yes(LogicalPlan::Union(
                datafusion::logical_expr::Union {
                    inputs: union.inputs,
                    schema: Arc::new(schema),
                },
            )))
        }
        plan if kept(&plan) && !matches!(plan, LogicalPlan::Limit(_)) => Ok(Transformed::no(plan)),
        plan => Ok(Transformed::yes(plan.recompute_schema()?)),
    })
    .data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        let mut state = ctx.state();
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut state,
            Arc::new(CheckedIntegers::new()),
        )
        .expect("registers");
        SessionContext::new_with_state(state)
    }

    async fn one(ctx: &SessionContext, sql: &str) -> datafusion::common::Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn overflow_fails_where_it_wrapped() {
        let ctx = context().await;
        for (sql, range) in [
            ("SELECT 9223372036854775807 + 1", "bigint"),
            ("SELECT -9223372036854775807 - 2", "bigint"),
            ("SELECT 4611686018427387904 * 2", "bigint"),
            ("SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)", "integer"),
            (
                "SELECT CAST(-32768 AS SMALLINT) - CAST(1 AS SMALLINT)",
                "smallint",
            ),
            (
                "SELECT a * a FROM (VALUES (1), (3037000500)) AS t(a)",
                "bigint",
            ),
        ] {
            let err = one(&ctx, sql).await.expect_err(sql);
            assert!(
                matches!(err.find_root(), DataFusionError::ArrowError(e, _)
                    if e.to_string().contains(&format!("{range} out of range"))),
                "{sql}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn results_and_names_stay_as_datafusion_gives_them() {
        let ctx = context().await;
        let sql = "SELECT a + 1, a - b, a * 2, CAST(a AS SMALLINT) + CAST(1 AS SMALLINT) AS s, 1.5 + a \
                   FROM (VALUES (10, 3)) AS t(a, b)";
        let batches = ctx
            .sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "t.a + Int64(1)",
                "t.a - t.b",
                "t.a * Int64(2)",
                "s",
                "Float64(1.5) + t.a"
            ]
        );
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [
                &DataType::Int64,
                &DataType::Int64,
                &DataType::Int64,
                &DataType::Int16,
                &DataType::Float64
            ]
        );
        let values = one(&ctx, sql).await.expect("runs");
        let row = "| 11             | 7         | 20             | 11 | 11.5               |";
        assert!(values.contains(row), "{values}");
        // the integer operators are the checked functions; the others stay operators
        let plan = one(&ctx, &format!("EXPLAIN {sql}"))
            .await
            .expect("explains");
        assert!(
            plan.contains("checked_add(") && plan.contains("checked_multiply("),
            "{plan}"
        );
        assert!(plan.contains("Float64(1.5) + "), "{plan}");
    }

    async fn typed(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        let plan = ctx.state().create_logical_plan(sql).await.expect("plans");
        type_integer_literals(plan).expect("types the literals")
    }

    #[tokio::test]
    async fn integer_literals_are_int4_where_they_fit() {
        let ctx = context().await;
        let plan = typed(
            &ctx,
            "SELECT 1, ARRAY[1, 2], 3000000000, a + 1, sum(1) \
             FROM (VALUES (CAST(1 AS BIGINT))) AS t(a) GROUP BY a",
        )
        .await;
        let types: Vec<DataType> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let names: Vec<&str> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Int32,
                DataType::new_list(DataType::Int32, true),
                DataType::Int64,
                DataType::Int64,
                DataType::Int64,
            ]
        );
        // the names DataFusion gave them stay
        assert_eq!(names[0], "Int64(1)");
        assert_eq!(names[3], "t.a + Int64(1)");
        let df = ctx.execute_logical_plan(plan).await.expect("runs");
        let batches = df.collect().await.expect("collects");
        assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Int32);
        // a recursive query keeps DataFusion's types: its work table has them
        let plan = typed(
            &ctx,
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             SELECT n FROM r",
        )
        .await;
        assert_eq!(plan.schema().field(0).data_type(), &DataType::Int64);
        let rows = ctx.execute_logical_plan(plan).await.expect("plans");
        let rows: usize = rows
            .collect()
            .await
            .expect("runs")
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 3);
        // and 2147483647 + 1 is out of range, as in Postgres
        let plan = typed(&ctx, "SELECT 2147483647 + 1").await;
        let err = ctx
            .execute_logical_plan(plan)
            .await
            .expect("plans")
            .collect()
            .await;
        let err = err.expect_err("overflows");
        assert!(err.to_string().contains("integer out of range"), "{err}");
    }

    /// The plan's types are the types of the rows it makes (the Postgres wire describes the
    /// rows by the plan), through derived tables, unions, grouping sets and `unnest`.
    #[tokio::test]
    async fn plan_types_are_the_rows_types() {
        let ctx = context().await;
        for (sql, want) in [
            ("WITH c AS (SELECT 1 AS n) SELECT n FROM c", DataType::Int32),
            ("SELECT n FROM (SELECT 1 AS n) AS d", DataType::Int32),
            ("SELECT 1 AS a UNION ALL SELECT 2", DataType::Int32),
            ("SELECT 1 AS a UNION ALL SELECT 3000000000", DataType::Int64),
            ("SELECT unnest(ARRAY[1, 2]) AS u", DataType::Int32),
            (
                "SELECT a + 1 AS s FROM (VALUES (1), (2)) AS t(a) GROUP BY ROLLUP (a + 1)",
                DataType::Int64,
            ),
            (
                "SELECT count(*) AS c FROM (VALUES (1)) AS t(a)",
                DataType::Int64,
            ),
        ] {
            let plan = typed(&ctx, sql).await;
            assert_eq!(plan.schema().field(0).data_type(), &want, "{sql}");
            let batches = ctx
                .execute_logical_plan(plan)
                .await
                .expect(sql)
                .collect()
                .await
                .expect(sql);
            assert_eq!(batches[0].schema().field(0).data_type(), &want, "{sql}");
        }
        // count(*) keeps its `count(Int64(1))`, which table statistics answer
        let plan = typed(&ctx, "SELECT count(*) FROM (VALUES (1)) AS t(a)").await;
        assert!(format!("{plan}").contains("count(Int64(1))"), "{plan}");
    }
}
