//! Transaction blocks as Postgres clients see them: `BEGIN`/`COMMIT`/`ROLLBACK` and their
//! tags, savepoints (psycopg 3 and SQLAlchemy's nested transactions, asyncpg's nested
//! `transaction()`, pgjdbc's autosave), the block's isolation level and read-only mode, and
//! the aborted state after an error (25P02) until `ROLLBACK [TO SAVEPOINT]`.
//!
//! Inserts (and `COPY … FROM`) into Delta tables are held in the session until `COMMIT`
//! writes them; `ROLLBACK`
//! (or `ROLLBACK TO SAVEPOINT`) drops them (see `tarn_sql`'s `held`). A block holds no
//! snapshot otherwise: its reads see the latest commit, with its own held rows. Other writes
//! (listing tables, DDL) commit when they run, and a `ROLLBACK` over them warns,
//! naming how many there were.

use std::collections::HashMap;
use std::sync::Mutex;

use datafusion::sql::sqlparser::ast::{Ident, Set, Statement as SqlStatement};
use pgwire::api::results::{Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use tarn_sql::Session;

use super::settings;

/// A savepoint, and how many writes the block had made (and inserts it held) when it was
/// set.
#[derive(Debug)]
struct Savepoint {
    name: String,
    writes: usize,
    held: usize,
}

/// One connection's transaction block, beside the status pgwire reports in `ReadyForQuery`.
#[derive(Debug, Default)]
pub(crate) struct Block {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    savepoints: Vec<Savepoint>,
    /// Statements that wrote (and committed) since the block began.
    writes: usize,
}

/// What a transaction statement answered: the response, and notices to send before it.
pub(crate) struct Answer {
    pub(crate) response: Response,
    pub(crate) notices: Vec<ErrorInfo>,
}

pub(crate) fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn warning(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("WARNING".to_owned(), code.to_owned(), message.into())
}

/// The error of every statement but `ROLLBACK` in an aborted block.
pub(crate) fn aborted() -> PgWireError {
    error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// A savepoint's name as Postgres compares it: unquoted names fold to lower case.
fn savepoint_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// Whether `statement` is one [`Block::answer`] answers whatever the block's status
/// (`SET TRANSACTION` is the settings module's inside a block).
pub(crate) fn handles(statement: &SqlStatement) -> bool {
    matches!(
        statement,
        SqlStatement::StartTransaction { .. }
            | SqlStatement::Commit { .. }
            | SqlStatement::Rollback { .. }
            | SqlStatement::Savepoint { .. }
            | SqlStatement::ReleaseSavepoint { .. }
    )
}

impl Block {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a statement that wrote inside a block, unless its write is held (`held`).
    pub(crate) fn wrote(&self, status: TransactionStatus, held: bool) {
        if status != TransactionStatus::Idle && !held {
            self.state().writes += 1;
        }
    }

    /// Answers `statement` if it is a transaction statement; `None` otherwise. `status` is
    /// the block's status when the statement runs.
    pub(crate) fn answer(
        &self,
        session: &Session,
        metadata: &mut HashMap<String, String>,
        statement: &SqlStatement,
        status: TransactionStatus,
    ) -> Option<PgWireResult<Answer>> {
        use TransactionStatus::{Error, Idle, Transaction};
        let done = |response: Response| {
            Ok(Answer {
                response,
                notices: vec![],
            })
        };
        let result = match statement {
            SqlStatement::StartTransaction {
                modes,
                begin,
                statements,
                exception,
                ..
            } => {
                if !statements.is_empty() || exception.is_some() {
                    return Some(Err(error(
                        "0A000",
                        "BEGIN … END blocks of statements are not supported",
                    )));
                }
                let tag = if *begin { "BEGIN" } else { "START TRANSACTION" };
                match status {
                    Idle => {
                        *self.state() = State::default();
                        session.hold_writes();
                        let set = settings::set_modes(session, metadata, modes, false);
                        if !modes.is_empty() {
                            settings::publish(session, metadata);
                        }
                        set.map(|_| Answer {
                            response: Response::TransactionStart(Tag::new(tag)),
                            notices: vec![],
                        })
                    }
                    Transaction => Ok(Answer {
                        response: Response::Execution(Tag::new(tag)),
                        notices: vec![warning(
                            "25001",
                            "there is already a transaction in progress",
                        )],
                    }),
                    Error => Err(aborted()),
                }
            }
            SqlStatement::Commit { chain, .. }
            | SqlStatement::Rollback {
                chain,
                savepoint: None,
            } => {
                let commit = matches!(statement, SqlStatement::Commit { .. });
                let tag = if commit && status != Error {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                if status == Idle {
                    let notices = vec![warning("25P01", "there is no transaction in progress")];
                    if *chain {
                        return Some(Err(error(
                            "25P01",
                            format!("{tag} AND CHAIN can only be used in transaction blocks"),
                        )));
                    }
                    return Some(Ok(Answer {
                        response: Response::Execution(Tag::new(tag)),
                        notices,
                    }));
                }
                let writes = std::mem::take(&mut *self.state()).writes;
                // a COMMIT has written the held inserts already (see `commit_held_writes`)
                session.end_held_writes();
                let notices = if tag == "ROLLBACK" {
                    not_undone(writes)
                } else {
                    vec![]
                };
                let response = if *chain {
                    // The next block keeps this one's isolation level and access mode.
                    session.hold_writes();
                    Response::Execution(Tag::new(tag))
                } else {
                    settings::end_transaction(session, metadata);
                    Response::TransactionEnd(Tag::new(tag))
                };
                Ok(Answer { response, notices })
            }
            SqlStatement::Rollback {
                savepoint: Some(name),
                ..
            } => self.rollback_to(session, name, status),
            SqlStatement::Savepoint { name } => match status {
                Idle => Err(error(
                    "25P01",
                    "SAVEPOINT can only be used in transaction blocks",
                )),
                Error => Err(aborted()),
                Transaction => {
                    let mut state = self.state();
                    let writes = state.writes;
                    state.savepoints.push(Savepoint {
                        name: savepoint_name(name),
                        writes,
                        held: session.held_writes(),
                    });
                    done(Response::Execution(Tag::new("SAVEPOINT")))
                }
            },
            SqlStatement::ReleaseSavepoint { name } => match status {
                Idle => Err(error(
                    "25P01",
                    "RELEASE SAVEPOINT can only be used in transaction blocks",
                )),
                Error => Err(aborted()),
                Transaction => {
                    let mut state = self.state();
                    match find(&state.savepoints, name) {
                        Some(at) => {
                            state.savepoints.truncate(at);
                            done(Response::Execution(Tag::new("RELEASE")))
                        }
                        None => Err(no_savepoint(name)),
                    }
                }
            },
            SqlStatement::Set(Set::SetTransaction { session: false, .. }) if status == Idle => {
                Ok(Answer {
                    response: Response::Execution(Tag::new("SET")),
                    notices: vec![warning(
                        "25P01",
                        "SET TRANSACTION can only be used in transaction blocks",
                    )],
                })
            }
            _ => return None,
        };
        Some(result)
    }

    fn rollback_to(
        &self,
        session: &Session,
        name: &Ident,
        status: TransactionStatus,
    ) -> PgWireResult<Answer> {
        if status == TransactionStatus::Idle {
            return Err(error(
                "25P01",
                "ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
            ));
        }
        let mut state = self.state();
        let at = find(&state.savepoints, name).ok_or_else(|| no_savepoint(name))?;
        // The savepoint stays: a block may roll back to it again.
        state.savepoints.truncate(at + 1);
        session.discard_held_writes(state.savepoints[at].held);
        let writes = state.writes;
        let since = writes - std::mem::replace(&mut state.savepoints[at].writes, writes);
        Ok(Answer {
            response: Response::Execution(Tag::new("ROLLBACK")),
            notices: not_undone(since),
        })
    }

    /// Whether the block has a savepoint named `name`.
    pub(crate) fn has_savepoint(&self, name: &Ident) -> bool {
        find(&self.state().savepoints, name).is_some()
    }
}

/// The newest savepoint named `name`.
fn find(savepoints: &[Savepoint], name: &Ident) -> Option<usize> {
    let name = savepoint_name(name);
    savepoints.iter().rposition(|s| s.name == name)
}

fn no_savepoint(name: &Ident) -> PgWireError {
    error(
        "3B001",
        format!("savepoint \"{}\" does not exist", savepoint_name(name)),
    )
}

/// The warning of a rollback over `writes` statements that wrote: they stay.
fn not_undone(writes: usize) -> Vec<ErrorInfo> {
    if writes == 0 {
        return vec![];
    }
    let statements = if writes == 1 {
        "statement"
    } else {
        "statements"
    };
    vec![warning(
        "01000",
        format!(
            "{writes} {statements} in this transaction wrote data that stays: tarn holds \
             inserts into Delta tables until COMMIT, but commits other writes (listing tables, \
             DDL) when they run, and a rollback cannot undo those"
        ),
    )]
}

/// The error of a write where the transaction is read-only.
pub(crate) fn read_only(command: &str) -> PgWireError {
    error(
        "25006",
        format!("cannot execute {command} in a read-only transaction"),
    )
}
