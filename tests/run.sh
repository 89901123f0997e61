#!/usr/bin/env bash
# The project's test command: bash tests/run.sh
#   1. tests/cluster/setup.sh: etcd, Kubernetes, kubectl, helm, promtool, prometheus and ZooKeeper into ~/.cache/zooherd
#      (cached by version; the first run builds the control plane from source)
#   2. cargo fmt --all --check; cargo clippy --workspace --all-targets -- -D warnings (the package and
#      tests/support, the tests' shared crate)
#   3. one control plane for the whole run (ZOOHERD_TEST_KUBECONFIG); cargo test --all-targets
# Arguments, if any, replace --all-targets in the cargo test command lines, e.g.
# `bash tests/run.sh --test smoke_zookeeper --test smoke_control_plane`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash tests/cluster/setup.sh
# Paths of the binaries and of the ZooKeeper home, for the tests.
# shellcheck source=SCRIPTDIR/cluster/env.sh
. tests/cluster/env.sh

targets=("$@")
[ $# -gt 0 ] || targets=(--all-targets)

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Build the tests before starting the control plane, so that it does not wait on the compiler.
cargo test --no-run "${targets[@]}"
# The end-to-end tier's images, from deploy/images/*/Dockerfile (cached by their inputs): built
# here so that no test waits on them. The end-to-end tests run as root only.
if [ "$(id -u)" = 0 ] && { [ $# -eq 0 ] || [[ " $* " == *" e2e "* ]]; }; then
  bash tests/e2e/cluster.sh images
fi

# One control plane shared by every test binary; the tests isolate themselves by namespace.
# It dies with this script: setpriv gives it PR_SET_PDEATHSIG, and the trap stops it.
cp_dir=$(mktemp -d "${TMPDIR:-/tmp}/zooherd-run-control-plane.XXXXXX")
setpriv --pdeathsig KILL bash tests/cluster/control-plane.sh run "$cp_dir" \
  > "$cp_dir/control-plane.log" 2>&1 &
cp_pid=$!
stop_control_plane() {
  kill -TERM "$cp_pid" 2>/dev/null || true
  wait "$cp_pid" 2>/dev/null || true
  rm -rf "$cp_dir"
}
trap stop_control_plane EXIT
until [ -f "$cp_dir/ready" ]; do
  if ! kill -0 "$cp_pid" 2>/dev/null; then
    echo "tests/run.sh: the control plane did not start:" >&2
    cat "$cp_dir/control-plane.log" >&2
    exit 1
  fi
  sleep 0.2
done
cat "$cp_dir/control-plane.log"
export ZOOHERD_TEST_KUBECONFIG=$cp_dir/kubeconfig

cargo test "${targets[@]}"
