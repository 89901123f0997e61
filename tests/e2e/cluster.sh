#!/usr/bin/env bash
# A local Kubernetes cluster that really runs Zooherd: the control plane of
# tests/cluster/control-plane.sh, one node or more that run pods (node.sh: kubelet, containerd,
# runc, CNI bridge, kube-proxy, CoreDNS, kube-router enforcing NetworkPolicies), local
# PersistentVolumes behind a default StorageClass (spread over the nodes, each bound to its
# node), and the
# operator installed with Helm from charts/zooherd, with the server and operator images built
# from deploy/images/*/Dockerfile (dockerfiles.sh, cached by their inputs). Nothing is pulled
# from a registry.
#
#   bash tests/e2e/cluster.sh images
#       builds the images unless $ZOOHERD_CACHE/e2e-images has those of the same inputs
#       (tests/run.sh does this before the tests, so that no test waits on a cold build)
#   bash tests/e2e/cluster.sh run DIR
#       brings it all up, writes DIR/cluster-ready, then stays in the foreground until SIGTERM,
#       SIGINT or SIGHUP, or until the control plane or the node fails; then tears it all down
#       (DIR stays). The end-to-end tests run it with a parent-death signal of SIGTERM.
#   bash tests/e2e/cluster.sh down DIR
#       stops a `run` started in the background (DIR/cluster.pid) and waits until it is down.
#
# DIR receives kubeconfig (admin), logs (control-plane.log, node-<i>/logs, operator logs with
# kubectl), pv/ (the volumes' directories; a Released volume is wiped and made Available again)
# and images.env (the image references: server, operator, and the toolbox of image.sh).
#
# Environment: ZOOHERD_E2E_VOLUMES (PersistentVolumes to create, default 24), ZOOHERD_E2E_NODES
# (nodes, default 1: node i is node.sh's index i, named 10.212.<i>.2 and labelled
# topology.kubernetes.io/zone=zone-<i>; the operator runs on node 0, and only node 0's end ends
# the cluster: a test may stop the others with `ZOOHERD_NODE_INDEX=<i> bash node.sh stop DIR`).
# Needs root (network namespaces, cgroups, containerd) and what tests/cluster/setup.sh installs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/env.sh
. "$here/../cluster/env.sh"
# shellcheck source=../cluster/lib.sh
. "$here/../cluster/lib.sh"
log_prefix=cluster

usage() { die "usage: $0 run DIR | down DIR | images"; }

# The node's address: the control plane advertises it for Service default/kubernetes, and
# node.sh forwards it to the API server, so the operator's pods reach the API server.
node_ip=10.212.0.2
release=zooherd
release_namespace=zooherd-system

down() {
  local dir=$1 pid
  [ -f "$dir/cluster.pid" ] || { echo "cluster: nothing runs in $dir"; return 0; }
  pid=$(cat "$dir/cluster.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$pid" 2>/dev/null || die "process $pid did not stop within 60 s"
  rm -f "$dir/cluster.pid"
}

# What a local volume provisioner does for Released volumes: a PersistentVolume whose claim
# was deleted (its ensemble's namespace, or a member scaled away) has its directory wiped and its
# claimRef removed, so that it is Available for the next claim. Without this the volumes are
# used once and, after a few ensembles, new servers wait for a volume for ever. Only the
# cluster's own volumes (directories under DIR/pv/) are touched. The watch restarts if it ends
# (the API server closes watches after a while). SIGTERM ends it (no trap: a subshell dies of
# it at once), and its kubectl dies with it (parent-death signal).
recycle_released_volumes() {
  while :; do
    setpriv --pdeathsig KILL "$ZOOHERD_KUBECTL" --kubeconfig "$dir/kubeconfig" get pv --watch \
      -o jsonpath='{.metadata.name} {.status.phase} {.spec.local.path}{"\n"}' 2>/dev/null \
      | while read -r name phase path; do
        [ "$phase" = Released ] || continue
        case $path in "$dir/pv/"*) ;; *) continue ;; esac
        # Not Available unless wiped: a server must never find another ensemble's data.
        find "$path" -mindepth 1 -delete \
          && k patch pv "$name" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' \
            >/dev/null \
          && log "$name released, wiped and made Available"
      done || true
    sleep 1
  done
}

