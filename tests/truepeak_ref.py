"""Independent true-peak references for the limiter and render tests, and the
signals that stress a true-peak limiter.

Neither reference shares anything with the engine's detectors (no BS.1770
Annex 2 coefficients, no code from csrc/):

- ``tp_poly8_db``: 8x polyphase oversampling by ``scipy.signal.resample_poly``
  with a long Kaiser-windowed sinc (64 input samples either side, beta 8.6:
  flat within 0.001 dB to 22.5 kHz at 48 kHz, 85 dB image rejection), max |.|.
- ``tp_fft_db``: ideal band-limited interpolation, 16x by FFT (the samples
  with silence before and after, zero-padded spectrum, the Nyquist bin split
  as ``scipy.signal.resample`` does). Between its points it can read at most
  1 - cos(pi / 32), 0.04 dB, low (a tone at fs/2); under 20 kHz 0.03 dB.

Both read the signal's peak between samples; a true-peak limiter's output
must stay under its ceiling as both see it."""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import fft as sfft
from scipy import signal

SR = 48000


@functools.cache
def _poly8_fir() -> np.ndarray:
    half = 64 * 8
    # unity DC gain: resample_poly scales by `up` itself
    return signal.firwin(2 * half + 1, 1.0 / 8, window=("kaiser", 8.6))


def _as2d(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x[:, None] if x.ndim == 1 else x


def tp_poly8_db(x) -> float:
    """dBTP of x (n,) or (n, ch) by 8x resample_poly with a long Kaiser FIR."""
    x = _as2d(x)
    pad = np.zeros((80, x.shape[1]))
    up = signal.resample_poly(np.concatenate([pad, x, pad]), 8, 1, axis=0, window=_poly8_fir())
    return 20 * math.log10(max(float(np.max(np.abs(up))), 1e-30))


def tp_fft_db(x, over: int = 16) -> float:
    """dBTP of x (n,) or (n, ch) by ideal (FFT) band-limited interpolation."""
    x = _as2d(x)
    n = sfft.next_fast_len(len(x) + 8192, real=True)
    if n % 2:
        n += 1
    X = sfft.rfft(x, n, axis=0)
    X[-1] *= 0.5  # the Nyquist bin is split between +fs/2 and -fs/2
    peak = 0.0
    # one channel at a time keeps the 16x signal small
    for c in range(x.shape[1]):
        y = sfft.irfft(X[:, c], n * over) * over
        peak = max(peak, float(np.max(np.abs(y))))
    return 20 * math.log10(max(peak, 1e-30))


def true_peak_db(x) -> float:
    """The higher of the two independent readings."""
    return max(tp_poly8_db(x), tp_fft_db(x))


# --- signals: each (n, channels) float64, loud enough to need heavy limiting


def _brickwall(x: np.ndarray, f_hi: float) -> np.ndarray:
    X = np.fft.rfft(x, axis=0)
    f = np.fft.rfftfreq(len(x), 1 / SR)
    X[f > f_hi] = 0.0
    return np.fft.irfft(X, len(x), axis=0)


def _scale_to(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Sample peak at dbfs."""
    return x * (10 ** (dbfs / 20) / np.max(np.abs(x)))


def _faded(x: np.ndarray, fade: int = 480) -> np.ndarray:
    """10 ms half-Hann fades at both ends: a tone near fs/2 cut abruptly rings
    (its ideal interpolation overshoots by more than 1 dB at the cut)."""
    w = np.hanning(2 * fade)
    x[:fade] *= w[:fade, None]
    x[-fade:] *= w[fade:, None]
    return x


def stress_signal(kind: str, seconds: float = 0.5, channels: int = 2, seed: int = 1) -> np.ndarray:
    """A signal of one class, 12 dB or so over full scale."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    if kind in ("noise16k", "noise20k"):
        x = _brickwall(rng.standard_normal((n, channels)), 16000 if kind == "noise16k" else 20000)
        return _scale_to(x, 12.0)
    if kind == "noise":
        return _scale_to(rng.standard_normal((n, channels)), 12.0)
    if kind == "bursts":
        # full-band bursts of 2 to 40 ms over a bed 30 dB down
        x = rng.standard_normal((n, channels)) * 0.03
        pos = 0
        while pos < n:
            m = int(rng.uniform(0.002, 0.04) * SR)
            x[pos:pos + m] = rng.standard_normal((min(m, n - pos), channels))
            pos += m + int(rng.uniform(0.005, 0.05) * SR)
        return _scale_to(x, 12.0)
    if kind == "sweep":
        # log sweep 20 Hz -> 23.9 kHz at +6 dBFS
        f0, f1 = 20.0, 23900.0
        k = math.log(f1 / f0)
        ph = 2 * np.pi * f0 * seconds / k * (np.exp(t / seconds * k) - 1)
        return _faded(2.0 * np.sin(ph[:, None] + np.arange(channels)[None, :] * 0.7))
    if kind == "square":
        # sines hard-clipped to squares (aliased, full band), 440 Hz and 3.1 kHz
        f = np.array([440.0, 3100.0, 440.0, 3100.0][:channels])
        x = np.clip(8 * np.sin(2 * np.pi * f[None, :] * t[:, None] + 0.3), -1, 1)
        return x * 4.0
    if kind.startswith("sine"):
        # sine@F: a tone at F Hz, +6 dBFS, a different phase on each channel
        f = float(kind.split("@")[1])
        ph = np.array([0.0, 0.9, 1.7, 2.6][:channels])
        return _faded(2.0 * np.sin(2 * np.pi * f * t[:, None] + ph[None, :]))
    raise ValueError(kind)


KINDS = ["noise16k", "noise20k", "noise", "bursts", "sweep", "square",
         "sine@11900", "sine@12000", "sine@19000", "sine@20000", "sine@22000", "sine@23000"]
