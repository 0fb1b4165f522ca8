#!/usr/bin/env bash
# The bitrate x complexity x FEC table in docs/QUALITY.md: espeak-ng speech (two voices)
# encoded once per setting by the conference's own Opus encoder, decoded at 16 kHz as a
# wideband phone would, scored with PESQ (wideband, PyPI `pesq`); encode CPU per 20 ms frame
# from the same run. Needs espeak-ng, sox and python3 with pesq + numpy.
#   bash scripts/opus-settings-table.sh [out-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/opus-settings}
mkdir -p "$out"
espeak-ng -v en-us -s 150 -w "$out/a.wav" "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. It is easy to tell the depth of a well. These days a chicken leg is a rare dish."
espeak-ng -v en-gb+f3 -s 160 -w "$out/b.wav" "Rice is often served in round bowls. The juice of lemons makes fine punch. The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage."
sox "$out/a.wav" "$out/b.wav" -r 48000 -c 1 -b 16 -e signed "$out/speech48.raw" norm -3
sox -r 48000 -c 1 -b 16 -e signed "$out/speech48.raw" -r 16000 -b 16 -e signed "$out/ref16.raw"
cargo build --release -q -p mixminus-rtp --example opus_settings
bin=target/release/examples/opus_settings
echo "| bitrate | complexity | FEC | PESQ WB | kbit/s sent | encode µs / 20 ms |"
echo "|---:|---:|:---:|---:|---:|---:|"
for bitrate in 24000 32000 40000 48000; do
  for complexity in 5 8 10; do
    for fec in 0 1; do
      read -r kbps us < <("$bin" "$out/speech48.raw" "$out/deg16.raw" "$bitrate" "$complexity" "$fec" 5)
      score=$(python3 - "$out/ref16.raw" "$out/deg16.raw" <<'PY'
import sys, numpy as np
from pesq import pesq
ref = np.fromfile(sys.argv[1], dtype='<i2').astype(np.float32)
deg = np.fromfile(sys.argv[2], dtype='<i2').astype(np.float32)
n = min(len(ref), len(deg))
# The decoder's output lags by the codec delay; PESQ aligns it itself.
print(f"{pesq(16000, ref[:n], deg[:n], 'wb'):.2f}")
PY
)
      echo "| $bitrate | $complexity | $([ "$fec" = 1 ] && echo on || echo off) | $score | $kbps | $us |"
    done
  done
done
