//! Settings from the environment (and a `.env` file), validated once at start-up.
//!
//! Every variable is parsed here and nowhere else, so that a bad value stops the process
//! before it binds a port, with a message that names the variable and what it accepts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cache::redis_url::RedisUrl;
pub use crate::logging::LogFormat;

/// Where the students live.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
    /// A path to an SQLite file (created when missing).
    Sqlite(String),
}

/// The validated configuration of one process.
#[derive(Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub redis_url: String,
    /// `REDIS_POOL_SIZE`: the most Redis connections one process keeps.
    pub redis_pool_size: u32,
    /// `REDIS_TIMEOUT_MS`: the bound on connecting to Redis and on each command.
    pub redis_timeout: Duration,
    pub bind_addr: SocketAddr,
    pub cache_ttl: Duration,
    pub cache_key_prefix: String,
    /// `None` when `SECRET_KEY` is unset: a random key is made at start-up.
    pub secret_key: Option<String>,
    pub cookie_secure: bool,
    pub debug: bool,
    /// A staff session ends after this long without a request (`SESSION_IDLE_SECS`).
    pub session_idle: Duration,
    /// ... and this long after sign-in, however active (`SESSION_MAX_SECS`).
    pub session_max: Duration,
    /// Where `/static/` is served from (`STATIC_DIR`): an existing directory; unset, the copy
    /// built into the binary.
    pub static_dir: Option<PathBuf>,
    /// The proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// `LOG_FORMAT`: text, or one JSON object a line.
    pub log_format: LogFormat,
    /// `METRICS_BIND_ADDR`: `/metrics` only there, on a listener of its own, when set.
    pub metrics_bind_addr: Option<SocketAddr>,
    /// `SHUTDOWN_DRAIN_SECS`: after SIGTERM, how long `/readyz` answers 503 while every page is
    /// still served, before the listener closes.
    pub shutdown_drain: Duration,
}

/// The addresses and CIDR blocks of the proxies in front (`TRUSTED_PROXIES`): only a request
/// from one of them has its `X-Forwarded-For` read, and only up to the first entry that is not
/// one of them (see `views::admin::auth::client_bucket`). Empty by default: a client that can
/// reach the application directly could otherwise name any address it likes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Parses a comma-separated list of addresses and CIDR blocks.
    pub fn parse(value: &str) -> Result<TrustedProxies, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("{entry:?} is not an address or a CIDR block"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    // A PostgreSQL URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Postgres(url) => write!(f, "Postgres({:?})", redact_password(url)),
            DatabaseUrl::Sqlite(path) => write!(f, "Sqlite({path:?})"),
        }
    }
}

impl std::fmt::Debug for Settings {
    // Hand-written so that neither the secret key nor a Redis password reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &self.database_url)
            .field("redis_pool_size", &self.redis_pool_size)
            .field("redis_timeout", &self.redis_timeout)
            .field("bind_addr", &self.bind_addr)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_key_prefix", &self.cache_key_prefix)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<set>"))
            .field("cookie_secure", &self.cookie_secure)
            .field("debug", &self.debug)
            .field("session_idle", &self.session_idle)
            .field("session_max", &self.session_max)
            .field("static_dir", &self.static_dir)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("log_format", &self.log_format)
            .field("metrics_bind_addr", &self.metrics_bind_addr)
            .field("shutdown_drain", &self.shutdown_drain)
            .finish_non_exhaustive()
    }
}

/// A variable that holds a value the application cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {variable}={value:?}: {accepts}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub accepts: String,
}

/// The longest TTL accepted: a cached aggregate older than a month is a configuration mistake.
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;
/// The longest session lifetime accepted, idle or absolute: a year.
const MAX_SESSION_SECS: u64 = 365 * 24 * 3600;

/// actix-web's cookie key derivation needs at least this many bytes of secret.
const MIN_SECRET_KEY_LEN: usize = 32;
/// More connections than this per process would only queue inside Redis.
const MAX_REDIS_POOL_SIZE: u32 = 1024;
/// A bound above a minute is no bound for a request waiting on it.
const MAX_REDIS_TIMEOUT_MS: u64 = 60_000;

