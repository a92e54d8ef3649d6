"""A saved show meets a device that does not fit it (issue 16: the box starts into
its last state). With no device (yet), the null clock takes the channel counts
the show uses; a device with fewer channels than the show needs does not make
the show "corrupt": it is kept as a patch to load once the right device is there."""

from __future__ import annotations

from daemon_util import Daemon


def _make_show(state) -> None:
    d = Daemon(state, "--backend", "null", "--inputs", "8", "--outputs", "6")
    try:
        d.call("/graph/add", "input", "mics", "first", 5, "channels", 2)
        d.call("/graph/add", "gain", "g", "channels", 2, "gain", -4.5)
        d.call("/graph/add", "output", "mon", "first", 5, "channels", 2)
        d.call("/graph/connect", "mics", "g")
        d.call("/graph/connect", "g", "mon")
        d.sync(1)
    finally:
        assert d.stop() == 0


def test_no_device_the_null_clock_takes_the_shows_channels(tmp_path):
    state = tmp_path / "state"
    _make_show(state)
    d = Daemon(state, "--backend", "null")  # no counts given: the show's
    try:
        st = d.status()
        assert st["nodes"] == 3, (st, d.output())
        _, info = d.request("/info")
        info = dict(zip(info[::2], info[1::2], strict=True))
        assert (info["inputs"], info["outputs"]) == (6, 6)
        assert d.request("/node/g/gain")[1] == [-4.5]
        assert "does not fit" not in d.output() and "set aside" not in d.output()
    finally:
        d.stop()


def test_a_device_too_small_keeps_the_show_as_a_patch(tmp_path):
    state = tmp_path / "state"
    _make_show(state)
    d = Daemon(state, "--backend", "null", "--inputs", "2", "--outputs", "2")
    try:
        out = d.output()
        assert "does not fit this device" in out and "unreadable" not in out, out
        assert d.status()["nodes"] == 0
        _, names = d.request("/patch/list")
        kept = [n for n in names if n.startswith("unfit-")]
        assert len(kept) == 1, names
        # nothing named .bad: the file is not corrupt
        assert not list(state.glob("*.bad-*"))
    finally:
        d.stop()
    d = Daemon(state, "--backend", "null", "--inputs", "8", "--outputs", "6")
    try:
        d.call("/patch/load", kept[0])
        assert d.status()["nodes"] == 3
        assert d.request("/node/g/gain")[1] == [-4.5]
    finally:
        d.stop()
