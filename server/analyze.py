"""Loudness and level analysis of audio, measured by the engine's own C meter.

`measure_file()` / `LoudnessMeter` feed audio through an offline Engine
holding one `meter` node (nodes/meter.c): integrated loudness
(ITU-R BS.1770-4 / EBU R 128 gating), loudness range (EBU Tech 3342), true
peak (BS.1770-4 Annex 2, 4x oversampled) and, every 100 ms, the momentary
(400 ms) and short-term (3 s) loudness. The sample peak is the largest
absolute sample; the long-term average spectrum is a Welch estimate (Hann
window, 50 % overlap, no detrending, averaged over the channels).

`mixgraph analyze FILE [--plot OUT.png] [--json]` prints these figures; the
plot needs matplotlib (`pip install mixgraph[plot]`). `mixgraph render
--target-lufs` uses the same meter for its two-pass normalisation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from .engine import Engine
from .errors import MixgraphError
from .session import Session

# the meter reports -200 LUFS / dB when there is nothing to measure
FLOOR = -199.0
READ_FRAMES = 1 << 16  # frames per read from a sound file
MAX_CHANNELS = 64  # the meter node's limit


def _db_or_none(v: float) -> float | None:
    return None if not math.isfinite(v) or v <= FLOOR else float(v)


def _amp_db(a: float) -> float | None:
    return 20.0 * math.log10(a) if a > 0.0 and math.isfinite(a) else None


@dataclass
class Analysis:
    """Figures of one piece of audio. None: nothing to measure (silence, too short)."""

    rate: float
    channels: int
    frames: int
    integrated: float | None  # LUFS, gated (BS.1770-4)
    lra: float | None  # LU (EBU Tech 3342); None when shorter than one 3 s block
    true_peak: float | None  # dBTP, highest over the channels
    true_peak_ch: list[float | None]
    sample_peak: float | None  # dBFS, highest over the channels
    sample_peak_ch: list[float | None]
    max_momentary: float | None  # LUFS
    max_shortterm: float | None  # LUFS
    nonfinite: int = 0  # NaN/Inf samples met (measured as 0)
    true_peak_hq: float | None = None  # dBTP, TruePeakHQ (with hq=True)
    # with curves=True: one value per 100 ms (NaN where there is nothing to measure)
    momentary: np.ndarray | None = None
    shortterm: np.ndarray | None = None
    # with spectrum=True: Welch long-term average spectrum
    freqs: np.ndarray | None = None
    spectrum_db: np.ndarray | None = None
    path: str | None = None
    format: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    @property
    def plr(self) -> float | None:
        """Peak-to-loudness ratio (true peak minus integrated loudness), LU."""
        if self.true_peak is None or self.integrated is None:
            return None
        return self.true_peak - self.integrated

    def to_dict(self) -> dict:
        """JSON-ready figures (None: nothing to measure), rounded to 1e-4."""
        def r(v):
            if isinstance(v, list):
                return [r(u) for u in v]
            return None if v is None else round(float(v), 4)

        d = {
            "duration_s": self.duration, "sample_rate": self.rate, "channels": self.channels,
            "frames": self.frames, "integrated_lufs": r(self.integrated),
            "lra_lu": r(self.lra), "true_peak_dbtp": r(self.true_peak),
            "true_peak_dbtp_per_channel": r(self.true_peak_ch),
            "sample_peak_dbfs": r(self.sample_peak),
            "sample_peak_dbfs_per_channel": r(self.sample_peak_ch),
            "max_momentary_lufs": r(self.max_momentary),
            "max_shortterm_lufs": r(self.max_shortterm),
            "plr_lu": r(self.plr), "nonfinite_samples": self.nonfinite,
            "true_peak_long_filter_dbtp": r(self.true_peak_hq),
        }
        if self.path is not None:
            d = {"file": self.path, "format": self.format, **d}
        return d


class _Welch:
    """Streaming Welch average: Hann window of nfft, hop nfft/2, full segments only."""

    def __init__(self, rate: float, nfft: int) -> None:
        self.rate, self.nfft, self.hop = rate, nfft, nfft // 2
        self.win = np.hanning(nfft + 1)[:-1]  # periodic Hann, as scipy's get_window
        self.acc = np.zeros(nfft // 2 + 1)
        self.segments = 0
        self.buf: np.ndarray | None = None

    def feed(self, x: np.ndarray) -> None:
        """x: (n, ch) samples; the power spectrum is averaged over the channels."""
        buf = x if self.buf is None else np.concatenate([self.buf, x])
        s = 0
        while s + self.nfft <= len(buf):
            seg = buf[s:s + self.nfft].astype(np.float64)
            spec = np.fft.rfft(seg * self.win[:, None], axis=0)
            self.acc += np.mean(np.abs(spec) ** 2, axis=1)
            self.segments += 1
            s += self.hop
        self.buf = buf[s:].copy()

    def result(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.segments:
            return None
        # 'spectrum' scaling: a sine of amplitude A reads A^2/2 at its bin (its RMS level)
        p = self.acc / self.segments / np.sum(self.win) ** 2
        p[1:-1 if self.nfft % 2 == 0 else None] *= 2.0
        f = np.fft.rfftfreq(self.nfft, 1.0 / self.rate)
        with np.errstate(divide="ignore"):
            return f, 10.0 * np.log10(np.maximum(p, 1e-30))


class TruePeakHQ:
    """A second true-peak reading, kinder to content near fs/2 than the BS.1770
    Annex 2 filter (12 taps per phase, whose response falls off towards
    Nyquist, so full-band material reads up to a few tenths of a dB low):
    4x oversampling by a Kaiser-windowed sinc (beta 9, 64 taps per phase,
    cutoff at the original fs/2), computed with FFTs a block at a time.
    `render --true-peak` checks against the larger of both readings."""

    TAPS = 64  # per phase
    FFT = 1 << 14

    def __init__(self, channels: int) -> None:
        m = 4 * self.TAPS
        n = np.arange(m) - (m - 1) / 2.0
        h = np.sinc(n / 4.0) * np.kaiser(m, 9.0)
        h *= 4.0 / np.sum(h)
        # polyphase: output 4i+k = sum_j h[4j+k] x[i-j]
        self.H = np.fft.rfft(h.reshape(self.TAPS, 4).T, self.FFT, axis=1)  # (4, bins)
        self.carry = np.zeros((self.TAPS - 1, channels))
        self.peak = 0.0

    def feed(self, x: np.ndarray) -> None:
        step = self.FFT - (self.TAPS - 1)
        for i in range(0, len(x), step):
            ext = np.concatenate([self.carry, x[i:i + step].astype(np.float64)])
            self.carry = ext[-(self.TAPS - 1):]
            X = np.fft.rfft(ext, self.FFT, axis=0)  # (bins, ch)
            y = np.fft.irfft(self.H[:, :, None] * X[None], self.FFT, axis=1)
            v = y[:, self.TAPS - 1:len(ext)]  # overlap-save: the circular wrap is cut
            if v.size:
                self.peak = max(self.peak, float(np.max(np.abs(v))))

    def flush(self) -> None:
        self.feed(np.zeros((self.TAPS, self.carry.shape[1])))  # the filter's tail


def welch_nfft(rate: float, frames: int | None) -> int:
    """About 170 ms of audio (8192 at 48 kHz), smaller for short files (>= 256)."""
    n = 1 << int(round(math.log2(max(rate * 0.17, 256))))
    if frames is not None:
        while n > 256 and n > frames:
            n //= 2
    return n


class LoudnessMeter:
    """Audio chunks (frames, channels) in; the C meter node's figures out."""

    def __init__(self, rate: float, channels: int, curves: bool = False,
                 spectrum: bool = False, frames_hint: int | None = None,
                 hq: bool = False) -> None:
        if not 1 <= channels <= MAX_CHANNELS:
            raise MixgraphError(f"{channels} channels: the meter takes 1..{MAX_CHANNELS}")
        if not rate > 0:
            raise MixgraphError(f"bad sample rate {rate}")
        self.rate, self.channels, self.curves = float(rate), channels, curves
        self.hop = max(1, int(round(0.1 * rate)))  # the meter's 100 ms grid
        self.pos = 0
        self.frames = 0
        self.nonfinite = 0
        self.peak = np.zeros(channels)
        self.mom: list[float] = []
        self.st: list[float] = []
        self.welch = _Welch(self.rate, welch_nfft(rate, frames_hint)) if spectrum else None
        self.hq = TruePeakHQ(channels) if hq else None
        self.engine = Engine(self.rate, channels, 0)
        self.session = Session(self.engine)
        try:
            self.session.add_node("input", "in", {"channels": channels})
            self.session.add_node("meter", "m", {"channels": channels})
            self.session.connect("in", "m")
            self.session.commit()
        except BaseException:
            self.close()
            raise

    def feed(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.shape[1] != self.channels:
            raise MixgraphError(f"{x.shape[1]} channels fed to a {self.channels}-channel meter")
        n = len(x)
        if not n:
            return
        fin = np.isfinite(x)
        if not fin.all():
            self.nonfinite += int(np.size(x) - np.count_nonzero(fin))
            x = np.where(fin, x, np.float32(0.0))
        self.peak = np.maximum(self.peak, np.max(np.abs(x), axis=0))
        if self.welch is not None:
            self.welch.feed(x)
        if self.hq is not None:
            self.hq.feed(x)
        self.frames += n
        if not self.curves:
            self.engine.process(n, x)
            return
        i = 0
        while i < n:  # stop at every 100 ms boundary to read momentary and short-term
            m = min(self.hop - self.pos, n - i)
            self.engine.process(m, x[i:i + m])
            self.pos += m
            i += m
            if self.pos == self.hop:
                self.pos = 0
                self.mom.append(self.session.readout("m", "momentary")[0])
                self.st.append(self.session.readout("m", "shortterm")[0])

    def result(self) -> Analysis:
        r = self.session.readout
        tp = [_db_or_none(v) for v in r("m", "truepeak")]
        sp = [_amp_db(float(v)) for v in self.peak]
        mom = np.array(self.mom, dtype=np.float64)
        st = np.array(self.st, dtype=np.float64)
        mom[mom <= FLOOR] = np.nan
        st[st <= FLOOR] = np.nan
        # momentary needs 4 sub-blocks (400 ms), short-term 30 (3 s) of audio
        mom_valid, st_valid = mom[3:], st[29:]
        a = Analysis(
            rate=self.rate, channels=self.channels, frames=self.frames,
            integrated=_db_or_none(r("m", "integrated")[0]),
            lra=float(r("m", "lra")[0]) if self.frames >= 30 * self.hop else None,
            true_peak=max((v for v in tp if v is not None), default=None), true_peak_ch=tp,
            sample_peak=max((v for v in sp if v is not None), default=None), sample_peak_ch=sp,
            max_momentary=_nanmax(mom_valid) if self.curves else None,
            max_shortterm=_nanmax(st_valid) if self.curves else None,
            nonfinite=self.nonfinite,
        )
        if self.hq is not None:
            self.hq.flush()
            a.true_peak_hq = _amp_db(self.hq.peak)
        if self.curves:
            a.momentary, a.shortterm = mom, st
        if self.welch is not None:
            got = self.welch.result()
            if got is not None:
                a.freqs, a.spectrum_db = got
        return a

    def close(self) -> None:
        if self.engine is not None:
            self.session.close()
            self.engine.free()
            self.engine = None

    def __enter__(self) -> LoudnessMeter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _nanmax(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.max(v)) if len(v) else None


def measure(x: np.ndarray, rate: float, curves: bool = False, spectrum: bool = False,
            hq: bool = False) -> Analysis:
    """Figures of an array (frames,) or (frames, channels)."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    with LoudnessMeter(rate, x.shape[1], curves, spectrum, frames_hint=len(x), hq=hq) as m:
        for i in range(0, len(x), READ_FRAMES):
            m.feed(x[i:i + READ_FRAMES])
        return m.result()


def measure_file(path: str | Path, curves: bool = False, spectrum: bool = False,
                 hq: bool = False) -> Analysis:
    """Figures of a sound file, read a block at a time (any length)."""
    try:
        f = sf.SoundFile(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise MixgraphError(f"cannot read {path}: {e}") from None
    with f:
        frames = f.frames if f.seekable() else None
        with LoudnessMeter(f.samplerate, f.channels, curves, spectrum, frames_hint=frames,
                           hq=hq) as m:
            for blk in f.blocks(READ_FRAMES, dtype="float32", always_2d=True):
                m.feed(blk)
            a = m.result()
        a.path, a.format = str(path), f"{f.format} {f.subtype}"
    return a


# ---- presentation ---------------------------------------------------------------------

def _fmt(v: float | None, unit: str, spec: str = ".1f") -> str:
    return "—" if v is None else f"{v:{spec}} {unit}"


def table_rows(a: Analysis) -> list[tuple[str, str]]:
    rows = []
    if a.path is not None:
        rows += [("file", a.path), ("format", a.format or "")]
    rows += [
        ("duration", f"{a.duration:.3f} s ({a.frames} frames)"),
        ("sample rate", f"{a.rate:g} Hz"),
        ("channels", str(a.channels)),
        ("integrated loudness", _fmt(a.integrated, "LUFS")),
        ("loudness range", _fmt(a.lra, "LU")),
        ("true peak", _fmt(a.true_peak, "dBTP", ".2f")),
    ]
    if a.true_peak_hq is not None:
        rows.append(("true peak, long filter", _fmt(a.true_peak_hq, "dBTP", ".2f")))
    rows += [
        ("sample peak", _fmt(a.sample_peak, "dBFS", ".2f")),
    ]
    if a.channels > 1:
        rows.append(("true peak per channel",
                     "  ".join(_fmt(v, "", ".2f").strip() for v in a.true_peak_ch)))
    if a.max_momentary is not None or a.max_shortterm is not None:
        rows += [("max momentary", _fmt(a.max_momentary, "LUFS")),
                 ("max short-term", _fmt(a.max_shortterm, "LUFS"))]
    rows.append(("peak to loudness (PLR)", _fmt(a.plr, "LU")))
    if a.nonfinite:
        rows.append(("non-finite samples", f"{a.nonfinite} (measured as 0)"))
    return rows


def plot(a: Analysis, out: str | Path) -> None:
    """PNG: momentary and short-term loudness over time; long-term average spectrum."""
    try:
        import matplotlib
    except ImportError:
        raise MixgraphError("--plot needs matplotlib: pip install 'mixgraph[plot]'") from None
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 7.5), dpi=100, layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, height_ratios=[1.1, 1])
    title = Path(a.path).name if a.path else "audio"
    fig.suptitle(f"{title} — integrated {_fmt(a.integrated, 'LUFS')}, LRA {_fmt(a.lra, 'LU')}, "
                 f"true peak {_fmt(a.true_peak, 'dBTP')}", fontsize=11)
    hop = 0.1
    if a.momentary is not None and len(a.momentary):
        t = np.arange(1, len(a.momentary) + 1) * hop
        mom = a.momentary.copy()
        mom[:3] = np.nan  # under 400 ms of audio: no momentary value yet
        st = a.shortterm.copy()
        st[:29] = np.nan
        ax1.plot(t, mom, lw=0.8, color="tab:blue", alpha=0.75, label="momentary (400 ms)")
        ax1.plot(t, st, lw=1.8, color="tab:orange", label="short-term (3 s)")
        if a.integrated is not None:
            ax1.axhline(a.integrated, color="tab:green", ls="--", lw=1.2,
                        label=f"integrated {a.integrated:.1f} LUFS")
        vals = np.concatenate([mom[np.isfinite(mom)], st[np.isfinite(st)]])
        if len(vals):
            top = math.ceil(float(np.max(vals)) / 3) * 3 + 3
            bottom = max(float(np.min(vals)) - 3, top - 60)
            ax1.set_ylim(bottom, top)
        ax1.set_xlim(0, max(t[-1], hop))
        ax1.legend(loc="lower right", fontsize=8)
    else:
        ax1.text(0.5, 0.5, "no loudness curve (shorter than 100 ms)", ha="center",
                 transform=ax1.transAxes)
    ax1.set_xlabel("time (s)")
    ax1.set_ylabel("loudness (LUFS)")
    ax1.set_title("loudness over time (EBU R 128)", fontsize=10)
    ax1.grid(True, alpha=0.3)

    if a.freqs is not None:
        f, s = a.freqs[1:], a.spectrum_db[1:]
        ax2.semilogx(f, s, lw=0.6, color="0.6", label="Welch")
        ax2.semilogx(f, _smooth_octave(f, s, 1 / 6), lw=1.5, color="tab:purple",
                     label="1/6-octave smoothed")
        lo = max(20.0, float(f[0]))
        ax2.set_xlim(lo, a.rate / 2)
        fin = s[(f >= lo) & np.isfinite(s)]
        if len(fin):
            top = math.ceil(float(np.max(fin)) / 10) * 10 + 5
            ax2.set_ylim(max(float(np.min(fin)) - 5, top - 120), top)
        ax2.legend(loc="lower left", fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no spectrum (too short)", ha="center", transform=ax2.transAxes)
    from matplotlib.ticker import FuncFormatter

    ax2.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
    ax2.set_xlabel("frequency (Hz)")
    ax2.set_ylabel("level (dBFS, RMS per bin)")
    ax2.set_title("long-term average spectrum", fontsize=10)
    ax2.grid(True, which="both", alpha=0.3)
    try:
        fig.savefig(str(out), format="png")
    except OSError as e:
        raise MixgraphError(f"cannot write the plot {out}: {e.strerror or e}") from None


def _smooth_octave(f: np.ndarray, s_db: np.ndarray, frac: float) -> np.ndarray:
    """Power average over +-frac/2 octave around each bin."""
    p = 10.0 ** (s_db / 10.0)
    c = np.concatenate([[0.0], np.cumsum(p)])
    k = 2.0 ** (frac / 2)
    lo = np.searchsorted(f, f / k, "left")
    hi = np.searchsorted(f, f * k, "right")
    hi = np.maximum(hi, lo + 1)
    # cumulative-sum differences can cancel to 0 on band-limited files: floor at -300 dB
    return 10.0 * np.log10(np.maximum((c[hi] - c[lo]) / (hi - lo), 1e-30))