# image_key: the hash of everything the two images are built from.
image_key() {
  {
    (cd "$repo" && find deploy/images Cargo.toml Cargo.lock src benches tests/support \
      tests/e2e/dockerfiles.sh tests/cluster/versions.env -type f -not -path '*/target/*' \
      | LC_ALL=C sort | xargs sha256sum)
    rustc --version
  } | sha256sum | cut -c1-12
}

# images: the pause image and the images of deploy/images/*/Dockerfile, built unless
# $ZOOHERD_CACHE/e2e-images already has those of the same inputs (image_key). One build at a
# time on this machine (test runs share buildah's storage): the lock is held in a subshell.
images() {
  local images=$ZOOHERD_CACHE/e2e-images key
  key=$(image_key)
  mkdir -p "$images"
  (
    flock 9
    [ -f "$images/pause-$KUBERNETES_VERSION.tar" ] \
      || bash "$here/image.sh" pause "$images/pause-$KUBERNETES_VERSION.tar"
    [ -f "$images/toolbox.tar" ] || bash "$here/image.sh" toolbox "$images/toolbox.tar"
    [ -f "$images/$key/report.txt" ] && exit 0
    # Keep only the images of these inputs: every change to the source makes new ones.
    find "$images" -mindepth 1 -maxdepth 1 \( -type d -o -name 'zookeeper-*.tar' -o -name 'operator-*.tar' \) \
      -exec rm -rf {} +
    bash "$here/dockerfiles.sh" build "$images/$key.tmp" "zooherd.local/zookeeper:$key" \
      "zooherd.local/zooherd:$key" >&2
    mv "$images/$key.tmp" "$images/$key"
  ) 9> "$images/.lock"
}

