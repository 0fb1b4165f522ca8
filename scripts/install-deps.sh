#!/usr/bin/env bash
# Installs the system packages mixminus needs on a fresh Debian/Ubuntu machine, and only those
# that are missing: libopus (or cmake for the bundled build) for the codecs, and GStreamer for
# the end-to-end tests that use it as a real RTP client, and GStreamer's development files for
# the `mixminus` GStreamer element (crates/gst-mixminus). Uses sudo when not root.
set -euo pipefail

need=()
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev pkg-config cmake)
command -v c++ >/dev/null || need+=(g++)   # libFuzzer's C++ sources, for fuzz/
command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
gst-inspect-1.0 opusenc >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-base)
gst-inspect-1.0 rtpopuspay >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-good)
# crates/gst-mixminus: the Rust bindings link against these; its tests use wavenc (good).
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists gstreamer-1.0 gstreamer-base-1.0 gstreamer-check-1.0 2>/dev/null \
  || need+=(libgstreamer1.0-dev)
pkg-config --exists gstreamer-audio-1.0 gstreamer-app-1.0 2>/dev/null \
  || need+=(libgstreamer-plugins-base1.0-dev)
gst-inspect-1.0 wavenc >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-good)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  echo "install-deps: nothing to install"
fi
