#!/usr/bin/env bash
# coturn (Debian's TURN server) for e2e/relay.spec.ts, which starts and stops
# its own `turnserver` on loopback with a generated config. Installed with
# apt-get as root (as `.ci/run` runs); anywhere else this says how and fails.
# Does nothing when turnserver is already on PATH.
set -euo pipefail

if command -v turnserver >/dev/null 2>&1; then exit 0; fi

if [ "$(id -u)" -ne 0 ] || [ ! -x /usr/bin/apt-get ]; then
  echo "error: turnserver (coturn) is missing; e2e/relay.spec.ts needs it." >&2
  echo "Install it (Debian or Ubuntu: sudo apt-get install -y coturn), or run this script as root." >&2
  exit 1
fi

echo "installing coturn (Debian's TURN server) for the relayed-mesh test"
export DEBIAN_FRONTEND=noninteractive
# The package's service is not needed (the test runs its own turnserver); where no init system runs, it does not start.
apt-get install -y -qq coturn >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq coturn >/dev/null)
command -v turnserver >/dev/null
echo "turnserver installed at $(command -v turnserver)"
