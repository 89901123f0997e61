//! A TCP proxy on loopback that a test can cut, as a network partition cuts a link: while it is
//! cut, every byte is dropped both ways and nothing is closed (the peers see silence, not a
//! reset, as when packets vanish); when it heals, the connections held through the cut are
//! closed (as their peers would have timed them out) and new ones go through again.
//!
//! Used between an operator replica and the API server (the replica's kubeconfig names the
//! proxy), so that a test can cut one replica off from the API server while it keeps reaching
//! the ZooKeeper servers.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    address: SocketAddr,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the proxy");
        let address = listener.local_addr().unwrap();
        let (cut, watching) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(inbound, target, watching.clone()));
            }
        });
        Proxy { address, cut, task }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Cuts (true) or heals (false) the link.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: forwarded until the link is cut, then held silent until it heals, then
/// closed. A connection that arrives while the link is cut is held the same way.
async fn forward(mut inbound: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let open = !*cut.borrow();
    if open && let Ok(mut outbound) = TcpStream::connect(target).await {
        tokio::select! {
            _ = copy_bidirectional(&mut inbound, &mut outbound) => return,
            _ = cut.wait_for(|cut| *cut) => {}
        }
    }
    // Cut: hold the connection, silent, until the heal.
    let _ = cut.wait_for(|cut| !*cut).await;
}
