#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and for the end-to-end
# node kubelet, kube-proxy, CoreDNS and kube-router, from the upstream Go modules into
# ~/.cache/zooherd/bin/<component>-<version>/, once per version. `build-control-plane.sh kwok`
# builds KWOK instead (the scale benchmark's simulated nodes).
#
# Kubernetes' own go.mod replaces every k8s.io/<staging> module with ./staging/src/..., which
# a consumer cannot use; the wrapper module below requires k8s.io/kubernetes and replaces each
# staging module with its published v0.<minor>.<patch> tag instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/versions.env
. "$here/versions.env"
cache=${ZOOHERD_CACHE:-$HOME/.cache/zooherd}
export GOFLAGS=-buildvcs=false
jobs=${ZOOHERD_BUILD_JOBS:-2}

build_kubernetes() {
  local v=$KUBERNETES_VERSION out="$cache/bin/kubernetes-$KUBERNETES_VERSION"
  local bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
  local missing=()
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local work="$cache/src/kubernetes-wrapper-$v"
  mkdir -p "$work" "$out"
  (
    cd "$work"
    # One blank import per command's app package, so that `go mod tidy` records the checksum
    # of every module any of the commands needs (a main package cannot be imported).
    local tools
    tools=$(
      printf 'package main\n\nimport (\n'
      for b in "${bins[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s/app"\n' "$b"; done
      printf ')\n\nfunc main() {}\n'
    )
    if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes v$v" go.mod \
      || [ "$(cat tools.go 2>/dev/null)" != "$tools" ]; then
      rm -f go.mod go.sum
      go mod init zooherd.dev/kubernetes-wrapper >/dev/null 2>&1
      local modfile
      modfile=$(go mod download -json "k8s.io/kubernetes@v$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
      local minor=${v#*.}
      local staging_tag="v0.$minor"
      {
        echo "require k8s.io/kubernetes v$v"
        echo "replace ("
        # Every "k8s.io/x => ./staging/src/k8s.io/x" line in the published go.mod.
        sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_tag"'#p' "$modfile"
        echo ")"
      } >> go.mod
      printf '%s\n' "$tools" > tools.go
      go mod tidy >/dev/null
    fi
    local commit date ldflags
    commit=$(go mod download -json "k8s.io/kubernetes@v$v" | sed -n 's/.*"Hash": "\(.*\)".*/\1/p' | head -1)
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    local major=${v%%.*} minor_only=${v#*.}; minor_only=${minor_only%%.*}
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=v$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor_only"
      ldflags+=" -X $pkg.gitCommit=${commit:-unknown} -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    for b in "${missing[@]}"; do
      echo "building $b v$v" >&2
      go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$out/$b.tmp" "$out/$b"
    done
  )
}

build_etcd() {
  local v=$ETCD_VERSION out="$cache/bin/etcd-$ETCD_VERSION"
  [ -x "$out/etcd" ] && return 0
  local work="$cache/src/etcd-wrapper-$v"
  mkdir -p "$work" "$out"
  (
    cd "$work"
    if [ ! -f go.mod ]; then
      go mod init zooherd.dev/etcd-wrapper >/dev/null 2>&1
      printf 'package main\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n\nfunc main() {}\n' > tools.go
      go get "go.etcd.io/etcd/server/v3@v$v" >/dev/null 2>&1
      go mod tidy >/dev/null
    fi
    # The module proxy records the commit only when it fetched the module from its VCS.
    local sha ldflags="-s -w"
    sha=$(go mod download -json "go.etcd.io/etcd/server/v3@v$v" | sed -n 's/.*"Hash": "\(.*\)".*/\1/p' | head -1)
    [ -z "$sha" ] || ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${sha:0:7}"
    echo "building etcd v$v" >&2
    go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$out/etcd.tmp" "$out/etcd"
  )
}

# CoreDNS, the cluster DNS of the end-to-end node: its main package is the module's root.
build_coredns() {
  local v=$COREDNS_VERSION out="$cache/bin/coredns-$COREDNS_VERSION"
  [ -x "$out/coredns" ] && return 0
  mkdir -p "$out"
  echo "building coredns v$v" >&2
  GOBIN=$out go install -p "$jobs" -trimpath -ldflags '-s -w' "github.com/coredns/coredns@v$v"
}

# kube-router, the end-to-end node's NetworkPolicy enforcement: its go.mod has no replace
# directives, so `go install` builds it at the pinned version with the module's own go.sum.
build_kube_router() {
  local v=$KUBE_ROUTER_VERSION out="$cache/bin/kube-router-$KUBE_ROUTER_VERSION"
  [ -x "$out/kube-router" ] && return 0
  mkdir -p "$out"
  echo "building kube-router v$v" >&2
  GOBIN=$out go install -p "$jobs" -trimpath \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$v" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$v"
}

# KWOK, the scale benchmark's simulated nodes: `go install` at the pinned version, like
# kube-router. Not part of the default build: only `build-control-plane.sh kwok` builds it.
# KWOK does nothing without stages (what happens to a node or a pod, and when): stages.yaml
# gathers the module's own "fast" ones (nodes Ready at once, heartbeats through their Lease;
# pods Running and Ready at once, with an IP).
build_kwok() {
  local v=$KWOK_VERSION out="$cache/bin/kwok-$KWOK_VERSION"
  [ -x "$out/kwok" ] && [ -s "$out/stages.yaml" ] && return 0
  mkdir -p "$out"
  echo "building kwok v$v" >&2
  GOBIN=$out go install -p "$jobs" -trimpath -ldflags '-s -w' "sigs.k8s.io/kwok/cmd/kwok@v$v"
  local module
  module=$(go mod download -json "sigs.k8s.io/kwok@v$v" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  local stage
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$module/kustomize/stage/$stage.yaml"
  done > "$out/stages.yaml.tmp"
  mv "$out/stages.yaml.tmp" "$out/stages.yaml"
}

case "${1:-all}" in
  kwok) build_kwok ;;
  all)
    build_etcd
    build_kubernetes
    build_coredns
    build_kube_router
    ;;
  *) echo "usage: $0 [all|kwok]" >&2; exit 2 ;;
esac
