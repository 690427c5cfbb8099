//! Where Redis is: one address (`redis://`, `rediss://`, `unix://`), or the master that Redis
//! Sentinel names (`redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/DB]`).
//!
//! # Why not `redis::sentinel`
//!
//! The crate's synchronous `Sentinel` connects to the sentinels and to the master it checks
//! with `Client::get_connection`, which has no connect timeout and sets no read timeout: one
//! sentinel that is frozen, or a master address that drops packets, would hold a pool thread
//! for as long as the kernel retries. Here every connection (to a sentinel, to a master) is
//! opened with the connect timeout and given the command timeout, as the pool's are.
//!
//! # How the master is found and followed
//!
//! Every sentinel of the URL is asked (`SENTINEL get-master-addr-by-name`), and the master is the
//! one named by a majority of those that answer ([`majority`]); a sentinel that cannot be
//! reached or does not know the service does not count. The master must also say `ROLE` master. The address found is kept
//! and every new connection to it checks `ROLE` again, so a demoted master is never used. A
//! command that fails on a pooled connection with `READONLY` (a master demoted under it),
//! `NOREPLICAS` (a master cut off from its replicas, under `min-replicas-to-write`), an
//! I/O error or a timeout marks that connection broken (the pool drops it) and forgets the
//! address, so the next connection asks the sentinels again: a failover is followed without a
//! restart. Once the sentinels name another master, every connection opened to the old one is
//! refused at its next command and dropped, because a demoted master still answers reads (with
//! its own, possibly older, data) and so would never fail by itself. Freshness across the failover is not this module's concern: the replica may have
//! missed writes, and the cache's generation checks decide what may be served.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, ConnectionLike, ErrorKind, IntoConnectionInfo, RedisError, RedisResult};

/// The port a sentinel listens on when the URL does not say.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// A parsed `redis+sentinel://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `host:port` of each sentinel, in the order they are asked.
    pub sentinels: Vec<String>,
    pub service: String,
    pub db: i64,
    /// `user:password@` or `:password@` as written, for the master's connections.
    userinfo: String,
}

impl SentinelUrl {
    /// Whether `url` asks for Sentinel (its other checks are [`SentinelUrl::parse`]'s).
    pub fn is_sentinel(url: &str) -> bool {
        url.starts_with(SENTINEL_SCHEME)
    }

    /// Parses `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/SERVICE[/DB]`.
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let rest = url
            .strip_prefix(SENTINEL_SCHEME)
            .ok_or_else(|| format!("does not start with {SENTINEL_SCHEME}"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or("the service name is missing (…/SERVICE)")?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let sentinels = hosts
            .split(',')
            .map(sentinel_address)
            .collect::<Result<Vec<_>, _>>()?;
        let mut segments = path.split('/');
        let service = segments.next().unwrap_or_default();
        if service.is_empty() || !service.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the service name is missing or has spaces (…/SERVICE)".into());
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| format!("the database {db:?} is not a number (…/SERVICE/DB)"))?,
        };
        if segments.next().is_some() || path.contains('?') {
            return Err("nothing may follow …/SERVICE/DB".into());
        }
        let parsed = SentinelUrl {
            sentinels,
            service: service.to_owned(),
            db,
            userinfo,
        };
        // The password's encoding is checked now rather than at the first connection.
        parsed
            .master_client("127.0.0.1", 6379)
            .map_err(|e| e.to_string())?;
        Ok(parsed)
    }

    fn master_client(&self, host: &str, port: u16) -> RedisResult<Client> {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let url = format!("redis://{}{host}:{port}/{}", self.userinfo, self.db);
        Client::open(url.as_str().into_connection_info()?)
    }
}

fn sentinel_address(host: &str) -> Result<String, String> {
    let bad = || format!("{host:?} is not a sentinel's host[:port]");
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (name, after) = v6.split_once(']').ok_or_else(bad)?;
        (format!("[{name}]"), after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (host.to_owned(), None),
        }
    };
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)?,
    };
    if name.is_empty() || name.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    Ok(format!("{name}:{port}"))
}

/// The master in use, as last resolved.
struct Master {
    address: String,
    client: Client,
    /// False once a connection to it failed: the next connection asks the sentinels again.
    trusted: bool,
}

enum Kind {
    Direct(Client),
    Sentinel {
        url: SentinelUrl,
        sentinels: Vec<Client>,
    },
}

