//! tarn's configuration: one strict serde tree, layered defaults → `tarn.toml` → `TARN__…`
//! environment variables → command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tarn_catalog::{CatalogConfig, StoresConfig};
use tarn_sql::EngineConfig;

use crate::error::{Error, Result};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TarnConfig {
    /// Where the lake lives: a folder, `s3://bucket/prefix`, `file:///…` or `memory:///`.
    pub warehouse: String,
    /// Load the demo database (TPC-H at scale 0.01 and an events table) if it is missing.
    pub demo: bool,
    /// Write the bound addresses as JSON here once every listener is up.
    pub address_file: Option<PathBuf>,
    pub pg: PgConfig,
    pub http: HttpConfig,
    pub flight: FlightConfig,
    pub auth: AuthConfig,
    pub catalog: CatalogConfig,
    pub engine: EngineConfig,
    /// `[stores.<name>]`: S3-compatible stores (endpoint, region, keys, which buckets).
    pub stores: StoresConfig,
    /// `[streams]`: where the Kinesis-style stream logs live.
    pub streams: tarn_ingest::stream::StreamsConfig,
    pub shutdown: ShutdownConfig,
}

impl Default for TarnConfig {
    fn default() -> Self {
        Self {
            warehouse: "./tarn-data".to_owned(),
            demo: false,
            address_file: None,
            pg: PgConfig::default(),
            http: HttpConfig::default(),
            flight: FlightConfig::default(),
            auth: AuthConfig::default(),
            catalog: CatalogConfig::default(),
            engine: EngineConfig::default(),
            stores: StoresConfig::default(),
            streams: tarn_ingest::stream::StreamsConfig::default(),
            shutdown: ShutdownConfig::default(),
        }
    }
}

/// `[pg]`: the Postgres wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgConfig {
    /// `HOST:PORT`; port 0 picks a free port.
    pub addr: String,
    /// How `[auth.users]` log in: `scram-sha-256` (the default), or `md5` or `password`
    /// (cleartext) for old clients; `trust` lets anyone in. With no users it is `trust`.
    pub auth_method: PgAuthMethod,
    /// Connections at once; one more is refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// The most data one `COPY … FROM STDIN` takes (held in memory until its end); more is
    /// refused with SQLSTATE 54000.
    pub max_copy_bytes: usize,
    /// `[pg.tls]`: offer TLS with this certificate chain and key (PEM files).
    pub tls: Option<PgTlsConfig>,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:5433".to_owned(),
            auth_method: PgAuthMethod::ScramSha256,
            max_connections: 100,
            max_copy_bytes: 1 << 30,
            tls: None,
        }
    }
}

/// `pg.auth_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PgAuthMethod {
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "password")]
    Password,
    #[serde(rename = "trust")]
    Trust,
}

/// `[pg.tls]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Refuse connections that do not use TLS.
    #[serde(default)]
    pub required: bool,
}

/// `[http]`: health, the JSON query endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub addr: String,
    /// Rows the JSON query endpoint returns at most; the answer says when it cut.
    pub max_rows: usize,
    /// Access key id → secret. When any are set, requests to the AWS-compatible APIs (Kinesis,
    /// Glue) must carry a valid SigV4 signature by one of them; when none are, none is checked.
    pub aws_credentials: std::collections::BTreeMap<String, tarn_catalog::Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".to_owned(),
            max_rows: 10_000,
            aws_credentials: std::collections::BTreeMap::new(),
        }
    }
}

