"""Test signals and outside measurements shared by the node tests."""

from __future__ import annotations

import numpy as np


def process(e, x, block: int = 64) -> np.ndarray:
    """x (mono 1-D or frames x channels) through an offline engine, as float64."""
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    return e.process(len(x), np.ascontiguousarray(x), block=block).astype(np.float64)


def bad_signals(n: int, sr: float) -> list[np.ndarray]:
    """What a node must survive without NaN/Inf: NaN, +-Inf, DC, a full-scale
    100 Hz square, silence, a square with NaNs in it, and 3e38."""
    sq = np.sign(np.sin(2 * np.pi * 100 * np.arange(n) / sr)).astype(np.float32)
    return [
        np.full(n, np.nan, np.float32),
        np.full(n, np.inf, np.float32),
        np.full(n, -np.inf, np.float32),
        np.ones(n, np.float32),
        sq,
        np.zeros(n, np.float32),
        np.where(np.arange(n) % 7 == 0, np.nan, sq).astype(np.float32),
        np.full(n, 3e38, np.float32),
    ]


def pitch_track(y, fguess, sr, frame=4096, hop=2048):
    """Outside reference: per 85 ms frame (Hann, 8x zero padding) the strongest
    peak within a factor 1.2 of fguess, then the peaks of harmonics 1-3 near
    k times it, each interpolated by a parabola through the log magnitudes,
    averaged (f_k / k) weighted by magnitude. A steady harmonic tone reads
    to within 0.05 cents (test_estimator_reads_a_known_tone)."""
    w = np.hanning(frame)
    nfft = 8 * frame
    out = []

    def peak(mag, lo, hi):
        a, b = int(lo * nfft / sr), int(hi * nfft / sr) + 1
        k = a + int(np.argmax(mag[a:b]))
        lm = np.log(mag[k - 1:k + 2] + 1e-30)
        den = lm[0] - 2 * lm[1] + lm[2]
        off = 0.5 * (lm[0] - lm[2]) / den if den < 0 else 0.0
        return (k + off) * sr / nfft, mag[k]

    for i in range(0, len(y) - frame, hop):
        mag = np.abs(np.fft.rfft(y[i:i + frame] * w, nfft))
        f1, _ = peak(mag, fguess / 1.2, fguess * 1.2)
        fs, ws = zip(*(peak(mag, k * f1 * 0.97, k * f1 * 1.03) for k in (1, 2, 3)), strict=True)
        out.append(np.average(np.array(fs) / (1, 2, 3), weights=ws))
    return np.array(out)


def partial_hz(y, f_near, sr, rel=0.15, pad=4):
    """Outside reference: the frequency of the strongest spectral peak within a
    factor 1 +- rel of f_near (Hann window over all of y, `pad` x zero padding,
    a parabola through the log magnitudes). A steady sinusoid over 16384
    samples reads to within 0.01 cents."""
    n = len(y)
    nfft = pad * n
    mag = np.abs(np.fft.rfft((y - np.mean(y)) * np.hanning(n), nfft))
    a, b = int(f_near * (1 - rel) * nfft / sr), int(f_near * (1 + rel) * nfft / sr) + 1
    k = a + int(np.argmax(mag[a:b]))
    lm = np.log(mag[k - 1:k + 2] + 1e-300)
    den = lm[0] - 2 * lm[1] + lm[2]
    off = 0.5 * (lm[0] - lm[2]) / den if den < 0 else 0.0
    return (k + off) * sr / nfft


def harmonic_share(y, f0, sr, width_hz=8.0):
    """Share of y's power (DC removed) within +-width_hz of the multiples of
    f0 (Hann window over all of y): 1 for a periodic signal of period 1/f0."""
    n = len(y)
    p = np.abs(np.fft.rfft((y - np.mean(y)) * np.hanning(n))) ** 2
    f = np.arange(len(p)) * sr / n
    k = np.maximum(np.round(f / f0), 1)
    near = np.abs(f - k * f0) <= width_hz
    return float(p[near].sum() / p.sum())


def harmonic_tone(f0, n, sr, kind, amp=0.3):
    """Test tones over the fundamentals a pitch node takes: "sine" (pure),
    "saw" (every harmonic at 1/k up to 8 kHz: a bright, buzzy spectrum) and
    "flute" (1, 0.3, 0.12, 0.05, 0.02: strong fundamental, weak overtones)."""
    t = np.arange(n) / sr
    if kind == "sine":
        amps = [1.0]
    elif kind == "saw":
        amps = [1.0 / k for k in range(1, max(1, int(8000 / f0)) + 1)]
    else:
        amps = [1.0, 0.3, 0.12, 0.05, 0.02]
    y = sum(a * np.sin(2 * np.pi * (k + 1) * f0 * t) for k, a in enumerate(amps)
            if (k + 1) * f0 < 0.45 * sr)
    return amp * y / np.max(np.abs(y))


def assert_same_bits(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    """Two renders (frames x channels, float32) equal bit for bit; a failure names the
    first differing frame and channel (the equivalent paths of the engine: fused or
    not, one thread or two, any block size)."""
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    bad = a.view(np.uint32) != b.view(np.uint32)
    if bad.any():
        f, c = np.argwhere(bad)[0]
        raise AssertionError(f"{what}: first differing frame {f} of {len(a)}, channel {c}: "
                             f"{a[f, c]!r} against {b[f, c]!r}")
