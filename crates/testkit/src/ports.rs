//! Free TCP ports on the loopback interface.

use std::net::TcpListener;

/// A port nobody listens on now. The listener is closed before the port is used, so another
/// process could take it first; on a test machine that race is rare enough, and a server that
/// then fails to bind says so.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
