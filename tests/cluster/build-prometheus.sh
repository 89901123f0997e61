#!/usr/bin/env bash
# Builds promtool from the Prometheus Go module (github.com/prometheus/prometheus, whose
# v0.3MM.P tags are Prometheus v3.MM.P) into ~/.cache/zooherd/bin/prometheus-<module version>/,
# once per version. The tests check and unit-test the chart's alert rules with it
# (tests/alert_rules.rs).
#
# A wrapper module requires the pinned Prometheus module, so that the build resolves with the
# checksums `go mod tidy` recorded once, as build-control-plane.sh does for etcd and Kubernetes.
# The build tag remove_all_sd leaves out the service discoveries promtool does not need (every
# cloud's SDK); promtool still links the Kubernetes discovery, which it imports directly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/versions.env
. "$here/versions.env"
cache=${ZOOHERD_CACHE:-$HOME/.cache/zooherd}
export GOFLAGS=-buildvcs=false
jobs=${ZOOHERD_BUILD_JOBS:-2}

build_promtool() {
  local v=$PROMETHEUS_MODULE_VERSION out="$cache/bin/prometheus-$PROMETHEUS_MODULE_VERSION"
  [ -x "$out/promtool" ] && return 0
  local work="$cache/src/prometheus-wrapper-$v"
  mkdir -p "$work" "$out"
  (
    cd "$work"
    # A main package cannot be imported by code that is compiled; behind the `tools` build
    # tag it never is, and `go mod tidy` (which ignores build tags) still records every
    # module promtool needs.
    local tools
    tools=$(printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/prometheus/prometheus/cmd/promtool"\n')
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
    echo "building promtool $PROMETHEUS_VERSION (module v$v)" >&2
    go build -p "$jobs" -trimpath -tags netgo,remove_all_sd -ldflags "$ldflags" \
      -o "$out/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
    mv "$out/promtool.tmp" "$out/promtool"
  )
}

build_promtool
