"""A node's output must not depend on how the host splits the signal into
process calls: a JACK period change, `render --block`, or the 64-frame
blocks the engine cuts a call into all split differently. Checked for every
node type in the catalog (its default parameters) with a rich signal (a
three-note chord over noise, quiet then loud so the dynamics move), calls of
64, 100, 37/91 and 1/255 frames against calls of 64.

The tolerance: 1e-6 of the signal's peak (-120 dB). The dynamics nodes settle
their gain error to exactly 0 at the end of each 64-frame chunk of a call, so
where a chunk ends can move that step by a few samples; the step is below
1e-6 of the level by construction. A node whose state advances per call (the
reverb's modulated read positions did, until they kept their own 16-sample
clock) differs by percent, for as long as it rings."""

import numpy as np
import pytest

from server.catalog import CATALOG
from server.engine import Engine
from server.session import Session

SR = 48000
TOTAL = 12000
# no audio path to compare: plug-ins (tests/test_lv2.py), the graph's own
# ends, a meter/recorder (sinks), a player (needs a file), vca (no ports)
SKIP = {"lv2", "vca", "input", "output", "meter", "recorder", "player"}
TYPES = sorted(t for t in CATALOG if t not in SKIP)
SPLITS = {"100": [100], "37/91": [37, 91], "1/255": [1, 255]}


def chord(frames: int, channels: int) -> np.ndarray:
    """A-C#-E (220, 277.2, 329.6 Hz) over white noise, 3000 quiet frames
    (-40 dB) then loud, one phase per channel."""
    n = np.arange(frames)
    x = np.zeros((frames, channels), np.float32)
    for c in range(channels):
        x[:, c] = (0.2 * np.sin(2 * np.pi * 220 * n / SR)
                   + 0.15 * np.sin(2 * np.pi * 277.2 * n / SR + c)
                   + 0.1 * np.sin(2 * np.pi * 329.6 * n / SR)
                   + 0.05 * np.random.default_rng(c).standard_normal(frames))
    x[:3000] *= 0.01
    return x


def render(type_name: str, splits: list[int]) -> np.ndarray:
    t = CATALOG[type_name]
    inp = t.port("in", "in") or t.port("post", "in")
    ch = t.default_channels
    ich = inp.channel_count(ch) if inp else 0
    och = t.port(None, "out").channel_count(ch)
    e = Engine(SR, ich, och, block=64)
    s = Session(e)
    s.add_node(type_name, "x", {"channels": ch} if t.param("channels") else {})
    if inp:
        s.add_node("input", "in", {"channels": ich})
        s.connect("in", f"x:{inp.name}")
    s.add_node("output", "out", {"channels": och})
    s.connect("x", "out")
    s.commit()
    x = chord(TOTAL, max(ich, 1))
    outs, done, i = [], 0, 0
    while done < TOTAL:
        k = min(splits[i % len(splits)], TOTAL - done)
        i += 1
        outs.append(e.process(k, x[done:done + k] if ich else None, block=64).copy())
        done += k
    s.close()
    e.free()
    return np.concatenate(outs)


@pytest.mark.parametrize("type_name", TYPES)
def test_output_does_not_depend_on_how_calls_split_the_signal(type_name):
    ref = render(type_name, [64])
    peak = float(np.max(np.abs(ref)))
    assert peak > 1e-4, f"{type_name}: no signal to compare"
    for name, splits in SPLITS.items():
        y = render(type_name, splits)
        err = float(np.max(np.abs(y.astype(np.float64) - ref)))
        assert err <= 1e-6 * peak, f"{type_name}, calls of {name}: {err / peak:.2e} of peak"


def test_reverb_tail_is_bit_identical_for_any_split():
    """The reverb has no settling step: its output is the same to the bit."""
    ref = render("reverb", [64])
    for splits in SPLITS.values():
        assert np.array_equal(render("reverb", splits), ref)
