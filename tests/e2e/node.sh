#!/usr/bin/env bash
# A node that really runs pods, for the local control plane of tests/cluster/control-plane.sh:
# Debian's containerd and runc (cgroupfs driver), CNI bridge networking (Debian's
# containernetworking-plugins), a kubelet built from k8s.io/kubernetes, and optionally
# kube-proxy (nftables mode), CoreDNS (cluster DNS, so pods resolve Services) and kube-router
# in firewall-only mode (NetworkPolicies enforced on the pods' bridge).
#
#   bash tests/e2e/node.sh start DIR [IMAGE.tar...]   start the node (background), wait until Ready
#   bash tests/e2e/node.sh stop DIR                    kill everything and clean up
#   bash tests/e2e/node.sh import DIR IMAGE.tar...     load docker/OCI archives into its containerd
#   bash tests/e2e/node.sh ctr DIR CTR-ARGS...         ctr inside the node's namespaces
#   bash tests/e2e/node.sh exec DIR CMD...             a command inside the node's namespaces
#
# DIR is the control plane's directory (kubeconfig, ready, pki/ca.{crt,key}); the node keeps
# everything under DIR/node-<index>/. The archives given to start are imported before the
# kubelet starts; the pause image (tests/e2e/image.sh pause) must be among them.
#
# Isolation (the host's network namespace gets one bridge, one veth per node, one route per node):
# - network: the node has its own network namespace (ip netns zhnode<index>), joined by a veth
#   pair to the bridge zhnodes in the host's namespace (10.212.0.1/16, made by the first node,
#   deleted by the last). The node's side is 10.212.<index>.2/16, the node's IP (the API server
#   reaches the kubelet there, for logs and exec). The pods sit on a bridge inside the node,
#   10.213.<index>.0/24; the host has a route to that subnet via the node, so tests and the
#   operator on the host reach every pod IP, and every node has a route to every other node's
#   pods (traffic between nodes is bridged on zhnodes: the host forwards nothing, its
#   ip_forward stays as it is). ip_forward, iptables and nftables rules (kubelet's,
#   kube-proxy's, the bridge plugin's) all stay in the node's namespace.
# - the API server listens on the host's 127.0.0.1 only: socat carries 127.0.0.1:<port> of the
#   node's namespace to it over a Unix socket, so the kubelet uses the same URL and certificate;
#   and <node ip>:<port> too, for pods, when the control plane advertises that address
#   (ZOOHERD_CP_ADVERTISE_ADDRESS=10.212.0.2 for node 0): in-cluster clients then reach it as
#   Service default/kubernetes (10.0.0.1:443, in the API server's certificate) via kube-proxy.
# - processes and mounts: everything runs in its own PID and mount namespaces (unshare
#   --pid --mount --kill-child): stop kills the namespace's first process, the kernel kills
#   every other one (shims and containers included), and every mount (overlay rootfs, shm,
#   pod network namespaces, volumes) goes away with the mount namespace.
# - cgroups (v1 here, cgroupfs driver): the pods' cgroups live under /zhnode<index> in every
#   hierarchy; stop removes them.
# - the node's name is its IP (the API server reaches kubelets at their InternalIP).
# - NetworkPolicies (ZOOHERD_NODE_NETPOL=1): kube-router --run-firewall only (no routing, no
#   service proxy), with iptables (nf_tables backend) and ipset in the node's namespace. Pods
#   on one node talk over the bridge cni0, so its frames must cross iptables:
#   bridge-nf-call-iptables=1 in the node's namespace (kube-router's FORWARD rules match them
#   with --physdev-is-bridged). kube-router admits what comes from the pod's own node (an
#   address of the node's namespace), as kubelet probes need. The host (tests, tools) is
#   admitted too: what it sends to the pods through eth0 gets kube-router's "a policy admits
#   this" mark (0x10000) in mangle PREROUTING, before kube-router's pod chains, which REJECT
#   unmarked traffic (a source NAT would come too late: filter FORWARD sees the source first).
#   Pods send on cni0, so nothing they send gets the mark.
#
# Environment (all optional):
#   ZOOHERD_NODE_INDEX       0..250, picks the addresses and names above (default 0)
#   ZOOHERD_NODE_KUBE_PROXY  1: run kube-proxy, nftables mode (default 1)
#   ZOOHERD_NODE_DNS         1: run CoreDNS on the pods' gateway, as the cluster DNS (default 1
#                            when the binary exists)
#   ZOOHERD_NODE_NETPOL      1: enforce NetworkPolicies with kube-router (default 1 when the
#                            binary exists)
#   ZOOHERD_NODE_KEEP_OBJECT 1: stop leaves the Node object (a machine switched off); default 0,
#                            stop deletes it
#   ZOOHERD_KUBELET, ZOOHERD_KUBE_PROXY, ZOOHERD_COREDNS, ZOOHERD_KUBE_ROUTER   binaries
#                            (default: tests/cluster/env.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../cluster/env.sh
. "$here/../cluster/env.sh"
# shellcheck source=../cluster/lib.sh
. "$here/../cluster/lib.sh"
log_prefix=node
with_proxy=${ZOOHERD_NODE_KUBE_PROXY:-1}
with_dns=${ZOOHERD_NODE_DNS:-}
[ -n "$with_dns" ] || { [ -x "$ZOOHERD_COREDNS" ] && with_dns=1 || with_dns=0; }
with_netpol=${ZOOHERD_NODE_NETPOL:-}
[ -n "$with_netpol" ] || { [ -x "$ZOOHERD_KUBE_ROUTER" ] && with_netpol=1 || with_netpol=0; }
# The control plane's Service range (tests/cluster/control-plane.sh).
service_range=10.0.0.0/24

