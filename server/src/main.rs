//! `tarn`: a data lake in one binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tarn_server::{Overrides, Server, TarnConfig};

#[derive(Debug, Parser)]
#[command(name = "tarn", version, about = "A data lake in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve SQL over the Postgres wire and HTTP on a lake.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Config file (TOML); `TARN__SECTION__KEY` environment variables and flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The warehouse: a folder, file:///… or memory:///. Default ./tarn-data
    #[arg(long, value_name = "URL")]
    warehouse: Option<String>,
    /// Postgres wire address. Default 127.0.0.1:5433
    #[arg(long, value_name = "HOST:PORT")]
    pg_addr: Option<String>,
    /// HTTP address. Default 127.0.0.1:8080
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<String>,
    /// Arrow Flight SQL address (default 127.0.0.1:50051).
    #[arg(long, value_name = "HOST:PORT")]
    flight_addr: Option<String>,
    /// Write the bound addresses as JSON to this file once every listener is up.
    #[arg(long, value_name = "PATH")]
    address_file: Option<PathBuf>,
    /// Load the demo database (TPC-H scale 0.01 and an events table) if missing.
    #[arg(long)]
    demo: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TARN_LOG").unwrap_or_else(|_| {
                "info,datafusion=warn,deltalake=warn,deltalake_core=warn,buoyant_kernel=off".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let overrides = Overrides {
        config_file: args.config,
        warehouse: args.warehouse,
        pg_addr: args.pg_addr,
        http_addr: args.http_addr,
        flight_addr: args.flight_addr,
        address_file: args.address_file,
        demo: args.demo,
    };
    let config = TarnConfig::load(&overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tarn")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        server.shutdown().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
