//! The composition root: opens the catalog, builds the engine, binds every listener, and shuts
//! everything down in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tarn_catalog::{Catalog, ObjectStores};
use tarn_ingest::Ingester;
use tarn_sql::{QueryEngine, QueryEngineArgs};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{TarnConfig, parse_addr};
use crate::error::{Error, Result};
use crate::http::{HttpState, router};

/// The addresses every listener is bound to (port 0 resolved).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct BoundAddrs {
    pub pg: SocketAddr,
    pub http: SocketAddr,
    pub flight: SocketAddr,
}

/// A running tarn: listeners bound, tasks spawned. Drop it or call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    addrs: BoundAddrs,
    engine: QueryEngine,
    streams: Arc<tarn_ingest::stream::Streams>,
    deliveries: Arc<tarn_ingest::delivery::Deliveries>,
    flight_queries: crate::flight::Running,
    cancel: CancellationToken,
    tasks: TaskTracker,
    shutdown_timeout: Duration,
}

async fn bind(service: &'static str, key: &str, addr: &str) -> Result<TcpListener> {
    let parsed = parse_addr(key, addr)?;
    TcpListener::bind(parsed)
        .await
        .map_err(|source| Error::Bind {
            service,
            addr: addr.to_owned(),
            source,
        })
}

impl Server {
    /// Opens the warehouse and starts serving. Returns once every listener is bound.
    pub async fn start(config: TarnConfig) -> Result<Self> {
        // TLS files are read first: a bad certificate stops start-up before anything is written.
        let flight_server = crate::flight::server(&config.flight).map_err(Error::Config)?;
        let pg_tls = crate::pg::tls(&config.pg).map_err(Error::Config)?;
        let pg_auth = crate::pg::PgAuth::new(
            &config.pg,
            &config.auth,
            pg_tls.as_ref().map(|t| t.cert_pem.clone()),
        )
        .map_err(Error::Config)?;
        let warehouse = tarn_catalog::parse_location(&config.warehouse)?;
        let stores = Arc::new(ObjectStores::new(config.stores.clone())?);
        let catalog = Arc::new(Catalog::open(warehouse, config.catalog.clone(), &stores).await?);
        let streams_dir = streams_dir(&config)?;
        let streams = Arc::new(
            tarn_ingest::stream::Streams::open(streams_dir.clone(), config.streams.clone())
                .map_err(|e| {
                    Error::Config(format!("streams.dir {}: {e}", streams_dir.display()))
                })?,
        );
        let ingester = Arc::new(Ingester::new(stores));
        let deliveries = Arc::new(
            tarn_ingest::delivery::Deliveries::open(
                &streams_dir,
                config.streams.clone(),
                Arc::clone(&streams),
                Arc::clone(&ingester),
                Arc::clone(&catalog),
            )
            .map_err(|e| Error::Config(format!("deliveries in {}: {e}", streams_dir.display())))?,
        );
        let engine = QueryEngine::try_new(QueryEngineArgs {
            catalog,
            ingester,
            config: config.engine.clone(),
            streams: Some(Arc::clone(&streams)),
            deliveries: Some(Arc::clone(&deliveries)),
        })
        .await?;
        if config.demo {
            crate::demo::load(&engine).await?;
        }

        let pg = bind("Postgres wire", "pg.addr", &config.pg.addr).await?;
        let http = bind("HTTP", "http.addr", &config.http.addr).await?;
        let flight = bind("Flight SQL", "flight.addr", &config.flight.addr).await?;
        let local = |l: &TcpListener, service, addr: &str| {
            l.local_addr().map_err(|source| Error::Bind {
                service,
                addr: addr.to_owned(),
                source,
            })
        };
        let addrs = BoundAddrs {
            pg: local(&pg, "Postgres wire", &config.pg.addr)?,
            http: local(&http, "HTTP", &config.http.addr)?,
            flight: local(&flight, "Flight SQL", &config.flight.addr)?,
        };
        let flight_queries = crate::flight::Running::default();
        let flight_service = crate::flight::service(
            engine.clone(),
            &config.flight,
            &config.auth,
            flight_queries.clone(),
        )
        .map_err(Error::Config)?;

        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(serve_pg(
            pg,
            PgServing {
                engine: engine.clone(),
                shared: Arc::new(crate::pg::PgShared::new(pg_auth, config.pg.max_copy_bytes)),
                tls: pg_tls.map(|t| t.acceptor),
                slots: Arc::new(tokio::sync::Semaphore::new(config.pg.max_connections)),
            },
            cancel.clone(),
            tasks.clone(),
        ));
        tasks.spawn(crate::scheduler::run(engine.clone(), cancel.clone()));
        tasks.spawn(crate::flight::serve(
            flight,
            flight_server,
            flight_service,
            cancel.clone(),
        ));
        let app = router(HttpState {
            engine: engine.clone(),
            aws_credentials: config.http.aws_credentials.clone(),
            streams: Arc::clone(&streams),
            deliveries: Arc::clone(&deliveries),
            max_rows: config.http.max_rows,
            files: config.auth.file_access(),
        });
        let http_cancel = cancel.clone();
        tasks.spawn(async move {
            let served = axum::serve(http, app)
                .with_graceful_shutdown(http_cancel.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });

        if let Some(path) = &config.address_file {
            let body = serde_json::to_vec(&BTreeMap::from([
                ("pg", addrs.pg.to_string()),
                ("http", addrs.http.to_string()),
                ("flight", addrs.flight.to_string()),
            ]))
            .map_err(|e| Error::Config(e.to_string()))?;
            // Written whole then renamed, so a reader never sees half a file.
            let tmp = path.with_extension("tmp");
            let write = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path));
            write.map_err(|source| Error::AddressFile {
                path: path.display().to_string(),
                source,
            })?;
        }
        tracing::info!(pg = %addrs.pg, http = %addrs.http, flight = %addrs.flight, warehouse = %config.warehouse, "tarn is ready");
        Ok(Self {
            addrs,
            engine,
            streams,
            deliveries,
            flight_queries,
            cancel,
            tasks,
            shutdown_timeout: Duration::from_secs(config.shutdown.timeout_secs),
        })
    }

    pub fn addrs(&self) -> BoundAddrs {
        self.addrs
    }

    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// The stream logs the Kinesis API writes and `stream('name')` reads.
    pub fn streams(&self) -> &Arc<tarn_ingest::stream::Streams> {
        &self.streams
    }

    /// The deliveries (Firehose) into lake tables.
    pub fn deliveries(&self) -> &Arc<tarn_ingest::delivery::Deliveries> {
        &self.deliveries
    }

    /// The queries Flight SQL is streaming now.
    pub fn flight_queries(&self) -> Vec<crate::flight::RunningQuery> {
        self.flight_queries.list()
    }

    /// Stops accepting, gives open connections the configured time to finish, then returns.
    /// Deliveries stop at once: what they buffered is still in the logs for the next start.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.deliveries.shutdown().await;
        self.tasks.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_secs = self.shutdown_timeout.as_secs(),
                "connections still open at shutdown were closed"
            );
        }
        tracing::info!("tarn stopped");
    }
}

