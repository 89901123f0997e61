#!/usr/bin/env bash
# Runs a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) in the foreground, until it gets SIGTERM, SIGINT or SIGHUP.
#
#   bash tests/cluster/control-plane.sh run DIR
#
# DIR (created if missing, should be empty) receives:
#   kubeconfig   admin kubeconfig (client certificate in group system:masters), for kubectl,
#                helm and kube::Client
#   pki/         the CA, serving and client certificates and the service-account key pair
#   logs/        one log per component
#   etcd/        etcd's data
#   ready        written once /readyz of the API server and /healthz of the controller
#                manager and the scheduler answer "ok"; holds the API server's URL
#
# Ports: the environment variables ZOOHERD_CP_ETCD_PORT, ZOOHERD_CP_ETCD_PEER_PORT,
# ZOOHERD_CP_APISERVER_PORT, ZOOHERD_CP_KCM_PORT and ZOOHERD_CP_SCHEDULER_PORT choose them
# (tests/support/src/control_plane.rs finds free ones by binding port 0); the ones unset are
# picked here among ports no socket listens on. Everything listens on 127.0.0.1 only.
#
# ZOOHERD_CP_ADVERTISE_ADDRESS (optional): the address the API server publishes in the
# Endpoints of Service default/kubernetes, for pods of a node (tests/e2e/node.sh) that forwards
# it to this API server. Unset, the Service has no Endpoints (nothing in a pod can reach it).
#
# ZOOHERD_CP_APISERVER_FLAGS, ZOOHERD_CP_KCM_FLAGS (optional): extra flags for kube-apiserver
# and kube-controller-manager, separated by spaces.
#
# Every component runs with PR_SET_PDEATHSIG=SIGKILL (setpriv), so it dies with this script
# even when the script is killed with SIGKILL; run this script the same way (the Rust support
# spawns it with pdeathsig from a long-lived thread) and nothing outlives the test run.
# If any component exits, the others are stopped, the tail of every log is printed to stderr
# and the script exits 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/env.sh
. "$here/env.sh"
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"
log_prefix=control-plane

