use datafusion::error::DataFusionError;

/// Everything that can go wrong planning or running a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From DataFusion: SQL errors, planning errors, execution errors.
    #[error(transparent)]
    DataFusion(DataFusionError),

    #[error(transparent)]
    Catalog(#[from] tarn_catalog::Error),

    #[error(transparent)]
    Ingest(#[from] tarn_ingest::Error),

    #[error("Delta table at {location}: {source}")]
    Delta {
        location: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },

    /// Something SQL users might expect that tarn does not do (yet).
    #[error(transparent)]
    Stream(#[from] tarn_ingest::stream::StreamError),

    #[error(transparent)]
    Delivery(#[from] tarn_ingest::delivery::DeliveryError),

    #[error("delivery option {option}: {reason}")]
    DeliveryOption { option: String, reason: String },

    #[error("{feature} is not supported yet")]
    NotSupported { feature: String },

    #[error("unrecognized configuration parameter \"{name}\"")]
    UnknownSetting { name: String },

    /// A statement that reads or writes files or object-store paths by name, from a session
    /// whose user may not.
    #[error(
        "permission denied: {statement} names a file or object-store location, which only users \
         listed in [auth] file_access may do"
    )]
    FileAccess { statement: &'static str },

    #[error("location {location} {reason}")]
    Location { location: String, reason: String },

    #[error("invalid configuration: {key}: {reason}")]
    Config { key: &'static str, reason: String },

    /// Bound parameter values that do not fit the statement.
    #[error("{0}")]
    Parameter(String),

    /// A statement about a view that cannot be done: a name given twice, a view that reads
    /// itself, one gone stale, a table named where a view must be (or the other way).
    #[error("{message}")]
    View {
        message: String,
        sqlstate: &'static str,
    },

    /// A write that cannot be done as asked: a NULL in a column that may not hold one, a
    /// `COMMIT` that wrote some of its tables' held inserts but not all.
    #[error("{message}")]
    Write {
        message: String,
        sqlstate: &'static str,
    },

    /// A bulk load whose columns do not fit its table.
    #[error("load into {table}: {reason}")]
    Load {
        table: tarn_catalog::TableRef,
        reason: String,
        sqlstate: &'static str,
    },
}

/// A tarn error raised inside DataFusion (by a table provider) comes back out as itself.
impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(tarn) => *tarn,
                Err(other) => Self::DataFusion(DataFusionError::External(other)),
            },
            // raised during planning or execution, it may come wrapped
            e => match e.find_root() {
                DataFusionError::External(inner)
                    if let Some(Error::View { message, sqlstate }) = inner.downcast_ref() =>
                {
                    Self::View {
                        message: message.clone(),
                        sqlstate,
                    }
                }
                _ => Self::DataFusion(e),
            },
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::DataFusion(e.into())
    }
}

impl Error {
    pub(crate) fn not_supported(feature: impl Into<String>) -> Self {
        Self::NotSupported {
            feature: feature.into(),
        }
    }