/// Opens connections to the Redis the application uses, following Sentinel failovers.
pub struct RedisTarget {
    kind: Kind,
    connect_timeout: Duration,
    command_timeout: Duration,
    master: Mutex<Option<Master>>,
    /// How many times the master changed: a connection opened under an older count is retired.
    /// Written under the `master` lock; read without it on every command.
    master_changes: AtomicU64,
}

impl RedisTarget {
    /// Parses `url` without connecting.
    pub fn open(
        url: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> RedisResult<RedisTarget> {
        let (kind, master) = if SentinelUrl::is_sentinel(url) {
            let url = SentinelUrl::parse(url)
                .map_err(|e| RedisError::from((ErrorKind::InvalidClientConfig, "", e)))?;
            let sentinels = url
                .sentinels
                .iter()
                .map(|address| Client::open(format!("redis://{address}")))
                .collect::<RedisResult<Vec<_>>>()?;
            (Kind::Sentinel { url, sentinels }, None)
        } else {
            let client = Client::open(url)?;
            let master = Master {
                address: client.get_connection_info().addr().to_string(),
                client: client.clone(),
                trusted: true,
            };
            (Kind::Direct(client), Some(master))
        };
        Ok(RedisTarget {
            kind,
            connect_timeout,
            command_timeout,
            master: Mutex::new(master),
            master_changes: AtomicU64::new(0),
        })
    }

    /// The address of the Redis in use (`host:port`), or `None` before a sentinel has named one.
    pub fn master(&self) -> Option<String> {
        let master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        master.as_ref().map(|m| m.address.clone())
    }

    /// A connection with the connect and command timeouts; through Sentinel, to a server that
    /// says it is the master.
    pub fn connect(&self) -> RedisResult<redis::Connection> {
        self.connect_counted().map(|(conn, _)| conn)
    }

    /// A connection for the pool, retired once the master changes.
    pub fn connect_pooled(self: &Arc<Self>) -> RedisResult<RedisConnection> {
        let (conn, opened_under) = self.connect_counted()?;
        Ok(RedisConnection {
            conn,
            broken: false,
            opened_under,
            target: Arc::clone(self),
        })
    }

    /// How many times the master changed.
    fn master_changes(&self) -> u64 {
        self.master_changes.load(Ordering::Acquire)
    }

    fn connect_counted(&self) -> RedisResult<(redis::Connection, u64)> {
        let (url, sentinels) = match &self.kind {
            Kind::Direct(client) => return Ok((self.open_with_timeouts(client)?, 0)),
            Kind::Sentinel { url, sentinels } => (url, sentinels),
        };
        if let Some((client, changes)) = self.trusted_master() {
            match self.open_master(&client) {
                Ok(conn) => return Ok((conn, changes)),
                Err(e) => {
                    log::info!("redis master unusable ({e}), asking the sentinels");
                    self.forget_master();
                }
            }
        }
        let mut answers = Vec::with_capacity(sentinels.len());
        let mut last_error = None;
        for sentinel in sentinels {
            match self.ask(sentinel, url) {
                Ok(named) => answers.push(named),
                Err(e) => {
                    log::debug!("sentinel {}: {e}", sentinel.get_connection_info().addr());
                    last_error = Some(e);
                }
            }
        }
        match majority(&answers) {
            Some((host, port)) => self.connect_to_named(url, host, *port),
            None if answers.is_empty() => Err(last_error.unwrap_or_else(|| {
                RedisError::from((ErrorKind::EmptySentinelList, "no sentinel in REDIS_URL"))
            })),
            None => Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "no master is named by a majority of the sentinels that answered",
                format!("{answers:?}"),
            ))),
        }
    }

    /// The next connection asks the sentinels again (no effect on a direct URL).
    pub fn forget_master(&self) {
        if let Kind::Sentinel { .. } = self.kind {
            let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(master) = master.as_mut() {
                master.trusted = false;
            }
        }
    }

    fn trusted_master(&self) -> Option<(Client, u64)> {
        let master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        master
            .as_ref()
            .filter(|m| m.trusted)
            .map(|m| (m.client.clone(), self.master_changes()))
    }

    /// Asks one sentinel which server is the master.
    fn ask(&self, sentinel: &Client, url: &SentinelUrl) -> RedisResult<(String, u16)> {
        let mut conn = self.open_with_timeouts(sentinel)?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&url.service)
            .query(&mut conn)?;
        named.ok_or_else(|| {
            RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinel does not know the service",
                url.service.clone(),
            ))
        })
    }

    /// Connects to the master the sentinels named, if it says it is one, and remembers it.
    fn connect_to_named(
        &self,
        url: &SentinelUrl,
        host: &str,
        port: u16,
    ) -> RedisResult<(redis::Connection, u64)> {
        let client = url.master_client(host, port)?;
        let conn = self.open_master(&client)?;
        let address = client.get_connection_info().addr().to_string();
        let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if master.as_ref().is_none_or(|m| m.address != address) {
            log::info!("redis master for {}: {address}", url.service);
            if master.is_some() {
                self.master_changes.fetch_add(1, Ordering::AcqRel);
            }
        }
        *master = Some(Master {
            address,
            client,
            trusted: true,
        });
        Ok((conn, self.master_changes()))
    }

    /// A connection to `client` if the server there is a master.
    fn open_master(&self, client: &Client) -> RedisResult<redis::Connection> {
        let mut conn = self.open_with_timeouts(client)?;
        match redis::cmd("ROLE").query::<redis::Role>(&mut conn)? {
            redis::Role::Primary { .. } => Ok(conn),
            _ => Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the server named as master is not one",
                client.get_connection_info().addr().to_string(),
            ))),
        }
    }

    fn open_with_timeouts(&self, client: &Client) -> RedisResult<redis::Connection> {
        let conn = client.get_connection_with_timeout(self.connect_timeout)?;
        conn.set_read_timeout(Some(self.command_timeout))?;
        conn.set_write_timeout(Some(self.command_timeout))?;
        Ok(conn)
    }
}

