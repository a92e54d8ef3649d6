"""`mixgraph render`: a patch (and a score) rendered offline, as fast as possible,
by the same C process function the live backends run.

With a loudness target (`--target-lufs`) and/or a true-peak limit
(`--true-peak`) the render is mastered in two passes: pass 1 renders the patch
unclipped (float, no output ceiling) to a temporary file next to the output and
measures it with the engine's `meter` node (BS.1770-4 / EBU R 128 integrated
loudness, BS.1770-4 Annex 2 true peak); pass 2 applies the gain that reaches
the target and, if the gained signal's true peak would pass the limit, runs it
through the engine's `limiter` node (true-peak, ceiling = the limit; its
look-ahead latency is trimmed, so the output stays sample-aligned with the
render), re-measures, and corrects the gain for the loudness the limiter took
(a secant step, a few passes at most) until the result is within 0.05 LU of
the target. The output file appears only once it meets target and limit."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from . import lv2
from .analyze import READ_FRAMES, Analysis, LoudnessMeter, measure_file
from .diskio import DiskIO
from .engine import MAX_BLOCK, Engine
from .errors import MixgraphError
from .osc import Dispatcher
from .patch import validate_doc
from .score import ScoreEvent, read_score
from .session import Session
from .state import AUDIO_DIR, AUTOSAVE, PATCHES_DIR, read_patch

# frames per trip through Python: engine calls stay `block` frames each; the
# disk worker is pumped between trips (players buffer 2 s, far more than this)
CHUNK = 4096
# the longest render a score or the input files may ask for by themselves; a longer
# one needs --duration (a typo such as `1e12 /node/g/gain 0`, or an NRT score with
# absolute NTP timetags, wrote until the disk was full)
SCORE_END_MAX_S = 24 * 3600.0

# loudness targeting
TARGET_RANGE = (-60.0, 0.0)  # LUFS accepted by --target-lufs
TRUE_PEAK_RANGE = (-24.0, 0.0)  # dBTP: the limiter node's ceiling range
MAX_GAIN_DB = 40.0  # more gain than this is not a normalisation: refused
LU_AIM = 0.05  # a pass this close to the target ends the iteration
LU_TOL = 0.2  # the promise: the file is within this of the target, or an error
TP_SLACK = 0.005  # dB over the limit tolerated from float rounding in the meter
MAX_PASSES = 8
HEAVY_GR_DB = 6.0  # more limiting than this is flagged in the summary


@dataclass
class MasterReport:
    """What loudness targeting measured and did."""

    target_lufs: float | None
    true_peak_limit: float | None
    before: Analysis
    after: Analysis
    gain_db: float = 0.0
    limiter: bool = False
    ceiling_db: float | None = None  # the limiter ceiling finally used
    max_gr_db: float = 0.0  # largest gain reduction of the limiter (dB, >= 0)
    limited_pct: float = 0.0  # % of the audio reduced by more than 0.1 dB
    limiter_lu: float = 0.0  # loudness the limiter took (made up by more gain)
    passes: int = 0  # pass-2 iterations

    @property
    def heavy(self) -> bool:
        return self.max_gr_db > HEAVY_GR_DB


@dataclass
class RenderResult:
    """What a render produced and what went wrong on the way."""

    frames: int
    channels: int
    sample_rate: float
    failures: list[str] = field(default_factory=list)
    peak: float = 0.0  # largest absolute sample in the file (linear; > 1 in a float file)
    mastering: MasterReport | None = None
    float_file: bool = True  # the file keeps values over 0 dBFS (FLOAT/DOUBLE subtype)
    overs: int = 0  # samples over 0 dBFS kept in a float file (each channel counted)
    clipped: int = 0  # samples an integer file's 0 dBFS ceiling held (each channel counted)

    def peak_line(self) -> str:
        """`peak +6.0 dBFS, 480 samples over 0 dBFS`: the level summary a render prints."""
        if self.peak <= 0.0:
            return "peak -inf dBFS (silent)"
        out = f"peak {20.0 * math.log10(self.peak):+.1f} dBFS"
        if self.overs:
            out += (f", {self.overs} sample{'s' if self.overs != 1 else ''} over 0 dBFS "
                    "(kept: float file; lower the level before a fixed-point or DAC stage)")
        if self.clipped:
            out += (f", {self.clipped} sample{'s' if self.clipped != 1 else ''} clipped at "
                    "0 dBFS (integer file: render to a float .wav to keep them)")
        return out


def _hw_counts(nodes: list[dict]) -> tuple[int, int]:
    hw_in = hw_out = 0
    for n in nodes:
        first = int(n["options"].get("first", 1)) - 1
        top = first + int(n["channels"])
        if n["type"] == "input":
            hw_in = max(hw_in, top)
        elif n["type"] == "output":
            hw_out = max(hw_out, top)
    return hw_in, hw_out


def render(patch: str | Path | dict, out_path: str | Path, score: str | Path | None = None,
           duration_s: float | None = None, inputs: dict[str, str] | None = None,
           sample_rate: float | None = None, block: int = 64, subtype: str | None = None,
           progress: bool | None = None, target_lufs: float | None = None,
           true_peak: float | None = None, threads: int = 1) -> RenderResult:
    """Render patch to out_path; score events are dispatched at their exact sample.

    target_lufs / true_peak: master the render to that integrated loudness
    (LUFS) with its true peak at or under true_peak (dBTP; -1 when only
    target_lufs is given). threads: audio threads (the same samples with any
    number). See the module docstring."""
    mastering = target_lufs is not None or true_peak is not None
    if mastering:
        if target_lufs is not None and true_peak is None:
            true_peak = -1.0
        _check_range("--target-lufs", target_lufs, TARGET_RANGE, "LUFS")
        _check_range("--true-peak", true_peak, TRUE_PEAK_RANGE, "dBTP")
    if isinstance(patch, dict):
        doc, base = patch, Path.cwd()
    else:
        doc, base = read_patch(patch), data_dir_for(Path(patch))
    nodes, _ = validate_doc(doc)
    rate = float(sample_rate or doc.get("sample_rate") or 48000.0)
    hw_in, hw_out = _hw_counts(nodes)
    if hw_out == 0:
        raise MixgraphError("the patch has no output node: nothing to render")
    if not 1 <= block <= MAX_BLOCK:
        raise MixgraphError(f"block must be 1..{MAX_BLOCK} frames")
    events: list[ScoreEvent] = read_score(score) if score else []

    # input files feed the hardware channels of the named input nodes
    in_data = np.zeros((0, hw_in), dtype=np.float32)
    for name, path in (inputs or {}).items():
        node = next((n for n in nodes if n["name"] == name), None)
        if node is None or node["type"] != "input":
            raise MixgraphError(f"--in {name}=...: the patch has no input node {name!r}")
        try:
            data, file_rate = sf.read(path, dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise MixgraphError(f"cannot read {path}: {e}") from None
        if file_rate != int(rate):
            raise MixgraphError(f"{path} is {file_rate} Hz; the render runs at {rate:g} Hz")
        ch = int(node["channels"])
        if data.shape[1] == 1 and ch > 1:
            data = np.repeat(data, ch, axis=1)
        if data.shape[1] != ch:
            raise MixgraphError(f"{path} has {data.shape[1]} channels; {name} has {ch}")
        if len(data) > len(in_data):
            in_data = np.vstack([in_data, np.zeros((len(data) - len(in_data), hw_in),
                                                   dtype=np.float32)])
        first = int(node["options"].get("first", 1)) - 1
        in_data[: len(data), first:first + ch] = data

    if duration_s is None:
        ends = [e.time_s for e in events] + [len(in_data) / rate]
        duration_s = max(ends) if max(ends) > 0 else None
        if duration_s is not None and duration_s > SCORE_END_MAX_S:
            last = max(events, key=lambda e: e.time_s) if events else None
            where = f" (line {last.line}: {last.address})" if last is not None else ""
            raise MixgraphError(
                f"the score ends at {duration_s:g} s{where}, more than "
                f"{SCORE_END_MAX_S / 3600:g} hours: give --duration to render that long "
                "(an NRT score's timetags count seconds from 0)")
    elif not math.isfinite(duration_s):
        raise MixgraphError(f"--duration {duration_s}: give a finite number of seconds")
    if duration_s is None or not duration_s > 0:
        raise MixgraphError("give --duration (the patch has no score or input files to end it)")
    total = int(round(duration_s * rate))

    show = sys.stderr.isatty() if progress is None else progress
    if not mastering:
        return _render_pass(doc, base, out_path, rate, hw_in, hw_out, in_data, events, total,
                            block, subtype, show, threads)
    # pass 1: unclipped float to a temporary file beside the output
    out_path = Path(out_path)
    fd, tmp = _temp_beside(out_path, ".mixgraph-pass1-", ".w64")
    os.close(fd)
    try:
        result = _render_pass(doc, base, tmp, rate, hw_in, hw_out, in_data, events, total,
                              block, "FLOAT", show, threads)
        rep = master(tmp, out_path, target_lufs, true_peak, subtype=subtype, progress=show)
    finally:
        Path(tmp).unlink(missing_ok=True)
    result.mastering = rep
    result.peak = (10.0 ** (rep.after.sample_peak / 20.0)
                   if rep.after.sample_peak is not None else 0.0)
    return result


def _temp_beside(out_path: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A temporary file in the output's directory (renamed into place at the end)."""
    try:
        return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=out_path.resolve().parent)
    except OSError as e:
        raise MixgraphError(f"cannot write beside {out_path}: {e.strerror}") from None


