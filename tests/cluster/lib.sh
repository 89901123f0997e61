# shellcheck shell=bash
# Helpers shared by the scripts of tests/cluster and tests/e2e. Source it, e.g.
#   # shellcheck source=SCRIPTDIR/lib.sh
#   . "$here/lib.sh"
# The script sets, before it calls them:
#   log_prefix   how its messages start: log_prefix=node gives "node: ..." (log, die)
#   started      $(date +%s%N) when its clock starts (elapsed_ms)
#   dir          the control plane's directory, which holds the admin kubeconfig (k)

# log MESSAGE...: MESSAGE on stderr, after the script's prefix.
log() { echo "$log_prefix: $*" >&2; }

# die MESSAGE...: log MESSAGE and exit 1.
die() { log "$*"; exit 1; }

# elapsed_ms: the milliseconds since $started.
elapsed_ms() { echo $(( ($(date +%s%N) - started) / 1000000 )); }

# k ARGS...: kubectl as the control plane's admin.
k() { "$ZOOHERD_KUBECTL" --kubeconfig "$dir/kubeconfig" "$@"; }