/// The error codes by which a server says it is not (or no longer) a master that may be
/// written: `READONLY` from a replica (a master demoted under the connection), `NOREPLICAS` from
/// a master configured with `min-replicas-to-write` that has lost its replicas, which is what
/// an old master cut off from the rest after a failover says (the README's Sentinel recipe).
const FAILOVER_CODES: [&str; 2] = ["READONLY", "NOREPLICAS"];

/// The master named by more than half of the sentinels that answered, if one is.
///
/// Not the first answer: after a failover, a sentinel cut off with the old master (or one that
/// has not heard of the promotion yet) still names the old master, which still says `ROLE`
/// master to whoever reaches it, and an instance that asked it first would use the old master
/// and miss every invalidation written to the new one. The sentinels that promoted the replica
/// were a majority of all sentinels, so among those an instance reaches, the ones naming the
/// new master outnumber the others unless it reaches fewer than half of them. Then there may be
/// no majority (no master: pages from the database), or only the cut-off side answers, and the
/// old master's `min-replicas-to-write` answers every write `NOREPLICAS` (a failover sign).
fn majority(answers: &[(String, u16)]) -> Option<&(String, u16)> {
    answers.iter().find(|candidate| {
        let votes = answers.iter().filter(|a| a == candidate).count();
        votes * 2 > answers.len()
    })
}

/// Whether an error on a working connection may mean the master moved: the connection is
/// dropped and the master looked up again.
pub fn is_failover_sign(error: &RedisError) -> bool {
    error
        .code()
        .is_some_and(|code| FAILOVER_CODES.contains(&code))
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
}

fn is_failover_reply(value: &redis::Value) -> bool {
    matches!(value, redis::Value::ServerError(e) if FAILOVER_CODES.contains(&e.code()))
}

/// A pooled connection that remembers a failure that means it must not be reused, and the
/// master it was opened to.
pub struct RedisConnection {
    conn: redis::Connection,
    broken: bool,
    /// The master-change count when it was opened.
    opened_under: u64,
    target: Arc<RedisTarget>,
}

impl RedisConnection {
    /// True after a failover sign, when the socket closed, or when the master changed since
    /// it was opened.
    pub fn is_broken(&self) -> bool {
        self.broken || !self.conn.is_open() || self.opened_under != self.target.master_changes()
    }

    /// An idle connection to a master that has since been replaced is not used: that server
    /// may now be a replica that still answers reads, with values the new master no longer has.
    fn check_master(&mut self) -> RedisResult<()> {
        if self.opened_under != self.target.master_changes() {
            self.broken = true;
            return Err(RedisError::from((
                ErrorKind::Io,
                "the redis master changed since this connection was opened",
            )));
        }
        Ok(())
    }

