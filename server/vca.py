"""VCA groups on top of the session: a `vca` node's `level` is added to the `vca`
offset parameter of each of its member faders (the console's VCA master: it
moves the members' gain without moving their faders)."""

from __future__ import annotations

from typing import Any


def apply(session: Any, new: str | None = None) -> None:
    """Set every fader's `vca` offset to the sum of the levels of its VCAs (the
    members of VCAs, the faders a VCA offset before, and `new`)."""
    offsets: dict[str, float] = {}
    for v in session._vcas:
        node = session.live[v]
        for m in node.g.options.get("members", "").split(","):
            if m:
                offsets[m] = offsets.get(m, 0.0) + node.g.params["level"]
    for name in sorted(session._vca_set | offsets.keys() | ({new} if new else set())):
        node = session.live.get(name)
        if node is not None and "vca" in node.g.params:
            want = offsets.get(name, 0.0)
            if node.g.params["vca"] != want:
                session.set_param(name, "vca", want)
    session._vca_set = set(offsets)

