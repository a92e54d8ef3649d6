"""The autosave of a big show while a fader moves (attack3 A7).

Each autosave (up to 4 a second after a change) encoded the whole document on the
control thread, the stored scenes' values with it: with 200 eq8 nodes and 100
whole-console scenes (14 MB) that was 80-210 ms a save, and moving one fader held
every other client's round trip at ~200 ms. The stored scenes do not change between
saves, so their encoded values are kept (state.pack_doc); the bytes are the same."""

from __future__ import annotations

import msgpack

from mixgraph.server import state
from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.session import Session


class _Counting:
    """Stands in for the msgpack module in server/state.py: counts the bytes packed."""

    def __init__(self) -> None:
        self.packed = 0
        outer = self

        class Packer(msgpack.Packer):
            def pack(self, obj):
                b = super().pack(obj)
                outer.packed += len(b)
                return b

        self.Packer = Packer

    def packb(self, obj, **kw) -> bytes:
        b = msgpack.packb(obj, **kw)
        self.packed += len(b)
        return b

    def __getattr__(self, name):
        return getattr(msgpack, name)


def test_a_save_after_a_fader_move_does_not_encode_the_scenes_again(monkeypatch, tmp_path):
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "offline", "block": 64})
    out: list = []
    saver = state.Autosaver(tmp_path / "autosave.mgp")
    try:
        for i in range(40):
            s.add_node("eq8", f"e{i}")
        s.add_node("gain", "fader")
        s.commit()
        engine.process(128)
        for k in range(20):
            d.dispatch("/scene/store", [f"s{k}"], lambda a, r: out.append((a, r)))
        assert all(a == "/done" for a, _ in out)
        counting = _Counting()
        monkeypatch.setattr(state, "msgpack", counting)
        first_doc = s.to_doc()
        saver.submit(first_doc)
        first = counting.packed
        s.set_param("fader", "gain", -10.0)
        doc = s.to_doc()
        counting.packed = 0
        saver.submit(doc)
        again = counting.packed
        assert first > 20 * 40 * 47 * 9  # every scene's values were encoded once
        assert again < first / 10, (again, first)  # not again: only what changed
        # and the bytes saved are what msgpack makes of the whole document
        saver.close()
        # the bytes msgpack.packb gives, sealed with their checksum (state.seal)
        assert (tmp_path / "autosave.mgp").read_bytes() == state.seal(
            msgpack.packb(doc, use_bin_type=True))
    finally:
        saver.close()
        s.close()
        engine.free()
