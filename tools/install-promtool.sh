#!/usr/bin/env bash
# promtool (Prometheus's checker) for the /metrics test: Debian's `prometheus`
# package is large and installs a service, so only usr/bin/promtool is taken
# out of the downloaded package, into .cache/tools/bin/. Does nothing when
# promtool is already on PATH or in the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=.cache/tools/bin
if command -v promtool >/dev/null 2>&1 || [ -x "$dest/promtool" ]; then exit 0; fi

echo "installing promtool (from Debian's prometheus package) into $dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && (apt-get download -qq prometheus 2>/dev/null || (apt-get update -qq && apt-get download -qq prometheus)))
dpkg -x "$work"/prometheus_*.deb "$work/root"
mkdir -p "$dest"
install -m 0755 "$work/root/usr/bin/promtool" "$dest/promtool"
"$dest/promtool" --version | head -n 1
