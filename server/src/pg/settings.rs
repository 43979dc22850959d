//! Postgres run-time settings (`SET`, `SHOW`, `RESET`, `DISCARD ALL`, the parameters a client
//! sends at start-up) with Postgres' names, defaults, checks and display forms.
//!
//! Values live in the connection's metadata under the setting's lower-case name, where
//! pgwire's encoders read the output formats (`datestyle`, `intervalstyle`, `bytea_output`,
//! `extra_float_digits`). `TimeZone` and `search_path` also change the DataFusion session;
//! `statement_timeout` is read per statement. DataFusion's own options (`datafusion.…`) are
//! not here: the session sets and shows them.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    DiscardObject, Expr, Reset, ResetStatement, Set, Statement as SqlStatement, TransactionMode,
    Value,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;
use tarn_sql::Session;

/// How a setting's value is checked and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Encoding,
    DateStyle,
    OneOf(&'static [&'static str]),
    Int(i64, i64),
    SearchPath,
    TimeZone,
    /// Milliseconds; 0 is off.
    Duration,
    Bool,
    /// Only this value (`standard_conforming_strings = on`).
    Only(&'static str),
    /// Read-only: `SET` is refused.
    Fixed,
}

impl Kind {
    /// `pg_settings.vartype`; `default` tells a fixed setting's type.
    fn vartype(&self, default: &str) -> &'static str {
        match self {
            Kind::Int(..) | Kind::Duration => "integer",
            Kind::Bool => "bool",
            Kind::OneOf(_) => "enum",
            Kind::Fixed | Kind::Only(_) if default.parse::<i64>().is_ok() => "integer",
            Kind::Fixed | Kind::Only(_) if matches!(default, "on" | "off") => "bool",
            _ => "string",
        }
    }
}

struct Setting {
    /// Lower case: how it is looked up and stored.
    name: &'static str,
    /// As Postgres spells it in `SHOW` and `ParameterStatus`.
    display: &'static str,
    default: &'static str,
    kind: Kind,
    /// Sent to the client as `ParameterStatus` when it changes.
    reported: bool,
    description: &'static str,
}

const ISOLATION: &[&str] = &[
    "serializable",
    "repeatable read",
    "read committed",
    "read uncommitted",
];

const fn s(
    name: &'static str,
    display: &'static str,
    default: &'static str,
    kind: Kind,
    reported: bool,
    description: &'static str,
) -> Setting {
    Setting {
        name,
        display,
        default,
        kind,
        reported,
        description,
    }
}

