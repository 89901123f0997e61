//! A network namespace per member of a local ZooKeeper ensemble, so that a test can partition
//! members from each other.
//!
//! On the shared loopback interface a partition cannot be cut: every outgoing connection leaves
//! from 127.0.0.1 whichever server opens it, so no firewall rule can tell one member's
//! connections from another's. Here each member runs in its own namespace `zhz<block>m<myid>`
//! with the address `10.213.<block>.<myid>` on a veth whose other end hangs off the host's
//! bridge `zhzb<block>` (address `10.213.<block>.254`, which the test's clients use). Cutting
//! member `m` off from its peers is a pair of iptables rules per peer in `m`'s namespace only
//! (nothing of the host's own rules is touched), so its clients still reach it, as in the
//! classic split where an isolated leader keeps its clients until it notices it lost its
//! quorum. The block is the one [`super::zookeeper`] claims with its lock file, so concurrent
//! ensembles never share names or addresses; names a crashed run left behind are removed
//! first. Dropping the networks deletes the namespaces (and their veths) and the bridge.

use std::io;
use std::net::Ipv4Addr;
use std::process::Command;

/// The first two octets of every member address.
const PREFIX: [u8; 2] = [10, 213];
/// The host's address on a block's bridge.
const HOST: u8 = 254;

/// The address of member `myid` of `block`.
pub fn member_ip(block: u8, myid: u8) -> Ipv4Addr {
    Ipv4Addr::new(PREFIX[0], PREFIX[1], block, myid)
}

/// The namespaces of one ensemble's members; see the module documentation.
pub struct MemberNetworks {
    block: u8,
    myids: Vec<u8>,
}

fn run(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip").args(args).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

impl MemberNetworks {
    /// Creates the bridge and one namespace per member of `myids`.
    pub fn create(block: u8, myids: &[u8]) -> io::Result<MemberNetworks> {
        if !nix::unistd::geteuid().is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "member networks need root (network namespaces, veths, iptables in them): run \
                 the fault-injection tier as root, e.g. through `bash tests/run.sh` in CI",
            ));
        }
        if let Some(bad) = myids.iter().find(|&&m| m == 0 || m >= HOST) {
            return Err(io::Error::other(format!(
                "myid {bad}: member networks hold myids 1 to {}",
                HOST - 1
            )));
        }
        let networks = MemberNetworks {
            block,
            myids: myids.to_vec(),
        };
        networks.remove();
        let bridge = networks.bridge();
        let host = format!("{}/24", member_ip(block, HOST));
        run(&["link", "add", &bridge, "type", "bridge"])?;
        run(&["addr", "add", &host, "dev", &bridge])?;
        run(&["link", "set", &bridge, "up"])?;
        for &myid in myids {
            let namespace = networks.namespace(myid);
            let veth = format!("zhz{block}h{myid}");
            let address = format!("{}/24", member_ip(block, myid));
            run(&["netns", "add", &namespace])?;
            run(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])?;
            run(&["link", "set", &veth, "master", &bridge, "up"])?;
            run(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"])?;
            run(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            run(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(networks)
    }

    fn bridge(&self) -> String {
        format!("zhzb{}", self.block)
    }

    fn namespace(&self, myid: u8) -> String {
        format!("zhz{}m{myid}", self.block)
    }

    /// `command`, run in member `myid`'s namespace (`ip netns exec` execs it: the process is
    /// the command's own, for signals).
    pub fn wrap(&self, myid: u8, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.namespace(myid)])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    fn iptables(&self, myid: u8, rule: &[&str]) -> io::Result<()> {
        let namespace = self.namespace(myid);
        let mut args = vec!["netns", "exec", &namespace, "iptables", "-w"];
        args.extend_from_slice(rule);
        run(&args)
    }

    /// Cuts member `myid` off from the members `peers` (both ways); its clients still reach it.
    pub fn cut(&self, myid: u8, peers: &[u8]) -> io::Result<()> {
        for &peer in peers {
            let peer = member_ip(self.block, peer).to_string();
            self.iptables(myid, &["-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
            self.iptables(myid, &["-A", "OUTPUT", "-d", &peer, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Cuts member `myid` off from its clients on `port` (the host's connections, both ways:
    /// packets dropped, so a client's connection hangs rather than being reset), while its peers
    /// and its AdminServer still reach it.
    pub fn cut_clients(&self, myid: u8, port: u16) -> io::Result<()> {
        let host = member_ip(self.block, HOST).to_string();
        let port = port.to_string();
        self.iptables(
            myid,
            &[
                "-A", "INPUT", "-s", &host, "-p", "tcp", "--dport", &port, "-j", "DROP",
            ],
        )?;
        self.iptables(
            myid,
            &[
                "-A", "OUTPUT", "-d", &host, "-p", "tcp", "--sport", &port, "-j", "DROP",
            ],
        )
    }

    /// Undoes every [`cut`](Self::cut) and [`cut_clients`](Self::cut_clients) of member `myid`.
    pub fn heal(&self, myid: u8) -> io::Result<()> {
        self.iptables(myid, &["-F", "INPUT"])?;
        self.iptables(myid, &["-F", "OUTPUT"])
    }

    /// Deletes the namespaces (their veths go with them) and the bridge, if they exist.
    fn remove(&self) {
        for &myid in &self.myids {
            let _ = run(&["netns", "del", &self.namespace(myid)]);
            let _ = run(&["link", "del", &format!("zhz{}h{myid}", self.block)]);
        }
        let _ = run(&["link", "del", &self.bridge()]);
    }
}

impl Drop for MemberNetworks {
    fn drop(&mut self) {
        self.remove();
    }
}
