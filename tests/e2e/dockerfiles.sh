#!/usr/bin/env bash
# Builds deploy/images/*/Dockerfile unchanged, with buildah (Debian's package), and writes them
# as docker-archive tarballs that `ctr -n k8s.io images import` loads:
#
#   bash tests/e2e/dockerfiles.sh build OUT-DIR SERVER-REF OPERATOR-REF
#       OUT-DIR/zookeeper.tar and OUT-DIR/operator.tar, and OUT-DIR/report.txt (sizes, times)
#
# Nothing can be pulled here, so the base images the Dockerfiles name are made locally, under
# the same names, once, and kept in buildah's storage under $ZOOHERD_CACHE/buildah:
#   - BASE_IMAGE (debian:bookworm-slim): `debootstrap --variant=minbase` of the release, from
#     the Debian mirror this machine's apt uses;
#   - RUST_IMAGE (rust:1.89-slim-bookworm): that base with gcc and libc6-dev (as the official
#     slim image has) and this machine's Rust toolchain at /usr/local/cargo. Its rustc is the
#     machine's (at least Cargo.toml's rust-version), not necessarily the tag's (it is made
#     again when the machine's rustc changes), and it trusts the machine's certificate
#     authorities (a proxy stands between this machine and crates.io);
#   - the ZooKeeper release archive: a local HTTP server lays out
#     zookeeper-V/apache-zookeeper-V-bin.tar.gz and its .sha512 as the Apache archive does,
#     passed as the ZOOKEEPER_DIST build argument (a mirror, as a user may pass). The archive is
#     assembled from the Maven Central jars of tests/cluster/setup.sh: the release itself cannot
#     be downloaded here. It has lib/ and conf/; the real one also has bin/ and docs/, which the
#     image does not use.
# The build runs with --layers, so a second build of the same inputs is a cache hit; the
# Dockerfiles' cache mounts keep cargo's downloads and build outputs between builds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../cluster/versions.env
. "$here/../cluster/versions.env"
# shellcheck source=../cluster/lib.sh
. "$here/../cluster/lib.sh"
log_prefix=dockerfiles.sh
started=$(date +%s%N)

cache=${ZOOHERD_CACHE:-$HOME/.cache/zooherd}
storage=$cache/buildah
# buildah keeps the contents of RUN --mount=type=cache under $TMPDIR.
bh() {
  mkdir -p "$storage/tmp"
  TMPDIR=$storage/tmp buildah --root "$storage/root" --runroot "$storage/run" --storage-driver overlay "$@"
}

# default_arg DOCKERFILE NAME: the default value of `ARG NAME=...` in DOCKERFILE.
default_arg() {
  sed -n "s/^ARG $2=//p" "$1" | head -n 1
}

has_image() { bh inspect --type image "$1" >/dev/null 2>&1; }

