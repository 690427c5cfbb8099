//! A PostgreSQL database of the caller's own on a shared server, dropped when the value is.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// The server test databases are made on: `TEST_POSTGRES_URL` (`scripts/ensure-postgres`
/// prints one), else the machine's own with trust auth.
pub fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A connection to the server's maintenance database at [`admin_url`].
pub fn admin_connection() -> anyhow::Result<PgConnection> {
    let url = admin_url();
    PgConnection::establish(&url).map_err(|e| {
        anyhow::anyhow!(
            "PostgreSQL does not answer at {url} (scripts/ensure-postgres starts one): {e}"
        )
    })
}

pub struct PgDatabase {
    /// `postgres://…/{name}`.
    pub url: String,
    pub name: String,
    admin: String,
}

impl PgDatabase {
    /// A new, empty database named `{label}_{pid}_{random}` on the server at `admin`.
    pub fn create(admin: &str, label: &str) -> anyhow::Result<PgDatabase> {
        let name = format!("{label}_{}_{:x}", std::process::id(), rand::random::<u64>());
        PgConnection::establish(admin)
            .map_err(|e| anyhow::anyhow!("connecting to {admin}: {e}"))?
            .batch_execute(&format!("CREATE DATABASE {name}"))?;
        let server = admin.rsplit_once('/').map_or(admin, |(server, _)| server);
        Ok(PgDatabase {
            url: format!("{server}/{name}"),
            name,
            admin: admin.to_owned(),
        })
    }

    /// The port of the server, from the URL (`postgres://user@host:port/name`).
    pub fn port(&self) -> Option<u16> {
        let authority = self.url.split('@').nth(1)?.split('/').next()?;
        authority.rsplit_once(':')?.1.parse().ok()
    }

    /// The URL with the server's port replaced by `port` (a proxy's on the same host).
    pub fn url_through(&self, port: u16) -> String {
        match self.port() {
            Some(old) => self
                .url
                .replacen(&format!(":{old}/"), &format!(":{port}/"), 1),
            None => self.url.clone(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE ends the connections the application's pools still hold.
        let dropped = PgConnection::establish(&self.admin)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                conn.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!("could not drop the database {}: {e}", self.name);
        }
    }
}
