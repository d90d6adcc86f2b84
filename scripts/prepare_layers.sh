#!/usr/bin/env bash
# What the full test suite needs beyond .venv, set up by `./dev test` (Debian/Ubuntu host, apt):
#   1. system packages the layer build and its tests need (qemu-user, an arm64 glibc for qemu,
#      make, perl, openssl, curl) and a deb-src line for the Debian source packages (CPython 3.13
#      from trixie, OpenSSL 3.0 and zlib from bookworm): only when missing;
#   2. the layer for both architectures, in parallel (scripts/build_layer.py; its from-source
#      interpreter is cached in ${SPLUNK_LAYER_CACHE:-~/.cache/splunk-layer-build}, keyed by
#      every input: a warm run takes seconds; cold, about 21 min for both architectures at once
#      on 2 busy cores, docs/deploy.md), timed.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
stamp() { date +%s; }
t0=$(stamp)

packages=(qemu-user libc6-arm64-cross make perl openssl curl)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
need_src=0
apt-cache showsrc python3.13 2>/dev/null | grep -q '^Package: python3.13' || need_src=1
if [ "$need_src" = 1 ]; then
  as_root tee /etc/apt/sources.list.d/splunk-layer-deb-src.sources >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
if [ "${#missing[@]}" -gt 0 ] || [ "$need_src" = 1 ]; then
  as_root apt-get update -q
fi
if [ "${#missing[@]}" -gt 0 ]; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
t1=$(stamp)
echo "prepare: system setup $((t1 - t0)) s (installed: ${missing[*]:-nothing})" >&2

.venv/bin/python scripts/build_python.py --fetch >/dev/null  # sources and Zig, once
# Both architectures at once: their zlib/OpenSSL builds overlap; the arm64 CPython waits (a lock
# in build_python.py) for the x86_64 interpreter it cross-compiles with.
for arch in x86_64 arm64; do
  ( a=$(stamp); rc=0; ./dev layer "$arch" > ".layer-build-$arch.log" 2>&1 || rc=$?
    echo "prepare: layer $arch $(($(stamp) - a)) s (rc $rc, log .layer-build-$arch.log)" >&2; exit $rc ) &
done
fail=0
for job in $(jobs -p); do wait "$job" || fail=1; done
cat .layer-build-x86_64.log .layer-build-arm64.log
rm -f .layer-build-x86_64.log .layer-build-arm64.log
[ "$fail" = 0 ] || { echo "prepare: building the layers failed" >&2; exit 1; }
t2=$(stamp)

echo "prepare: system $((t1 - t0)) s, layers $((t2 - t1)) s" >&2
