/// Everything that stops the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),

    #[error(transparent)]
    Catalog(#[from] tarn_catalog::Error),

    #[error(transparent)]
    Sql(#[from] tarn_sql::Error),

    #[error("cannot listen on {addr} for {service}: {source}")]
    Bind {
        service: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write the address file {path}: {source}")]
    AddressFile {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("demo data: {0}")]
    Demo(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