usage() {
  echo "usage: $0 run DIR" >&2
  exit 2
}
if [ $# -ne 2 ] || [ "$1" != run ]; then usage; fi
dir=$2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pki=$dir/pki
logs=$dir/logs
mkdir -p "$pki" "$logs" "$dir/etcd"
chmod 700 "$dir/etcd"
rm -f "$dir/ready"

for bin in "$ZOOHERD_ETCD" "$ZOOHERD_KUBE_APISERVER" "$ZOOHERD_KUBE_CONTROLLER_MANAGER" "$ZOOHERD_KUBE_SCHEDULER"; do
  if [ ! -x "$bin" ]; then
    log "$bin is missing; run tests/cluster/setup.sh first"
    exit 1
  fi
done

started=$(date +%s%N)

# ---- ports -------------------------------------------------------------------------------
chosen=" "
# pick_port VAR: sets VAR to a port no socket listens on (and not picked before).
pick_port() {
  local p tries=0
  while [ $tries -lt 200 ]; do
    tries=$((tries + 1))
    # Below the kernel's ephemeral range (32768+), so no outgoing connection takes it meanwhile.
    p=$((20000 + RANDOM % 12000))
    case "$chosen" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
      chosen+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  log "found no free port"
  return 1
}
etcd_port=${ZOOHERD_CP_ETCD_PORT:-}
etcd_peer_port=${ZOOHERD_CP_ETCD_PEER_PORT:-}
apiserver_port=${ZOOHERD_CP_APISERVER_PORT:-}
kcm_port=${ZOOHERD_CP_KCM_PORT:-}
scheduler_port=${ZOOHERD_CP_SCHEDULER_PORT:-}
for var in etcd_port etcd_peer_port apiserver_port kcm_port scheduler_port; do
  [ -n "${!var}" ] || pick_port "$var"
done
server=https://127.0.0.1:$apiserver_port

# ---- PKI ---------------------------------------------------------------------------------
# EC P-256 keys: generating them takes milliseconds, RSA would take a noticeable part of startup.
# openssl's messages go to logs/pki.log. (set -e does not apply inside `if`: every step checks.)
if ! (
  cd "$pki" || exit 1
  umask 077
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout ca.key -out ca.crt -days 7 -subj "/CN=zooherd-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>>"$logs/pki.log" || exit 1
  issue() { # name subject extensions
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$1.key" -out "$1.csr" -subj "$2" 2>>"$logs/pki.log" || return 1
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "$3" > "$1.ext" || return 1
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -days 7 -extfile "$1.ext" -out "$1.crt" 2>>"$logs/pki.log" || return 1
    rm -f "$1.csr" "$1.ext"
  }
  issue apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" || exit 1
  issue admin "/O=system:masters/CN=zooherd-admin" "extendedKeyUsage=clientAuth" || exit 1
  issue controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth" || exit 1
  issue scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth" || exit 1
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key 2>>"$logs/pki.log" || exit 1
  openssl pkey -in sa.key -pubout -out sa.pub 2>>"$logs/pki.log" || exit 1
); then
  log "generating the certificates with openssl failed:"
  cat "$logs/pki.log" >&2
  exit 1
fi

b64() { base64 -w0 < "$1"; }
kubeconfig() { # path user cert key
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: zooherd-test
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$3")
    client-key-data: $(b64 "$4")
contexts:
- name: zooherd-test
  context:
    cluster: zooherd-test
    user: $2
    namespace: default
current-context: zooherd-test
EOF
  chmod 600 "$1"
}
kubeconfig "$dir/kubeconfig" zooherd-admin "$pki/admin.crt" "$pki/admin.key"
kubeconfig "$dir/controller-manager.kubeconfig" system:kube-controller-manager \
  "$pki/controller-manager.crt" "$pki/controller-manager.key"
kubeconfig "$dir/scheduler.kubeconfig" system:kube-scheduler "$pki/scheduler.crt" "$pki/scheduler.key"

# ---- processes ---------------------------------------------------------------------------
declare -A pids=()
stopping=0

# The data is thrown away with DIR, so there is nothing to shut down gracefully; and a
# graceful kube-apiserver waits for an etcd that may already be gone.
stop_all() {
  local name
  for name in "${!pids[@]}"; do kill -KILL "${pids[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

tails() {
  local f
  for f in "$logs"/*.log; do
    [ -f "$f" ] || continue
    echo "----- last lines of $f -----" >&2
    tail -n 40 "$f" >&2
  done
}

# ZOOHERD_CP_QUIET=1 (set by tests/support/src/control_plane.rs, which reports the logs itself)
# leaves out the tails.
fail() {
  log "$*"
  stopping=1
  stop_all
  [ "${ZOOHERD_CP_QUIET:-}" = 1 ] || tails
  exit 1
}

on_signal() {
  stopping=1
  stop_all
  exit 0
}
trap on_signal TERM INT HUP

start() { # name args...
  local name=$1
  shift
  setpriv --pdeathsig KILL -- "$@" > "$logs/$name.log" 2>&1 &
  pids[$name]=$!
}

# get URL [client-cert-args...]: succeeds when the endpoint answers exactly "ok".
probe() {
  local url=$1
  shift
  [ "$(curl -s --max-time 2 "$@" "$url" 2>/dev/null)" = ok ]
}

wait_until() { # description timeout-seconds command...
  local what=$1 timeout=$2 name
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    for name in "${!pids[@]}"; do
      kill -0 "${pids[$name]}" 2>/dev/null || fail "$name exited while waiting for $what"
    done
    [ $SECONDS -lt $deadline ] || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
}

etcd_healthy() {
  curl -s --max-time 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'
}
admin_tls=(--cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
apiserver_ready() { probe "$server/readyz" "${admin_tls[@]}"; }
# Their serving certificates are self-signed; /healthz needs no credentials.
controller_manager_healthy() { probe "https://127.0.0.1:$kcm_port/healthz" -k; }
scheduler_healthy() { probe "https://127.0.0.1:$scheduler_port/healthz" -k; }

start etcd "$ZOOHERD_ETCD" \
  --name=zooherd-test \
  --data-dir="$dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="zooherd-test=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync=true \
  --log-level=warn
wait_until "etcd /health" 120 etcd_healthy

# The Endpoints of Service default/kubernetes may not hold a loopback address, and this
# API server has only 127.0.0.1 (the host has no default route): without an address that a
# node forwards here, keep no Endpoints for it.
# Extra flags, split on spaces (the scale benchmark raises the controller manager's API rate).
read -r -a apiserver_flags <<< "${ZOOHERD_CP_APISERVER_FLAGS:-}"
read -r -a kcm_flags <<< "${ZOOHERD_CP_KCM_FLAGS:-}"
if [ -n "${ZOOHERD_CP_ADVERTISE_ADDRESS:-}" ]; then
  advertise=(--advertise-address="$ZOOHERD_CP_ADVERTISE_ADDRESS" --endpoint-reconciler-type=lease)
else
  advertise=(--advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
fi
start kube-apiserver "$ZOOHERD_KUBE_APISERVER" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address=127.0.0.1 \
  --secure-port="$apiserver_port" \
  "${advertise[@]}" \
  --kubelet-preferred-address-types=InternalIP \
  --cert-dir="$dir/kube-apiserver" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=RBAC \
  --allow-privileged=true \
  --profiling=false \
  "${apiserver_flags[@]}"
wait_until "kube-apiserver /readyz" 180 apiserver_ready
readyz_ms=$(elapsed_ms)

# The garbage collector and the statefulset controller are among the default controllers ("*").
start kube-controller-manager "$ZOOHERD_KUBE_CONTROLLER_MANAGER" \
  --kubeconfig="$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
  --authentication-skip-lookup=true \
  --bind-address=127.0.0.1 \
  --secure-port="$kcm_port" \
  --cert-dir="$dir/kube-controller-manager" \
  --controllers='*' \
  --service-account-private-key-file="$pki/sa.key" \
  --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$pki/ca.crt" \
  --cluster-signing-key-file="$pki/ca.key" \
  --leader-elect=false \
  --profiling=false \
  "${kcm_flags[@]}"
start kube-scheduler "$ZOOHERD_KUBE_SCHEDULER" \
  --kubeconfig="$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
  --authentication-skip-lookup=true \
  --bind-address=127.0.0.1 \
  --secure-port="$scheduler_port" \
  --cert-dir="$dir/kube-scheduler" \
  --leader-elect=false \
  --profiling=false
wait_until "kube-controller-manager /healthz" 120 controller_manager_healthy
wait_until "kube-scheduler /healthz" 120 scheduler_healthy

echo "$server" > "$dir/ready.tmp"
mv "$dir/ready.tmp" "$dir/ready"
echo "control-plane: ready in $(elapsed_ms) ms (kube-apiserver /readyz ok after $readyz_ms ms) at $server; kubeconfig $dir/kubeconfig"

# Stay in the foreground until a signal (trap above) or until a component exits.
while :; do
  wait -n || true
  [ $stopping -eq 0 ] || exit 0
  for name in "${!pids[@]}"; do
    kill -0 "${pids[$name]}" 2>/dev/null || fail "$name exited"
  done
done
