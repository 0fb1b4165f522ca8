#!/usr/bin/env bash
# Installs what `mixminus bench` needs beyond scripts/install-deps.sh (which it runs first, for
# espeak-ng, numpy and pesq): Janus (Debian's `janus`), the AudioBridge peer the benches
# compare against. CI does not run Janus. Uses sudo when not root.
set -euo pipefail
cd "$(dirname "$0")"
bash ./install-deps.sh
if ! command -v janus >/dev/null; then
  echo "install-bench-deps: installing janus"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends janus
fi
echo "install-bench-deps: done"