def _check_range(what: str, v: float | None, rng: tuple[float, float], unit: str) -> None:
    if v is not None and not (math.isfinite(v) and rng[0] <= v <= rng[1]):
        raise MixgraphError(f"{what} {v:g}: give {rng[0]:g} .. {rng[1]:g} {unit}")


def _open_out(path, rate: float, channels: int, subtype: str | None) -> sf.SoundFile:
    p = str(path)
    fmt = "W64" if p.lower().endswith(".w64") else None
    if subtype is None and p.lower().endswith((".wav", ".w64")):
        subtype = "FLOAT"
    try:
        return sf.SoundFile(p, "w", int(rate), channels, subtype, format=fmt)
    except (RuntimeError, sf.LibsndfileError, TypeError, ValueError) as e:
        raise MixgraphError(f"cannot write {path}: {e}") from None


def data_dir_for(patch: Path) -> Path:
    """Where a patch's relative file paths (players, convolvers) are found: a patch in
    a state directory (<state>/patches/<name>.mgp, or <state>/autosave.*) reads them
    from <state>/audio as the daemon does, so a render plays what the show plays;
    any other patch file, from its own folder."""
    folder = patch.resolve().parent
    if folder.name == PATCHES_DIR and (folder.parent / AUDIO_DIR).is_dir():
        return folder.parent / AUDIO_DIR
    if patch.name.startswith(Path(AUTOSAVE).stem) and (folder / AUDIO_DIR).is_dir():
        return folder / AUDIO_DIR
    return folder


