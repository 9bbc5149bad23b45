//! The `switchboard` binary: a thin command line over the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use switchboard::{app, Config};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Durable event hub for HL7 v2 and FHIR R4"
)]
struct Cli {
    /// TOML configuration file (optional; defaults and SWITCHBOARD_* variables apply without it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Print the effective configuration (secrets hidden).
    Config,
    /// Manage API keys directly in the database.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Send HL7 v2 files over MLLP and print each ACK code; exits non-zero unless every ACK is AA or CA.
    Send(SendArgs),
}

#[derive(clap::Args)]
struct SendArgs {
    /// Destination as HOST:PORT.
    #[arg(long)]
    to: String,
    /// Files holding one or more messages (segments end in CR, LF or CRLF; batch envelopes are ignored).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Time allowed per attempt (connect, send, ACK back), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Further attempts after a failed one.
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key for an org and print it (shown once).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Openapi => {
                print!("{}", switchboard::api::openapi::document());
                Ok(())
            }
            Command::Send(args) => send_files(args).await,
            command => {
                let config = Config::load(cli.config.as_deref())?;
                match command {
                    Command::Serve => serve(config).await,
                    Command::Config => {
                        print!("{}", config.to_redacted_toml());
                        Ok(())
                    }
                    Command::Keys {
                        command: KeysCommand::Create { org, name },
                    } => create_key(config, &org, &name).await,
                    Command::Openapi | Command::Send(_) => Ok(()),
                }
            }
        }
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listeners = app::Listeners::bind(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    app::run(config, listeners, shutdown).await
}

async fn watch_signals(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::error!(error = %err, "cannot watch SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}

async fn create_key(config: Config, org: &str, name: &str) -> anyhow::Result<()> {
    switchboard::event::validate_org_id(org)?;
    let store = switchboard::store::open(&config.database.url).await?;
    let created = switchboard::auth::create_org_key(&store, "cli", org, name).await?;
    let (id, key) = (created.id, created.key);
    println!("id:  {id}\norg: {org}\nkey: {key}\n(the key is shown only this once)");
    Ok(())
}

/// `switchboard send`: no database, no events; one connection reused for every message.
async fn send_files(args: SendArgs) -> anyhow::Result<()> {
    use switchboard::mllp::{MllpClient, SendOptions};
    let options = SendOptions {
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        retries: args.retries,
        ..Default::default()
    };
    let mut client = MllpClient::new(args.to.clone(), options);
    let (mut sent, mut failed) = (0usize, 0usize);
    for file in &args.files {
        let data =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let messages = switchboard_hl7::batch::split_batch_bytes(&data);
        if messages.is_empty() {
            eprintln!("{}: no HL7 message (no MSH segment)", file.display());
            failed += 1;
        }
        for (n, message) in messages.into_iter().enumerate() {
            let label = format!("{}#{}", file.display(), n + 1);
            match client.send(message).await {
                Ok(reply) => {
                    println!("{label}\t{}\t{}", reply.control_id, reply.code);
                    sent += 1;
                    if !reply.code.is_accept() {
                        failed += 1;
                    }
                }
                Err(err) => {
                    println!("{label}\t-\tERROR\t{err}");
                    failed += 1;
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} message(s) not accepted ({sent} answered)");
        std::process::exit(1);
    }
    Ok(())
}
