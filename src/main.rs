use std::process::ExitCode;

use clap::Parser;

use cachewithredis::cli::{self, Cli};
use cachewithredis::config::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Settings first: reading them loads .env, whose RUST_LOG the logger then sees.
    let settings = Settings::from_env();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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