/// `[flight]`: Arrow Flight SQL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightConfig {
    pub addr: String,
    /// How long a bearer token from the handshake stays valid.
    pub token_ttl_secs: u64,
    /// The largest gRPC message tarn accepts (a batch of a bulk load, say).
    pub max_message_bytes: usize,
    /// `[flight.tls]`: serve TLS with this certificate chain and key (PEM files).
    pub tls: Option<TlsConfig>,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:50051".to_owned(),
            token_ttl_secs: 12 * 3600,
            max_message_bytes: 64 << 20,
            tls: None,
        }
    }
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[auth]`: who may connect. With no users, no one is asked for credentials (the embedded
/// default, on loopback); with users, Flight SQL requires one of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// User name → password.
    pub users: std::collections::BTreeMap<String, tarn_catalog::Secret>,
    /// Users whose SQL may name files and object-store locations: `COPY … TO '<path>'`,
    /// `CREATE EXTERNAL TABLE … LOCATION`, `CREATE CRAWLER … LOCATION`. What Postgres keeps
    /// to superusers, since such a statement reads or writes whatever the server can. With no
    /// users configured, every session may (only this machine can connect then).
    pub file_access: Vec<String>,
}

impl AuthConfig {
    pub(crate) fn file_access(&self) -> FileAccess {
        FileAccess((!self.users.is_empty()).then(|| self.file_access.iter().cloned().collect()))
    }
}

/// Who may name files and object-store locations in SQL; `None`: everyone.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileAccess(Option<std::collections::BTreeSet<String>>);

impl FileAccess {
    pub(crate) fn allows(&self, user: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(users) => user.is_some_and(|u| users.contains(u)),
        }
    }
}

/// `[shutdown]`: how long open connections get to finish on SIGINT/SIGTERM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    pub timeout_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { timeout_secs: 10 }
    }
}

/// Values given on the command line; each overrides every other layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub warehouse: Option<String>,
    pub pg_addr: Option<String>,
    pub http_addr: Option<String>,
    pub flight_addr: Option<String>,
    pub address_file: Option<PathBuf>,
    pub demo: bool,
}

impl TarnConfig {
    /// Layers defaults, the config file, `TARN__SECTION__KEY` environment variables and the
    /// overrides, then validates.
    pub fn load(overrides: &Overrides) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(TarnConfig::default()));
        if let Some(path) = &overrides.config_file {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("TARN__").split("__"));
        let o = overrides;
        let set = |f: Figment, key: &str, v: &Option<String>| match v {
            Some(v) => f.merge(Serialized::default(key, v)),
            None => f,
        };
        figment = set(figment, "warehouse", &o.warehouse);
        figment = set(figment, "pg.addr", &o.pg_addr);
        figment = set(figment, "http.addr", &o.http_addr);
        figment = set(figment, "flight.addr", &o.flight_addr);
        if let Some(p) = &o.address_file {
            figment = figment.merge(Serialized::default("address_file", p));
        }
        if o.demo {
            figment = figment.merge(Serialized::default("demo", true));
        }
        let config: TarnConfig = figment
            .extract()
            .map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        parse_addr("pg.addr", &self.pg.addr)?;
        parse_addr("http.addr", &self.http.addr)?;
        parse_addr("flight.addr", &self.flight.addr)?;
        if self.flight.token_ttl_secs == 0 {
            return Err(Error::Config(
                "flight.token_ttl_secs: must be at least 1".to_owned(),
            ));
        }
        if self.flight.max_message_bytes < 1 << 20 {
            return Err(Error::Config(
                "flight.max_message_bytes: must be at least 1048576 (1 MiB)".to_owned(),
            ));
        }
        if self.pg.max_copy_bytes == 0 {
            return Err(Error::Config(
                "pg.max_copy_bytes: must be at least 1".to_owned(),
            ));
        }
        if self.pg.max_connections == 0 {
            return Err(Error::Config(
                "pg.max_connections: must be at least 1".to_owned(),
            ));
        }
        if let Some(tls) = &self.pg.tls {
            for (key, path) in [("pg.tls.cert", &tls.cert), ("pg.tls.key", &tls.key)] {
                std::fs::File::open(path)
                    .map_err(|e| Error::Config(format!("{key}: {}: {e}", path.display())))?;
            }
        }
        // Where nothing asks for a password, only this machine may connect.
        let no_users = self.auth.users.is_empty();
        for (key, addr, open) in [
            (
                "pg.addr",
                &self.pg.addr,
                no_users || self.pg.auth_method == PgAuthMethod::Trust,
            ),
            ("flight.addr", &self.flight.addr, no_users),
        ] {
            if open && !parse_addr(key, addr)?.ip().is_loopback() {
                return Err(Error::Config(format!(
                    "{key}: {addr} is reachable from other machines, and no password is asked \
                     for: add users under [auth.users] (and keep pg.auth_method other than \
                     trust), or listen on 127.0.0.1"
                )));
            }
        }
        if let Some(tls) = &self.flight.tls {
            for (key, path) in [("flight.tls.cert", &tls.cert), ("flight.tls.key", &tls.key)] {
                std::fs::File::open(path)
                    .map_err(|e| Error::Config(format!("{key}: {}: {e}", path.display())))?;
            }
        }
        if let Some(name) = self
            .auth
            .users
            .keys()
            .find(|u| u.is_empty() || u.contains(':'))
        {
            return Err(Error::Config(format!(
                "auth.users: {name:?} is not a user name (empty, or has a ':')"
            )));
        }
        if let Some(name) = self
            .auth
            .file_access
            .iter()
            .find(|u| !self.auth.users.contains_key(*u))
        {
            return Err(Error::Config(format!(
                "auth.file_access: {name:?} is not one of [auth.users]"
            )));
        }
        tarn_catalog::parse_location(&self.warehouse)
            .map_err(|e| Error::Config(format!("warehouse: {e}")))?;
        self.engine
            .memory_limit_bytes()
            .map_err(|e| Error::Config(e.to_string()))?;
        if self.http.max_rows == 0 {
            return Err(Error::Config(
                "http.max_rows: must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

pub(crate) fn parse_addr(key: &str, value: &str) -> Result<SocketAddr> {
    value.parse().map_err(|_| {
        Error::Config(format!(
            "{key}: {value:?} is not HOST:PORT with an IP address, like 127.0.0.1:5433"
        ))
    })
}