def _render_pass(doc: dict, base: Path, out_path, rate: float, hw_in: int, hw_out: int,
                 in_data: np.ndarray, events: list[ScoreEvent], total: int, block: int,
                 subtype: str | None, show: bool, threads: int = 1) -> RenderResult:
    """Run the patch for total frames into out_path. The output ceiling is for
    speakers: a float file gets none (what is over 0 dBFS is kept and counted,
    NaN and Inf are still scrubbed); an integer file cannot hold more than
    full scale, so it is clipped at 0 dBFS and the clipped samples counted."""
    out = _open_out(out_path, rate, hw_out, subtype)
    engine = Engine(rate, hw_in, hw_out, threads=threads, block=block)
    result = RenderResult(total, hw_out, rate)
    result.float_file = out.subtype in FLOAT_SUBTYPES
    engine.set_ceiling_db(None if result.float_file else 0.0)
    disk = DiskIO(rate)
    session = Session(engine, data_dir=base, confine_paths=False, disk=disk)

    def reply_for(ev: ScoreEvent):
        def reply(address: str, args: list) -> None:
            if address == "/fail":
                result.failures.append(f"t={ev.time_s:g}s line {ev.line}: " +
                                       " ".join(str(a) for a in args))
        return reply

    try:
        session.load_doc(doc)
        session.commit()
        dispatcher = Dispatcher(session, info={"backend": "offline", "block": block})
        ev_samples = [int(round(e.time_s * rate)) for e in events]
        k = 0
        t = 0
        columns = (TextColumn("rendering"), BarColumn(),
                   TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn())
        with out, Progress(*columns, disable=not show, transient=True) as bar:
            task = bar.add_task("render", total=total)
            while t < total:
                while k < len(events) and ev_samples[k] <= t:
                    ev = events[k]
                    dispatcher.dispatch(ev.address, ev.args, reply_for(ev), 0)
                    k += 1
                session.service()
                disk.pump()
                lv2.drain_log()  # LV2 plugins' log lines (rate-limited per node)
                stop = min(total, t + CHUNK)
                if k < len(events):
                    stop = min(stop, max(ev_samples[k], t + 1))
                due = session.next_due()
                if due is not None and due > t:
                    stop = min(stop, due)
                n = stop - t
                chunk_in = None
                if hw_in:
                    chunk_in = np.zeros((n, hw_in), dtype=np.float32)
                    seg = in_data[t:t + n]
                    chunk_in[: len(seg)] = seg
                y = engine.process(n, chunk_in, block=block)
                if len(y):
                    a = np.abs(y)
                    result.peak = max(result.peak, float(np.max(a)))
                    result.overs += int(np.count_nonzero(a > 1.0))
                out.write(y)
                t = stop
                bar.update(task, completed=t)
            session.service()
            for a in session.actions_running.values():  # cut short by the end
                a.fail("the render ended before this action finished")
        result.clipped = int(engine.stats().clipped)
    finally:
        out.close()
        session.close()
        engine.free()
    return result


FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


# ---- loudness targeting (pass 2) --------------------------------------------------------

@dataclass
class _Pass:
    analysis: Analysis
    max_gr_db: float = 0.0
    limited_pct: float = 0.0


class _GainReduction:
    """The limiter's gain, read off its output against its (delayed) input: per
    frame, |out| / |in| on the loudest channel where that is above -80 dBFS
    (the limiter links its channels: one gain for all)."""

    def __init__(self) -> None:
        self.min_gain = 1.0
        self.limited = 0
        self.counted = 0

    def add(self, y: np.ndarray, xd: np.ndarray) -> None:
        ax = np.abs(xd)
        k = np.argmax(ax, axis=1)
        rows = np.arange(len(ax))
        den = ax[rows, k].astype(np.float64)
        ok = den > 1e-4
        if not ok.any():
            return
        g = np.abs(y[rows, k].astype(np.float64))[ok] / den[ok]
        self.min_gain = min(self.min_gain, float(np.min(g)))
        self.limited += int(np.count_nonzero(g < 10.0 ** (-0.1 / 20.0)))
        self.counted += int(np.count_nonzero(ok))


def _apply(src: str, dst: str, gain_db: float, ceiling_db: float | None,
           subtype: str | None, label: str, show: bool) -> _Pass:
    """dst = src * gain (then through the limiter node, latency trimmed), measured."""
    g = 10.0 ** (gain_db / 20.0)
    with sf.SoundFile(src) as f:
        rate, ch, frames = f.samplerate, f.channels, f.frames
        engine = session = None
        lat = 0
        if ceiling_db is not None:
            engine = Engine(rate, ch, ch)
            engine.set_ceiling_db(None)  # the limiter holds the level, not the safety clip
            session = Session(engine)
        try:
            if session is not None:
                session.add_node("input", "in", {"channels": ch})
                session.add_node("limiter", "lim", {"channels": ch, "ceiling": ceiling_db})
                session.add_node("output", "out", {"channels": ch})
                session.connect("in", "lim")
                session.connect("lim", "out")
                session.commit()
                lat = session.live["lim"].latency
            hist = np.zeros((lat, ch), dtype=np.float32)
            skip = lat
            gr = _GainReduction()
            columns = (TextColumn(label), BarColumn(), TextColumn("{task.percentage:>3.0f}%"))
            with (LoudnessMeter(rate, ch, hq=True) as meter,
                  _open_out(dst, rate, ch, subtype) as out, Progress(
                      *columns, disable=not show, transient=True) as bar):
                task = bar.add_task(label, total=frames)

                def emit(y: np.ndarray) -> None:
                    out.write(y)
                    meter.feed(y)

                blocks = f.blocks(READ_FRAMES, dtype="float32", always_2d=True)
                for blk in blocks:
                    xg = (blk.astype(np.float64) * g).astype(np.float32)
                    if engine is None:
                        emit(xg)
                    else:
                        n = len(xg)
                        y = engine.process(n, xg)
                        cat = np.concatenate([hist, xg])
                        gr.add(y, cat[:n])
                        hist = cat[n:]
                        drop = min(skip, n)
                        skip -= drop
                        if drop < n:
                            emit(y[drop:])
                    bar.advance(task, len(blk))
                if engine is not None and lat:
                    # flush the look-ahead: lat more frames of silence in
                    y = engine.process(lat, np.zeros((lat, ch), dtype=np.float32))
                    gr.add(y, hist)
                    tail = y[skip:] if skip < lat else y[:0]
                    emit(tail)
                a = meter.result()
        finally:
            if session is not None:
                session.close()
                engine.free()
    p = _Pass(a)
    if ceiling_db is not None:
        p.max_gr_db = -20.0 * math.log10(max(gr.min_gain, 1e-12))
        p.limited_pct = 100.0 * gr.limited / gr.counted if gr.counted else 0.0
    return p


