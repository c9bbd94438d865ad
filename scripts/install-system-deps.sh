#!/usr/bin/env bash
# Debian packages the tests use: a real XRootD server, and Chromium for the
# JupyterLab browser test (Playwright drives /usr/bin/chromium); with the
# argument "bench", also wrk and h2load (nghttp2-client), the load generators of
# benchmarks/bench_serve.py.
# Without root or apt the tests that need them skip and say why.
set -u
missing=()
command -v xrootd >/dev/null 2>&1 || missing+=(xrootd-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ "${1:-}" = bench ] && ! command -v wrk >/dev/null 2>&1 && missing+=(wrk)
[ "${1:-}" = bench ] && ! command -v h2load >/dev/null 2>&1 && missing+=(nghttp2-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: ${missing[*]} not installed and cannot install (needs root and apt-get);" \
         "the tests that need it will skip" >&2
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "note: apt-get install ${missing[*]} failed; the tests that need it will skip" >&2
exit 0
