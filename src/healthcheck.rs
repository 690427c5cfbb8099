//! `cachewithredis healthcheck`: asks the instance configured by `BIND_ADDR` for `/healthz`.
//!
//! It exists for the container image's `HEALTHCHECK` (deploy/Containerfile): the runtime image
//! holds the binary and the libraries it links, and no `curl`. One request over a plain
//! `TcpStream` is all a liveness probe needs, so no HTTP client is linked for it.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The whole probe, connect to last byte: a container runtime kills a check that hangs, but a
/// check that says why it failed is more use in `podman inspect`.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Where to reach a server listening on `bind`: a wildcard address is reached on loopback.
pub fn probe_address(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// `Ok` when `GET /healthz` on `addr` answers 200; otherwise why not.
pub fn check(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("{addr}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    // HTTP/1.0 with Connection: close: the server ends the answer by closing, so reading to the
    // end needs no parsing of lengths or chunks.
    write!(
        stream,
        "GET /healthz HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let status_line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!(
            "{addr} answered {:?} to GET /healthz",
            status_line.trim_end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(probe_address(v4).to_string(), "127.0.0.1:8000");
        let v6: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(probe_address(v6).to_string(), "[::1]:9000");
        let named: SocketAddr = "10.0.0.5:8000".parse().unwrap();
        assert_eq!(probe_address(named), named);
    }
}
