#!/usr/bin/env bash
# The first seed walkthrough, end to end on the local node: the operator (on the host) runs
# deploy/examples/three-servers.yaml with a server image built from this checkout's binary;
# the ensemble must become ACTIVE 3/3; then the leader's pod is deleted, and the status must go
# DEGRADED (2/3, a new leader) and back to ACTIVE.
#
#   bash tests/e2e/ensemble-smoke.sh ZOOHERD-BINARY [DIR]
#
# ZOOHERD-BINARY: e.g. target/release/zooherd (a debug build works: it is stripped into the image).
# Images are rebuilt every run (about 20 s); DIR is removed at the end unless ZOOHERD_E2E_KEEP=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/env.sh
. "$here/../cluster/env.sh"
[ $# -ge 1 ] && [ -x "$1" ] || { echo "usage: $0 ZOOHERD-BINARY [DIR]" >&2; exit 2; }
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
dir=${2:-$(mktemp -d /tmp/zooherd-e2e-XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
images=$ZOOHERD_CACHE/e2e-images
k() { "$ZOOHERD_KUBECTL" --kubeconfig "$dir/kubeconfig" "$@"; }
now() { date +%s%N; }
ms_since() { echo $(( ($(now) - $1) / 1000000 )); }

cp_pid=''
op_pid=''
cleanup() {
  local rc=$?
  [ -z "$op_pid" ] || kill -TERM "$op_pid" 2>/dev/null || true
  bash "$here/node.sh" stop "$dir" >/dev/null 2>&1 || true
  [ -z "$cp_pid" ] || { kill -TERM "$cp_pid" 2>/dev/null; wait "$cp_pid" 2>/dev/null || true; }
  if [ $rc -ne 0 ]; then
    echo "ensemble-smoke: FAILED; logs in $dir (operator.log, node-0/logs)" >&2
  elif [ "${ZOOHERD_E2E_KEEP:-}" != 1 ]; then
    rm -rf "$dir"
  fi
}
trap cleanup EXIT

t=$(now)
[ -f "$images/pause.tar" ] || bash "$here/image.sh" pause "$images/pause.tar"
cp "$bin" "$dir/zooherd"
strip "$dir/zooherd" 2>/dev/null || true
bash "$here/image.sh" zookeeper "$dir/zookeeper.tar" zooherd.local/zookeeper:e2e "$dir/zooherd"
echo "ensemble-smoke: images ready in $(ms_since "$t") ms"

t=$(now)
setsid bash "$here/../cluster/control-plane.sh" run "$dir" > "$dir/control-plane.out" 2>&1 &
cp_pid=$!
for _ in $(seq 600); do [ -f "$dir/ready" ] && break; kill -0 $cp_pid || { cat "$dir/control-plane.out"; exit 1; }; sleep 0.2; done
[ -f "$dir/ready" ] || { echo "ensemble-smoke: control plane not ready" >&2; exit 1; }
bash "$here/node.sh" start "$dir" "$images/pause.tar" "$dir/zookeeper.tar"
node=$(k get nodes -o jsonpath='{.items[0].metadata.name}')
echo "ensemble-smoke: control plane and node ready in $(ms_since "$t") ms"

# Storage: a default StorageClass without a provisioner and three local volumes on the node.
{
  cat <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: zooherd-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
EOF
  for i in 0 1 2; do
    mkdir -p "$dir/pv/pv-$i"
    cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-$i}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: zooherd-local
  local: {path: $dir/pv/pv-$i}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: ["$node"]}]}]
EOF
  done
} | k apply -f - >/dev/null
"$bin" crd | k apply -f - >/dev/null
k wait --for=condition=Established crd/zookeeperensembles.zooherd.dev --timeout=30s >/dev/null

KUBECONFIG=$dir/kubeconfig setsid "$bin" operator --server-image zooherd.local/zookeeper:e2e \
  --http-address 127.0.0.1:0 --leader-election false > "$dir/operator.log" 2>&1 &
op_pid=$!

# wait_phase PHASE TIMEOUT-SECONDS: until .status.phase is PHASE.
wait_phase() {
  local deadline=$((SECONDS + $2)) p
  while :; do
    p=$(k get zke zk -o jsonpath='{.status.phase} {.status.ready} {.status.leader}' 2>/dev/null || true)
    [[ $p == "$1 "* ]] && { echo "$p"; return 0; }
    kill -0 "$op_pid" 2>/dev/null || { echo "ensemble-smoke: the operator exited" >&2; tail -n 30 "$dir/operator.log" >&2; return 1; }
    [ $SECONDS -lt $deadline ] || { echo "ensemble-smoke: no $1 after $2 s (now: $p)" >&2; k get pods -o wide >&2; return 1; }
    sleep 0.5
  done
}

t=$(now)
k apply -f "$repo/deploy/examples/three-servers.yaml" >/dev/null
state=$(wait_phase ACTIVE 300)
echo "ensemble-smoke: ACTIVE ($state) in $(ms_since "$t") ms"
leader=$(k get zke zk -o jsonpath='{.status.leader}')

t=$(now)
k delete pod "$leader" --wait=false >/dev/null
state=$(wait_phase DEGRADED 60)
echo "ensemble-smoke: leader $leader deleted: DEGRADED ($state) after $(ms_since "$t") ms"
state=$(wait_phase ACTIVE 180)
echo "ensemble-smoke: ACTIVE again ($state) after $(ms_since "$t") ms"
echo "ensemble-smoke: OK"