run() {
  # Globals, not locals: the EXIT trap's teardown runs after run() has returned or died, when
  # its locals are gone (set -u would then stop the teardown before it stops the node).
  dir=$1
  [ "$(id -u)" = 0 ] || die "needs root: the node uses network namespaces, cgroups and containerd"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/cluster-ready" ] || die "$dir already holds a cluster"
  echo $$ > "$dir/cluster.pid"
  cp_pid='' nodes_started=0 recycler_pid=''
  node_count=${ZOOHERD_E2E_NODES:-1}
  case $node_count in '' | *[!0-9]* | 0) die "ZOOHERD_E2E_NODES must be 1 or more" ;; esac
  started=$(date +%s%N)

  teardown() {
    trap - EXIT INT TERM HUP
    rm -f "$dir/cluster-ready"
    [ -z "$recycler_pid" ] || kill -TERM "$recycler_pid" 2>/dev/null || true
    local i
    for i in $(seq 0 $((nodes_started - 1))); do
      ZOOHERD_NODE_INDEX=$i bash "$here/node.sh" stop "$dir" >&2 || true
    done
    if [ -n "$cp_pid" ]; then
      kill -TERM "$cp_pid" 2>/dev/null || true
      wait "$cp_pid" 2>/dev/null || true
    fi
    rm -f "$dir/cluster.pid"
    log "down"
  }
  trap 'teardown; exit 0' INT TERM HUP
  trap teardown EXIT

  # ---- images: deploy/images/*/Dockerfile, built with buildah (cached by their inputs) ----
  local images=$ZOOHERD_CACHE/e2e-images key
  images
  key=$(image_key)
  local pause_tar=$images/pause-$KUBERNETES_VERSION.tar
  local server_ref=zooherd.local/zookeeper:$key operator_ref=zooherd.local/zooherd:$key
  printf 'ZOOHERD_E2E_SERVER_IMAGE=%s\nZOOHERD_E2E_OPERATOR_IMAGE=%s\nZOOHERD_E2E_TOOLBOX_IMAGE=%s\n' \
    "$server_ref" "$operator_ref" zooherd.local/toolbox:busybox > "$dir/images.env"
  log "images ready after $(elapsed_ms) ms"

  # ---- control plane and node -----------------------------------------------------------
  ZOOHERD_CP_ADVERTISE_ADDRESS=$node_ip setpriv --pdeathsig KILL \
    bash "$repo/tests/cluster/control-plane.sh" run "$dir" > "$dir/control-plane.log" 2>&1 &
  cp_pid=$!
  until [ -f "$dir/ready" ]; do
    kill -0 "$cp_pid" 2>/dev/null || { tail -n 40 "$dir/control-plane.log" >&2; die "the control plane exited"; }
    sleep 0.2
  done
  local i nodes=()
  for i in $(seq 0 $((node_count - 1))); do
    nodes_started=$((i + 1))
    ZOOHERD_NODE_INDEX=$i bash "$here/node.sh" start "$dir" "$pause_tar" \
      "$images/$key/zookeeper.tar" "$images/$key/operator.tar" "$images/toolbox.tar" >&2
    nodes+=("10.212.$i.2")
    k get node "10.212.$i.2" >/dev/null || die "node $i did not register as 10.212.$i.2"
    k label node "10.212.$i.2" "topology.kubernetes.io/zone=zone-$i" >/dev/null
  done
  log "$node_count node(s) ready after $(elapsed_ms) ms"

  # ---- storage: a default StorageClass without a provisioner, and local volumes ---------
  {
    cat <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: zooherd-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
    local node
    for i in $(seq 0 $((${ZOOHERD_E2E_VOLUMES:-24} - 1))); do
      node=${nodes[$((i % node_count))]}
      mkdir -p "$dir/pv/pv-$i"
      cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-$i}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: zooherd-local
  local: {path: $dir/pv/pv-$i}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: ["$node"]}]}]
EOF
    done
  } | k apply -f - >/dev/null
  recycle_released_volumes &
  recycler_pid=$!

  # ---- the operator, with Helm, as a user installs it -----------------------------------
  HELM_CONFIG_HOME=$dir/helm/config HELM_CACHE_HOME=$dir/helm/cache HELM_DATA_HOME=$dir/helm/data \
    "$ZOOHERD_HELM" --kubeconfig "$dir/kubeconfig" install "$release" "$repo/charts/zooherd" \
    --namespace "$release_namespace" --create-namespace \
    --set "image.repository=${operator_ref%:*},image.tag=$key" \
    --set "serverImage.repository=${server_ref%:*},serverImage.tag=$key" \
    --set-string "nodeSelector.kubernetes\.io/hostname=$node_ip" \
    --wait --timeout 5m >&2 \
    || { k -n "$release_namespace" describe pods >&2 || true; die "helm install failed"; }

  touch "$dir/cluster-ready"
  log "ready in $(elapsed_ms) ms: kubectl --kubeconfig $dir/kubeconfig get zke -A"

  # ---- stay up until a signal, or until the control plane or the node ends --------------
  while :; do
    sleep 1 &
    wait $! || true
    kill -0 "$cp_pid" 2>/dev/null || die "the control plane exited (see $dir/control-plane.log)"
    [ -f "$dir/node-0/pid" ] && kill -0 "$(cat "$dir/node-0/pid")" 2>/dev/null \
      || die "the node exited (see $dir/node-0/logs)"
  done
}

case ${1:-} in
  run) [ $# -eq 2 ] || usage; run "$2" ;;
  images) [ $# -eq 1 ] || usage; images ;;
  down) [ $# -eq 2 ] || usage; down "$2" ;;
  *) usage ;;
esac
