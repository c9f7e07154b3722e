#!/usr/bin/env bash
# Benchmark swarm-init against tini, dumb-init and catatonit (and `swarm-init
# fetch` against curl): issue 5. Run as root from anywhere in the repository.
#
# Usage: benches/run.sh [--quick] [compare.py options...]
#
#   --quick          smoke run (about a minute): few rounds of each workload
#   --only W...      run only these workloads (idle signal start stop reap download)
#   --skip W...      leave these out
#   --out FILE       JSON output (default target/bench/results.json)
#
# Steps: install what is missing (tini, dumb-init, catatonit, gcc, curl,
# python3, unshare) with apt-get; build the static release swarm-init with
# `./build.sh --binaries-only` (exactly the binary the images ship); compile
# benches/child.c; run benches/compare.py, which prints a Markdown table and
# JSON and writes the JSON file.
set -euo pipefail

die() { echo "benches/run.sh: error: $*" >&2; exit 1; }
log() { echo "benches/run.sh: $*" >&2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done

[[ "$(id -u)" -eq 0 ]] \
  || die "run as root: every init runs as PID 1 of its own PID namespace (unshare --pid)"

# command -> Debian package that provides it.
declare -A package_of=(
  [tini]=tini [tini-static]=tini [dumb-init]=dumb-init [catatonit]=catatonit
  [gcc]=gcc [curl]=curl [python3]=python3 [unshare]=util-linux
)
missing=()
for cmd in "${!package_of[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${package_of[$cmd]}")
done
# gcc needs the C library headers; crt-static needs libc.a (both libc6-dev).
[[ -f /usr/include/stdio.h && -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ]] \
  || missing+=(libc6-dev)
if [[ "${#missing[@]}" -gt 0 ]]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  command -v apt-get >/dev/null 2>&1 \
    || die "missing ${missing[*]} and no apt-get to install them; install them by hand"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed (output above)"
fi

command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs)"
bench_dir="$repo/target/bench"
mkdir -p "$bench_dir"

# The binary the images ship, built by build.sh itself (static, same flags),
# so the benchmark can never measure a differently built swarm-init.
log "./build.sh --binaries-only"
swarm_init="$("$repo/build.sh" --binaries-only | grep '/swarm-init$')" \
  || die "./build.sh --binaries-only failed (errors above)"
[[ -x "$swarm_init" ]] || die "build.sh did not produce swarm-init ($swarm_init)"

log "gcc benches/child.c"
gcc -O2 -Wall -Wextra -Werror -o "$bench_dir/benchchild" benches/child.c \
  || die "compiling benches/child.c failed (errors above)"

exec python3 -B benches/compare.py --swarm-init "$swarm_init" --child "$bench_dir/benchchild" \
  --out "$bench_dir/results.json" "$@"
