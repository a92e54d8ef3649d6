"""Actions of the `denoise` node: learn a noise profile.

``/node/<name>/learn <seconds>`` sets the C node's `listen` trigger: the node
averages the power spectrum of the next `seconds` of its input (every
channel) and, unless that was silence, makes it the noise profile. The
action then switches the node to that profile (`track` 0) and answers

    /done /node/<name>/learn <seconds> <noise level dBFS per channel...>

or ``/fail`` when the audio was silent (below -120 dBFS RMS: there is no noise
to learn; the previous profile, if any, stays in use and `track` is left as
it was) or when no audio reached the node. Learning never raises a gain: the
node's gains stay at or below 0 dB whatever the profile.
"""

from __future__ import annotations

import numpy as np

from mixgraph.server.actions import Action, action
from mixgraph.server.errors import MixgraphError

# the C node's `profile` readout
NONE, LEARNING, LEARNED, FAILED = 0.0, 1.0, 2.0, -1.0
MIN_SECONDS, MAX_SECONDS = 0.1, 30.0


def profile_levels(a: Action) -> list[float]:
    """RMS level (dBFS) of the learned noise profile, per channel.

    The node captures, per channel, the mean |rfft(w x)|^2 of bins 0..n/2 with
    the sqrt-Hann window w (sum of w^2 = n/2): by Parseval the noise's variance
    is 2 * (full-spectrum sum) / n^2, the full spectrum counting bins 1..n/2-1
    twice."""
    channels = a.node.g.channels
    data = np.asarray(a.capture(8193 * channels), np.float64)
    if data.size == 0 or data.size % channels:
        raise MixgraphError("no noise profile to read")
    out = []
    for p in data.reshape(channels, -1):
        n = 2 * (len(p) - 1)
        var = 2.0 * (p[0] + p[-1] + 2.0 * np.sum(p[1:-1])) / (n * n)
        out.append(float(round(10 * np.log10(var), 2)) if var > 0 else -200.0)
    return out


@action("denoise", "learn", usage="/node/<name>/learn <seconds>", triggers=("listen",))
def learn(a: Action, args: list) -> None:
    """Learn the noise profile from the next <seconds> of input, then use it (track 0).

    Answers /done <address> <seconds> <noise dBFS per channel>; /fail when the
    input was silent (the previous profile is kept) or no audio arrived."""
    if len(args) != 1:
        raise MixgraphError(f"usage: {a.spec.usage}")
    secs = a.number(args, 0, "seconds", lo=MIN_SECONDS, hi=MAX_SECONDS)
    a.set("listen", 0.0)  # restart a measurement already under way
    a.set("listen", secs)

    def check() -> None:
        a.set("listen", 0.0)
        if a.readout("profile")[0] == LEARNED:
            a.set("track", 0.0)
            a.done(float(secs), *profile_levels(a))
        else:
            a.fail("learned silence (below -120 dBFS): no noise profile; "
                   "the previous profile is kept")

    # the node starts at its next frame (at most a quarter frame away) and needs
    # `secs` of audio; Action.when allows 2 s of extra audio time before giving up
    a.when(lambda: a.readout("profile")[0] in (LEARNED, FAILED), check, secs + 0.02,
           give_up=lambda: a.set("listen", 0.0))
