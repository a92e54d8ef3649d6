"""Stepped parameters have names (issue 12, item 11): the C tables carry the name of
every choice, the catalog, /catalog, `mixgraph nodes` and docs/nodes.md show them, and
`/node/<n>/<p>` takes the name as well as the number."""

from __future__ import annotations

import os
import subprocess
import sys

import msgpack
import pytest

from mixgraph.server.catalog import CATALOG

from daemon_util import Daemon

# stepped parameters that are integer quantities, not choices: their number is their name
NUMERIC = {("autotune", "notes"), ("dither", "bits")}
# node types that need a file or hardware to be created
NEEDS_MORE = {"player", "recorder"}


def stepped():
    return [(t, p) for t in CATALOG.values() for p in t.params if p.taper == "stepped"]


def test_every_stepped_parameter_names_every_step():
    assert len(stepped()) > 40
    for t, p in stepped():
        steps = int(round(p.max - p.min)) + 1
        if (t.name, p.name) in NUMERIC:
            assert p.choices == ()
            continue
        assert len(p.choices) == steps, (t.name, p.name, p.choices)
        assert len({c.lower() for c in p.choices}) == steps
    # the continuous ones have none
    assert all(not p.choices for t in CATALOG.values() for p in t.params
               if p.taper != "stepped")
    eq = CATALOG["eq"]
    assert eq.param("b1type").choices == ("bell", "low shelf", "high shelf", "notch",
                                          "band-pass")
    assert eq.param("hpslope").choices == ("12 dB/oct", "24 dB/oct", "48 dB/oct")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("choices") / "state", "--backend", "null")
    yield d
    d.stop()


def test_names_resolve_over_osc_for_every_stepped_parameter(daemon):
    """Each name of each stepped parameter of one node of every type sets its number;
    the forms people type (other case, no spaces, `_`) do too; an unknown name fails
    and lists the choices; a number still works."""
    n_set = 0
    for t in CATALOG.values():
        if t.name in NEEDS_MORE or not any(p.choices for p in t.params):
            continue
        node = f"x{t.name}"
        addr, args = daemon.request("/graph/add", t.name, node)
        assert addr == "/done", (t.name, args)
        for p in t.params:
            for k, name in enumerate(p.choices):
                addr, args = daemon.request(f"/node/{node}/{p.name}", name)
                assert (addr, args[:2]) == ("/done", [f"/node/{node}/{p.name}",
                                                      p.min + k]), (t.name, p.name, args)
                n_set += 1
    assert n_set > 150
    ok = [("xeq", "b1type", "Low Shelf", 1.0), ("xeq", "b1type", "lowshelf", 1.0),
          ("xeq", "b2type", "band_pass", 4.0), ("xeq", "b2type", "bandpass", 4.0),
          ("xpan", "law", "-6 dB", 2.0), ("xeq", "hpslope", "48db/oct", 2.0),
          ("xeq", "b1type", 3, 3.0)]
    for node, p, v, want in ok:
        addr, args = daemon.request(f"/node/{node}/{p}", v)
        assert (addr, args[1]) == ("/done", want), (node, p, v, args)
        assert daemon.request(f"/node/{node}/{p}") == (f"/node/{node}/{p}", [want])
    addr, args = daemon.request("/node/xeq/b1type", "shelf")
    assert addr == "/fail" and "bell" in args[-1] and "band-pass" in args[-1]
    # a creation option takes the names too
    addr, args = daemon.request("/graph/add", "eq", "q2", "b1type", "notch", "hpslope",
                                "24 dB/oct")
    assert addr == "/done", args
    assert daemon.request("/node/q2/b1type")[1] == [3.0]
    assert daemon.request("/node/q2/hpslope")[1] == [1.0]


def test_catalog_carries_the_names(daemon):
    _, args = daemon.request("/catalog")
    cat = {t["name"]: t for t in msgpack.unpackb(args[0])}
    for t, p in stepped():
        d = next(x for x in cat[t.name]["params"] if x["name"] == p.name)
        assert d.get("choices", []) == list(p.choices), (t.name, p.name)


def _mg(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "mixgraph.server.cli", *args],
                          capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


def test_mixgraph_nodes_and_docs_show_the_names():
    r = _mg("nodes", "eq")
    assert r.returncode == 0, r.stderr
    assert "choices: 0 bell, 1 low shelf, 2 high shelf, 3 notch, 4 band-pass" in r.stdout
    assert "choices: 0 12 dB/oct, 1 24 dB/oct, 2 48 dB/oct" in r.stdout
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "nodes.md").read_text()
    for t, p in stepped():
        for k, c in enumerate(p.choices):
            assert f"`{int(p.min) + k}` {c}" in doc, (t.name, p.name, c)