def master(src: str | Path, out_path: str | Path, target_lufs: float | None,
           true_peak: float | None, subtype: str | None = None,
           progress: bool = False) -> MasterReport:
    """Write src normalised to target_lufs (None: gain 0) with its true peak at or
    under true_peak dBTP (None: no limit) to out_path. Raises MixgraphError (and
    writes nothing) when the target cannot be met."""
    before = measure_file(src, hq=True)
    out_path = Path(out_path)
    if target_lufs is not None:
        if before.frames < round(0.4 * before.rate):
            raise MixgraphError(
                f"the render is {before.duration * 1000:.0f} ms long: integrated loudness needs "
                f"at least one 400 ms block; cannot normalise to {target_lufs:g} LUFS "
                f"(no file written)")
        if before.integrated is None:
            raise MixgraphError(
                f"the render is silent (nothing above the -70 LUFS gate): cannot normalise "
                f"it to {target_lufs:g} LUFS (no file written)")
        gain = target_lufs - before.integrated
    else:
        gain = 0.0
    rep = MasterReport(target_lufs, true_peak, before, before)
    ceiling = true_peak
    use_lim = (true_peak is not None and _tp(before) is not None
               and _tp(before) + gain > true_peak)
    tried: list[tuple[bool, float, float]] = []  # (limiter, gain, integrated)
    suffix = out_path.suffix or ".wav"
    best: tuple[str, _Pass] | None = None
    try:
        for k in range(1, MAX_PASSES + 1):
            if gain > MAX_GAIN_DB:
                # on pass 1 the plain gain is too much; later, the limiter ate the gain
                raise MixgraphError(_unreachable(target_lufs, true_peak, before,
                                                 gain if k == 1 else None, tried))
            fd, tmp = _temp_beside(out_path, ".mixgraph-pass2-", suffix)
            os.close(fd)
            try:
                p = _apply(str(src), tmp, gain, ceiling if use_lim else None, subtype,
                           f"mastering pass {k}", progress)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            if best is not None:
                Path(best[0]).unlink(missing_ok=True)
            best = (tmp, p)
            a = p.analysis
            rep.passes, rep.gain_db, rep.after, rep.limiter = k, gain, a, use_lim
            rep.max_gr_db, rep.limited_pct = p.max_gr_db, p.limited_pct
            rep.ceiling_db = ceiling if use_lim else None
            tp = _tp(a)
            over = true_peak is not None and tp is not None and tp > true_peak + TP_SLACK
            if over and not use_lim:
                use_lim = True  # over the limit by the gain or the long-filter check
                continue
            if over:  # the long filter reads higher than the limiter's: lower its ceiling
                ceiling = max(TRUE_PEAK_RANGE[0], ceiling - (tp - true_peak) - 0.01)
                if target_lufs is None:
                    continue
            if target_lufs is None:
                break
            if a.integrated is None:
                raise MixgraphError("the mastered signal measures silent: cannot normalise "
                                    "(no file written)")
            tried.append((use_lim, gain, a.integrated))
            err = target_lufs - a.integrated
            if abs(err) <= LU_AIM and not over:
                break
            gain += err / _slope(tried, use_lim)
        a = rep.after
        if target_lufs is not None and (a.integrated is None
                                        or abs(a.integrated - target_lufs) > LU_TOL):
            raise MixgraphError(_unreachable(target_lufs, true_peak, before, None, tried))
        if true_peak is not None and _tp(a) is not None and _tp(a) > true_peak + TP_SLACK:
            raise MixgraphError(f"the true peak stays at {_tp(a):.2f} dBTP, over the "
                                f"{true_peak:g} dBTP limit (no file written)")
        os.replace(best[0], out_path)
        best = None
    finally:
        if best is not None:
            Path(best[0]).unlink(missing_ok=True)
    if rep.limiter and target_lufs is not None and before.integrated is not None:
        rep.limiter_lu = before.integrated + rep.gain_db - rep.after.integrated
    return rep


