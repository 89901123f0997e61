#!/usr/bin/env bash
# Builds container images without a registry and without a container engine, as docker-archive
# tarballs that `ctr -n k8s.io images import` (containerd 1.6+) loads.
#
#   bash tests/e2e/image.sh archive NAME:TAG ROOTFS OUT.tar [--entrypoint JSON] [--cmd JSON]
#                                                       [--env JSON] [--user USER] [--workdir DIR]
#       packs directory ROOTFS as a single-layer image (owner root, mtime 0, sorted: reproducible)
#   bash tests/e2e/image.sh pause OUT.tar [NAME:TAG]
#       compiles build/pause/linux/pause.c of the k8s.io/kubernetes module (from the Go module
#       cache, downloaded if missing) statically and packs it (default zooherd.local/pause:3.10.1)
#   bash tests/e2e/image.sh zookeeper OUT.tar NAME:TAG ZOOHERD-BINARY
#       the layout of deploy/images/zookeeper/Dockerfile from host files: busybox (static,
#       Debian's busybox-static), a JRE made by the host JDK's jlink, ZooKeeper's jars from
#       $ZOOHERD_ZOOKEEPER_HOME (tests/cluster/setup.sh, from Maven Central), the repository's
#       logback.xml, and the zooherd binary with the libraries ldd lists for it (entrypoint
#       `zooherd server`, uid 1000)
#   bash tests/e2e/image.sh operator OUT.tar NAME:TAG ZOOHERD-BINARY
#       the layout of deploy/images/operator/Dockerfile: the zooherd binary and its libraries
#       (entrypoint `zooherd operator`, uid 65532)
#
# Why not the Dockerfiles themselves: their base images come from a registry, and their Rust
# stage needs a newer rustc than Debian ships; the layouts are the same, and tests/images.rs
# checks that the Dockerfiles' paths and entrypoints match the binary.
#
# JSON arguments are raw JSON values, e.g. --entrypoint '["/pause"]' --env '["A=b"]'.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../cluster/versions.env
. "$here/../cluster/versions.env"
# shellcheck source=../cluster/lib.sh
. "$here/../cluster/lib.sh"
log_prefix=image.sh

# archive NAME:TAG ROOTFS OUT [options]
archive() {
  local ref=$1 rootfs=$2 out=$3
  shift 3
  local entrypoint=null cmd=null env='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
  local user="" workdir="/"
  while [ $# -gt 0 ]; do
    case $1 in
      --entrypoint) entrypoint=$2 ;;
      --cmd) cmd=$2 ;;
      --env) env=$2 ;;
      --user) user=$2 ;;
      --workdir) workdir=$2 ;;
      *) die "unknown option $1" ;;
    esac
    shift 2
  done
  [ -d "$rootfs" ] || die "$rootfs is not a directory"
  local work
  work=$(mktemp -d)
  # The layer: sorted, mtime 0, numeric owners as in ROOTFS (the builders below chown it),
  # so that the same rootfs gives the same digest.
  tar --sort=name --numeric-owner --mtime=@0 --format=gnu \
    -C "$rootfs" -cf "$work/layer.tar" .
  local diff_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  jq -n --argjson entrypoint "$entrypoint" --argjson cmd "$cmd" --argjson env "$env" \
    --arg user "$user" --arg workdir "$workdir" --arg diff "sha256:$diff_id" '{
      architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
      config: ({Env: $env, WorkingDir: $workdir}
        + (if $entrypoint == null then {} else {Entrypoint: $entrypoint} end)
        + (if $cmd == null then {} else {Cmd: $cmd} end)
        + (if $user == "" then {} else {User: $user} end)),
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created: "1970-01-01T00:00:00Z", created_by: "tests/e2e/image.sh"}]
    }' > "$work/config.json"
  local config_id
  config_id=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mkdir -p "$work/out/$diff_id"
  mv "$work/layer.tar" "$work/out/$diff_id/layer.tar"
  mv "$work/config.json" "$work/out/$config_id.json"
  jq -n --arg c "$config_id.json" --arg l "$diff_id/layer.tar" --arg r "$ref" \
    '[{Config: $c, RepoTags: [$r], Layers: [$l]}]' > "$work/out/manifest.json"
  mkdir -p "$(dirname "$out")"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/out" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
  rm -rf "$work"
  echo "image.sh: $ref -> $out ($(du -h "$out" | cut -f1))" >&2
}

