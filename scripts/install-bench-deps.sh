#!/usr/bin/env bash
# Installs what `mixminus bench` needs beyond scripts/install-deps.sh, only what is missing:
# Janus (Debian's `janus`, the AudioBridge peer), espeak-ng (the quality bench's talkers) and,
# for PESQ scoring, Python's numpy and pesq (PyPI; pesq builds from source, about 1-2 min).
# CI does not run the benches and does not need these. Uses sudo when not root.
set -euo pipefail

need=()
command -v janus >/dev/null || need+=(janus)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v python3 >/dev/null || need+=(python3 python3-pip python3-dev)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-bench-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! python3 -c "import numpy, pesq" 2>/dev/null; then
  echo "install-bench-deps: pip installing numpy and pesq"
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told otherwise.
  python3 -m pip install -q numpy pesq 2>/dev/null \
    || python3 -m pip install -q --break-system-packages numpy pesq
fi
echo "install-bench-deps: done"