    /// A server's error replies arrive as values (`query` turns them into errors later), so
    /// `READONLY` and `NOREPLICAS` are looked for in `replies` as well as in the call's own error.
    fn observe<T>(
        &mut self,
        result: RedisResult<T>,
        replies: impl Fn(&T) -> &[redis::Value],
    ) -> RedisResult<T> {
        let failover = match &result {
            Err(e) => is_failover_sign(e),
            Ok(value) => replies(value).iter().any(is_failover_reply),
        };
        if failover {
            self.broken = true;
            self.target.forget_master();
        }
        result
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<redis::Value> {
        self.check_master()?;
        let result = self.conn.req_packed_command(cmd);
        self.observe(result, std::slice::from_ref)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<redis::Value>> {
        self.check_master()?;
        let result = self.conn.req_packed_commands(cmd, offset, count);
        self.observe(result, Vec::as_slice)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<String>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        !self.is_broken()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_its_sentinels_service_and_database() {
        let url =
            SentinelUrl::parse("redis+sentinel://:pw@10.0.0.1:26380,sentinel-b,[::1]:5/cache/2")
                .unwrap();
        assert_eq!(
            url.sentinels,
            ["10.0.0.1:26380", "sentinel-b:26379", "[::1]:5"]
        );
        assert_eq!(url.service, "cache");
        assert_eq!(url.db, 2);
        let master = url.master_client("10.0.0.9", 6380).unwrap();
        let info = master.get_connection_info();
        assert_eq!(info.addr().to_string(), "10.0.0.9:6380");
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(info.redis_settings().db(), 2);
    }

    #[test]
    fn a_sentinel_url_without_database_selects_database_zero() {
        let url = SentinelUrl::parse("redis+sentinel://127.0.0.1:26379/mymaster").unwrap();
        assert_eq!(url.db, 0);
        assert_eq!(url.service, "mymaster");
    }

    #[test]
    fn malformed_sentinel_urls_are_refused() {
        for url in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel://127.0.0.1:26379/svc/x",
            "redis+sentinel://127.0.0.1:26379/svc/-1",
            "redis+sentinel://127.0.0.1:26379/svc/0/extra",
            "redis+sentinel://127.0.0.1:0/svc",
            "redis+sentinel://127.0.0.1:99999/svc",
            "redis+sentinel://,127.0.0.1/svc",
            "redis+sentinel://[::1/svc",
        ] {
            assert!(SentinelUrl::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn a_readonly_reply_is_a_failover_sign_and_a_wrong_type_is_not() {
        let reply = b"-READONLY You can't write against a read only replica.\r\n";
        let readonly = redis::parse_redis_value(reply)
            .and_then(redis::Value::extract_error)
            .unwrap_err();
        assert!(is_failover_sign(&readonly), "{readonly:?}");
        let wrong_type = RedisError::from((ErrorKind::UnexpectedReturnType, "nope"));
        assert!(!is_failover_sign(&wrong_type));
    }

    #[test]
    fn the_master_is_the_one_a_majority_of_the_answering_sentinels_name() {
        let old = ("10.0.0.11".to_owned(), 6379);
        let new = ("10.0.0.12".to_owned(), 6379);
        let named = |answers: &[&(String, u16)]| {
            let answers: Vec<(String, u16)> = answers.iter().map(|a| (*a).clone()).collect();
            majority(&answers).cloned()
        };
        assert_eq!(
            named(&[&old, &new, &new]),
            Some(new.clone()),
            "the first is outvoted"
        );
        assert_eq!(named(&[&new]), Some(new.clone()), "one sentinel reached");
        assert_eq!(named(&[&old, &new]), None, "a tie names nobody");
        assert_eq!(named(&[]), None);
        assert_eq!(named(&[&new, &old, &new, &old, &old]), Some(old));
    }

    #[test]
    fn noreplicas_from_a_master_that_lost_its_replicas_is_a_failover_sign() {
        // As Redis 7 answers a write, and a script's write, under `min-replicas-to-write`.
        for reply in [
            &b"-NOREPLICAS Not enough good replicas to write.\r\n"[..],
            b"-NOREPLICAS Not enough good replicas to write. script: 88c9, on @user_script:1.\r\n",
        ] {
            let value = redis::parse_redis_value(reply).unwrap();
            assert!(is_failover_reply(&value), "{value:?}");
            let error = value.extract_error().unwrap_err();
            assert!(is_failover_sign(&error), "{error:?}");
        }
    }
}
