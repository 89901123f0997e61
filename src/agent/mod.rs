//! The in-pod side of Zooherd: what runs inside every ZooKeeper server container.
//!
//! The operator decides what an ensemble looks like; the agent makes one pod of it true.
//! [`server`] is the container's entrypoint: it gives the server its identity (myid, and the
//! ensemble its data belongs to), refuses a data directory that belongs to another server
//! instead of letting ZooKeeper crash-loop on it, and then becomes the JVM. [`probe`] answers
//! the kubelet's readiness and liveness questions from the AdminServer, whose `srvr` command
//! is the one interface that tells whether a server is in a quorum.
//!
//! Both live in the `zooherd` binary so that the image carries a single program and the agent
//! is always the same version as the operator that rendered the pod's configuration.

pub mod probe;
pub mod server;

/// The server image an ensemble runs when its spec names none: Zooherd's ZooKeeper image of
/// the operator's own version, so the agent in the pod matches the pod the operator builds.
pub const DEFAULT_SERVER_IMAGE: &str =
    concat!("ghcr.io/zooherd/zookeeper:", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_server_image_is_tagged_with_the_operator_version() {
        let (repository, tag) = DEFAULT_SERVER_IMAGE.rsplit_once(':').unwrap();
        assert_eq!(repository, "ghcr.io/zooherd/zookeeper");
        assert_eq!(tag, env!("CARGO_PKG_VERSION"));
    }
}
