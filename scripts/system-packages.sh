#!/usr/bin/env bash
# System packages the service and its tests need beyond Python: nginx, the buffering front
# server that `reporting-proxy serve` runs (docs/serving.md), and Chromium with its driver, the
# real browser the tests in tests/browser drive (docs/console.md), and PostgreSQL 15, the shared
# access store of several hosts that `reporting-proxy postgres up` runs locally for the tests
# (docs/several-hosts.md). Debian/Ubuntu only; needs root for apt-get. Does nothing when all are
# already installed.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
if [ ${#missing[@]} = 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system-packages: missing ${missing[*]}; installing needs root." >&2
    echo "  run: sudo $0    (or: sudo apt-get install ${missing[*]})" >&2
    echo "  without nginx: serve behind your own buffering proxy, reporting-proxy serve --no-front (docs/serving.md)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: no apt-get here; install ${missing[*]} with this system's package manager." >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# nginx-light is Debian's smallest build with the proxy module; the service needs nothing more.
apt-get install -y -q --no-install-recommends "${missing[@]}"
