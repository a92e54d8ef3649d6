"""`mixgraph render`: a patch (and a score) rendered offline, as fast as possible,
by the same C process function the live backends run."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .diskio import DiskIO
from .engine import MAX_BLOCK, Engine
from .errors import MixgraphError
from .osc import Dispatcher
from .score import ScoreEvent, read_score
from .session import Session, validate_doc
from .state import read_patch

# frames per trip through Python: engine calls stay `block` frames each; the
# disk worker is pumped between trips (players buffer 2 s, far more than this)
CHUNK = 4096


@dataclass
class RenderResult:
    """What a render produced and what went wrong on the way."""

    frames: int
    channels: int
    sample_rate: float
    failures: list[str] = field(default_factory=list)
    peak: float = 0.0


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
           progress: bool | None = None) -> RenderResult:
    """Render patch to out_path; score events are dispatched at their exact sample."""
    if isinstance(patch, dict):
        doc, base = patch, Path.cwd()
    else:
        doc, base = read_patch(patch), Path(patch).resolve().parent
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
    if duration_s is None or not duration_s > 0:
        raise MixgraphError("give --duration (the patch has no score or input files to end it)")
    total = int(round(duration_s * rate))

    engine = Engine(rate, hw_in, hw_out)
    disk = DiskIO(rate)
    session = Session(engine, data_dir=base, confine_paths=False, disk=disk)
    result = RenderResult(total, hw_out, rate)

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
        out = sf.SoundFile(str(out_path), "w", int(rate), hw_out,
                           subtype or ("FLOAT" if str(out_path).lower().endswith(".wav")
                                       else None))
        show = sys.stderr.isatty() if progress is None else progress
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
                result.peak = max(result.peak, float(np.max(np.abs(y))) if len(y) else 0.0)
                out.write(y)
                t = stop
                bar.update(task, completed=t)
    finally:
        session.close()
        engine.free()
    return result
