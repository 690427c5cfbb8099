use std::process::ExitCode;

use clap::Parser;

use cachewithredis::cli::{self, Cli};
use cachewithredis::config::{LogFormat, Settings};
use cachewithredis::logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Settings first: reading them loads .env, whose RUST_LOG the logger then sees.
    let settings = Settings::from_env();
    logging::init(settings.as_ref().map_or(LogFormat::Text, |s| s.log_format));
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("cachewithredis: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli::run(cli, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<cli::UsageError>() => {
            eprintln!("cachewithredis: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("cachewithredis: {e:#}");
            ExitCode::FAILURE
        }
    }
}
