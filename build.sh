#!/usr/bin/env bash
# Build the swarm_docker image for this machine's architecture.
#
# Usage: [BASE_IMAGE=IMAGE] ./build.sh [--skip-cargo | --binaries-only]
#
# Steps: pick Dockerfile.amd64 or Dockerfile.arm64 from `uname -m`; build the
# release binaries of the workspace statically linked (so they run on any
# base, whatever its glibc) and stage them in target/swarm-docker/; build the
# image and tag it NAME:<YYYY-MM-DD_HH-MM> and NAME:latest, where NAME is
# swarm_docker (swarm_docker_arm64 on aarch64). The tags made are printed on
# stdout, one a line; everything else goes to stderr.
#
# Options:
#   --skip-cargo     do not run cargo; use the binaries built before
#   --binaries-only  build and stage the static binaries, print their paths,
#                    and stop (no Docker needed)
# Environment:
#   BASE_IMAGE       base image (default: the Dockerfile's, ubuntu:24.04)
#   IMAGE_NAME       repository part of the tags (default as above)
#   DOCKERFILE       Dockerfile to use instead of the one for this machine
#   DOCKER_BUILD_NETWORK  passed to `docker build --network` (e.g. host) when
#                    the default build network cannot reach the package mirror
set -euo pipefail

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo"

skip_cargo=0
binaries_only=0
for arg in "$@"; do
  case "$arg" in
    --skip-cargo) skip_cargo=1 ;;
    --binaries-only) binaries_only=1 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (see ./build.sh --help)" ;;
  esac
done
[[ "$skip_cargo" -eq 0 || "$binaries_only" -eq 0 ]] \
  || die "--skip-cargo and --binaries-only together would do nothing; pick one"

machine="$(uname -m)"
case "$machine" in
  x86_64|amd64)
    triple=x86_64-unknown-linux-gnu
    default_dockerfile=Dockerfile.amd64
    default_name=swarm_docker ;;
  aarch64|arm64)
    triple=aarch64-unknown-linux-gnu
    default_dockerfile=Dockerfile.arm64
    default_name=swarm_docker_arm64 ;;
  *) die "unsupported architecture '$machine' (uname -m); only x86_64 and aarch64 have a Dockerfile" ;;
esac
dockerfile="${DOCKERFILE:-$default_dockerfile}"
name="${IMAGE_NAME:-$default_name}"

# Check Docker before spending minutes on a release build.
if [[ "$binaries_only" -eq 0 ]]; then
  command -v docker >/dev/null 2>&1 \
    || die "docker is not installed (not on PATH); install Docker (e.g. apt-get install docker.io), or use --binaries-only to build just the binaries"
  docker info >/dev/null 2>&1 \
    || die "cannot reach the Docker daemon ('docker info' failed); start dockerd or fix access to its socket, then retry"
  [[ -f "$dockerfile" ]] || die "Dockerfile '$dockerfile' not found in $repo"
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
release_dir="$target_dir/$triple/release"
stage="$repo/target/swarm-docker"
binaries=(swarm-init swarm-shutdown)

if [[ "$skip_cargo" -eq 0 ]]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs) or use --skip-cargo with binaries built before"
  # crt-static links glibc statically. The explicit --target keeps the
  # flag away from build scripts and proc-macros, which must stay dynamic.
  log "cargo build --release --target $triple --workspace (static)"
  RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release --target "$triple" --workspace >&2 \
    || die "cargo build failed (errors above)"
fi

mkdir -p "$stage"
for bin in "${binaries[@]}"; do
  [[ -x "$release_dir/$bin" ]] \
    || die "$release_dir/$bin is missing; run ./build.sh without --skip-cargo"
  install -m 0755 "$release_dir/$bin" "$stage/$bin"
  # A dynamic binary would run only on bases with this machine's glibc.
  # (readelf, not file: old versions of file call static-pie "dynamic".)
  if command -v readelf >/dev/null 2>&1 \
      && LC_ALL=C readelf -lW "$stage/$bin" | grep -q 'program interpreter'; then
    die "$stage/$bin is dynamically linked; build it with ./build.sh (not a plain 'cargo build') so that it is static"
  fi
done

if [[ "$binaries_only" -eq 1 ]]; then
  for bin in "${binaries[@]}"; do echo "$stage/$bin"; done
  exit 0
fi

pkgid="$(cargo pkgid -p swarm-init 2>/dev/null || true)"
version="${pkgid##*[#@]}"
version="${version:-unknown}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$revision" != unknown && -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  revision="$revision-dirty"
fi
source_url="$(sed -n 's/^repository *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)"
now="$(date +%s)"
created="$(date -u -d "@$now" +%Y-%m-%dT%H:%M:%SZ)"
tags=("$name:$(date -d "@$now" +%Y-%m-%d_%H-%M)" "$name:latest")

build_args=(
  --file "$dockerfile"
  --build-arg "VERSION=$version"
  --build-arg "REVISION=$revision"
  --build-arg "CREATED=$created"
)
[[ -n "$source_url" ]] && build_args+=(--build-arg "SOURCE=$source_url")
if [[ -n "${BASE_IMAGE:-}" ]]; then
  build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "note: base image $BASE_IMAGE is not present locally, so docker will try to pull it (scripts/make-base-image.sh builds a local one)"
  fi
fi
[[ -n "${DOCKER_BUILD_NETWORK:-}" ]] && build_args+=(--network "$DOCKER_BUILD_NETWORK")
for tag in "${tags[@]}"; do build_args+=(--tag "$tag"); done

log "docker build -f $dockerfile (base: ${BASE_IMAGE:-default of the Dockerfile})"
docker build "${build_args[@]}" "$repo" >&2 \
  || die "docker build failed (output above); if apt-get could not reach its mirror, retry with DOCKER_BUILD_NETWORK=host"

log "built $(docker image inspect -f '{{.Id}}' "${tags[0]}")"
printf '%s\n' "${tags[@]}"
