#!/usr/bin/env bash
# System packages the service needs beyond Python: nginx, the buffering front server that
# `reporting-proxy serve` runs (docs/serving.md). Debian/Ubuntu only; needs root for apt-get.
# Does nothing when nginx is already on the PATH (or in /usr/sbin).
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "system-packages: nginx is missing and installing it needs root." >&2
    echo "  run: sudo $0    (or: sudo apt-get install nginx-light)" >&2
    echo "  or serve behind your own buffering proxy: reporting-proxy serve --no-front (docs/serving.md)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: no apt-get here; install nginx (>= 1.18) with this system's package manager." >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# nginx-light is Debian's smallest build with the proxy module; the service needs nothing more.
apt-get install -y -q --no-install-recommends nginx-light
