//! A TCP proxy in front of a server on this host, for faults the server cannot make itself:
//! it passes, refuses (cut), accepts and never answers (stall), or silently stops forwarding on
//! the connections already open, without a FIN, as a NAT or a load balancer that forgot them
//! (black hole), while whoever holds the server's own address still reaches it.

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const PASS: u8 = 0;
const CUT: u8 = 1;
const STALL: u8 = 2;

pub struct FaultProxy {
    pub port: u16,
    mode: watch::Sender<u8>,
    /// Bumped by [`FaultProxy::black_hole`]: connections opened before go silent.
    hole: watch::Sender<u64>,
    stopped: watch::Sender<bool>,
}

enum Ended {
    Closed,
    Mode(u8),
    BlackHoled,
    Stopped,
}

impl FaultProxy {
    /// Listens on a free port and forwards to `127.0.0.1:upstream`, on the current tokio runtime.
    pub async fn start(upstream: u16) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (mode, _) = watch::channel(PASS);
        let (hole, _) = watch::channel(0u64);
        let (stopped, _) = watch::channel(false);
        let (mode_tx, hole_tx, stopped_tx) = (mode.clone(), hole.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut stop = stopped_tx.subscribe();
            loop {
                let inbound = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((inbound, _)) => inbound,
                        Err(_) => continue,
                    },
                    _ = stop.wait_for(|s| *s) => return,
                };
                let (mut mode, hole, mut stop) = (
                    mode_tx.subscribe(),
                    hole_tx.subscribe(),
                    stopped_tx.subscribe(),
                );
                let current = *mode.borrow_and_update();
                match current {
                    CUT => drop(inbound),
                    STALL => {
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = mode.wait_for(|m| *m != STALL) => {}
                                _ = stop.wait_for(|s| *s) => {}
                            }
                            drop(inbound);
                        });
                    }
                    _ => {
                        tokio::spawn(forward(inbound, upstream, mode, hole, stop));
                    }
                }
            }
        });
        Ok(FaultProxy {
            port,
            mode,
            hole,
            stopped,
        })
    }

    /// A Redis URL through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(CUT);
    }

    /// Freezes open connections and accepts new ones without answering: a hung server.
    pub fn stall(&self) {
        self.mode.send_replace(STALL);
    }

    pub fn restore(&self) {
        self.mode.send_replace(PASS);
    }

    /// The connections open now go silent for good (no FIN ever reaches the client); new
    /// ones pass.
    pub fn black_hole(&self) {
        self.hole.send_modify(|epoch| *epoch += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stopped.send_replace(true);
    }
}

async fn forward(
    mut inbound: TcpStream,
    upstream: u16,
    mut mode: watch::Receiver<u8>,
    mut hole: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let opened_in = *hole.borrow_and_update();
    let ended = tokio::select! {
        _ = copy_bidirectional(&mut inbound, &mut outbound) => Ended::Closed,
        changed = mode.wait_for(|m| *m != PASS) => Ended::Mode(changed.map(|m| *m).unwrap_or(CUT)),
        _ = hole.wait_for(|h| *h > opened_in) => Ended::BlackHoled,
        _ = stop.wait_for(|s| *s) => Ended::Stopped,
    };
    match ended {
        // Held open, nothing forwarded, until the stall ends: then closed.
        Ended::Mode(STALL) => {
            tokio::select! {
                _ = mode.wait_for(|m| *m != STALL) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        }
        // Held open and silent until the proxy stops.
        Ended::BlackHoled => {
            let _ = stop.wait_for(|s| *s).await;
        }
        Ended::Closed | Ended::Mode(_) | Ended::Stopped => {}
    }
}