/// Where the stream logs live: `streams.dir`, else beside a local warehouse's catalog, else
/// `./tarn-streams` (logs are local files even when the warehouse is in S3).
fn streams_dir(config: &TarnConfig) -> Result<std::path::PathBuf> {
    if let Some(dir) = &config.streams.dir {
        return Ok(dir.clone());
    }
    let warehouse = tarn_catalog::parse_location(&config.warehouse)?;
    if warehouse.scheme() == "file"
        && let Ok(path) = warehouse.to_file_path()
    {
        return Ok(path.join("_tarn").join("streams"));
    }
    Ok(std::path::PathBuf::from("./tarn-streams"))
}

/// `socket` and a second handle on the same connection (non-blocking).
fn second_handle(
    socket: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, Arc<std::net::TcpStream>)> {
    let socket = socket.into_std()?;
    let other = socket.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(socket)?, Arc::new(other)))
}

/// Returns once the client has closed or reset the connection, looking every second without
/// reading anything (a peek). Data the client sent and pgwire has not read yet (a pipelined
/// message) hides a close behind it until pgwire reads it.
async fn hung_up(socket: &std::net::TcpStream) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut byte = [0u8; 1];
    loop {
        tick.tick().await;
        match socket.peek(&mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Ends a plain connection as PostgreSQL's fast shutdown does: FATAL 57P01, so a client
/// (psycopg's `AdminShutdown`) knows the server went away on purpose. The connection's task
/// has stopped, so nothing else writes to it. One non-blocking write: a client that reads
/// nothing does not hold up the shutdown.
fn admin_shutdown(socket: &std::net::TcpStream) {
    use std::io::Write;
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P01"),
        (b'M', "terminating connection due to administrator command"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(
        &u32::try_from(body.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    message.extend_from_slice(&body);
    let mut socket = socket;
    let _ = socket.write_all(&message);
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// What the Postgres listener hands each connection.
struct PgServing {
    engine: QueryEngine,
    shared: Arc<crate::pg::PgShared>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    /// One permit per connection, `pg.max_connections` in all.
    slots: Arc<tokio::sync::Semaphore>,
}

async fn serve_pg(
    listener: TcpListener,
    serving: PgServing,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!(error = %e, "Postgres wire: accept failed");
                continue;
            }
        };
        let session = match serving.engine.session() {
            Ok(session) => session,
            Err(e) => {
                tracing::error!(error = %e, %peer, "cannot create a session");
                continue;
            }
        };
        // A connection over the limit is still answered, with Postgres' error, at login.
        let permit = Arc::clone(&serving.slots).try_acquire_owned().ok();
        let handlers = Arc::new(crate::pg::ConnectionHandlers::new(
            session,
            &serving.shared,
            permit,
        ));
        let tls = serving.tls.clone();
        let cancel = cancel.clone();
        // A second handle on the connection: to see the client hang up while a query computes
        // (pgwire reads only between statements), and to say goodbye at shutdown.
        let (socket, other) = match second_handle(socket) {
            Ok(handles) => handles,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "Postgres wire: cannot use the connection");
                continue;
            }
        };
        let plain = tls.is_none();
        let connection = Arc::clone(&handlers);
        tasks.spawn(async move {
            // a client gone: its reading statement is cancelled; a write runs to its end
            let watch = async {
                hung_up(&other).await;
                tracing::debug!(%peer, "Postgres client closed its connection");
                connection.hung_up();
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = cancel.cancelled() => {
                    if plain {
                        admin_shutdown(&other);
                    }
                }
                () = watch => {}
                result = pgwire::tokio::process_socket(socket, tls, handlers) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "Postgres connection ended with an error");
                    }
                }
            }
        });
    }
}
