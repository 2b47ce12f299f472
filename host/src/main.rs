//! The `faceauth` binary: configuration in, server or tool out (one file per
//! command in `commands`).
#![forbid(unsafe_code)]

mod commands;
mod config;

use clap::Parser;
use config::{Cli, Command, LogFormat};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,ort=warn,wasmtime=warn,cranelift=warn".into());
    // The tools print their answer (JSON for `verify`, `eval --json`) on stdout: their
    // log lines go to stderr; the server's to stdout, as before.
    let writer = match cli.command {
        Command::Serve(_) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stdout),
        _ => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(writer);
    match cli.log_format {
        // One JSON object per line, with the request span's id, for log shippers.
        LogFormat::Json => logs.json().with_current_span(true).init(),
        LogFormat::Text => logs.init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(config) => runtime.block_on(commands::serve(config)),
        Command::Inspect(args) => runtime.block_on(commands::inspect(args)),
        Command::Verify(args) => {
            let approved = runtime.block_on(commands::verify(args))?;
            std::process::exit(if approved { 0 } else { 3 });
        }
        Command::Replay(args) => runtime.block_on(commands::replay(args)),
        Command::Policy(command) => {
            // Exit status 1 when a fixture's outcome differs, as test runners do.
            if !commands::policy(command)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Eval(args) => runtime.block_on(commands::eval(args)),
        Command::Rekey(database) => runtime.block_on(commands::rekey(database)),
    }
}