    /// The SQLSTATE a Postgres client should see for this error.
    pub fn sqlstate(&self) -> &'static str {
        use tarn_catalog::Error as C;
        match self {
            Self::DataFusion(e) => datafusion_sqlstate(e),
            Self::Catalog(C::DatabaseNotFound { .. }) => "3F000",
            Self::Catalog(C::DatabaseExists { .. }) => "42P06",
            Self::Catalog(C::DatabaseNotEmpty { .. }) => "2BP01",
            Self::Catalog(C::TableNotFound { .. }) => "42P01",
            Self::Catalog(C::TableExists { .. } | C::ViewExists { .. }) => "42P07",
            Self::Catalog(C::ViewNotFound { .. }) => "42P01",
            Self::Catalog(C::InvalidName { .. }) => "42602",
            Self::Catalog(C::CrawlerNotFound { .. }) => "42704",
            Self::Catalog(C::CrawlerExists { .. }) => "42710",
            Self::Catalog(C::CrawlerOption { .. } | C::InvalidPartition { .. }) => "22023",
            Self::Catalog(C::InvalidUrl { .. }) => "22023",
            Self::Catalog(C::NoConditionalWrites { .. })
            | Self::Ingest(tarn_ingest::Error::Catalog(C::NoConditionalWrites { .. })) => "55000",
            Self::Catalog(_) => "58000",
            Self::Ingest(tarn_ingest::Error::LocationNotEmpty { .. }) => "42P07",
            Self::Ingest(tarn_ingest::Error::NotADeltaTable { .. }) => "58P01",
            // A NULL in a column that may not hold one, found while writing.
            Self::Delta { source, .. }
                if source
                    .to_string()
                    .contains("non-nullable but contains null values") =>
            {
                "23502"
            }
            // A value that does not convert to the table's type, found while writing.
            Self::Delta { source, .. } if source.to_string().contains("Cast error") => "22P02",
            Self::Ingest(_) | Self::Delta { .. } => "58000",
            Self::NotSupported { .. } => "0A000",
            Self::Stream(tarn_ingest::stream::StreamError::NotFound { .. }) => "42P01",
            Self::Stream(tarn_ingest::stream::StreamError::Throttled { .. }) => "53300",
            Self::Stream(_) => "58000",
            Self::Delivery(d) => {
                use tarn_ingest::delivery::DeliveryError as D;
                match d {
                    D::NotFound { .. } => "42704",
                    D::InUse { .. } => "42710",
                    D::Invalid(_) => "22023",
                    D::Stream(tarn_ingest::stream::StreamError::NotFound { .. }) => "42P01",
                    D::Stream(tarn_ingest::stream::StreamError::Throttled { .. }) => "53300",
                    D::Catalog(C::DatabaseNotFound { .. }) => "3F000",
                    D::Catalog(C::InvalidName { .. }) => "42602",
                    _ => "58000",
                }
            }
            Self::DeliveryOption { .. } => "22023",
            Self::UnknownSetting { .. } => "42704",
            Self::FileAccess { .. } => "42501",
            Self::Location { .. } => "58P01",
            Self::Config { .. } => "F0000",
            Self::Parameter(_) => "22023",
            Self::Load { sqlstate, .. }
            | Self::View { sqlstate, .. }
            | Self::Write { sqlstate, .. } => sqlstate,
        }
    }
}

/// Maps a DataFusion error to the closest Postgres SQLSTATE.
pub fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::SchemaError(err, _) => {
            let msg = err.to_string();
            if msg.contains("not found") || msg.contains("No field named") {
                "42703"
            } else if msg.contains("ambiguous") || msg.contains("Ambiguous") {
                "42702"
            } else if msg.contains("duplicate") || msg.contains("Duplicate") {
                "42701"
            } else {
                "42000"
            }
        }
        DataFusionError::Plan(msg) => {
            if msg.contains("table") && (msg.contains("not found") || msg.contains("not exist")) {
                "42P01"
            } else if msg.contains("function") && msg.contains("not found")
                || msg.contains("Invalid function")
                || msg.contains("No function matches")
            {
                "42883"
            } else if msg.contains("Cannot infer common") || msg.contains("Cannot coerce") {
                "42804"
            } else if msg.contains("already exists") {
                "42P07"
            } else if msg.starts_with("unrecognized configuration parameter") {
                "42704"
            } else {
                "42000"
            }
        }
        DataFusionError::ArrowError(err, _) => match err.as_ref() {
            arrow::error::ArrowError::DivideByZero => "22012",
            arrow::error::ArrowError::CastError(_) | arrow::error::ArrowError::ParseError(_) => {
                "22P02"
            }
            arrow::error::ArrowError::ComputeError(m) if m.contains("overflow") => "22003",
            arrow::error::ArrowError::ArithmeticOverflow(_) => "22003",
            // a NULL inserted into a column that may not hold one
            arrow::error::ArrowError::InvalidArgumentError(m)
                if m.contains("non-nullable but contains null values") =>
            {
                "23502"
            }
            _ => "XX000",
        },
        DataFusionError::Execution(msg) if msg.contains("Divide by zero") => "22012",
        // a bad format string, as Postgres's format() refuses it
        DataFusionError::Execution(msg) if msg.starts_with("format(): ") => "22023",
        DataFusionError::Execution(msg) if msg.contains("subquery returned more than one row") => {
            "21000"
        }
        DataFusionError::Execution(msg)
            if msg.starts_with("Prepared statement") && msg.ends_with("does not exist") =>
        {
            "26000"
        }
        DataFusionError::ResourcesExhausted(_) => "53200",
        // a division by zero in a filter that the Parquet reader evaluates (pushed down)
        DataFusionError::ParquetError(err) if err.to_string().contains("DivideByZero") => "22012",
        DataFusionError::ParquetError(_) => "XX001",
        DataFusionError::ObjectStore(err) => match err.as_ref() {
            object_store::Error::NotFound { .. } => "58P01",
            _ => "58030",
        },
        DataFusionError::IoError(_) => "58030",
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(e) => e.sqlstate(),
            None => "XX000",
        },
        DataFusionError::Configuration(_) => "22023",
        _ => "XX000",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