def _tp(a: Analysis) -> float | None:
    """The higher of the meter's (BS.1770 Annex 2) and the long-filter true peak."""
    v = [t for t in (a.true_peak, a.true_peak_hq) if t is not None]
    return max(v) if v else None


def _slope(tried: list[tuple[bool, float, float]], use_lim: bool) -> float:
    """LU of loudness per dB of gain, from the last two passes of the same kind
    (1 without a limiter; under limiting, less), kept in 0.1 .. 1."""
    same = [(g, lu) for lim, g, lu in tried if lim == use_lim]
    if len(same) < 2 or abs(same[-1][0] - same[-2][0]) < 1e-6:
        return 1.0
    s = (same[-1][1] - same[-2][1]) / (same[-1][0] - same[-2][0])
    return min(1.0, max(0.1, s)) if math.isfinite(s) else 1.0


def _unreachable(target: float | None, tp: float | None, before: Analysis,
                 gain: float | None, tried: list[tuple[bool, float, float]]) -> str:
    where = f" under a {tp:g} dBTP true-peak limit" if tp is not None else ""
    head = f"target {target:g} LUFS is out of reach{where}: the render measures " \
        f"{before.integrated:.2f} LUFS"
    if gain is not None and gain > MAX_GAIN_DB:
        return (f"{head} and would need {gain:+.1f} dB of gain (at most {MAX_GAIN_DB:+g} dB) "
                f"(no file written)")
    best = min(tried, key=lambda t: abs(t[2] - target)) if tried else None
    got = f"; the closest pass measured {best[2]:.2f} LUFS at {best[1]:+.1f} dB of gain" \
        if best else ""
    return f"{head}{got}: the limiter cannot make it louder (no file written)"
