#!/usr/bin/env python3
"""Scores degraded speech against its reference with PESQ wideband (ITU-T P.862.2, PyPI `pesq`).

Used by `mixminus bench --quality`. Reads a JSON list of {"ref": wav, "deg": wav} on stdin
(16 kHz mono 16-bit), writes one JSON list of {"lag": samples, "pesq": score, "seconds": s}:
`lag` is where the reference lines up in the degraded file (deg[n + lag] ~ ref[n]), found by
cross-correlation (within +-2 s); PESQ is computed on the overlapping, aligned part.
"""
import json
import sys
import wave

import numpy as np
from pesq import pesq

RATE = 16000
MAX_LAG = 2 * RATE


def read(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: need 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def lag_of(ref, deg):
    n = 1
    while n < len(ref) + len(deg):
        n *= 2
    corr = np.fft.irfft(np.conj(np.fft.rfft(ref, n)) * np.fft.rfft(deg, n), n)
    # corr[k] = sum ref[i] deg[i + k]; negative k wrap to the end.
    lags = np.concatenate([np.arange(0, MAX_LAG + 1), np.arange(-MAX_LAG, 0)])
    values = np.concatenate([corr[: MAX_LAG + 1], corr[n - MAX_LAG :]])
    return int(lags[int(np.argmax(values))])


def score(ref, deg):
    lag = lag_of(ref, deg)
    if lag >= 0:
        deg = deg[lag:]
    else:
        ref = ref[-lag:]
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    value = float(pesq(RATE, ref.astype(np.int16), deg.astype(np.int16), "wb"))
    return {"lag": lag, "pesq": value, "seconds": n / RATE}


def main():
    jobs = json.load(sys.stdin)
    out = []
    for job in jobs:
        try:
            out.append(score(read(job["ref"]), read(job["deg"])))
        except Exception as e:  # one bad file must not lose the others' scores
            out.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