/// The settings tarn knows. Ones that govern what tarn has no use for (locks, idle
/// transactions) are kept and shown, and have no effect.
const SETTINGS: &[Setting] = &[
    s(
        "application_name",
        "application_name",
        "",
        Kind::Text,
        true,
        "Sets the application name to be reported in statistics and logs.",
    ),
    s(
        "bytea_output",
        "bytea_output",
        "hex",
        Kind::OneOf(&["hex", "escape"]),
        false,
        "Sets the output format for bytea.",
    ),
    s(
        "client_encoding",
        "client_encoding",
        "UTF8",
        Kind::Encoding,
        true,
        "Sets the client's character set encoding.",
    ),
    s(
        "datestyle",
        "DateStyle",
        "ISO, MDY",
        Kind::DateStyle,
        true,
        "Sets the display format for date and time values.",
    ),
    s(
        "default_transaction_isolation",
        "default_transaction_isolation",
        "read committed",
        Kind::OneOf(ISOLATION),
        false,
        "Sets the transaction isolation level of each new transaction.",
    ),
    s(
        "default_transaction_read_only",
        "default_transaction_read_only",
        "off",
        Kind::Bool,
        true,
        "Sets the default read-only status of new transactions.",
    ),
    s(
        "extra_float_digits",
        "extra_float_digits",
        "1",
        Kind::Int(-15, 3),
        false,
        "Sets the number of digits displayed for floating-point values.",
    ),
    s(
        "idle_in_transaction_session_timeout",
        "idle_in_transaction_session_timeout",
        "0",
        Kind::Duration,
        false,
        "Sets the maximum allowed idle time between queries, when in a transaction.",
    ),
    s(
        "idle_session_timeout",
        "idle_session_timeout",
        "0",
        Kind::Duration,
        false,
        "Sets the maximum allowed idle time between queries, when not in a transaction.",
    ),
    s(
        "integer_datetimes",
        "integer_datetimes",
        "on",
        Kind::Fixed,
        true,
        "Shows whether datetimes are integer based.",
    ),
    s(
        "intervalstyle",
        "IntervalStyle",
        "postgres",
        Kind::OneOf(&["postgres", "postgres_verbose", "sql_standard", "iso_8601"]),
        true,
        "Sets the display format for interval values.",
    ),
    s(
        "is_superuser",
        "is_superuser",
        "off",
        Kind::Fixed,
        true,
        "Shows whether the current user is a superuser.",
    ),
    s(
        "lc_collate",
        "lc_collate",
        "C",
        Kind::Fixed,
        false,
        "Shows the collation order locale.",
    ),
    s(
        "lc_ctype",
        "lc_ctype",
        "C",
        Kind::Fixed,
        false,
        "Shows the character classification and case conversion locale.",
    ),
    s(
        "lc_messages",
        "lc_messages",
        "C",
        Kind::Text,
        false,
        "Sets the language in which messages are displayed.",
    ),
    s(
        "lc_monetary",
        "lc_monetary",
        "C",
        Kind::Text,
        false,
        "Sets the locale for formatting monetary amounts.",
    ),
    s(
        "lc_numeric",
        "lc_numeric",
        "C",
        Kind::Text,
        false,
        "Sets the locale for formatting numbers.",
    ),
    s(
        "lc_time",
        "lc_time",
        "C",
        Kind::Text,
        false,
        "Sets the locale for formatting date and time values.",
    ),
    s(
        "lock_timeout",
        "lock_timeout",
        "0",
        Kind::Duration,
        false,
        "Sets the maximum allowed duration of any wait for a lock.",
    ),
    s(
        "max_index_keys",
        "max_index_keys",
        "32",
        Kind::Fixed,
        false,
        "Shows the maximum number of index keys.",
    ),
    s(
        "max_identifier_length",
        "max_identifier_length",
        "63",
        Kind::Fixed,
        false,
        "Shows the maximum identifier length.",
    ),
    s(
        "search_path",
        "search_path",
        "public",
        Kind::SearchPath,
        true,
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    s(
        "server_encoding",
        "server_encoding",
        "UTF8",
        Kind::Fixed,
        true,
        "Shows the server (database) character set encoding.",
    ),
    s(
        "server_version",
        "server_version",
        SERVER_VERSION,
        Kind::Fixed,
        true,
        "Shows the server version.",
    ),
    s(
        "server_version_num",
        "server_version_num",
        "160006",
        Kind::Fixed,
        false,
        "Shows the server version as an integer.",
    ),
    s(
        "standard_conforming_strings",
        "standard_conforming_strings",
        "on",
        Kind::Only("on"),
        true,
        "Causes '...' strings to treat backslashes literally.",
    ),
    s(
        "statement_timeout",
        "statement_timeout",
        "0",
        Kind::Duration,
        false,
        "Sets the maximum allowed duration of any statement.",
    ),
    s(
        "timezone",
        "TimeZone",
        "UTC",
        Kind::TimeZone,
        true,
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    s(
        "transaction_isolation",
        "transaction_isolation",
        "read committed",
        Kind::OneOf(ISOLATION),
        false,
        "Sets the current transaction's isolation level.",
    ),
    s(
        "transaction_read_only",
        "transaction_read_only",
        "off",
        Kind::Bool,
        false,
        "Sets the current transaction's read-only status.",
    ),
];

/// What clients see as the server's version; the same in `ParameterStatus`, `SHOW` and
/// `version()`'s major release.
pub(crate) const SERVER_VERSION: &str = tarn_sql::PG_SERVER_VERSION;

fn find(name: &str) -> Option<&'static Setting> {
    let name = name.to_lowercase();
    let name = match name.as_str() {
        "time zone" => "timezone",
        "transaction isolation level" => "transaction_isolation",
        "names" => "client_encoding",
        n => n,
    };
    SETTINGS.iter().find(|s| s.name == name)
}

fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

fn invalid(setting: &Setting, value: &str, hint: &str) -> PgWireError {
    error(
        "22023",
        format!(
            "invalid value for parameter \"{}\": \"{value}\"{hint}",
            setting.display
        ),
    )
}

fn unrecognized(name: &str) -> PgWireError {
    error(
        "42704",
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// `value` checked and in the form `SHOW` displays.
fn canonical(setting: &Setting, value: &str) -> PgWireResult<String> {
    let trimmed = value.trim();
    Ok(match setting.kind {
        Kind::Text => trimmed.to_owned(),
        Kind::Encoding => {
            let v = trimmed
                .trim_matches('\'')
                .to_lowercase()
                .replace(['-', '_'], "");
            if v != "utf8" && v != "unicode" {
                return Err(error(
                    "0A000",
                    format!("client_encoding \"{trimmed}\" is not supported: tarn speaks UTF8"),
                ));
            }
            "UTF8".to_owned()
        }
        Kind::DateStyle => date_style(setting, trimmed)?,
        Kind::OneOf(values) => {
            // `read_committed` is accepted for `read committed`.
            let lower = trimmed.to_lowercase();
            let spaced = lower.replace('_', " ");
            match values.iter().find(|v| **v == lower || **v == spaced) {
                Some(v) => (*v).to_owned(),
                None => {
                    return Err(invalid(
                        setting,
                        trimmed,
                        &format!(" (one of: {})", values.join(", ")),
                    ));
                }
            }
        }
        Kind::Int(low, high) => match trimmed.parse::<i64>() {
            Ok(n) if (low..=high).contains(&n) => n.to_string(),
            _ => {
                return Err(invalid(
                    setting,
                    trimmed,
                    &format!(" (an integer from {low} to {high})"),
                ));
            }
        },
        Kind::SearchPath => trimmed.to_owned(),
        Kind::TimeZone => {
            Tz::from_str(trimmed).map_err(|_| {
                invalid(
                    setting,
                    trimmed,
                    " (a time zone name like Europe/Berlin, or an offset like +02:00)",
                )
            })?;
            trimmed.to_owned()
        }
        Kind::Duration => show_millis(parse_millis(trimmed).ok_or_else(|| {
            invalid(
                setting,
                trimmed,
                " (milliseconds, or a number with a unit: ms, s, min, h, d)",
            )
        })?),
        Kind::Bool => match trimmed.to_lowercase().as_str() {
            "on" | "true" | "yes" | "1" | "t" | "y" => "on".to_owned(),
            "off" | "false" | "no" | "0" | "f" | "n" => "off".to_owned(),
            _ => return Err(invalid(setting, trimmed, " (on or off)")),
        },
        Kind::Only(only) => {
            let v = trimmed.to_lowercase();
            let v = match v.as_str() {
                "true" | "yes" | "1" => "on",
                "false" | "no" | "0" => "off",
                v => v,
            };
            if v != only {
                return Err(error(
                    "0A000",
                    format!(
                        "{} = {trimmed} is not supported: tarn has only {only}",
                        setting.name
                    ),
                ));
            }
            only.to_owned()
        }
        Kind::Fixed => {
            return Err(error(
                "55P02",
                format!("parameter \"{}\" cannot be changed", setting.name),
            ));
        }
    })
}

fn date_style(setting: &Setting, value: &str) -> PgWireResult<String> {
    let (mut style, mut order) = ("ISO", "MDY");
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_lowercase().as_str() {
            "iso" => style = "ISO",
            "postgres" => style = "Postgres",
            "sql" => style = "SQL",
            "german" => style = "German",
            "mdy" | "us" | "noneuropean" => order = "MDY",
            "dmy" | "euro" | "european" => order = "DMY",
            "ymd" => order = "YMD",
            _ => return Err(invalid(setting, value, "")),
        }
    }
    Ok(format!("{style}, {order}"))
}

/// A Postgres time setting in milliseconds: a bare number, or a number and a unit.
fn parse_millis(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let millis = (number * scale).round();
    (millis.is_finite() && millis >= 0.0 && millis <= i32::MAX as f64).then_some(millis as u64)
}

/// As Postgres shows it: the largest unit that divides the value.
fn show_millis(ms: u64) -> String {
    if ms == 0 {
        return "0".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The connection's current value of `setting`. A transaction's isolation and access mode
/// follow the session's defaults unless the transaction set its own.
fn current(metadata: &HashMap<String, String>, setting: &Setting) -> String {
    let fallback = match setting.name {
        "transaction_isolation" => metadata.get("default_transaction_isolation"),
        "transaction_read_only" => metadata.get("default_transaction_read_only"),
        _ => None,
    };
    metadata
        .get(setting.name)
        .or(fallback)
        .cloned()
        .unwrap_or_else(|| setting.default.to_owned())
}

/// The `ParameterStatus` messages a client gets after logging in: every reported setting.
#[derive(Debug, Default)]
pub(crate) struct Parameters;

impl pgwire::api::auth::ServerParameterProvider for Parameters {
    fn server_parameters<C: pgwire::api::ClientInfo>(
        &self,
        client: &C,
    ) -> Option<HashMap<String, String>> {
        let metadata = client.metadata();
        let mut params: HashMap<String, String> = SETTINGS
            .iter()
            .filter(|s| s.reported)
            .map(|s| (s.display.to_owned(), current(metadata, s)))
            .collect();
        params.insert("in_hot_standby".to_owned(), "off".to_owned());
        if let Some(user) = metadata.get(pgwire::api::METADATA_USER) {
            params.insert("session_authorization".to_owned(), user.clone());
        }
        Some(params)
    }
}

/// Where the value a client sent at start-up is kept: `RESET` returns to it.
fn startup_key(setting: &Setting) -> String {
    format!("tarn.startup.{}", setting.name)
}

/// The statement timeout in force, if any.
pub(crate) fn statement_timeout(metadata: &HashMap<String, String>) -> Option<Duration> {
    metadata
        .get("statement_timeout")
        .and_then(|v| parse_millis(v))
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Stores `value` for `setting` and applies it to the session; the `ParameterStatus` to send
/// if the client wants to hear of it.
fn assign(
    session: &Session,
    metadata: &mut HashMap<String, String>,
    setting: &'static Setting,
    value: Option<&str>,
) -> PgWireResult<Option<(String, String)>> {
    let value = match value {
        Some(v) => canonical(setting, v)?,
        // The value the client started the session with, else the server's.
        None => metadata
            .get(&startup_key(setting))
            .cloned()
            .unwrap_or_else(|| setting.default.to_owned()),
    };
    match setting.kind {
        Kind::TimeZone => session
            .set_option("datafusion.execution.time_zone", &value)
            .map_err(super::pg_error)?,
        Kind::SearchPath => {
            // The first schema of the path that exists is where unqualified names resolve.
            let first = value
                .split(',')
                .map(|p| p.trim().trim_matches('"'))
                .find(|p| !p.is_empty() && *p != "$user" && *p != "pg_catalog");
            if let Some(database) = first {
                session
                    .set_default_database(database)
                    .map_err(super::pg_error)?;
            }
        }
        _ => {}
    }
    metadata.insert(setting.name.to_owned(), value.clone());
    Ok(setting
        .reported
        .then(|| (setting.display.to_owned(), value)))
}

/// Sets a transaction's isolation level and access mode (`BEGIN …`, `SET TRANSACTION …`),
/// or with `characteristics` the session's defaults (`SET SESSION CHARACTERISTICS AS …`).
pub(crate) fn set_modes(
    session: &Session,
    metadata: &mut HashMap<String, String>,
    modes: &[TransactionMode],
    characteristics: bool,
) -> PgWireResult<Vec<(String, String)>> {
    let prefix = if characteristics {
        "default_transaction_"
    } else {
        "transaction_"
    };
    let mut statuses = Vec::new();
    for mode in modes {
        let (name, value) = match mode {
            TransactionMode::IsolationLevel(level) => {
                ("isolation", level.to_string().to_lowercase())
            }
            TransactionMode::AccessMode(access) => (
                "read_only",
                if access.to_string().eq_ignore_ascii_case("read only") {
                    "on".to_owned()
                } else {
                    "off".to_owned()
                },
            ),
        };
        let name = format!("{prefix}{name}");
        let setting = find(&name).ok_or_else(|| unrecognized(&name))?;
        statuses.extend(assign(session, metadata, setting, Some(&value))?);
    }
    Ok(statuses)
}

/// Forgets what the ending transaction set for itself: the next one starts from the
/// session's defaults.
pub(crate) fn end_transaction(session: &Session, metadata: &mut HashMap<String, String>) {
    let isolation = metadata.remove("transaction_isolation");
    let read_only = metadata.remove("transaction_read_only");
    if isolation.is_some() || read_only.is_some() {
        publish(session, metadata);
    }
}

/// How the connection's results are written as text: pgwire's options from its settings,
/// and the session TimeZone, in which a `timestamptz` is shown (pgwire leaves it UTC).
pub(crate) fn format_options(metadata: &HashMap<String, String>) -> FormatOptions {
    let mut options = FormatOptions::from_client_metadata(metadata);
    if let Some(zone) = find("timezone") {
        options.time_zone = current(metadata, zone);
    }
    options
}

/// Whether the current transaction (or the statement's own, outside a block) is read-only.
pub(crate) fn read_only(metadata: &HashMap<String, String>) -> bool {
    find("transaction_read_only").is_some_and(|s| current(metadata, s) == "on")
}

/// Hands the connection's settings to its session, for `current_setting()`,
/// `current_schema()` and `current_schemas()`: once per statement that changed them, and at
/// login.
pub(crate) fn publish(session: &Session, metadata: &HashMap<String, String>) {
    session.set_pg_settings(
        SETTINGS
            .iter()
            .map(|s| tarn_sql::PgSetting {
                name: s.display.to_owned(),
                setting: current(metadata, s),
                description: s.description,
                vartype: s.kind.vartype(s.default),
                context: match s.kind {
                    Kind::Fixed => "internal",
                    _ => "user",
                },
            })
            .collect(),
    );
    let path = find("search_path")
        .map(|s| current(metadata, s))
        .unwrap_or_default();
    let user = metadata.get(pgwire::api::METADATA_USER);
    let schemas: Vec<&str> = path
        .split(',')
        .map(|p| p.trim().trim_matches('"'))
        .filter_map(|p| match p {
            "" => None,
            "$user" => user.map(String::as_str),
            p => Some(p),
        })
        .collect();
    session.set_search_path(&schemas);
}

/// What a settings statement did.
pub(crate) enum Outcome {
    /// A command tag and the `ParameterStatus` messages to send.
    Done(&'static str, Vec<(String, String)>),
    /// `SHOW`, `set_config()`: rows, and the `ParameterStatus` messages to send.
    Rows(RecordBatch, Vec<(String, String)>),
}

/// Whether `statement` is one of the settings statements this module answers (SHOW of a
/// DataFusion option, and `SET datafusion.…`, are the session's).
pub(crate) fn handles(statement: &SqlStatement) -> bool {
    match statement {
        SqlStatement::Set(Set::SingleAssignment { variable, .. }) => {
            !is_datafusion(&variable.to_string())
        }
        SqlStatement::Set(_) | SqlStatement::Reset(_) | SqlStatement::Discard { .. } => true,
        SqlStatement::ShowVariable { variable } => !variable
            .first()
            .is_some_and(|v| v.value.eq_ignore_ascii_case("datafusion")),
        SqlStatement::Query(_) => setting_calls(statement).is_some(),
        // what a pooled connection is reset with (asyncpg): tarn has no notification
        // channels, so there is nothing to stop listening to (CLOSE is the cursors')
        SqlStatement::UNLISTEN { .. } => true,
        _ => false,
    }
}

/// One item of a select list of settings functions.
enum SettingCall {
    /// `current_setting(name [, missing_ok])`
    Get { name: String, missing_ok: bool },
    /// `set_config(name, value, is_local)`: `is_local` is taken as `SET LOCAL` is, for the
    /// session; a NULL value resets.
    Set { name: String, value: Option<String> },
}

/// `SELECT set_config('name', 'value', is_local) [AS x], current_setting('name') …` with
/// constant arguments and no `FROM`: Postgres's function form of `SET` (pg_dump, PostgREST,
/// asyncpg's `set_config('jit', 'off', false)`), answered here as `SET` is, item by item in
/// order; the column names and calls. `None` for any other statement, and for one that
/// sets nothing (`current_setting()` alone is the session's function).
fn setting_calls(statement: &SqlStatement) -> Option<Vec<(String, SettingCall)>> {
    use datafusion::sql::sqlparser::ast::{
        FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr,
    };
    let SqlStatement::Query(query) = statement else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if !select.from.is_empty()
        || select.selection.is_some()
        || select.having.is_some()
        || select.distinct.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
    {
        return None;
    }
    let calls: Vec<(String, SettingCall)> = select
        .projection
        .iter()
        .map(|item| {
            let (f, alias) = match item {
                SelectItem::UnnamedExpr(Expr::Function(f)) => (f, None),
                SelectItem::ExprWithAlias {
                    expr: Expr::Function(f),
                    alias,
                } => (f, Some(alias.value.clone())),
                _ => return None,
            };
            let function = f.name.0.last()?.as_ident()?.value.to_lowercase();
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            // constants only: a parameter ($1) is the session's to bind, and NULL resets
            let texts: Vec<Option<String>> = list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e @ Expr::Value(v))) => {
                        match &v.value {
                            Value::Null => Some(None),
                            Value::SingleQuotedString(_)
                            | Value::Number(..)
                            | Value::Boolean(_) => Some(Some(value_text(e))),
                            _ => None,
                        }
                    }
                    _ => None,
                })
                .collect::<Option<_>>()?;
            let call = match (function.as_str(), texts.as_slice()) {
                ("set_config", [Some(name), value, Some(_is_local)]) => SettingCall::Set {
                    name: name.clone(),
                    value: value.clone(),
                },
                ("current_setting", [Some(name)]) => SettingCall::Get {
                    name: name.clone(),
                    missing_ok: false,
                },
                ("current_setting", [Some(name), missing_ok]) => SettingCall::Get {
                    name: name.clone(),
                    missing_ok: missing_ok
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case("true")),
                },
                _ => return None,
            };
            Some((alias.unwrap_or(function), call))
        })
        .collect::<Option<_>>()?;
    calls
        .iter()
        .any(|(_, c)| matches!(c, SettingCall::Set { .. }))
        .then_some(calls)
}

fn is_datafusion(name: &str) -> bool {
    name.to_lowercase().starts_with("datafusion.")
}

/// `SHOW`'s parameter name: `SHOW TRANSACTION ISOLATION LEVEL` is one name of four words.
fn shown_name(variable: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    variable
        .iter()
        .map(|v| v.value.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The columns a settings statement returns (for `Describe`).
pub(crate) fn schema(statement: &SqlStatement) -> Arc<Schema> {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    match statement {
        SqlStatement::ShowVariable { variable } => {
            let name = shown_name(variable);
            if name.eq_ignore_ascii_case("all") {
                Arc::new(Schema::new(vec![
                    text("name"),
                    text("setting"),
                    text("description"),
                ]))
            } else {
                let column = find(&name).map_or(name.to_lowercase(), |s| s.display.to_owned());
                Arc::new(Schema::new(vec![text(&column)]))
            }
        }
        SqlStatement::Query(_) if let Some(calls) = setting_calls(statement) => {
            Arc::new(Schema::new(
                calls
                    .iter()
                    .map(|(name, _)| Field::new(name, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ))
        }
        _ => Arc::new(Schema::empty()),
    }
}

fn value_text(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// Runs a settings statement ([`handles`] said yes).
pub(crate) fn execute(
    session: &Session,
    metadata: &mut HashMap<String, String>,
    statement: &SqlStatement,
) -> PgWireResult<Outcome> {
    let unsupported = |what: &str| {
        Err(error(
            "0A000",
            format!("{what} is not supported: tarn has no roles or per-user sessions"),
        ))
    };
    match statement {
        SqlStatement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = variable.to_string();
            let setting = find(&name).ok_or_else(|| unrecognized(&name))?;
            let texts: Vec<String> = values.iter().map(value_text).collect();
            let default = texts.len() == 1
                && texts[0].eq_ignore_ascii_case("default")
                && matches!(values[0], Expr::Identifier(_));
            let value = (!default).then(|| texts.join(", "));
            let status = assign(session, metadata, setting, value.as_deref())?;
            Ok(Outcome::Done("SET", status.into_iter().collect()))
        }
        SqlStatement::Set(Set::SetTimeZone { value, .. }) => {
            let text = value_text(value);
            let reset = matches!(value, Expr::Identifier(_))
                && (text.eq_ignore_ascii_case("local") || text.eq_ignore_ascii_case("default"));
            let setting = find("timezone").ok_or_else(|| unrecognized("timezone"))?;
            let status = assign(
                session,
                metadata,
                setting,
                (!reset).then_some(text.as_str()),
            )?;
            Ok(Outcome::Done("SET", status.into_iter().collect()))
        }
        SqlStatement::Set(Set::SetNames { charset_name, .. }) => {
            let setting = find("client_encoding").ok_or_else(|| unrecognized("names"))?;
            let status = assign(session, metadata, setting, Some(&charset_name.value))?;
            Ok(Outcome::Done("SET", status.into_iter().collect()))
        }
        SqlStatement::Set(Set::SetTransaction {
            modes,
            snapshot,
            session: characteristics,
        }) => {
            if snapshot.is_some() {
                return Err(error(
                    "0A000",
                    "SET TRANSACTION SNAPSHOT is not supported".to_owned(),
                ));
            }
            let statuses = set_modes(session, metadata, modes, *characteristics)?;
            Ok(Outcome::Done("SET", statuses))
        }
        SqlStatement::Set(Set::SetRole { .. }) => unsupported("SET ROLE"),
        SqlStatement::Set(Set::SetSessionAuthorization(_)) => {
            unsupported("SET SESSION AUTHORIZATION")
        }
        SqlStatement::Set(other) => Err(error("0A000", format!("{other} is not supported"))),
        SqlStatement::Reset(ResetStatement { reset }) => {
            let statuses = match reset {
                Reset::ALL => reset_all(session, metadata)?,
                Reset::ConfigurationParameter(name) => {
                    let name = name.to_string();
                    if is_datafusion(&name) {
                        return Err(error(
                            "0A000",
                            format!("RESET {name} is not supported: SET it to the value you want"),
                        ));
                    }
                    let setting = find(&name).ok_or_else(|| unrecognized(&name))?;
                    if setting.kind == Kind::Fixed {
                        return Err(error(
                            "55P02",
                            format!("parameter \"{}\" cannot be changed", setting.name),
                        ));
                    }
                    assign(session, metadata, setting, None)?
                        .into_iter()
                        .collect()
                }
            };
            Ok(Outcome::Done("RESET", statuses))
        }
        SqlStatement::Discard { object_type } => match object_type {
            DiscardObject::ALL => Ok(Outcome::Done("DISCARD ALL", reset_all(session, metadata)?)),
            DiscardObject::PLANS => Ok(Outcome::Done("DISCARD PLANS", vec![])),
            DiscardObject::SEQUENCES => Ok(Outcome::Done("DISCARD SEQUENCES", vec![])),
            DiscardObject::TEMP => Ok(Outcome::Done("DISCARD TEMP", vec![])),
        },
        SqlStatement::ShowVariable { variable } => {
            let name = shown_name(variable);
            if name.eq_ignore_ascii_case("all") {
                return Ok(Outcome::Rows(show_all(session, metadata), vec![]));
            }
            let setting = find(&name).ok_or_else(|| unrecognized(&name))?;
            let batch = RecordBatch::try_new(
                schema(statement),
                vec![Arc::new(StringArray::from(vec![current(
                    metadata, setting,
                )]))],
            )
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            Ok(Outcome::Rows(batch, vec![]))
        }
        SqlStatement::Query(_) if let Some(calls) = setting_calls(statement) => {
            let mut statuses = Vec::new();
            let mut values: Vec<Arc<dyn datafusion::arrow::array::Array>> = Vec::new();
            for (_, call) in &calls {
                let value = match call {
                    SettingCall::Get { name, missing_ok } => match find(name) {
                        Some(setting) => Some(current(metadata, setting)),
                        None if *missing_ok => None,
                        None => return Err(unrecognized(name)),
                    },
                    SettingCall::Set { name, value } => {
                        let setting = find(name).ok_or_else(|| unrecognized(name))?;
                        statuses.extend(assign(session, metadata, setting, value.as_deref())?);
                        Some(current(metadata, setting))
                    }
                };
                values.push(Arc::new(StringArray::from(vec![value])));
            }
            let batch = RecordBatch::try_new(schema(statement), values)
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            Ok(Outcome::Rows(batch, statuses))
        }
        SqlStatement::UNLISTEN { .. } => Ok(Outcome::Done("UNLISTEN", vec![])),
        other => Err(error("0A000", format!("{other} is not supported"))),
    }
}

fn reset_all(
    session: &Session,
    metadata: &mut HashMap<String, String>,
) -> PgWireResult<Vec<(String, String)>> {
    let mut statuses = Vec::new();
    for setting in SETTINGS.iter().filter(|s| s.kind != Kind::Fixed) {
        // Settings that were never changed need no ParameterStatus.
        if metadata.contains_key(setting.name) {
            statuses.extend(assign(session, metadata, setting, None)?);
        }
    }
    Ok(statuses)
}

fn show_all(session: &Session, metadata: &HashMap<String, String>) -> RecordBatch {
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut descriptions = Vec::new();
    for setting in SETTINGS {
        names.push(setting.display.to_owned());
        values.push(current(metadata, setting));
        descriptions.push(setting.description.to_owned());
    }
    for entry in session.context().state().config_options().entries() {
        names.push(entry.key.clone());
        values.push(entry.value.clone().unwrap_or_default());
        // The first sentence: DataFusion's descriptions run to paragraphs.
        let description = entry.description.split(". ").next().unwrap_or_default();
        descriptions.push(description.lines().next().unwrap_or_default().to_owned());
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("setting", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(values)),
            Arc::new(StringArray::from(descriptions)),
        ],
    )
    .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
}

/// Applies the settings a client sent in its start-up packet (`TimeZone`, `DateStyle`,
/// `extra_float_digits`, `application_name`, `options=-c name=value`) as Postgres does: a
/// bad value refuses the connection.
pub(crate) fn apply_startup<C: pgwire::api::ClientInfo>(
    session: &Session,
    client: &mut C,
) -> PgWireResult<()> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut sent: Vec<(String, String)> = client
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Settings first, then `options`, which Postgres applies after them.
    sent.sort_by_key(|(k, _)| k == "options");
    for (key, value) in &sent {
        if key == "options" {
            pairs.extend(command_line_options(value));
        } else {
            pairs.push((key.clone(), value.clone()));
        }
    }
    for (key, value) in pairs {
        let Some(setting) = find(&key) else {
            continue;
        };
        if setting.kind == Kind::Fixed {
            continue;
        }
        let metadata = client.metadata_mut();
        let assigned = assign(session, metadata, setting, Some(&value));
        if let Some(value) = metadata.get(setting.name).cloned() {
            metadata.insert(startup_key(setting), value);
        }
        if let Err(e) = assigned {
            let message = match e {
                PgWireError::UserError(info) => info.message,
                other => other.to_string(),
            };
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_owned(),
                "22023".to_owned(),
                message,
            ))));
        }
    }
    Ok(())
}