impl Settings {
    /// Reads `.env` when present (once: later calls find it loaded), then the process
    /// environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        static DOTENV: std::sync::Once = std::sync::Once::new();
        // A missing .env is normal; a malformed one is reported by the parse of each variable.
        DOTENV.call_once(|| drop(dotenvy::dotenv()));
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds settings from any variable lookup; the tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str, default: &str| get(name).unwrap_or_else(|| default.into());
        Ok(Settings {
            database_url: parse_database_url(&var("DATABASE_URL", "cachewithredis.sqlite3"))?,
            redis_url: parse_redis_url(&var("REDIS_URL", "redis://127.0.0.1:6379/0"))?,
            redis_pool_size: parse_redis_pool_size(&var("REDIS_POOL_SIZE", "16"))?,
            redis_timeout: parse_redis_timeout(&var("REDIS_TIMEOUT_MS", "250"))?,
            bind_addr: parse_bind_addr(&var("BIND_ADDR", "127.0.0.1:8000"))?,
            cache_ttl: parse_ttl(&var("CACHE_TTL_SECS", "300"))?,
            cache_key_prefix: parse_key_prefix(&var("CACHE_KEY_PREFIX", "cachewithredis"))?,
            secret_key: get("SECRET_KEY").map(parse_secret_key).transpose()?,
            cookie_secure: parse_flag("COOKIE_SECURE", &var("COOKIE_SECURE", "0"))?,
            debug: parse_flag("DEBUG", &var("DEBUG", "0"))?,
            session_idle: parse_session_secs(
                "SESSION_IDLE_SECS",
                &var("SESSION_IDLE_SECS", "3600"),
            )?,
            session_max: parse_session_secs(
                "SESSION_MAX_SECS",
                &var("SESSION_MAX_SECS", "1209600"),
            )?,
            static_dir: get("STATIC_DIR")
                .filter(|v| !v.trim().is_empty())
                .map(|v| parse_static_dir(&v))
                .transpose()?,
            trusted_proxies: parse_trusted_proxies(&var("TRUSTED_PROXIES", ""))?,
            log_format: parse_log_format(&var("LOG_FORMAT", "text"))?,
            metrics_bind_addr: get("METRICS_BIND_ADDR")
                .filter(|v| !v.trim().is_empty())
                .map(|v| parse_addr("METRICS_BIND_ADDR", &v))
                .transpose()?,
            shutdown_drain: parse_drain(&var("SHUTDOWN_DRAIN_SECS", "0"))?,
        })
    }
}

fn invalid(variable: &'static str, value: &str, accepts: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_owned(),
        accepts: accepts.into(),
    }
}

fn parse_database_url(value: &str) -> Result<DatabaseUrl, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid(
            "DATABASE_URL",
            value,
            "a postgres:// URL or a path to an SQLite file, e.g. cachewithredis.sqlite3",
        ));
    }
    if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(value.to_owned()));
    }
    if value.contains("://") && !value.starts_with("sqlite://") {
        return Err(invalid(
            "DATABASE_URL",
            &redact_password(value),
            "a postgres:// URL or a path to an SQLite file (optionally sqlite://PATH)",
        ));
    }
    let path = value.strip_prefix("sqlite://").unwrap_or(value);
    Ok(DatabaseUrl::Sqlite(path.to_owned()))
}

fn parse_redis_url(value: &str) -> Result<String, ConfigError> {
    let accepts = "a redis://, rediss:// or unix:// URL, e.g. redis://:password@127.0.0.1:6379/0, \
                   redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/DB] \
                   or redis+cluster://[:password@]host:port[,host:port...]";
    // Parsing here, not at the first request, is what makes a typo fail at start-up.
    RedisUrl::parse(value)
        .map(|_| value.to_owned())
        .map_err(|why| {
            invalid(
                "REDIS_URL",
                &redact_password(value),
                format!("{accepts} ({why})"),
            )
        })
}

/// A whole number from 1 to `max` in `unit`, or an error naming `variable` and the range.
fn parse_count(
    variable: &'static str,
    value: &str,
    max: u64,
    unit: &str,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            variable,
            value,
            format!("a whole number of {unit} from 1 to {max}"),
        )),
    }
}

/// Longer than five minutes would outlast any supervisor's stop timeout.
const MAX_SHUTDOWN_DRAIN_SECS: u64 = 300;

fn parse_drain(value: &str) -> Result<Duration, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if n <= MAX_SHUTDOWN_DRAIN_SECS => Ok(Duration::from_secs(n)),
        _ => Err(invalid(
            "SHUTDOWN_DRAIN_SECS",
            value,
            format!("a whole number of seconds from 0 to {MAX_SHUTDOWN_DRAIN_SECS}"),
        )),
    }
}

