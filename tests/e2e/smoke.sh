#!/usr/bin/env bash
# End-to-end smoke test of the local node: control plane + node + images + pods, then teardown.
#
#   bash tests/e2e/smoke.sh [DIR]      (DIR default: a new temporary directory, removed at the end
#                                       unless ZOOHERD_E2E_KEEP=1)
#
# Checks, with timings: a Pod of a locally built image (no registry) is scheduled, gets an IP on
# the node's CNI bridge, passes an exec readiness probe and answers the host on its pod IP;
# kubectl logs and exec work; a ClusterIP Service answers from another pod (kube-proxy); the
# headless Service's per-pod DNS names resolve inside a pod (CoreDNS, when built); a
# StatefulSet binds local PersistentVolumes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../cluster/env.sh
. "$here/../cluster/env.sh"
dir=${1:-$(mktemp -d /tmp/zooherd-e2e-XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
images=$ZOOHERD_CACHE/e2e-images
k() { "$ZOOHERD_KUBECTL" --kubeconfig "$dir/kubeconfig" "$@"; }
now() { date +%s%N; }
ms_since() { echo $(( ($(now) - $1) / 1000000 )); }

cp_pid=
cleanup() {
  local rc=$?
  bash "$here/node.sh" stop "$dir" >/dev/null 2>&1 || true
  [ -z "$cp_pid" ] || { kill -TERM "$cp_pid" 2>/dev/null; wait "$cp_pid" 2>/dev/null || true; }
  if [ $rc -ne 0 ]; then
    echo "smoke: FAILED; logs in $dir" >&2
  elif [ "${ZOOHERD_E2E_KEEP:-}" != 1 ]; then
    rm -rf "$dir"
  fi
}
trap cleanup EXIT

# Images: built once into the cache.
t=$(now)
[ -f "$images/pause.tar" ] || bash "$here/image.sh" pause "$images/pause.tar"
[ -f "$images/demo.tar" ] || bash "$here/image.sh" demo "$images/demo.tar"
echo "smoke: images ready in $(ms_since "$t") ms"

t=$(now)
setsid bash "$here/../cluster/control-plane.sh" run "$dir" > "$dir/control-plane.out" 2>&1 &
cp_pid=$!
for _ in $(seq 600); do [ -f "$dir/ready" ] && break; kill -0 $cp_pid || { cat "$dir/control-plane.out"; exit 1; }; sleep 0.2; done
[ -f "$dir/ready" ] || { echo "smoke: control plane not ready" >&2; exit 1; }
echo "smoke: control plane ready in $(ms_since "$t") ms"

t=$(now)
bash "$here/node.sh" start "$dir" "$images/pause.tar" "$images/demo.tar"
echo "smoke: node ready in $(ms_since "$t") ms"
node=$(k get nodes -o jsonpath='{.items[0].metadata.name}')

# The default ServiceAccount must exist before pods that mount its token are admitted.
for _ in $(seq 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

t=$(now)
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: demo, labels: {app: demo}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: demo
    image: zooherd.local/demo:0.1
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
    readinessProbe:
      exec: {command: ["/bin/sh", "-c", "nc 127.0.0.1 8080 </dev/null | grep -q hello"]}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: demo}
spec:
  selector: {app: demo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: demo-hs}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: demo}
  ports: [{port: 8080}]
EOF
k wait --for=condition=Ready pod/demo --timeout=120s >/dev/null
echo "smoke: pod Ready (exec probe) in $(ms_since "$t") ms"
ip=$(k get pod demo -o jsonpath='{.status.podIP}')
echo "smoke: pod IP $ip on node $node"
answer=$(busybox nc -w 3 "$ip" 8080 </dev/null)
[[ $answer == "hello from demo" ]] || { echo "smoke: pod did not answer the host: '$answer'" >&2; exit 1; }
echo "smoke: host -> pod IP ok"
k logs demo | grep -q 'listening on 8080' || { echo "smoke: kubectl logs failed" >&2; exit 1; }
echo "smoke: kubectl logs ok"
[ "$(k exec demo -- hostname)" = demo ] || { echo "smoke: kubectl exec failed" >&2; exit 1; }
echo "smoke: kubectl exec ok"

k run client --image=zooherd.local/demo:0.1 --image-pull-policy=Never --restart=Never \
  --command -- sh -c 'sleep 100000' >/dev/null
k wait --for=condition=Ready pod/client --timeout=60s >/dev/null
cip=$(k get svc demo -o jsonpath='{.spec.clusterIP}')
for _ in $(seq 20); do
  answer=$(k exec client -- sh -c "nc -w 2 $cip 80 </dev/null" 2>/dev/null || true)
  [ "$answer" = "hello from demo" ] && break
  sleep 0.5
done
if [ "$answer" = "hello from demo" ]; then
  echo "smoke: pod -> ClusterIP $cip ok (kube-proxy)"
else
  echo "smoke: ClusterIP $cip did not answer: '$answer'" >&2
  exit 1
fi
if [ -f "$dir/node-0/coredns/Corefile" ] && pgrep -f "$dir/node-0/coredns/Corefile" >/dev/null; then
  for _ in $(seq 20); do
    answer=$(k exec client -- sh -c 'nc -w 2 demo-hs.default.svc.cluster.local 8080 </dev/null' 2>/dev/null || true)
    [ "$answer" = "hello from demo" ] && break
    sleep 0.5
  done
  if [ "$answer" = "hello from demo" ]; then
    echo "smoke: pod -> headless Service DNS name ok (CoreDNS)"
  else
    echo "smoke: demo-hs.default.svc.cluster.local did not answer: '$answer'" >&2
    exit 1
  fi
fi

# A StatefulSet on local PersistentVolumes (no provisioner: the test makes the volumes).
mkdir -p "$dir/pv/pv-0"
k apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: zooherd-local}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-0}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: zooherd-local
  local: {path: $dir/pv/pv-0}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: ["$node"]}]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: demo-hs
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: zooherd.local/demo:0.1
        imagePullPolicy: Never
        volumeMounts: [{name: data, mountPath: /data}]
        readinessProbe:
          exec: {command: ["/bin/sh", "-c", "hostname > /data/host"]}
          periodSeconds: 1
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: zooherd-local
      resources: {requests: {storage: 1Gi}}
EOF
t=$(now)
k rollout status sts/web --timeout=120s >/dev/null
[ "$(cat "$dir/pv/pv-0/host")" = web-0 ] || { echo "smoke: web-0 wrote nothing to its PV" >&2; exit 1; }
echo "smoke: StatefulSet on a local PV ready in $(ms_since "$t") ms"

t=$(now)
bash "$here/node.sh" stop "$dir" >/dev/null
echo "smoke: node stopped in $(ms_since "$t") ms"
echo "smoke: OK"
