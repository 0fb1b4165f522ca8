#!/usr/bin/env bash
# Installs the system packages mixminus needs on a fresh Debian/Ubuntu machine, and only those
# that are missing: libopus (or cmake for the bundled build) for the codecs, GStreamer for
# the end-to-end tests that use it as a real RTP client, GStreamer's development files for
# the `mixminus` GStreamer element (crates/gst-mixminus), and for the quality smoke test
# (tests/quality_smoke.rs) espeak-ng plus Python's numpy and pesq (PyPI; pesq builds from
# source: a C compiler and Python headers, about a minute), baresip for the SIP tests,
# nats-server for the fleet tests (tests/fleet_nats.rs; Debian installs it in /usr/sbin), and
# for the browser tests (tests/browser_ui.rs, tests/browser_webrtc.rs) Debian's chromium and
# chromium-driver, and OpenSSL's development files for the WebRTC legs' DTLS. Uses sudo
# when not root.
set -euo pipefail

need=()
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev pkg-config cmake)
# WebRTC legs (str0m): DTLS-SRTP through the system OpenSSL.
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev pkg-config)
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
command -v espeak-ng >/dev/null || need+=(espeak-ng)
# The SIP tests (tests/sip_baresip.rs) call in with baresip: its core package has the
# modules they load (aufile, sndfile, g711, srtp, ctrl_tcp, menu, aubridge).
[ -f /usr/lib/baresip/modules/aufile.so ] && command -v baresip >/dev/null \
  || need+=(baresip-core)
# tests/browser_ui.rs: the moderator page in headless Chromium, driven through chromedriver.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
pesq_ok() { python3 -c "import numpy, pesq" 2>/dev/null; }
if ! pesq_ok; then
  command -v python3 >/dev/null || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  command -v cc >/dev/null || need+=(gcc)
  # Python's headers, for pesq's C extension (Debian's python3; a pyenv Python has its own).
  python3 -c "import sysconfig, os, sys; \
    sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
    2>/dev/null || need+=(python3-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! pesq_ok; then
  echo "install-deps: pip installing numpy and pesq"
  # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told otherwise.
  python3 -m pip install -q numpy pesq 2>/dev/null \
    || python3 -m pip install -q --break-system-packages numpy pesq
  pesq_ok
fi
echo "install-deps: done"