fn parse_redis_pool_size(value: &str) -> Result<u32, ConfigError> {
    let size = parse_count(
        "REDIS_POOL_SIZE",
        value,
        MAX_REDIS_POOL_SIZE.into(),
        "connections",
    )?;
    // Within MAX_REDIS_POOL_SIZE, so within u32.
    Ok(u32::try_from(size).unwrap_or(MAX_REDIS_POOL_SIZE))
}

fn parse_redis_timeout(value: &str) -> Result<Duration, ConfigError> {
    let ms = parse_count(
        "REDIS_TIMEOUT_MS",
        value,
        MAX_REDIS_TIMEOUT_MS,
        "milliseconds",
    )?;
    Ok(Duration::from_millis(ms))
}

/// Hides the password of a URL that is about to be printed.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn parse_log_format(value: &str) -> Result<LogFormat, ConfigError> {
    LogFormat::parse(value).ok_or_else(|| invalid("LOG_FORMAT", value, "text or json"))
}

fn parse_addr(variable: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| {
        invalid(
            variable,
            value,
            "an IP address and port, e.g. 127.0.0.1:9100",
        )
    })
}

fn parse_bind_addr(value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| {
        invalid(
            "BIND_ADDR",
            value,
            "an IP address and port, e.g. 127.0.0.1:8000",
        )
    })
}

fn parse_ttl(value: &str) -> Result<Duration, ConfigError> {
    let secs = parse_count("CACHE_TTL_SECS", value, MAX_TTL_SECS, "seconds")?;
    Ok(Duration::from_secs(secs))
}

fn parse_key_prefix(value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            "CACHE_KEY_PREFIX",
            value,
            "1 to 64 characters of ASCII letters, digits and - _ . : (no braces: every key is \
             {PREFIX}:..., the prefix as a Redis Cluster hash tag)",
        ))
    }
}

fn parse_trusted_proxies(value: &str) -> Result<TrustedProxies, ConfigError> {
    TrustedProxies::parse(value).map_err(|why| {
        invalid(
            "TRUSTED_PROXIES",
            value,
            format!("a comma-separated list of addresses or CIDR blocks, e.g. 127.0.0.1,10.0.0.0/8 ({why})"),
        )
    })
}

/// A key of fewer distinct characters than this is a placeholder (`aaaa…`, `0000…`), not a
/// secret, however long.
const MIN_SECRET_KEY_DISTINCT: usize = 5;

