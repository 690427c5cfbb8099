//! A server that speaks Redis' protocol but cannot do what the cache needs, as a proxy or an old
//! server would: it answers `PING`, `INFO` (with the version it is given), `GET` (nothing) and
//! `CLIENT`/`SELECT`/`AUTH` (OK), and refuses the commands it is told to refuse, and every
//! other command, with `-ERR unknown command`, Redis' own words.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FakeRedis {
    pub port: u16,
    stopped: watch::Sender<bool>,
}

impl FakeRedis {
    /// Listens on a free port, on the current tokio runtime, reporting `version` as its
    /// `redis_version`.
    pub async fn start(version: &str) -> std::io::Result<FakeRedis> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (stopped, _) = watch::channel(false);
        let info: Arc<str> = format!(
            "# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n\
             run_id:{:040x}\r\n# Replication\r\nrole:master\r\n\
             master_replid:{:040x}\r\n",
            port, port
        )
        .into();
        let mut stop = stopped.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(serve(stream, Arc::clone(&info)));
                        }
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(FakeRedis { port, stopped })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stopped.send_replace(true);
    }
}

/// One connection: reads commands (RESP arrays of bulk strings, or inline) and answers each.
async fn serve(stream: TcpStream, info: Arc<str>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    loop {
        let Some(command) = read_command(&mut lines).await else {
            return;
        };
        let name = command
            .first()
            .map(|c| c.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = match name.as_str() {
            "PING" => "+PONG\r\n".to_owned(),
            "INFO" => format!("${}\r\n{info}\r\n", info.len()),
            "GET" => "$-1\r\n".to_owned(),
            "CLIENT" | "SELECT" | "AUTH" => "+OK\r\n".to_owned(),
            _ => format!(
                "-ERR unknown command '{}', with args beginning with: \r\n",
                command.first().map_or("", String::as_str)
            ),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_command<R: AsyncBufReadExt + Unpin>(lines: &mut R) -> Option<Vec<String>> {
    let mut line = String::new();
    if lines.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let line = line.trim_end();
    let Some(count) = line.strip_prefix('*') else {
        return Some(line.split_whitespace().map(str::to_owned).collect());
    };
    let count: usize = count.parse().ok()?;
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        let mut header = String::new();
        lines.read_line(&mut header).await.ok()?;
        let length: usize = header.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut bulk = vec![0; length + 2];
        tokio::io::AsyncReadExt::read_exact(lines, &mut bulk)
            .await
            .ok()?;
        bulk.truncate(length);
        parts.push(String::from_utf8_lossy(&bulk).into_owned());
    }
    Some(parts)
}
