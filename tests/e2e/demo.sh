#!/usr/bin/env bash
# The main job on this machine, in one command: a local cluster whose node really runs pods, the
# operator installed with Helm, a 3-server ensemble from deploy/examples/three-servers.yaml, and
# `kubectl get zke` until it is ACTIVE.
#
#   sudo bash tests/e2e/demo.sh [--walkthrough] [--keep]
#
#   --walkthrough  then run the seed failure walkthroughs (tests/e2e.rs: stop a server, stop the
#                  leader, kill -9, freeze a member, with a client writing all along) while
#                  `kubectl get zke -A -w` shows the status live
#   --keep         leave the cluster running at the end and print how to use and stop it
#
# Needs root (network namespaces, cgroups, containerd). The first run installs Debian packages,
# builds the cluster binaries from source (12-20 min on 2 cores) and the images (about 10 min);
# later runs take about a minute. Everything lives in ZOOHERD_DEMO_DIR (default /tmp/zooherd-demo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
walkthrough=0 keep=0
for arg in "$@"; do
  case $arg in
    --walkthrough) walkthrough=1 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--walkthrough] [--keep]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces, cgroups, containerd)" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

say "host packages, cluster binaries, ZooKeeper (cached after the first run)"
bash "$repo/tests/cluster/install-host-packages.sh"
bash "$repo/tests/cluster/setup.sh"
# shellcheck source=../cluster/env.sh
. "$repo/tests/cluster/env.sh"
say "images: deploy/images/*/Dockerfile built with buildah (cached by their inputs)"
bash "$here/cluster.sh" images

dir=${ZOOHERD_DEMO_DIR:-/tmp/zooherd-demo}
if [ -f "$dir/cluster-ready" ]; then
  echo "demo: a cluster already runs in $dir; stop it with: bash tests/e2e/cluster.sh down $dir" >&2
  exit 1
fi
rm -rf "$dir"
mkdir -p "$dir"
say "local cluster: control plane, node, operator by Helm (log: $dir/cluster.log)"
setsid bash "$here/cluster.sh" run "$dir" > "$dir/cluster.log" 2>&1 < /dev/null &
cluster_pid=$!
stop_cluster() { [ $keep = 1 ] || bash "$here/cluster.sh" down "$dir"; }
trap stop_cluster EXIT
until [ -f "$dir/cluster-ready" ]; do
  kill -0 "$cluster_pid" 2>/dev/null || { tail -n 40 "$dir/cluster.log" >&2; exit 1; }
  sleep 1
done
tail -n 1 "$dir/cluster.log"
export KUBECONFIG=$dir/kubeconfig
k() { "$ZOOHERD_KUBECTL" "$@"; }
k get nodes -o wide
k -n zooherd-system get pods -o wide

say "kubectl apply -f deploy/examples/three-servers.yaml; kubectl get zke -w"
k apply -f "$repo/deploy/examples/three-servers.yaml"
k get zke zk -w &
watch_pid=$!
until [ "$(k get zke zk -o jsonpath='{.status.phase}')" = ACTIVE ]; do sleep 0.5; done
sleep 1
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
k get zke zk -o wide
k get pods -o wide

if [ $walkthrough = 1 ]; then
  say "the seed failure walkthroughs (tests/e2e.rs), with the status live"
  k get zke -A -w &
  watch_pid=$!
  rc=0
  (cd "$repo" && ZOOHERD_E2E_DIR=$dir cargo test --test e2e -- --nocapture) || rc=$?
  kill "$watch_pid" 2>/dev/null || true
  wait "$watch_pid" 2>/dev/null || true
  [ $rc = 0 ] || { echo "demo: the walkthrough failed" >&2; exit $rc; }
fi

if [ $keep = 1 ]; then
  say "the cluster keeps running"
  cat <<EOF
  export KUBECONFIG=$dir/kubeconfig
  $ZOOHERD_KUBECTL get zke -o wide
  $ZOOHERD_KUBECTL describe zke zk
  bash tests/e2e/cluster.sh down $dir      # stop it all
EOF
fi
