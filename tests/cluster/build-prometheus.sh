#!/usr/bin/env bash
# Builds promtool and the Prometheus server from the Prometheus Go module
# (github.com/prometheus/prometheus, whose v0.3MM.P tags are Prometheus v3.MM.P) into
# ~/.cache/zooherd/bin/prometheus-<module version>/, each once per version. The tests check and
# unit-test the chart's alert rules with promtool (tests/monitoring.rs); the end-to-end tier
# runs the server against the local cluster (tests/support/src/prometheus.rs).
#
# A wrapper module requires the pinned Prometheus module, so that the build resolves with the
# checksums `go mod tidy` recorded once, as build-control-plane.sh does for etcd and Kubernetes.
# The build tag remove_all_sd leaves out the service discoveries neither needs (every cloud's
# SDK); enable_kubernetes_sd keeps the server's Kubernetes discovery (promtool links it anyway,
# importing it directly). The server is built without its web UI's assets (no builtinassets
# tag): the tests use its HTTP API only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/versions.env
. "$here/versions.env"
cache=${ZOOHERD_CACHE:-$HOME/.cache/zooherd}
export GOFLAGS=-buildvcs=false
jobs=${ZOOHERD_BUILD_JOBS:-2}
v=$PROMETHEUS_MODULE_VERSION
out="$cache/bin/prometheus-$v"
work="$cache/src/prometheus-wrapper-$v"

# build NAME TAGS: cmd/NAME of the module into $out/NAME, unless it is there.
build() {
  local name=$1 tags=$2
  [ -x "$out/$name" ] && return 0
  mkdir -p "$work" "$out"
  (
    cd "$work"
    # A main package cannot be imported by code that is compiled; behind the `tools` build
    # tag it never is, and `go mod tidy` (which ignores build tags) still records every
    # module both commands need.
    local tools
    tools=$(printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/prometheus/prometheus/cmd/prometheus"\n\t_ "github.com/prometheus/prometheus/cmd/promtool"\n)\n')
    if [ ! -f go.mod ] || ! grep -q "github.com/prometheus/prometheus v$v" go.mod \
      || [ "$(cat tools.go 2>/dev/null)" != "$tools" ]; then
      rm -f go.mod go.sum
      go mod init zooherd.dev/prometheus-wrapper >/dev/null 2>&1
      printf '%s\n' "$tools" > tools.go
      go get "github.com/prometheus/prometheus@v$v" >/dev/null 2>&1
      go mod tidy >/dev/null
    fi
    local sha ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
    sha=$(go mod download -json "github.com/prometheus/prometheus@v$v" | sed -n 's/.*"Hash": "\(.*\)".*/\1/p' | head -1)
    ldflags+=" -X github.com/prometheus/common/version.Revision=${sha:-unknown}"
    ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
    ldflags+=" -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
    echo "building $name $PROMETHEUS_VERSION (module v$v)" >&2
    go build -p "$jobs" -trimpath -tags "$tags" -ldflags "$ldflags" \
      -o "$out/$name.tmp" "github.com/prometheus/prometheus/cmd/$name"
    mv "$out/$name.tmp" "$out/$name"
  )
}

build promtool netgo,remove_all_sd
build prometheus netgo,remove_all_sd,enable_kubernetes_sd