index=${ZOOHERD_NODE_INDEX:-0}
case $index in '' | *[!0-9]*) log "ZOOHERD_NODE_INDEX must be 0..250"; exit 2 ;; esac
[ "$index" -le 250 ] || { log "ZOOHERD_NODE_INDEX must be 0..250"; exit 2; }
host_ip=10.212.0.1
hostbr=zhnodes
node_ip=10.212.$index.2
subnet=10.213.$index.0/24
gateway=10.213.$index.1
name=$node_ip
netns=zhnode$index
veth=zhnode$index
cgroot=zhnode$index
cni_bin=${ZOOHERD_CNI_BIN:-/usr/lib/cni}

usage() { die "usage: $0 start|stop|import|ctr|exec DIR [ARGS...]"; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(cd "$2" && pwd) || die "$2 is not a directory"
shift 2
n=$dir/node-$index
sock=$n/containerd.sock
started=$(date +%s%N)
# The first process of the node's PID namespace (the child of unshare).
ns_init() { pgrep -P "$(cat "$n/pid" 2>/dev/null)" 2>/dev/null | head -1; }
in_node() { # command...: inside the node's PID, mount and network namespaces
  local pid
  pid=$(ns_init) && [ -n "$pid" ] || die "node $index is not running"
  nsenter -t "$pid" -m -p "--net=/run/netns/$netns" -- "$@"
}

# ---- stop ----------------------------------------------------------------------------------
stop() {
  if [ -f "$n/pid" ]; then
    local pid
    pid=$(cat "$n/pid")
    # unshare --kill-child: killing unshare kills the namespace's init, and with it the namespace.
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$n/pid"
  fi
  # Anything left in the node's cgroups (there should be nothing): kill it, then remove them.
  local h d
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$cgroot" ] || continue
    find "$h$cgroot" -name cgroup.procs -exec cat {} + 2>/dev/null \
      | while read -r p; do kill -KILL "$p" 2>/dev/null || true; done
  done
  sleep 0.1
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$cgroot" ] || continue
    find "$h$cgroot" -depth -type d 2>/dev/null | while read -r d; do rmdir "$d" 2>/dev/null || true; done
  done
  # Deleting the namespace deletes the veth pair, the bridge, the rules and the host's route.
  ip netns del "$netns" 2>/dev/null || true
  ip link del "$veth" 2>/dev/null || true
  local other
  for other in $(ip netns list | awk '/^zhnode[0-9]+/ {print $1}'); do
    ip -n "$other" route del "$subnet" 2>/dev/null || true
  done
  # The last node removes the bridge.
  if ! ip netns list | grep -q '^zhnode'; then ip link del "$hostbr" 2>/dev/null || true; fi
  # A machine switched off leaves its Node object behind (ZOOHERD_NODE_KEEP_OBJECT=1): the
  # lost-node story needs the node NotReady, not gone.
  if [ -f "$dir/kubeconfig" ] && [ "${ZOOHERD_NODE_KEEP_OBJECT:-0}" != 1 ]; then
    k delete node "$name" --wait=false --request-timeout=5s >/dev/null 2>&1 || true
  fi
  # The mount points of /run/containerd and /var/lib/cni: removing one while another node's
  # mount namespace has a mount on it would detach that mount, so only after the last node.
  if ! ip netns list | grep -q '^zhnode'; then
    rmdir /run/containerd 2>/dev/null || true
    dpkg -S /var/lib/cni >/dev/null 2>&1 || rmdir /var/lib/cni 2>/dev/null || true
  fi
  echo "node: stopped node $index ($name)"
}

# ---- the inside of the PID and mount namespaces --------------------------------------------
inner() {
  local nsx=(nsenter "--net=/run/netns/$netns" --)
  # Hide the host's /run/containerd (shim sockets, fifos) and /var/lib/cni (CNI cache).
  mount -t tmpfs -o mode=0711 tmpfs /run/containerd
  mount --bind "$n/cni/cache" /var/lib/cni
  local port=${server_url##*:}
  # The API server, from the node's 127.0.0.1:<port> to the host's, through a Unix socket.
  socat "UNIX-LISTEN:$n/apiserver.sock,fork,mode=600" "TCP:127.0.0.1:$port" 2>> "$n/logs/socat.log" &
  for _ in $(seq 50); do [ -S "$n/apiserver.sock" ] && break; sleep 0.1; done
  "${nsx[@]}" socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$n/apiserver.sock" \
    2>> "$n/logs/socat.log" &
  # And from the node's own address, for pods: the control plane advertises node 0's address
  # (ZOOHERD_CP_ADVERTISE_ADDRESS), so Service default/kubernetes leads here through kube-proxy.
  "${nsx[@]}" socat "TCP-LISTEN:$port,bind=$node_ip,fork,reuseaddr" "UNIX-CONNECT:$n/apiserver.sock" \
    2>> "$n/logs/socat.log" &

  "${nsx[@]}" containerd --config "$n/containerd/config.toml" > "$n/logs/containerd.log" 2>&1 &
  local cpid=$!
  for _ in $(seq 300); do
    ctr --address "$sock" version >/dev/null 2>&1 && break
    kill -0 $cpid 2>/dev/null || { echo "containerd exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "containerd up after $(elapsed_ms) ms" >&2
  local img
  for img in "$@"; do
    ctr --address "$sock" -n k8s.io images import "$img" >&2 || { echo "importing $img failed" >&2; exit 1; }
  done
  echo "images imported after $(elapsed_ms) ms" >&2
  # Supervised as systemd's kubelet.service (Restart=always) supervises it on a real node: the
  # kubelet of k8s.io/kubernetes v1.35.4 has crashed here at start with "concurrent map
  # iteration and map write" (cm.GetCapacity racing the DRA plugin manager's first node
  # status; the race class of kubernetes/kubernetes#119637); a real node restarts it and so
  # does this one, a few times, each crash logged.
  (
    for attempt in 1 2 3 4 5; do
      "${nsx[@]}" "$ZOOHERD_KUBELET" \
        --config="$n/kubelet/config.yaml" \
        --kubeconfig="$n/kubelet.kubeconfig" \
        --root-dir="$n/kubelet/root" \
        --cert-dir="$n/kubelet/pki" \
        --hostname-override="$name" \
        --node-ip="$node_ip" \
        --v="${ZOOHERD_NODE_KUBELET_V:-2}" >> "$n/logs/kubelet.log" 2>&1
      echo "node: the kubelet exited ($?) after start $attempt of 5" \
        | tee -a "$n/logs/kubelet.log" >&2
      sleep 1
    done
    exit 1
  ) &
  if [ "$with_proxy" = 1 ]; then
    "${nsx[@]}" "$ZOOHERD_KUBE_PROXY" --config="$n/kube-proxy/config.yaml" --v=2 \
      > "$n/logs/kube-proxy.log" 2>&1 &
  fi
  if [ "$with_dns" = 1 ]; then
    "${nsx[@]}" "$ZOOHERD_COREDNS" -conf "$n/coredns/Corefile" > "$n/logs/coredns.log" 2>&1 &
  fi
  if [ "$with_netpol" = 1 ]; then
    # Firewall only: the bridge plugin and the routes above do the networking, kube-proxy the
    # Services. The admin kubeconfig: it watches pods, namespaces and NetworkPolicies. It
    # exits at once ("failed to identify the node") unless the kubelet has registered the Node.
    (
      until k get node "$name" >/dev/null 2>&1; do sleep 0.3; done
      exec "${nsx[@]}" "$ZOOHERD_KUBE_ROUTER" --kubeconfig="$dir/kubeconfig" \
        --hostname-override="$name" --run-firewall=true --run-router=false \
        --run-service-proxy=false --enable-cni=false --service-cluster-ip-range="$service_range" \
        --health-port=0 --metrics-port=0 --v=1
    ) > "$n/logs/kube-router.log" 2>&1 &
  fi
  # Whichever exits first ends the namespace (and so everything in it).
  wait -n || true
  echo "a node process exited; stopping the node" >&2
  exit 1
}

# issue NAME SUBJECT: a client certificate signed by the control plane's CA, in $n/pki.
issue() {
  (
    cd "$n/pki"
    umask 077
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$dir/pki/ca.crt" -CAkey "$dir/pki/ca.key" \
      -CAcreateserial -CAserial "$n/pki/ca.srl" -days 7 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  )
}

# kubeconfig FILE USER CERT-NAME
write_kubeconfig() {
  (
    umask 077
    cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: zooherd-test
  cluster:
    server: $server_url
    certificate-authority: $dir/pki/ca.crt
users:
- name: "$2"
  user:
    client-certificate: $n/pki/$3.crt
    client-key: $n/pki/$3.key
contexts:
- name: zooherd-test
  context: {cluster: zooherd-test, user: "$2"}
current-context: zooherd-test
EOF
  )
}

# ---- start ---------------------------------------------------------------------------------
start() {
  local b
  for b in containerd runc ctr unshare nsenter ip socat openssl; do
    command -v "$b" >/dev/null || die "$b is missing"
  done
  [ -x "$cni_bin/bridge" ] || die "$cni_bin/bridge is missing (apt-get install containernetworking-plugins)"
  [ -x "$ZOOHERD_KUBELET" ] || die "$ZOOHERD_KUBELET is missing: bash tests/cluster/setup.sh"
  [ "$with_proxy" != 1 ] || [ -x "$ZOOHERD_KUBE_PROXY" ] || die "$ZOOHERD_KUBE_PROXY is missing"
  [ "$with_proxy" != 1 ] || command -v nft >/dev/null || die "nft is missing (apt-get install nftables)"
  [ "$with_dns" != 1 ] || [ -x "$ZOOHERD_COREDNS" ] || die "$ZOOHERD_COREDNS is missing"
  [ "$with_netpol" != 1 ] || [ -x "$ZOOHERD_KUBE_ROUTER" ] || die "$ZOOHERD_KUBE_ROUTER is missing: bash tests/cluster/setup.sh"
  [ "$with_netpol" != 1 ] || command -v ipset >/dev/null || die "ipset is missing (apt-get install ipset)"
  [ -f "$dir/ready" ] && [ -f "$dir/pki/ca.key" ] || die "$dir holds no ready control plane"
  [ ! -f "$n/pid" ] || die "$n/pid exists: stop the node first"
  ! ip netns list | grep -qw "$netns" || die "network namespace $netns exists (another node $index?)"
  local archive
  for archive in "$@"; do [ -f "$archive" ] || die "$archive is missing"; done
  rm -rf "$n"
  # Mount points for the node's own /run/containerd and /var/lib/cni (left empty here).
  mkdir -p /run/containerd /var/lib/cni
  mkdir -p "$n/logs" "$n/pki" "$n/containerd" "$n/cni/net.d" "$n/cni/cache" "$n/cni/ipam" \
    "$n/kubelet/root" "$n/kubelet/pki" "$n/pod-logs" "$n/runc" "$n/kube-proxy" "$n/coredns"
  server_url=$(cat "$dir/ready")

  # The kubelet is user system:node:NAME in group system:nodes. The API server runs RBAC only
  # (no Node authorizer), so the ClusterRole system:node is bound to that user. kube-proxy is
  # user system:kube-proxy, which the default binding system:node-proxier covers.
  issue kubelet "/O=system:nodes/CN=system:node:$name"
  issue kube-proxy "/CN=system:kube-proxy"
  write_kubeconfig "$n/kubelet.kubeconfig" "system:node:$name" kubelet
  write_kubeconfig "$n/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  k create clusterrolebinding "zooherd-node:$name" --clusterrole=system:node \
    --user="system:node:$name" --dry-run=client -o yaml | k apply -f - >/dev/null

  # ---- network: the namespace, the veth pair, the host's route to the pods --------------
  ip netns add "$netns"
  # The bridge of all nodes (another node may be creating it at the same moment).
  ip link add "$hostbr" type bridge 2>/dev/null || true
  ip link show "$hostbr" >/dev/null || die "cannot create bridge $hostbr"
  ip addr add "$host_ip/16" dev "$hostbr" 2>/dev/null || true
  ip link set "$hostbr" up
  ip link add "$veth" type veth peer name eth0 netns "$netns"
  ip link set "$veth" master "$hostbr"
  ip link set "$veth" up
  ip -n "$netns" link set lo up
  ip -n "$netns" addr add "$node_ip/16" dev eth0
  ip -n "$netns" link set eth0 up
  ip -n "$netns" route add default via "$host_ip"
  ip route replace "$subnet" via "$node_ip" dev "$hostbr"
  # Routes between this node's pods and every other running node's pods.
  local other oi
  for other in $(ip netns list | awk '/^zhnode[0-9]+/ {print $1}'); do
    [ "$other" != "$netns" ] || continue
    oi=${other#zhnode}
    ip -n "$other" route replace "$subnet" via "$node_ip" 2>/dev/null || true
    ip -n "$netns" route replace "10.213.$oi.0/24" via "10.212.$oi.2"
  done
  # The pods' bridge now (the bridge plugin adopts it), so CoreDNS can bind the gateway address.
  ip -n "$netns" link add cni0 type bridge
  ip -n "$netns" addr add "$gateway/24" dev cni0
  ip -n "$netns" link set cni0 up
  # Forwarding inside the node only (the bridge plugin would set it too): pod <-> host.
  ip netns exec "$netns" sysctl -qw net.ipv4.ip_forward=1
  if [ "$with_netpol" = 1 ]; then
    # Frames between pods on cni0 through iptables, where kube-router enforces the policies.
    ip netns exec "$netns" sysctl -qw net.bridge.bridge-nf-call-iptables=1 \
      || die "cannot set net.bridge.bridge-nf-call-iptables in the node's namespace (br_netfilter?)"
    # The host reaches the pods as the node does (see the header): kube-router's pod chains
    # REJECT what no policy marked 0x10000, so what comes from the host through eth0 is marked
    # before it gets there. Pods send on cni0, never through eth0.
    ip netns exec "$netns" iptables -t mangle -A PREROUTING -i eth0 -s "$host_ip/32" -d "$subnet" \
      -m comment --comment "zooherd: the host reaches pods as the node" \
      -j MARK --set-xmark 0x10000/0x10000
  fi
  cat > "$n/cni/net.d/10-zooherd.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "zooherd",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$n/cni/ipam",
        "ranges": [[{"subnet": "$subnet", "gateway": "$gateway"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF

  # ---- cgroups: the kubelet checks that cgroupRoot exists in every hierarchy ------------
  local h
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    mkdir -p "/sys/fs/cgroup/$cgroot"
  else
    for h in /sys/fs/cgroup/*/; do mkdir -p "$h$cgroot"; done
  fi

  # ---- containerd ------------------------------------------------------------------------
  cat > "$n/containerd/config.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$n/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${ZOOHERD_PAUSE_IMAGE:-zooherd.local/pause:3.10.1}"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # This sandbox lacks CAP_SYS_RESOURCE: runc cannot set an oom_score_adj below its own
  # (the pause container gets -998), and fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$n/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${ZOOHERD_NODE_SNAPSHOTTER:-overlayfs}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$n/runc"
EOF

  # ---- kubelet ---------------------------------------------------------------------------
  local fail_v1=true dns_yaml="clusterDNS: []"
  [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || fail_v1=false
  [ "$with_dns" != 1 ] || dns_yaml="clusterDNS: [$gateway]"
  # The pods' resolv.conf "Default" policy source: no name server outside the cluster.
  printf 'nameserver %s\n' "$gateway" > "$n/resolv.conf"
  cat > "$n/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# For tests: whoever reaches the node's address may use the kubelet API (the API server has
# no kubelet client certificate to present).
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: /$cgroot
cgroupsPerQOS: true
failCgroupV1: $fail_v1
failSwapOn: false
podLogsDir: $n/pod-logs
resolvConf: $n/resolv.conf
$dns_yaml
clusterDomain: cluster.local
registerNode: true
rotateCertificates: false
serializeImagePulls: false
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
fileCheckFrequency: 5s
# The host is shared: no evictions for its disk or memory use, no image GC.
evictionHard: {memory.available: "0%", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF

  # ---- kube-proxy (nftables: its own table, in the node's namespace) ---------------------
  cat > "$n/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $n/kube-proxy.kubeconfig}
mode: nftables
hostnameOverride: "$name"
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $subnet
nodePortAddresses: ["$node_ip/32"]
# Leave the host's conntrack sysctls alone (they are not per network namespace).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

  # ---- CoreDNS on the pods' gateway, answering cluster.local from the API -----------------
  cat > "$n/coredns/Corefile" <<EOF
.:53 {
    bind $gateway
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/kubeconfig zooherd-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF

  setsid env server_url="$server_url" unshare --pid --kill-child --mount-proc --propagation slave \
    bash "$here/node.sh" _inner "$dir" "$@" > "$n/logs/node.log" 2>&1 < /dev/null &
  local pid=$!
  echo $pid > "$n/pid"
  local deadline=$((SECONDS + ${ZOOHERD_NODE_TIMEOUT:-180}))
  until k get node "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$n"/logs/*.log >&2 || true
      stop >/dev/null
      die "the node exited before it was Ready"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$n"/logs/*.log >&2 || true
      stop >/dev/null
      die "timed out waiting for node $name to be Ready"
    fi
    sleep 0.3
  done
  # kube-router's chains exist once it has synced its first policies: enforcement is on.
  while [ "$with_netpol" = 1 ] && ! ip netns exec "$netns" iptables -n -L KUBE-ROUTER-FORWARD >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$n/logs/kube-router.log" >&2 || true
      stop >/dev/null
      die "kube-router did not set up its firewall chains"
    fi
    sleep 0.3
  done
  echo "node: $name Ready in $(elapsed_ms) ms (pods $subnet via $node_ip, kube-proxy=$with_proxy dns=$with_dns netpol=$with_netpol, logs $n/logs)"
}

case $cmd in
  start) start "$@" ;;
  stop) stop ;;
  import) for a in "$@"; do ctr --address "$sock" -n k8s.io images import "$a"; done ;;
  ctr) in_node ctr --address "$sock" "$@" ;;
  exec) in_node "$@" ;;
  _inner) inner "$@" ;;
  *) usage ;;
esac
