#!/usr/bin/env bash
# Build a local Debian base image with debootstrap and `docker import`, for
# machines without an image registry (CI, the container smoke tests).
#
# Usage: scripts/make-base-image.sh [--force] [--bare] [TAG]
#   TAG       image tag to create (default: $SWARM_BASE_IMAGE or
#             swarm-init-base:bookworm). An existing image with this tag is
#             reused unless --force is given.
#   --bare    only the minbase system, like an official image: the
#             Dockerfile's apt-get step then installs everything itself.
#             By default the packages the images install are preinstalled,
#             which makes that step cheap.
# Env:
#   DEBIAN_SUITE   (default bookworm)
#   DEBIAN_MIRROR  (default http://deb.debian.org/debian)
#   SWARM_BASE_WORKDIR  where the root tree is built (default /var/tmp)
#
# Needs root, debootstrap and docker. The only network used is the mirror.
# Prints the tag on stdout when done (all progress goes to stderr).
set -euo pipefail

die() { echo "make-base-image: error: $*" >&2; exit 1; }
log() { echo "make-base-image: $*" >&2; }

force=0
bare=0
tag=""
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --bare) bare=1 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$arg' (see --help)" ;;
    *) [[ -z "$tag" ]] || die "only one TAG may be given"; tag="$arg" ;;
  esac
done
tag="${tag:-${SWARM_BASE_IMAGE:-swarm-init-base:bookworm}}"
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
workdir="${SWARM_BASE_WORKDIR:-/var/tmp}"

command -v docker >/dev/null 2>&1 || die "docker not found on PATH; install Docker (apt-get install docker.io) and retry"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon; start it (or fix permissions on its socket) and retry"

# Several test processes may ask for the base at once: one builds, the others
# wait on the lock and then reuse the tag.
lockfile="${workdir}/swarm-init-base.lock"
exec 9>"$lockfile"
flock 9

if [[ "$force" -eq 0 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  log "reusing existing image $tag"
  echo "$tag"
  exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root; run this script as root (or with sudo)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found; apt-get install debootstrap"
arch="$(dpkg --print-architecture 2>/dev/null)" || die "dpkg not found: this script needs a Debian-family build host"

# Everything the images install, so their `apt-get install` step finds it all
# present and stays cheap (and works even where the build has no network).
packages=(
  python3 sudo ca-certificates
  curl file jq lsb-release lsof openssh-client psmisc tzdata iproute2
)

rootfs="$(mktemp -d "${workdir}/swarm-init-base.XXXXXX")"
cleanup() {
  # debootstrap may leave /proc or /sys mounted in the tree when it fails.
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$rootfs/$m" 2>/dev/null; then umount -l "$rootfs/$m" || true; fi
  done
  rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

log "debootstrap $suite ($arch) from $mirror into $rootfs"
include=()
[[ "$bare" -eq 1 ]] || include=(--include="$(IFS=,; echo "${packages[*]}")")
if ! debootstrap --variant=minbase --arch="$arch" "${include[@]}" \
    "$suite" "$rootfs" "$mirror" >&2; then
  tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  die "debootstrap failed (log above); check that $mirror is reachable"
fi

# Same trimming as the official Debian/Ubuntu images: no package lists or
# caches in the layer, and apt/dpkg settings that keep later installs lean.
printf 'deb %s %s main\n' "$mirror" "$suite" > "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  > "$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
  "$rootfs"/tmp/* "$rootfs"/var/tmp/*
: > "$rootfs/etc/hostname"
: > "$rootfs/etc/resolv.conf"

log "importing as $tag"
tar --numeric-owner -C "$rootfs" -c . \
  | docker import \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' \
      - "$tag" >&2
log "done: $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
echo "$tag"
