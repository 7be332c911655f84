//! A TCP fault proxy for the fault suite: put it between a hub and PostgreSQL or Redis, or
//! between an edge and its hub, then break the link on purpose.
//!
//! [`Fault`]s, set at any time with [`FaultProxy::set`]:
//! - `Pass`: bytes flow both ways as they come.
//! - `Delay(d)`: every chunk waits `d` before it is forwarded (a slow link; order kept).
//! - `Drop`: nothing is forwarded, in either direction, until the fault changes — as if the
//!   packets were dropped and TCP kept retransmitting: the connection hangs, it does not
//!   close. New connections are accepted and hang too.
//! - `Partition`: every open connection is closed and new ones are closed at once (the
//!   peer is unreachable).
//!
//! [`FaultProxy::cut`] closes every open connection once and keeps accepting (a reset).
//!
//! Invariant: bytes are never reordered, duplicated or altered — only delayed, held or
//! cut, which is what a real network does to a TCP stream.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the link does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Delay(Duration),
    Drop,
    Partition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    fault: Fault,
    /// Bumped by every cut: connections opened in an older generation close.
    generation: u64,
}

/// A proxy on `127.0.0.1:<free port>` forwarding to one target; stopped on drop.
///
/// It runs on a thread and runtime of its own, so a test that blocks its own runtime
/// (waiting for a child process's banner, say) does not stall the link as well.
pub struct FaultProxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FaultProxy {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> Result<FaultProxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (link, watching) = watch::channel(Link {
            fault: Fault::Pass,
            generation: 0,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let target = target.to_string();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    _ = accept(listener, target, watching) => {}
                    _ = stopped => {}
                }
            })
        });
        Ok(FaultProxy {
            addr,
            link,
            stop: Some(stop),
        })
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `target`'s URL with its `host:port` replaced by this proxy's.
    pub fn url_for(&self, url: &str, target: &str) -> String {
        url.replacen(target, &self.addr.to_string(), 1)
    }

    pub fn set(&self, fault: Fault) {
        self.link.send_modify(|link| {
            link.fault = fault;
            if fault == Fault::Partition {
                link.generation += 1;
            }
        });
    }

    /// Closes every open connection once; new ones are accepted as before.
    pub fn cut(&self) {
        self.link.send_modify(|link| link.generation += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Accepts connections and relays each to `target` (dropping them during a partition).
async fn accept(listener: TcpListener, target: String, watching: watch::Receiver<Link>) {
    while let Ok((client, _)) = listener.accept().await {
        let link = watching.clone();
        if link.borrow().fault == Fault::Partition {
            drop(client);
            continue;
        }
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&target).await {
                relay(client, server, link).await;
            }
        });
    }
}

/// Pumps both directions until either side closes or the link is cut.
async fn relay(client: TcpStream, server: TcpStream, link: watch::Receiver<Link>) {
    let generation = link.borrow().generation;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, link.clone(), generation) => {}
        _ = pump(server_read, client_write, link, generation) => {}
    }
}

/// Forwards one direction under the link's faults; returns when the stream ends, fails or
/// is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
    generation: u64,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = cut_from(&mut link, generation) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Hold the chunk while the link drops packets; give up if it is cut meanwhile.
        loop {
            let current = *link.borrow_and_update();
            if current.generation != generation {
                return;
            }
            match current.fault {
                Fault::Pass => break,
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Fault::Drop => {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
                Fault::Partition => return,
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Resolves when the link's generation moves past `generation` (a cut or a partition).
async fn cut_from(link: &mut watch::Receiver<Link>, generation: u64) {
    loop {
        if link.borrow_and_update().generation != generation {
            return;
        }
        if link.changed().await.is_err() {
            // The proxy is gone: keep the connection as it is.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    async fn round_trip(s: &mut TcpStream, within: Duration) -> Result<bool> {
        s.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        Ok(matches!(
            tokio::time::timeout(within, s.read_exact(&mut b)).await,
            Ok(Ok(_))
        ))
    }

    #[tokio::test]
    async fn faults_hold_delay_and_cut_the_stream() -> Result<()> {
        let proxy = FaultProxy::start(&echo_server().await?.to_string()).await?;
        let mut s = TcpStream::connect(proxy.addr()).await?;
        assert!(round_trip(&mut s, Duration::from_secs(2)).await?);

        proxy.set(Fault::Drop);
        assert!(
            !round_trip(&mut s, Duration::from_millis(200)).await?,
            "held"
        );
        proxy.set(Fault::Pass);
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await?;
        assert_eq!(&b, b"ping", "the held bytes arrive once the link is back");

        proxy.set(Fault::Delay(Duration::from_millis(150)));
        let started = tokio::time::Instant::now();
        assert!(round_trip(&mut s, Duration::from_secs(2)).await?);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "delayed both ways"
        );
        proxy.set(Fault::Pass);

        proxy.cut();
        assert!(
            !round_trip(&mut s, Duration::from_millis(500)).await?,
            "cut"
        );
        let mut again = TcpStream::connect(proxy.addr()).await?;
        assert!(
            round_trip(&mut again, Duration::from_secs(2)).await?,
            "accepts after a cut"
        );

        proxy.set(Fault::Partition);
        assert!(!round_trip(&mut again, Duration::from_millis(500)).await?);
        let mut refused = TcpStream::connect(proxy.addr()).await?;
        assert!(!round_trip(&mut refused, Duration::from_millis(500)).await?);
        Ok(())
    }
}
