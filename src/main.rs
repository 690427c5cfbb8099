use std::process::ExitCode;

use clap::Parser;

use cachewithredis::cli::{self, Cli};
use cachewithredis::config::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // .env first, so that RUST_LOG from it reaches the logger.
    let _ = dotenvy::dotenv();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::from_env() {
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