pause() {
  local out=$1 ref=${2:-zooherd.local/pause:3.10.1}
  command -v gcc >/dev/null || die "gcc is missing (apt-get install gcc libc6-dev)"
  local modcache src
  modcache=$(go env GOMODCACHE)
  src=$modcache/k8s.io/kubernetes@v$KUBERNETES_VERSION/build/pause/linux/pause.c
  [ -f "$src" ] || (cd /tmp && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@v$KUBERNETES_VERSION")
  [ -f "$src" ] || die "$src is missing"
  local tag=${ref##*:} work
  work=$(mktemp -d)
  mkdir -p "$work/rootfs"
  # The flags of build/pause/Makefile.
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-zooherd" -o "$work/rootfs/pause" "$src"
  strip "$work/rootfs/pause"
  archive "$ref" "$work/rootfs" "$out" --entrypoint '["/pause"]' --env '[]' --user 65535:65535
  rm -rf "$work"
}

# base_rootfs DIR: busybox, a jlink JRE at /opt/jre and its libraries, /etc/passwd.
base_rootfs() {
  local r=$1
  local bb=/bin/busybox
  # ldd fails on a static binary.
  [ -x "$bb" ] && ! ldd "$bb" >/dev/null 2>&1 \
    || die "a static /bin/busybox is needed (apt-get install busybox-static)"
  local jdk=${ZOOHERD_E2E_JDK:-$(dirname "$(dirname "$(readlink -f "$(command -v jlink)")")")}
  [ -x "$jdk/bin/jlink" ] || die "no JDK with jlink at $jdk (set ZOOHERD_E2E_JDK)"
  mkdir -p "$r/bin" "$r/tmp" "$r/etc" "$r/proc" "$r/sys" "$r/dev"
  chmod 1777 "$r/tmp"
  cp "$bb" "$r/bin/busybox"
  local applet
  for applet in sh ls cat echo sleep nc wget ps id hostname ip ifconfig env touch kill grep nslookup; do
    ln -s busybox "$r/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nzookeeper:x:1000:1000::/var/lib/zookeeper:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$r/etc/passwd"
  printf 'root:x:0:\nzookeeper:x:1000:\nnogroup:x:65534:\n' > "$r/etc/group"
  # The modules ZooKeeper needs (JMX, naming, SASL, XML for logback, ...).
  "$jdk/bin/jlink" --add-modules java.base,java.management,java.naming,java.security.jgss,java.security.sasl,jdk.management,jdk.unsupported,java.xml,java.desktop,java.sql,jdk.crypto.ec \
    --strip-debug --no-man-pages --no-header-files --compress=2 --output "$r/opt/jre"
  copy_libs "$r" "$r/opt/jre/bin/java" "$r"/opt/jre/lib/*.so "$r"/opt/jre/lib/server/libjvm.so
}

# copy_libs ROOTFS FILE...: copies into ROOTFS the host libraries ldd lists for each FILE.
copy_libs() {
  local r=$1 f lib
  shift
  for lib in $(for f in "$@"; do
      ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' || true
    done | sort -u); do
    [ -e "$r$lib" ] && continue
    mkdir -p "$r$(dirname "$lib")"
    cp -aL "$lib" "$r$lib"
  done
  [ -e "$r/lib64/ld-linux-x86-64.so.2" ] || { mkdir -p "$r/lib64"; cp -aL /lib64/ld-linux-x86-64.so.2 "$r/lib64/"; }
}

zookeeper() {
  local out=$1 ref=$2 zooherd=$3
  [ -x "$zooherd" ] || die "$zooherd is not an executable"
  local zk=${ZOOHERD_ZOOKEEPER_HOME:-$HOME/.cache/zooherd/zookeeper-$ZOOKEEPER_VERSION}
  [ -f "$zk/lib/zookeeper-$ZOOKEEPER_VERSION.jar" ] || die "no ZooKeeper at $zk (run tests/cluster/setup.sh)"
  local work r
  work=$(mktemp -d)
  r=$work/rootfs
  base_rootfs "$r"
  mkdir -p "$r/opt/zookeeper" "$r/etc/zooherd" "$r/var/lib/zookeeper/data" "$r/var/lib/zookeeper/log" "$r/usr/local/bin"
  cp -a "$zk/lib" "$r/opt/zookeeper/lib"
  mkdir -p "$r/opt/zookeeper/conf"
  cp "$here/../../deploy/images/zookeeper/logback.xml" "$r/opt/zookeeper/conf/logback.xml"
  ln -s /opt/jre/bin/java "$r/usr/local/bin/java"
  chown -R 0:0 "$r"
  chown 1000:1000 "$r/var/lib/zookeeper" "$r/var/lib/zookeeper/data" "$r/var/lib/zookeeper/log"
  chmod 0750 "$r/var/lib/zookeeper" "$r/var/lib/zookeeper/data" "$r/var/lib/zookeeper/log"
  local env='["PATH=/usr/local/bin:/opt/jre/bin:/bin","JAVA_HOME=/opt/jre","ZOOKEEPER_HOME=/opt/zookeeper"]'
  install -m 0755 "$zooherd" "$r/usr/local/bin/zooherd"
  copy_libs "$r" "$zooherd"
  archive "$ref" "$r" "$out" --entrypoint '["/usr/local/bin/zooherd"]' --cmd '["server"]' \
    --env "$env" --user 1000:1000 --workdir /var/lib/zookeeper
  rm -rf "$work"
}

operator() {
  local out=$1 ref=$2 zooherd=$3
  [ -x "$zooherd" ] || die "$zooherd is not an executable"
  local work r
  work=$(mktemp -d)
  r=$work/rootfs
  mkdir -p "$r/usr/local/bin" "$r/etc" "$r/tmp" "$r/proc" "$r/sys" "$r/dev"
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/:/sbin/nologin\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$r/etc/group"
  install -m 0755 "$zooherd" "$r/usr/local/bin/zooherd"
  copy_libs "$r" "$zooherd"
  chown -R 0:0 "$r"
  archive "$ref" "$r" "$out" --entrypoint '["/usr/local/bin/zooherd"]' --cmd '["operator"]' \
    --env '["PATH=/usr/local/bin"]' --user 65532:65532
  rm -rf "$work"
}

case ${1:-} in
  archive) shift; [ $# -ge 3 ] || die "usage: $0 archive NAME:TAG ROOTFS OUT.tar [options]"; archive "$@" ;;
  pause) shift; [ $# -ge 1 ] || die "usage: $0 pause OUT.tar [NAME:TAG]"; pause "$@" ;;
  zookeeper) shift; [ $# -eq 3 ] || die "usage: $0 zookeeper OUT.tar NAME:TAG ZOOHERD-BINARY"; zookeeper "$@" ;;
  operator) shift; [ $# -eq 3 ] || die "usage: $0 operator OUT.tar NAME:TAG ZOOHERD-BINARY"; operator "$@" ;;
  *) die "usage: $0 archive|pause|zookeeper|operator ..." ;;
esac
