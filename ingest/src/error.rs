/// Everything that can go wrong while writing to the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Delta table at {location}: {source}")]
    Delta {
        location: String,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },

    #[error("{location} has no Delta log (_delta_log/)")]
    NotADeltaTable { location: String },

    #[error("a table already exists at {location}")]
    LocationNotEmpty { location: String },

    #[error("cannot remove data at {location}: {source}")]
    Remove {
        location: String,
        #[source]
        source: object_store::Error,
    },

    #[error(transparent)]
    Catalog(#[from] tarn_catalog::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
