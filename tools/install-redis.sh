#!/usr/bin/env bash
# redis-server (Debian's) for the cluster test (signal-server/cluster/*.test.ts)
# and the 3-process capacity bench, which start and stop their own redis-server
# on loopback, on a free port with a temporary directory. Installed with apt-get
# as root (as `.ci/run` runs); anywhere else this says how and fails. Does
# nothing when redis-server is already on PATH.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then exit 0; fi

if [ "$(id -u)" -ne 0 ] || [ ! -x /usr/bin/apt-get ]; then
  echo "error: redis-server is missing; the cluster test (several server processes sharing one swarm) needs it." >&2
  echo "Install it (Debian or Ubuntu: sudo apt-get install -y redis-server), or run this script as root." >&2
  exit 1
fi

echo "installing redis-server (Debian's) for the cluster test"
export DEBIAN_FRONTEND=noninteractive
# The package's service is not needed (the tests run their own redis-server); where no init system runs, it does not start.
apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
command -v redis-server >/dev/null
echo "redis-server installed at $(command -v redis-server)"
