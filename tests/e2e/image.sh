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
#   bash tests/e2e/image.sh toolbox OUT.tar [NAME:TAG]
#       static busybox as /bin/busybox (and sh, echo, sleep), for the rogue pods of the
#       NetworkPolicy story (default zooherd.local/toolbox:busybox)
#
# Zooherd's own images are not made this way: they are built from their Dockerfiles
# (tests/e2e/dockerfiles.sh).
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

# toolbox OUT [NAME:TAG]: static busybox (Debian's busybox-static) as /bin/busybox, with sh and
# echo: the image of the end-to-end tier's rogue pods, which knock on a server's ports from
# outside the ensemble with busybox wget and nc (the server image has neither).
toolbox() {
  local out=$1 ref=${2:-zooherd.local/toolbox:busybox}
  local bb=/bin/busybox
  # ldd fails on a static binary.
  [ -x "$bb" ] && ! ldd "$bb" >/dev/null 2>&1 \
    || die "a static /bin/busybox is needed (apt-get install busybox-static)"
  local work r
  work=$(mktemp -d)
  r=$work/rootfs
  mkdir -p "$r/bin" "$r/tmp" "$r/etc" "$r/proc" "$r/sys" "$r/dev"
  chmod 1777 "$r/tmp"
  cp "$bb" "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  ln -s busybox "$r/bin/echo"
  ln -s busybox "$r/bin/sleep"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
  chown -R 0:0 "$r"
  archive "$ref" "$r" "$out" --entrypoint '["/bin/sh"]' --env '["PATH=/bin"]' --user 65534:65534
  rm -rf "$work"
}

case ${1:-} in
  archive) shift; [ $# -ge 3 ] || die "usage: $0 archive NAME:TAG ROOTFS OUT.tar [options]"; archive "$@" ;;
  pause) shift; [ $# -ge 1 ] || die "usage: $0 pause OUT.tar [NAME:TAG]"; pause "$@" ;;
  toolbox) shift; [ $# -ge 1 ] || die "usage: $0 toolbox OUT.tar [NAME:TAG]"; toolbox "$@" ;;
  *) die "usage: $0 archive|pause|toolbox ..." ;;
esac
