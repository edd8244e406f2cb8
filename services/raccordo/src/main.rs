//! `raccordo`: parse the command line, load settings, init telemetry, run.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use std::process::ExitCode;

use clap::Parser;

use raccordo::cli::Cli;
use raccordo_core::settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(error) => {
            eprintln!("Error: {error}");
            return ExitCode::from(2);
        }
    };
    // The demo prints its own story on stdout; only problems belong on stderr.
    let default_filter = match cli.command {
        raccordo::cli::Command::Demo { .. } => "error,lapin=off,sqlx=off",
        // The benchmark draws its own progress on stderr.
        raccordo::cli::Command::Bench(_) | raccordo::cli::Command::Soak(_) => {
            "warn,lapin=off,sqlx=off"
        }
        _ => raccordo_core::telemetry::DEFAULT_FILTER,
    };
    raccordo_core::telemetry::init(
        cli.log_format.unwrap_or(settings.log.format),
        default_filter,
    );
    match raccordo::run::run(cli.command, settings).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
