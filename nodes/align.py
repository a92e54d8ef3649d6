"""Actions of the `align` node: measure a channel's offset against its reference.

``/node/<name>/measure [seconds] [max_ms]`` records `seconds` of the node's
input and of its `ref` port on the audio thread (the C node's capture
buffer), cross-correlates them here on the control thread, and sets the
node's `delay` (and `invert`, when the two are in opposite polarity) so the
input lines up with the reference. It answers

    /done /node/<name>/measure <delay_ms> <confidence> <invert>

or ``/fail`` with the reason when there is nothing to align: a silent input
or reference, no correlation above 0.2 (unrelated signals), an ambiguous
match (a periodic signal correlates equally well at several lags), or an
input that is *behind* the reference (a delay cannot move it earlier: align
the other channel instead). A failed measurement leaves the delay alone.
"""

from __future__ import annotations

import numpy as np

from mixgraph.server.actions import Action, action
from mixgraph.server.errors import MixgraphError

MIN_CONFIDENCE = 0.2  # normalised cross-correlation peak
AMBIGUOUS = 0.95  # a second peak this close to the first: periodic signal
MAX_DELAY_MS = 500.0  # the C node's delay range
SILENT_RMS = 1e-5  # -100 dBFS


def measure_offset(x: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[float, float, bool]:
    """(lag in samples, confidence 0..1, inverted) that best maps x onto ref.

    ref[n] ~ +-x[n - lag]; lag is fractional (parabolic interpolation of the
    cross-correlation peak). Raises MixgraphError when there is no clear match.
    """
    x = np.asarray(x, np.float64) - np.mean(x)
    ref = np.asarray(ref, np.float64) - np.mean(ref)
    n = min(len(x), len(ref))
    x, ref = x[:n], ref[:n]
    ex, er = float(np.dot(x, x)), float(np.dot(ref, ref))
    if n == 0 or ex < n * SILENT_RMS**2:
        raise MixgraphError("the input is silent: nothing to align")
    if er < n * SILENT_RMS**2:
        raise MixgraphError("the reference is silent: nothing to align against")
    size = 1 << int(np.ceil(np.log2(2 * n)))
    c = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(x, size)), size)
    max_lag = min(max_lag, n - 1)
    lags = np.arange(-max_lag, max_lag + 1)
    cc = c[lags % size] / np.sqrt(ex * er)
    mag = np.abs(cc)
    k = int(np.argmax(mag))
    peak = float(mag[k])
    if peak < MIN_CONFIDENCE:
        raise MixgraphError(f"no reliable match: correlation {peak:.2f} "
                            f"(below {MIN_CONFIDENCE}); are these the same source?")
    # a second local maximum nearly as high: the match is ambiguous
    inner = (mag[1:-1] >= mag[:-2]) & (mag[1:-1] >= mag[2:])
    peaks = np.flatnonzero(inner) + 1
    others = mag[peaks[np.abs(peaks - k) > 1]]
    if others.size and float(others.max()) >= AMBIGUOUS * peak:
        raise MixgraphError(f"ambiguous match: correlation {peak:.2f} at several lags "
                            "(a periodic signal?); measure over a passage with transients")
    frac = 0.0
    if 0 < k < len(mag) - 1:
        a, b, d = mag[k - 1], mag[k], mag[k + 1]
        den = a - 2 * b + d
        if den < 0:
            frac = float(np.clip(0.5 * (a - d) / den, -0.5, 0.5))
    return float(lags[k]) + frac, peak, bool(cc[k] < 0)


@action("align", "measure", usage="/node/<name>/measure [seconds=2] [max_ms=50]",
        triggers=("capture",))
def measure(a: Action, args: list) -> None:
    """Record input and reference, cross-correlate them and set delay (and invert).

    Answers /done <address> <delay_ms> <confidence> <invert>; /fail when the
    signals are silent, unrelated, ambiguous, or the input is behind the reference."""
    if len(args) > 2:
        raise MixgraphError(f"usage: {a.spec.usage}")
    seconds = a.number(args, 0, "seconds", lo=0.1, hi=8.0, default=2.0)
    max_ms = a.number(args, 1, "max_ms", lo=0.1, hi=MAX_DELAY_MS, default=50.0)
    a.set("capture", 0.0)  # restart a capture already under way
    a.set("capture", seconds)
    want = int(round(seconds * a.rate))

    def finish() -> None:
        data = a.capture(2 * want + 2)
        a.set("capture", 0.0)
        half = len(data) // 2
        try:
            lag, confidence, inverted = measure_offset(data[:half], data[half:],
                                                       int(max_ms * 1e-3 * a.rate))
        except MixgraphError as e:
            a.fail(str(e))
            return
        delay_ms = lag / a.rate * 1e3
        if delay_ms < -0.01:
            a.fail(f"the input is {-delay_ms:.3f} ms behind the reference: a delay cannot "
                   "move it earlier (put the align node on the reference's path instead)")
            return
        delay_ms = max(delay_ms, 0.0)
        a.set("delay", delay_ms)
        a.set("invert", float(inverted))
        a.done(float(round(delay_ms, 4)), float(round(confidence, 3)), int(inverted))

    a.when(lambda: a.readout("captured")[0] >= 1.0, finish, seconds,
           give_up=lambda: a.set("capture", 0.0))
