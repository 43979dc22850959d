//! `LIKE … ESCAPE 'c'` with an escape character other than backslash, the only one
//! DataFusion's `LIKE` takes (SQLAlchemy lists schemas with `NOT LIKE $1 ESCAPE '/'`). An
//! optimizer rule, so that a pattern bound as a parameter is a literal by the time it runs.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

#[derive(Debug)]
pub(crate) struct LikeEscape;

impl OptimizerRule for LikeEscape {
    fn name(&self) -> &str {
        "tarn_like_escape"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // A rewritten expression keeps its output name: the plan's schema must not change.
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|e| {
            let name = names.save(&e);
            let rewritten = e.transform_up(|e| match e {
                Expr::Like(like) => Ok(match backslash_escaped(&like) {
                    Some(like) => Transformed::yes(Expr::Like(like)),
                    None => Transformed::no(Expr::Like(like)),
                }),
                e => Ok(Transformed::no(e)),
            })?;
            Ok(if rewritten.transformed {
                rewritten.update_data(|e| name.restore(e))
            } else {
                rewritten
            })
        })
    }
}

/// `like` with its literal pattern escaped by backslashes instead of its own escape
/// character; `None` when there is nothing to do, or the pattern is not a literal (left for
/// DataFusion to refuse).
fn backslash_escaped(like: &Like) -> Option<Like> {
    let escape = like.escape_char?;
    // The same kind of string as before: the planned types stay as they were.
    let (pattern, rebuild): (&String, fn(Option<String>) -> ScalarValue) =
        match like.pattern.as_ref() {
            Expr::Literal(ScalarValue::Utf8(Some(p)), _) => (p, ScalarValue::Utf8),
            Expr::Literal(ScalarValue::LargeUtf8(Some(p)), _) => (p, ScalarValue::LargeUtf8),
            Expr::Literal(ScalarValue::Utf8View(Some(p)), _) => (p, ScalarValue::Utf8View),
            _ => return None,
        };
    let pattern = if escape == '\\' {
        pattern.clone()
    } else {
        with_backslashes(pattern, escape)?
    };
    Some(Like {
        pattern: Box::new(Expr::Literal(rebuild(Some(pattern)), None)),
        escape_char: None,
        ..like.clone()
    })
}

/// `pattern`, escaped with `escape`, as the same pattern escaped with backslashes. `None`
/// for a pattern ending in its escape character, which Postgres refuses.
fn with_backslashes(pattern: &str, escape: char) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut pending = false;
    for c in pattern.chars() {
        if pending {
            if matches!(c, '\\' | '%' | '_') {
                out.push('\\');
            }
            out.push(c);
            pending = false;
        } else if c == escape {
            pending = true;
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    (!pending).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::with_backslashes;

    #[test]
    fn other_escape_characters_become_backslashes() {
        assert_eq!(with_backslashes("pg/_%", '/').as_deref(), Some(r"pg\_%"));
        assert_eq!(
            with_backslashes(r"a\b!%!!", '!').as_deref(),
            Some(r"a\\b\%!")
        );
        assert_eq!(with_backslashes("50!", '!'), None);
    }
}