# debian_base REF: a Debian base image named REF, from debootstrap.
debian_base() {
  local ref=$1 suite work c m
  has_image "$ref" && return 0
  suite=${ref##*:}
  suite=${suite%-slim}
  local mirror
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "making $ref: debootstrap $suite from $mirror"
  work=$(mktemp -d)
  debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap $suite failed"; }
  # As the slim images: no package lists or downloaded packages, no documentation.
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
    "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/usr/share/doc/"* \
    "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/info/"*
  c=$(bh from scratch)
  m=$(bh mount "$c")
  cp -a "$work/rootfs/." "$m/"
  bh umount "$c" >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["bash"]' "$c"
  bh commit -q --rm "$c" "$ref" >/dev/null
  rm -rf "$work"
}

# rust_builder REF BASE-REF: BASE-REF with gcc, libc6-dev and this machine's Rust toolchain.
rust_builder() {
  local ref=$1 base=$2 c m sysroot need have
  have=$(rustc --version | awk '{print $2}')
  if has_image "$ref"; then
    [ "$(bh inspect --type image "$ref" | jq -r '.OCIv1.config.Labels["zooherd.rustc"]')" != "$have" ] \
      || return 0
    bh rmi "$ref" >/dev/null
  fi
  need=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
  [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" = "$need" ] \
    || die "rustc $have is older than Cargo.toml's rust-version $need"
  sysroot=$(rustc --print sysroot)
  log "making $ref: $base with gcc and rustc $have from $sysroot"
  c=$(bh from "$base")
  bh run --network host "$c" -- sh -c 'apt-get update -q >/dev/null \
    && apt-get install -y -q --no-install-recommends ca-certificates gcc libc6-dev >/dev/null \
    && rm -rf /var/lib/apt/lists/*'
  m=$(bh mount "$c")
  mkdir -p "$m/usr/local/cargo"
  # The toolchain without its documentation and sources.
  cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$m/usr/local/cargo/"
  rm -rf "$m/usr/local/cargo/lib/rustlib/src" "$m/usr/local/cargo/lib/rustlib/rustc-src"
  # This machine reaches crates.io through a proxy whose certificate authority only the
  # machine's own bundle has.
  cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/ca-certificates.crt"
  bh umount "$c" >/dev/null
  bh config --label "zooherd.rustc=$have" --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  bh commit -q --rm "$c" "$ref" >/dev/null
}

# zookeeper_archive DIR: DIR/zookeeper-V/apache-zookeeper-V-bin.tar.gz and its .sha512.
zookeeper_archive() {
  local dist=$1 zk name work
  zk=${ZOOHERD_ZOOKEEPER_HOME:-$cache/zookeeper-$ZOOKEEPER_VERSION}
  [ -f "$zk/lib/zookeeper-$ZOOKEEPER_VERSION.jar" ] || die "no ZooKeeper at $zk (run tests/cluster/setup.sh)"
  name=apache-zookeeper-$ZOOKEEPER_VERSION-bin
  work=$(mktemp -d)
  mkdir -p "$work/$name" "$dist/zookeeper-$ZOOKEEPER_VERSION"
  cp -a "$zk/lib" "$zk/conf" "$work/$name/"
  # Byte for byte the same every time (sorted, no times, gzip without a timestamp), so that the
  # image's download step is a cache hit.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf - "$name" \
    | gzip -n > "$dist/zookeeper-$ZOOKEEPER_VERSION/$name.tar.gz"
  (cd "$dist/zookeeper-$ZOOKEEPER_VERSION" && sha512sum "$name.tar.gz" > "$name.tar.gz.sha512")
  rm -rf "$work"
}

# serve DIR: starts an HTTP server for DIR on loopback; sets server_pid and server_url. The
# port is fixed ($ZOOHERD_ARCHIVE_PORT, default 39630): the URL is a build argument, and a
# build argument that changes makes the download step a cache miss.
serve() {
  local log=$1/../http.log port=${ZOOHERD_ARCHIVE_PORT:-39630} i
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$1" > "$log" 2>&1 &
  server_pid=$!
  for i in $(seq 100); do
    grep -q "Serving HTTP" "$log" && break
    kill -0 "$server_pid" 2>/dev/null \
      || die "the archive's HTTP server did not start on 127.0.0.1:$port (set ZOOHERD_ARCHIVE_PORT): $(cat "$log")"
    sleep 0.1
  done
  server_url=http://127.0.0.1:$port
}

# image_build DOCKERFILE REF [BUILD-ARG...]: buildah bud of DOCKERFILE, context the repository.
image_build() {
  local dockerfile=$1 ref=$2 args=() t0
  shift 2
  for a in "$@"; do args+=(--build-arg "$a"); done
  t0=$(date +%s%N)
  bh bud --layers --force-rm --network host --ignorefile "$dockerfile.dockerignore" -f "$dockerfile" \
    -t "$ref" "${args[@]}" "$repo" > "$work/$(basename "$(dirname "$dockerfile")").log" 2>&1 \
    || { tail -n 40 "$work/$(basename "$(dirname "$dockerfile")").log" >&2; die "buildah bud $dockerfile failed"; }
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

# check_image REF USER ENTRYPOINT: the image's configuration is what the chart and the
# StatefulSet expect.
check_image() {
  local ref=$1 user=$2 entrypoint=$3 config
  config=$(bh inspect --type image "$ref" | jq -c '.OCIv1.config')
  [ "$(jq -r '.User' <<<"$config")" = "$user" ] || die "$ref runs as $(jq -r '.User' <<<"$config"), not $user"
  [ "$(jq -c '.Entrypoint' <<<"$config")" = "$entrypoint" ] \
    || die "$ref's entrypoint is $(jq -c '.Entrypoint' <<<"$config"), not $entrypoint"
}

# forget_older REF...: removes the zooherd.local images other than REF..., and once the storage
# passes 8 GiB the layers no image uses (the cached steps of older builds: the next build runs
# its package installs again, about a minute).
forget_older() {
  local image keep ref
  for image in $(bh images --format '{{.Name}}:{{.Tag}}' | grep '^zooherd\.local/' || true); do
    keep=0
    for ref in "$@"; do [ "$image" = "$ref" ] && keep=1; done
    [ $keep = 1 ] || bh rmi "$image" >/dev/null
  done
  if [ "$(du -s --block-size=1G "$storage/root" | cut -f1)" -gt 8 ]; then
    log "buildah's storage passed 8 GiB: removing the layers no image uses"
    bh rmi --prune >/dev/null || true
  fi
}

build() {
  local out=$1 server_ref=$2 operator_ref=$3
  local server_file=$repo/deploy/images/zookeeper/Dockerfile operator_file=$repo/deploy/images/operator/Dockerfile
  local base rust
  base=$(default_arg "$server_file" BASE_IMAGE)
  rust=$(default_arg "$server_file" RUST_IMAGE)
  [ "$base" = "$(default_arg "$operator_file" BASE_IMAGE)" ] && [ "$rust" = "$(default_arg "$operator_file" RUST_IMAGE)" ] \
    || die "the two Dockerfiles name different base images"
  mkdir -p "$out" "$storage"
  work=$(mktemp -d)
  server_pid=""
  trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
  # Working containers left by a build that failed (this storage is this script's alone).
  bh rm --all >/dev/null
  debian_base "docker.io/library/$base"
  rust_builder "docker.io/library/$rust" "docker.io/library/$base"
  log "base images ready after $(elapsed_ms) ms"
  mkdir -p "$work/dist"
  zookeeper_archive "$work/dist"
  serve "$work/dist"
  local server_ms operator_ms
  server_ms=$(image_build "$server_file" "$server_ref" "ZOOKEEPER_DIST=$server_url")
  operator_ms=$(image_build "$operator_file" "$operator_ref")
  check_image "$server_ref" 1000:1000 '["/usr/local/bin/zooherd"]'
  check_image "$operator_ref" 65532:65532 '["/usr/local/bin/zooherd"]'
  rm -f "$out/zookeeper.tar" "$out/operator.tar"
  bh push -q "$server_ref" "docker-archive:$out/zookeeper.tar:$server_ref"
  bh push -q "$operator_ref" "docker-archive:$out/operator.tar:$operator_ref"
  forget_older "$server_ref" "$operator_ref"
  {
    echo "server image $server_ref: built in ${server_ms} ms, $(du -m "$out/zookeeper.tar" | cut -f1) MiB as an archive"
    echo "operator image $operator_ref: built in ${operator_ms} ms, $(du -m "$out/operator.tar" | cut -f1) MiB as an archive"
  } | tee "$out/report.txt" >&2
  log "done after $(elapsed_ms) ms"
}

case ${1:-} in
  build) shift; [ $# -eq 3 ] || die "usage: $0 build OUT-DIR SERVER-REF OPERATOR-REF"; build "$@" ;;
  *) die "usage: $0 build OUT-DIR SERVER-REF OPERATOR-REF" ;;
esac