/// `-c name=value` and `--name=value` pairs of the `options` start-up parameter.
fn command_line_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let pair = if word == "-c" {
            words.next()
        } else {
            word.strip_prefix("-c").or_else(|| word.strip_prefix("--"))
        };
        if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
            out.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_show_as_postgres_does() {
        assert_eq!(parse_millis("5000"), Some(5000));
        assert_eq!(parse_millis("5s"), Some(5000));
        assert_eq!(parse_millis("1.5 s"), Some(1500));
        assert_eq!(parse_millis("2min"), Some(120_000));
        assert_eq!(parse_millis("soon"), None);
        assert_eq!(parse_millis("-1"), None);
        assert_eq!(show_millis(0), "0");
        assert_eq!(show_millis(5000), "5s");
        assert_eq!(show_millis(500), "500ms");
        assert_eq!(show_millis(120_000), "2min");
        assert_eq!(show_millis(3_600_000), "1h");
    }

    #[test]
    fn date_styles_fill_in_the_missing_half() {
        let setting = find("DateStyle").expect("known");
        assert_eq!(canonical(setting, "ISO").ok().as_deref(), Some("ISO, MDY"));
        assert_eq!(
            canonical(setting, "sql, dmy").ok().as_deref(),
            Some("SQL, DMY")
        );
        assert!(canonical(setting, "klingon").is_err());
    }

    #[test]
    fn options_parameter_carries_settings() {
        assert_eq!(
            command_line_options("-c search_path=demo --statement-timeout=5s -cDateStyle=ISO"),
            vec![
                ("search_path".to_owned(), "demo".to_owned()),
                ("statement_timeout".to_owned(), "5s".to_owned()),
                ("DateStyle".to_owned(), "ISO".to_owned()),
            ]
        );
    }
}
