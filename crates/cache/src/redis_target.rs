//! Where Redis is: one address (`redis://`, `rediss://`, `unix://`), the master that Redis
//! Sentinel names (`redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/DB]`), or the
//! master that serves the cache's slot in a Redis Cluster
//! (`redis+cluster://[:password@]host:port[,host:port...]`); see [`crate::redis_url`].
//!
//! # Why not `redis::sentinel`
//!
//! The crate's synchronous `Sentinel` connects to the sentinels and to the master it checks
//! with `Client::get_connection`, which has no connect timeout and sets no read timeout: one
//! sentinel that is frozen, or a master address that drops packets, would hold a pool thread
//! for as long as the kernel retries. Here every connection (to a sentinel, to a master) is
//! opened with the connect timeout and given the command timeout, as the pool's are.
//!
//! # Why not `redis::cluster::ClusterConnection`
//!
//! Every key of the cache is in one slot (the prefix is a hash tag, [`crate::keys`]), so on a
//! cluster the application talks to one master, as it does under Sentinel: the master of that
//! slot. The crate's cluster connection would hide the one thing the cache must see. When that
//! master fails and its replica is promoted, or the slot moves, it refreshes its slot map and
//! retries on the new node inside the same connection, so the pool never opens a new
//! connection, and the check that every new server gets before it is trusted
//! ([`crate::resync`]: the promoted replica may have missed the last invalidations) never runs.
//! It also sends keyless commands (`INFO`, `PING`, `SCRIPT LOAD`) to a random node or to every
//! node, and has no pub/sub. So a cluster is a third way of finding the master, and the rest is
//! shared: a pooled connection is to one node; `MOVED` (the slot is served elsewhere now: a
//! failover, or a finished migration) and `CLUSTERDOWN` (a node cut off from the majority) are
//! failover signs like `READONLY`; `ASK` (a slot being migrated, whose key has already left)
//! is followed for that one command, with `ASKING`, to the node it names. A script sent there
//! by `EVALSHA` meets `NOSCRIPT` if that node never ran it, and the crate would reload it on the
//! source node, not on the target: so the scripts are registered here ([`RedisTarget::know_scripts`])
//! and loaded on the target before the command is sent again.
//!
//! # How the master is found and followed
//!
//! Every sentinel of the URL is asked (`SENTINEL get-master-addr-by-name`), or every node of a
//! cluster URL (`CLUSTER SLOTS`, for the slot `CLUSTER KEYSLOT` gives the cache's keys), and the
//! master is the one named by a majority of those that answer ([`majority`]); one that cannot be
//! reached or does not know the service does not count. The master must also say `ROLE` master. The address found is kept
//! and every new connection to it checks `ROLE` again, so a demoted master is never used. A
//! command that fails on a pooled connection with a failover sign ([`FAILOVER_CODES`]: `READONLY`
//! from a master demoted under it, `NOREPLICAS` from a master cut off from its replicas under
//! `min-replicas-to-write`, `MOVED`, `CLUSTERDOWN`), an
//! I/O error or a timeout marks that connection broken (the pool drops it) and forgets the
//! address, so the next connection asks again: a failover is followed without a
//! restart. Once another master is named, every connection opened to the old one is
//! refused at its next command and dropped, because a demoted master still answers reads (with
//! its own, possibly older, data) and so would never fail by itself. Freshness across the failover is not this module's concern: the replica may have
//! missed writes, and the cache's generation checks decide what may be served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, ConnectionLike, ErrorKind, RedisError, RedisResult};

use crate::redis_url::{ClusterUrl, RedisUrl, SentinelUrl};

/// The master in use, as last resolved.
struct Master {
    address: String,
    client: Client,
    /// False once a connection to it failed: the next connection asks where it is again.
    trusted: bool,
}

enum Kind {
    Direct(Client),
    Sentinel {
        url: SentinelUrl,
        sentinels: Vec<Client>,
    },
    Cluster {
        url: ClusterUrl,
        nodes: Vec<Client>,
        /// A key of the cache: its slot is the slot of every key (they share a hash tag).
        slot_key: String,
    },
}

/// Opens connections to the Redis the application uses, following Sentinel and Cluster
/// failovers.
pub struct RedisTarget {
    kind: Kind,
    connect_timeout: Duration,
    command_timeout: Duration,
    master: Mutex<Option<Master>>,
    /// How many times the master changed: a connection opened under an older count is retired.
    /// Written under the `master` lock; read without it on every command.
    master_changes: AtomicU64,
    /// The scripts' bodies by SHA-1, to load on a node met through `ASK` (see the module doc).
    scripts: Mutex<HashMap<String, String>>,
}