fn parse_secret_key(value: String) -> Result<String, ConfigError> {
    let distinct = value
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < MIN_SECRET_KEY_DISTINCT {
        return Err(invalid(
            "SECRET_KEY",
            "<hidden>",
            format!(
                "a random secret of at least {MIN_SECRET_KEY_LEN} bytes and {MIN_SECRET_KEY_DISTINCT} different characters (e.g. the output of `openssl rand -hex 32`)"
            ),
        ));
    }
    if value.len() < MIN_SECRET_KEY_LEN {
        return Err(invalid(
            "SECRET_KEY",
            "<hidden>",
            format!(
                "at least {MIN_SECRET_KEY_LEN} bytes of secret (e.g. the output of `openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(value)
}

fn parse_session_secs(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let secs = parse_count(variable, value, MAX_SESSION_SECS, "seconds")?;
    Ok(Duration::from_secs(secs))
}

/// The `static/` folder of the source tree, for a binary run where it was built.
fn parse_static_dir(value: &str) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(value);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(invalid(
            "STATIC_DIR",
            value,
            "an existing directory holding the site's css/ (the source tree's static/)",
        ))
    }
}

fn parse_flag(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(
            variable,
            value,
            "1 or 0 (also true/false, yes/no, on/off)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            s.database_url,
            DatabaseUrl::Sqlite("cachewithredis.sqlite3".into())
        );
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379/0");
        assert_eq!(s.redis_pool_size, 16);
        assert_eq!(s.redis_timeout, Duration::from_millis(250));
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(s.cache_ttl, Duration::from_secs(300));
        assert_eq!(s.cache_key_prefix, "cachewithredis");
        assert!(s.secret_key.is_none());
        assert!(!s.cookie_secure);
        assert!(!s.debug);
        assert_eq!(s.session_idle, Duration::from_secs(3600));
        assert_eq!(s.session_max, Duration::from_secs(14 * 24 * 3600));
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("CACHE_TTL_SECS", "0"),
            ("CACHE_TTL_SECS", "-5"),
            ("CACHE_TTL_SECS", "ten"),
            ("CACHE_TTL_SECS", "99999999999"),
            ("BIND_ADDR", "localhost"),
            ("BIND_ADDR", "127.0.0.1:99999"),
            ("REDIS_URL", "http://127.0.0.1:6379"),
            ("REDIS_URL", "127.0.0.1:6379"),
            ("REDIS_URL", "redis+sentinel://127.0.0.1:26379"),
            ("REDIS_URL", "redis+sentinel://127.0.0.1:26379/svc/db"),
            ("REDIS_URL", "redis+cluster://127.0.0.1:7000/2"),
            ("REDIS_URL", "redis+cluster://127.0.0.1:7000,"),
            ("REDIS_POOL_SIZE", "0"),
            ("REDIS_POOL_SIZE", "many"),
            ("REDIS_POOL_SIZE", "100000"),
            ("REDIS_TIMEOUT_MS", "0"),
            ("REDIS_TIMEOUT_MS", "-1"),
            ("REDIS_TIMEOUT_MS", "1s"),
            ("REDIS_TIMEOUT_MS", "3600000"),
            ("CACHE_KEY_PREFIX", ""),
            ("CACHE_KEY_PREFIX", "has space"),
            ("SECRET_KEY", "short"),
            ("LOG_FORMAT", "yaml"),
            ("SHUTDOWN_DRAIN_SECS", "301"),
            ("SHUTDOWN_DRAIN_SECS", "-1"),
            ("METRICS_BIND_ADDR", "localhost"),
            ("SECRET_KEY", "0000000000000000000000000000000000000000"),
            ("SECRET_KEY", "abababababababababababababababababababab"),
            ("TRUSTED_PROXIES", "nginx"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("COOKIE_SECURE", "maybe"),
            ("DEBUG", "2"),
            ("SESSION_IDLE_SECS", "0"),
            ("SESSION_IDLE_SECS", "an hour"),
            ("SESSION_MAX_SECS", "-1"),
            ("SESSION_MAX_SECS", "99999999999"),
            ("STATIC_DIR", "/no/such/directory"),
            ("DATABASE_URL", ""),
            ("DATABASE_URL", "mysql://root@localhost/db"),
        ];
        for (variable, value) in cases {
            let err = settings(&[(variable, value)]).expect_err(value);
            assert_eq!(err.variable, variable, "{variable}={value}");
            assert!(err.to_string().contains(variable));
        }
    }

    #[test]
    fn a_redis_password_is_not_echoed_in_the_error() {
        let err = settings(&[("REDIS_URL", "redis://:hunter2@[::1")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_postgres_url_selects_postgresql() {
        for url in [
            "postgres://app:pw@db:5432/app",
            "postgresql://localhost/app",
        ] {
            let s = settings(&[("DATABASE_URL", url)]).unwrap();
            assert_eq!(s.database_url, DatabaseUrl::Postgres(url.into()));
            assert!(
                !format!("{s:?}").contains(":pw@"),
                "password hidden in Debug"
            );
        }
    }

    #[test]
    fn rediss_urls_with_passwords_are_accepted() {
        let s = settings(&[("REDIS_URL", "rediss://:pw@cache.internal:6380/1")]).unwrap();
        assert_eq!(s.redis_url, "rediss://:pw@cache.internal:6380/1");
    }

    #[test]
    fn sentinel_urls_are_accepted_and_their_password_is_not_echoed() {
        let url = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/cache/1";
        assert_eq!(settings(&[("REDIS_URL", url)]).unwrap().redis_url, url);
        let err = settings(&[("REDIS_URL", "redis+sentinel://:hunter2@h:1")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn cluster_urls_are_accepted_and_their_password_is_not_echoed() {
        let url = "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001";
        assert_eq!(settings(&[("REDIS_URL", url)]).unwrap().redis_url, url);
        let err = settings(&[("REDIS_URL", "redis+cluster://:hunter2@h:1/5")]).unwrap_err();
        assert!(err.to_string().contains("database 0"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let key = "k3y-0f-f0rty-chars-".repeat(2);
        let s = settings(&[("SECRET_KEY", &key)]).unwrap();
        assert!(!format!("{s:?}").contains(&key));
    }
}
