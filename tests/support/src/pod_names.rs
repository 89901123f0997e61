//! Loopback addresses that stand for pods by name, as a client's server names do: each new
//! connection goes to the pod's IP at that moment. A client given DNS names re-resolves them
//! when it connects again (ZooKeeper's Java client since 3.5, ZOOKEEPER-2184), so it follows
//! servers whose pods a roll replaced with new IPs; a connect string of IPs taken once would
//! not. A test's client reaches a pod's servers through these, without the cluster's DNS.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

/// How long a connection to a pod may take to open: a pod's IP that no longer answers (its
/// node gone) fails the client's attempt as an unreachable server would.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A loopback listener per pod, each forwarding to the pod's current IP; stopped when dropped.
pub struct PodNames {
    addresses: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PodNames {
    /// A listener for each pod of `names` (in `pods`' namespace), forwarding to its `port`.
    pub async fn start(pods: &Api<Pod>, names: &[String], port: u16) -> PodNames {
        let (mut addresses, mut tasks) = (Vec::new(), Vec::new());
        for name in names {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port for a pod's name");
            addresses.push(listener.local_addr().unwrap());
            let (pods, name) = (pods.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    tokio::spawn(forward(inbound, pods.clone(), name.clone(), port));
                }
            }));
        }
        PodNames { addresses, tasks }
    }

    /// The connect string of the listeners, in the order of the names.
    pub fn connect_string(&self) -> String {
        let addresses: Vec<String> = self.addresses.iter().map(|a| a.to_string()).collect();
        addresses.join(",")
    }
}

impl Drop for PodNames {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One connection, to the pod's IP now. Closed at once when the pod has no IP (gone, or not
/// started yet) or does not answer, as a name that does not resolve fails the attempt.
async fn forward(mut inbound: TcpStream, pods: Api<Pod>, name: String, port: u16) {
    let ip = pods
        .get_opt(&name)
        .await
        .ok()
        .flatten()
        .and_then(|pod| pod.status?.pod_ip);
    let Some(ip) = ip else { return };
    let connecting = TcpStream::connect((ip.as_str(), port));
    if let Ok(Ok(mut outbound)) = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}