impl RedisTarget {
    /// Parses `url` without connecting. On a cluster, the master used is the one serving the
    /// slot of `slot_key` (any of the cache's keys: they share one slot).
    pub fn open(
        url: &str,
        slot_key: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> RedisResult<RedisTarget> {
        let parsed = RedisUrl::parse(url)
            .map_err(|e| RedisError::from((ErrorKind::InvalidClientConfig, "REDIS_URL", e)))?;
        let clients = |addresses: &[String]| {
            addresses
                .iter()
                .map(|address| Client::open(format!("redis://{address}")))
                .collect::<RedisResult<Vec<_>>>()
        };
        let (kind, master) = match parsed {
            RedisUrl::Direct(client) => {
                let master = Master {
                    address: client.get_connection_info().addr().to_string(),
                    client: client.clone(),
                    trusted: true,
                };
                (Kind::Direct(client), Some(master))
            }
            RedisUrl::Sentinel(url) => {
                let sentinels = clients(&url.sentinels)?;
                (Kind::Sentinel { url, sentinels }, None)
            }
            RedisUrl::Cluster(url) => {
                let nodes = url.node_clients()?;
                let slot_key = slot_key.to_owned();
                (
                    Kind::Cluster {
                        url,
                        nodes,
                        slot_key,
                    },
                    None,
                )
            }
        };
        Ok(RedisTarget {
            kind,
            connect_timeout,
            command_timeout,
            master: Mutex::new(master),
            master_changes: AtomicU64::new(0),
            scripts: Mutex::default(),
        })
    }

    /// The address of the Redis in use (`host:port`), or `None` before one has been named.
    pub fn master(&self) -> Option<String> {
        let master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        master.as_ref().map(|m| m.address.clone())
    }

    /// A connection with the connect and command timeouts; through Sentinel or a cluster, to a
    /// server that says it is the master.
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
        let (askers, what): (&[Client], &str) = match &self.kind {
            Kind::Direct(client) => return Ok((self.open_with_timeouts(client)?, 0)),
            Kind::Sentinel { sentinels, .. } => (sentinels, "sentinels"),
            Kind::Cluster { nodes, .. } => (nodes, "cluster nodes"),
        };
        if let Some((client, changes)) = self.trusted_master() {
            match self.open_master(&client) {
                Ok(conn) => return Ok((conn, changes)),
                Err(e) => {
                    log::info!("redis master unusable ({e}), asking the {what}");
                    self.forget_master();
                }
            }
        }
        let mut answers = Vec::with_capacity(askers.len());
        let mut last_error = None;
        for asked in askers {
            match self.ask(asked) {
                Ok(named) => answers.push(named),
                Err(e) => {
                    log::debug!("{what}: {}: {e}", asked.get_connection_info().addr());
                    last_error = Some(e);
                }
            }
        }
        match majority(&answers) {
            Some((host, port)) => self.connect_to_named(host, *port),
            None if answers.is_empty() => Err(last_error.unwrap_or_else(|| {
                RedisError::from((ErrorKind::EmptySentinelList, "no address in REDIS_URL"))
            })),
            None => Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "no master is named by a majority of those that answered",
                format!("{what}: {answers:?}"),
            ))),
        }
    }

    /// The next connection asks the sentinels or the cluster again (no effect on a direct URL).
    pub fn forget_master(&self) {
        if let Kind::Direct(_) = self.kind {
            return;
        }
        let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(master) = master.as_mut() {
            master.trusted = false;
        }
    }

    fn trusted_master(&self) -> Option<(Client, u64)> {
        let master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        master
            .as_ref()
            .filter(|m| m.trusted)
            .map(|m| (m.client.clone(), self.master_changes()))
    }

    /// Asks one sentinel which server is the master, or one cluster node which master serves
    /// the cache's slot.
    fn ask(&self, asked: &Client) -> RedisResult<(String, u16)> {
        let mut conn = self.open_with_timeouts(asked)?;
        match &self.kind {
            Kind::Direct(_) => Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a direct URL names its server",
            ))),
            Kind::Sentinel { url, .. } => {
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
            Kind::Cluster { slot_key, .. } => {
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(slot_key)
                    .query(&mut conn)?;
                let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut conn)?;
                let asked_host = match asked.get_connection_info().addr() {
                    redis::ConnectionAddr::Tcp(host, _) => host.clone(),
                    other => other.to_string(),
                };
                master_of_slot(&slots, slot, &asked_host).ok_or_else(|| {
                    RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "the cluster node names no master for the cache's slot",
                        slot.to_string(),
                    ))
                })
            }
        }
    }

    /// `cmd` sent, after `ASKING`, to the cluster node at `node` (`host:port`): the node that a
    /// slot being migrated to it named in an `ASK` reply, for a key that has already moved. The
    /// slot is still the old master's until the migration ends, so the connection is not kept.
    fn asking(&self, node: &str, cmd: &[u8]) -> RedisResult<redis::Value> {
        let Kind::Cluster { url, .. } = &self.kind else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "ASK from a server that is not in a cluster",
            )));
        };
        let (host, port) = node
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                RedisError::from((ErrorKind::Parse, "ASK names no host:port", node.to_owned()))
            })?;
        let mut conn = self.open_with_timeouts(&url.node_client(host, port)?)?;
        redis::cmd("ASKING").query::<()>(&mut conn)?;
        let reply = conn.req_packed_command(cmd)?;
        let body = match &reply {
            redis::Value::ServerError(e) if e.code() == "NOSCRIPT" => self.script_of(cmd),
            _ => None,
        };
        let Some(body) = body else {
            return Ok(reply);
        };
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(body)
            .query::<String>(&mut conn)?;
        redis::cmd("ASKING").query::<()>(&mut conn)?;
        conn.req_packed_command(cmd)
    }

    /// Registers scripts that may be sent by `EVALSHA` (`sha1`, body).
    pub fn know_scripts<'a>(&self, scripts: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut known = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        for (sha, body) in scripts {
            known.insert(sha.to_owned(), body.to_owned());
        }
    }

    /// The body of the script an `EVALSHA` command names, if it is a known one.
    fn script_of(&self, cmd: &[u8]) -> Option<String> {
        let redis::Value::Array(args) = redis::parse_redis_value(cmd).ok()? else {
            return None;
        };
        let word = |i: usize| match args.get(i) {
            Some(redis::Value::BulkString(b)) => std::str::from_utf8(b).ok().map(str::to_owned),
            _ => None,
        };
        if !word(0)?.eq_ignore_ascii_case("EVALSHA") {
            return None;
        }
        let sha = word(1)?;
        let known = self.scripts.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(&sha).cloned()
    }

    /// Connects to the master named, if it says it is one, and remembers it.
    fn connect_to_named(&self, host: &str, port: u16) -> RedisResult<(redis::Connection, u64)> {
        let client = match &self.kind {
            Kind::Sentinel { url, .. } => url.master_client(host, port)?,
            Kind::Cluster { url, .. } => url.node_client(host, port)?,
            Kind::Direct(client) => client.clone(),
        };
        let conn = self.open_master(&client)?;
        let address = client.get_connection_info().addr().to_string();
        let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if master.as_ref().is_none_or(|m| m.address != address) {
            log::info!("redis master: {address}");
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

/// The error codes by which a server says it is not (or no longer) the master to use:
/// `READONLY` from a replica (a master demoted under the connection); `NOREPLICAS` from a master
/// configured with `min-replicas-to-write` that has lost its replicas, which is what an old
/// master cut off from the rest after a failover says (the README's Sentinel recipe); `MOVED`
/// from a cluster node that no longer serves the cache's slot (its replica was promoted, or the
/// slot was migrated); `CLUSTERDOWN` from a node that lost sight of the cluster's majority, as a
/// master cut off from it does before its replica is promoted on the other side.
const FAILOVER_CODES: [&str; 4] = ["READONLY", "NOREPLICAS", "MOVED", "CLUSTERDOWN"];

/// The master that serves `slot`, in a `CLUSTER SLOTS` reply: `[[start, end, [host, port, …],
/// replicas…], …]`. A node that does not know its own address names it `""` or `"?"` (or nil):
/// it is then the node that was asked.
fn master_of_slot(reply: &redis::Value, slot: u16, asked_host: &str) -> Option<(String, u16)> {
    let redis::Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let redis::Value::Array(fields) = range else {
            return None;
        };
        let (start, end) = match (fields.first()?, fields.get(1)?) {
            (redis::Value::Int(start), redis::Value::Int(end)) => (*start, *end),
            _ => return None,
        };
        if !(start..=end).contains(&i64::from(slot)) {
            return None;
        }
        let redis::Value::Array(master) = fields.get(2)? else {
            return None;
        };
        let host = match master.first()? {
            redis::Value::BulkString(host) => String::from_utf8(host.clone()).ok()?,
            redis::Value::SimpleString(host) => host.clone(),
            redis::Value::Nil => String::new(),
            _ => return None,
        };
        let host = match host.as_str() {
            "" | "?" => asked_host.to_owned(),
            _ => host,
        };
        let redis::Value::Int(port) = master.get(1)? else {
            return None;
        };
        Some((host, u16::try_from(*port).ok()?))
    })
}

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

/// The node an `ASK` reply names (`ASK <slot> <host:port>`).
fn ask_redirect(result: &RedisResult<redis::Value>) -> Option<String> {
    match result {
        Ok(redis::Value::ServerError(e)) if e.code() == "ASK" => {
            let mut details = e.details()?.split_ascii_whitespace();
            details.nth(1).map(str::to_owned)
        }
        Err(e) => e
            .redirect_node()
            .filter(|_| e.code() == Some("ASK"))
            .map(|(node, _)| node.to_owned()),
        _ => None,
    }
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
        let mut result = self.conn.req_packed_command(cmd);
        if let Some(node) = ask_redirect(&result) {
            result = self.target.asking(&node, cmd);
        }
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
