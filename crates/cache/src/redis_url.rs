//! The three shapes of `REDIS_URL`: one server (`redis://`, `rediss://`, `unix://`), the master
//! that Redis Sentinel names (`redis+sentinel://…/SERVICE[/DB]`), and the master of the cache's
//! slot in a Redis Cluster (`redis+cluster://…`). Parsed once, at start-up, so that a typo fails
//! there and not at the first request.

use redis::{Client, IntoConnectionInfo, RedisResult};

/// The port a sentinel listens on when the URL does not say.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// The port a cluster node listens on when the URL does not say.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

const SENTINEL_SCHEME: &str = "redis+sentinel://";
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A parsed `REDIS_URL`.
#[derive(Clone, Debug)]
pub enum RedisUrl {
    Direct(Client),
    Sentinel(SentinelUrl),
    Cluster(ClusterUrl),
}

impl RedisUrl {
    /// Parses any of the three shapes; the error says what is wrong, without the password.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        if url.starts_with(SENTINEL_SCHEME) {
            return SentinelUrl::parse(url).map(RedisUrl::Sentinel);
        }
        if url.starts_with(CLUSTER_SCHEME) {
            return ClusterUrl::parse(url).map(RedisUrl::Cluster);
        }
        if !["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err("the scheme is not one of redis://, rediss://, unix://, \
                        redis+sentinel://, redis+cluster://"
                .into());
        }
        Client::open(url)
            .map(RedisUrl::Direct)
            .map_err(|e| e.to_string())
    }
}

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
    /// Parses `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/SERVICE[/DB]`.
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let rest = url
            .strip_prefix(SENTINEL_SCHEME)
            .ok_or_else(|| format!("does not start with {SENTINEL_SCHEME}"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or("the service name is missing (…/SERVICE)")?;
        let (userinfo, sentinels) = split_authority(authority, DEFAULT_SENTINEL_PORT, "sentinel")?;
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

    /// A client for the master at `host:port`, with the URL's credentials and database.
    pub(crate) fn master_client(&self, host: &str, port: u16) -> RedisResult<Client> {
        server_client(&self.userinfo, host, port, self.db)
    }
}

/// A parsed `redis+cluster://` URL: the nodes asked where the cache's slot is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `host:port` of each node given, in the order they are asked.
    pub nodes: Vec<String>,
    userinfo: String,
}

impl ClusterUrl {
    /// Parses `redis+cluster://[[user]:password@]host[:port][,host[:port]...][/0]`. A cluster
    /// has one database, 0: another number is refused rather than silently ignored.
    pub fn parse(url: &str) -> Result<ClusterUrl, String> {
        let rest = url
            .strip_prefix(CLUSTER_SCHEME)
            .ok_or_else(|| format!("does not start with {CLUSTER_SCHEME}"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !matches!(path, "" | "0") {
            return Err(format!(
                "a Redis Cluster has only database 0; nothing else may follow the nodes ({path:?})"
            ));
        }
        let (userinfo, nodes) = split_authority(authority, DEFAULT_REDIS_PORT, "cluster node")?;
        let parsed = ClusterUrl { nodes, userinfo };
        parsed
            .node_client("127.0.0.1", 6379)
            .map_err(|e| e.to_string())?;
        Ok(parsed)
    }

    /// A client for each node of the URL, with the URL's credentials.
    pub(crate) fn node_clients(&self) -> RedisResult<Vec<Client>> {
        self.nodes
            .iter()
            .map(|address| Client::open(format!("redis://{}{address}/0", self.userinfo)))
            .collect()
    }

    /// A client for the node at `host:port`, with the URL's credentials.
    pub(crate) fn node_client(&self, host: &str, port: u16) -> RedisResult<Client> {
        server_client(&self.userinfo, host, port, 0)
    }
}

/// `[userinfo@]host[:port][,host[:port]...]` into the userinfo (with its `@`) and the addresses.
fn split_authority(
    authority: &str,
    default_port: u16,
    what: &str,
) -> Result<(String, Vec<String>), String> {
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let addresses = hosts
        .split(',')
        .map(|host| host_and_port(host, default_port, what))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((userinfo, addresses))
}

fn host_and_port(host: &str, default_port: u16, what: &str) -> Result<String, String> {
    let bad = || format!("{host:?} is not a {what}'s host[:port]");
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
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)?,
    };
    if name.is_empty() || name.contains(['/', '@', ' ', '?']) {
        return Err(bad());
    }
    Ok(format!("{name}:{port}"))
}

fn server_client(userinfo: &str, host: &str, port: u16, db: i64) -> RedisResult<Client> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let url = format!("redis://{userinfo}{host}:{port}/{db}");
    Client::open(url.as_str().into_connection_info()?)
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
    fn a_cluster_url_names_its_nodes_and_credentials() {
        let url = ClusterUrl::parse("redis+cluster://:pw@10.0.0.1:7000,node-b,[::1]:7002").unwrap();
        assert_eq!(url.nodes, ["10.0.0.1:7000", "node-b:6379", "[::1]:7002"]);
        let node = url.node_client("10.0.0.9", 7005).unwrap();
        let info = node.get_connection_info();
        assert_eq!(info.addr().to_string(), "10.0.0.9:7005");
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(info.redis_settings().db(), 0);
        for url in ["redis+cluster://127.0.0.1:7000/", "redis+cluster://a:1/0"] {
            assert!(ClusterUrl::parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn malformed_cluster_urls_are_refused() {
        for url in [
            "redis+cluster://",
            "redis+cluster://127.0.0.1:7000/1",
            "redis+cluster://127.0.0.1:7000/0/x",
            "redis+cluster://127.0.0.1:7000?db=1",
            "redis+cluster://127.0.0.1:0",
            "redis+cluster://,127.0.0.1:7000",
        ] {
            assert!(ClusterUrl::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn every_shape_is_told_apart_and_other_schemes_are_refused() {
        assert!(matches!(
            RedisUrl::parse("redis://127.0.0.1:6379/0"),
            Ok(RedisUrl::Direct(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis+sentinel://127.0.0.1/cache"),
            Ok(RedisUrl::Sentinel(_))
        ));
        assert!(matches!(
            RedisUrl::parse("redis+cluster://127.0.0.1:7000"),
            Ok(RedisUrl::Cluster(_))
        ));
        assert!(RedisUrl::parse("http://127.0.0.1:6379").is_err());
    }
}
