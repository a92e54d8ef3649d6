"""LV2 plugins hosted as nodes (server/lv2.py, csrc/lv2host.c, nodes/lv2.c).

The outside reference is lilv's own `lv2apply` (lilv-utils): the same plugin,
parameters and input file, rendered by mixgraph offline (server/render.py),
must give the same samples. Real Debian plugin packages (.ci/run installs
them): mda-lv2, x42-plugins, lsp-plugins-lv2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import require

from mixgraph.server import lv2
from mixgraph.server.errors import MixgraphError
from mixgraph.server.render import render

from daemon_util import Daemon, wait_autosaved

HERE = Path(__file__).resolve().parent
RATE = 48000
MDA = "http://drobilla.net/plugins/mda/"
LSP = "http://lsp-plug.in/plugins/lv2/"
NODELAY = "http://gareus.org/oss/lv2/nodelay"


def readout_until(d: Daemon, address: str, ok, timeout: float = 30.0) -> float:
    """The readout's last value once ok(value) holds, or what it is at the timeout:
    readouts are published now and then, and on a loaded host later than the fixed
    0.2-0.5 s these reads used to sleep for."""
    deadline = time.monotonic() + timeout
    while True:
        v = d.request(address)[1][-1]
        if ok(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def need_plugins(*uris: str) -> None:
    require(lv2.available(), "mixgraph was built without lilv (Debian: liblilv-dev)")
    have = set(lv2.uris())
    missing = [u for u in uris if u not in have]
    require(not missing, f"LV2 plugins not installed: {missing} (Debian: mda-lv2, "
                         "x42-plugins, lsp-plugins-lv2)")


def plugin_patch(uri: str, params: dict, n_in: int, n_out: int) -> tuple[dict, list, list]:
    """A patch: one input node per plugin input (mono ports), the plugin, one output
    node per plugin output; returns (doc, input names, plugin audio ports)."""
    t = lv2.plugin_type(uri)
    ins = [p.name for p in t.ports if p.direction == "in"]
    outs = [p.name for p in t.ports if p.direction == "out"]
    assert (len(ins), len(outs)) == (n_in, n_out)
    nodes = [{"name": "pl", "type": "lv2", "channels": 1,
              "options": {"uri": uri, "group": 0}, "params": params}]
    conns = []
    for k, p in enumerate(ins):
        nodes.append({"name": f"i{k}", "type": "input", "channels": 1,
                      "options": {"first": k + 1}, "params": {}})
        conns.append([f"i{k}:out", f"pl:{p}"])
    for k, p in enumerate(outs):
        nodes.append({"name": f"o{k}", "type": "output", "channels": 1,
                      "options": {"first": k + 1}, "params": {}})
        conns.append([f"pl:{p}", f"o{k}:in"])
    doc = {"format": "mixgraph-patch", "version": 1, "sample_rate": RATE, "nodes": nodes,
           "connections": conns, "metadata": {}}
    return doc, [f"i{k}" for k in range(len(ins))], ins


def noise(n: int, ch: int, seed: int = 1, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal((n, ch))).astype(np.float32)


def mixgraph_render(tmp: Path, uri: str, params: dict, x: np.ndarray, n_out: int,
                    score: str | None = None, block: int = 64) -> np.ndarray:
    doc, in_nodes, _ = plugin_patch(uri, params, x.shape[1], n_out)
    inputs = {}
    for k, name in enumerate(in_nodes):
        sf.write(tmp / f"in{k}.wav", x[:, k], RATE, subtype="FLOAT")
        inputs[name] = str(tmp / f"in{k}.wav")
    sc = None
    if score:
        sc = tmp / "score.txt"
        sc.write_text(score)
    render(doc, tmp / "mg.wav", score=sc, inputs=inputs, subtype="FLOAT", progress=False,
           block=block)
    y, _ = sf.read(tmp / "mg.wav", dtype="float32", always_2d=True)
    return y


def lv2apply(tmp: Path, uri: str, params: dict, x: np.ndarray) -> np.ndarray:
    exe = shutil.which("lv2apply")
    require(exe is not None, "lv2apply is not installed (Debian: lilv-utils)")
    sf.write(tmp / "in.wav", x, RATE, subtype="FLOAT")
    cmd = [exe, "-i", str(tmp / "in.wav"), "-o", str(tmp / "ref.wav")]
    for k, v in params.items():
        cmd += ["-c", k, repr(float(v))]
    subprocess.run([*cmd, uri], check=True, capture_output=True, timeout=60)
    y, _ = sf.read(tmp / "ref.wav", dtype="float32", always_2d=True)
    return y


# an EQ, a compressor, a reverb, a distortion: (uri, params, inputs, outputs)
CASES = {
    "eq-lsp-para16": (LSP + "para_equalizer_x16_mono",
                      {"ft_0": 1, "f_0": 1000.0, "g_0": 4.0, "q_0": 2.0,
                       "ft_1": 4, "f_1": 120.0, "g_1": 0.5}, 1, 1),
    "comp-lsp": (LSP + "compressor_mono", {"al": 0.05, "cr": 6.0, "at": 5.0}, 1, 1),
    "comp-mda-dynamics": (MDA + "Dynamics", {"thresh": 0.3, "ratio": 0.7}, 2, 2),
    "reverb-mda-ambience": (MDA + "Ambience", {"size": 0.9, "mix": 0.7}, 2, 2),
    "dist-mda-overdrive": (MDA + "Overdrive", {"drive": 0.6, "muffle": 0.3}, 2, 2),
}


@pytest.fixture(scope="module")
def lv2ref(tmp_path_factory):
    """tests/lv2/lv2ref.c built: lilv's lv2apply with the frames per run() as an
    argument (lv2apply runs one frame at a time). A function
    (tmp, uri, params, x, block) -> its output."""
    require(lv2.available(), "mixgraph was built without lilv (Debian: liblilv-dev)")
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "no C compiler")
    exe = tmp_path_factory.mktemp("lv2ref") / "lv2ref"
    subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-I/usr/include/lilv-0",
                    str(HERE / "lv2" / "lv2ref.c"), "-o", str(exe), "-llilv-0", "-lm"],
                   check=True)

    def run(tmp: Path, uri: str, params: dict, x: np.ndarray, block: int) -> np.ndarray:
        np.ascontiguousarray(x, np.float32).tofile(tmp / "ref_in.raw")
        cmd = [str(exe), uri, str(block), str(tmp / "ref_in.raw"), str(x.shape[1]),
               str(tmp / "ref_out.raw")]
        for k, v in params.items():
            cmd += [k, repr(float(v))]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        return np.fromfile(tmp / "ref_out.raw", np.float32).reshape(len(x), -1)

    return run


@pytest.mark.parametrize("block", [1, 64])
@pytest.mark.parametrize("case", list(CASES))
def test_offline_render_equals_the_reference_host(case, block, tmp_path, lv2ref):
    """mixgraph's offline render of plugin + parameters + input equals an outside
    host's at the same frames per run(), within 1e-6 (the LSP compressor's float
    rounding: 2.4e-7; the others bit-exact): at one frame lilv's lv2apply
    (lilv-utils, which runs one frame per run()), at 64 frames tests/lv2/lv2ref.c
    (lv2apply with the frames per run() as an argument)."""
    uri, params, n_in, n_out = CASES[case]
    need_plugins(uri)
    x = noise(RATE, n_in)
    x[RATE // 2: RATE // 2 + 2000] *= 8.0  # a loud burst: the compressors act
    y = mixgraph_render(tmp_path, uri, params, x, n_out, block=block)
    ref = lv2apply(tmp_path, uri, params, x) if block == 1 else lv2ref(tmp_path, uri,
                                                                       params, x, block)
    assert y.shape == ref.shape == (RATE, n_out)
    assert np.sqrt(np.mean(ref ** 2)) > 1e-3  # the plugin made sound
    assert not np.allclose(ref[:, :1], x[:, :1], atol=1e-4)  # and changed it
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6)


def test_lsp_eq_depends_on_the_frames_per_run_in_any_host(tmp_path, lv2ref):
    """The LSP para EQ's output depends on how its input is split into run()
    calls, whoever hosts it: the reference host at one frame per run() equals
    lv2apply bit for bit (so it is lv2apply), and at 64 frames differs from it by
    more than float rounding of one sample (LSP filters a block at a time with
    SIMD code whose rounding depends on the block). docs/nodes.md says so."""
    uri, params, n_in, _ = CASES["eq-lsp-para16"]
    need_plugins(uri)
    x = noise(RATE, n_in)
    one = lv2apply(tmp_path, uri, params, x)
    np.testing.assert_array_equal(lv2ref(tmp_path, uri, params, x, 1), one)
    d = np.max(np.abs(lv2ref(tmp_path, uri, params, x, 64) - one))
    assert 1e-7 < d < 1e-4, d


def test_parameters_reach_the_plugin(tmp_path):
    """A control value given at creation is what the plugin runs with (checked
    against the plugin's own formula for its output level)."""
    uri = MDA + "Overdrive"
    need_plugins(uri)
    x = noise(RATE // 4, 2)
    a = mixgraph_render(tmp_path, uri, {"output": 0.5}, x, 2)
    b = mixgraph_render(tmp_path, uri, {"output": 0.8}, x, 2)
    # mda Overdrive's output gain is 10^(2*output - 1) (mdaOverdrive.cpp): 0.3 apart
    # is a factor 10^0.6 (12 dB), on every sample
    ratio = np.sqrt(np.mean(b ** 2) / np.mean(a ** 2))
    assert ratio == pytest.approx(10 ** 0.6, rel=1e-5)


def test_control_change_lands_at_its_exact_frame(tmp_path):
    """A score event on a plugin parameter at 0.25 s (frame 12000, inside a 64-frame
    block) splits run() there: before it the output equals a render with the old
    value, from it on one with the new value (mda Overdrive's output level acts
    after its filters, so its state does not depend on it)."""
    uri = MDA + "Overdrive"
    need_plugins(uri)
    x = noise(RATE // 2, 2)
    old = mixgraph_render(tmp_path, uri, {"output": 0.5}, x, 2)
    new = mixgraph_render(tmp_path, uri, {"output": 0.9}, x, 2)
    y = mixgraph_render(tmp_path, uri, {"output": 0.5}, x, 2,
                        score="0.25 /node/pl/output 0.9\n")
    k = 12000
    assert k % 64 != 0
    np.testing.assert_array_equal(y[:k], old[:k])
    np.testing.assert_array_equal(y[k:], new[k:])


def test_latency_is_reported_and_compensated(tmp_path):
    """x42 nodelay delays by `delay` frames and reports it as its latency: the node's
    latency is that, and a dry path in parallel (polarity-inverted gain) is delayed
    to meet it, so the two null exactly."""
    need_plugins(NODELAY)
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    e = Engine(RATE, 1, 1)
    s = Session(e, data_dir=tmp_path, confine_paths=False)
    try:
        s.add_node("input", "in", {"channels": 1})
        s.add_node("lv2", "nd", {"uri": NODELAY, "delay": 100, "report_latency": 1})
        s.add_node("gain", "inv", {"polarity": 1})
        s.add_node("output", "out", {"channels": 1})
        assert s.live["nd"].latency == 100
        s.connect("in", "nd")
        s.connect("nd", "out")
        s.commit()
        x = noise(4800, 1)
        y_wet = e.process(len(x), x, block=64)[:, 0]
        # the plugin alone, once the connection has faded in: x delayed by 100 frames
        np.testing.assert_array_equal(y_wet[2400:], x[2300:-100, 0])
        s.connect("in", "inv")
        s.connect("inv", "out")
        s.commit()
        x2 = noise(9600, 1, seed=2)
        y = e.process(len(x2), x2, block=64)[:, 0]
        # after the dry path's fade-in, wet and the delayed, inverted dry cancel
        assert np.max(np.abs(y[4800:])) < 1e-7
    finally:
        s.close()
        e.free()


def test_catalog_describes_a_plugin_as_a_type():
    """Ports by LV2 symbol (main first), parameters with range, default, unit, taper
    (pprops:logarithmic -> log) and choices from scale points; readouts from
    control outputs; /catalog/type lv2 <uri> answers the same."""
    uri = "http://gareus.org/oss/lv2/fil4#mono"
    need_plugins(uri, NODELAY)
    d = lv2.describe(uri)
    assert [(p["name"], p["direction"]) for p in d["ports"]] == [("in", "in"), ("out", "out")]
    ps = {p["name"]: p for p in d["params"]}
    assert ps["freq1"]["unit"] == "Hz" and ps["freq1"]["taper"] == "log"
    assert (ps["gain"]["min"], ps["gain"]["max"], ps["gain"]["unit"]) == (-18.0, 18.0, "dB")
    assert ps["enable"]["taper"] == "stepped" and ps["enable"]["choices"] == ["off", "on"]
    nd = lv2.describe(NODELAY)
    mode = {p["name"]: p for p in nd["params"]}["report_latency"]
    assert mode["taper"] == "stepped" and len(mode["choices"]) == 4
    assert nd["lv2"]["latency_readout"] == "latency"
    assert [r["name"] for r in nd["readouts"]] == ["latency", "nonfinite"]  # + the host's

    from mixgraph.server.engine import Engine
    from mixgraph.server.osc import Dispatcher
    from mixgraph.server.session import Session
    e = Engine(RATE, 1, 1)
    s = Session(e, confine_paths=False)
    try:
        got = []
        Dispatcher(s).dispatch("/catalog/type", ["lv2", uri], lambda a, b: got.append((a, b)))
        params = [b for a, b in got if a == "/catalog/type.param"]
        assert [b[1] for b in params] == [p["name"] for p in d["params"]]
        assert ("/done", ["/catalog/type", "lv2"]) in got
    finally:
        s.close()
        e.free()


def test_daemon_adds_sets_and_refuses(tmp_path):
    """Over OSC with a real daemon: /graph/add lv2 with parameters (one out of range:
    clamped and reported), a parameter set by name, a readout; an unknown URI, a
    missing uri and a built-in type given a uri are /fail with the reason;
    patch save/load keeps the plugin and its values."""
    need_plugins(MDA + "Overdrive", NODELAY)
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        r = d.call("/graph/add", "lv2", "od", "uri", MDA + "Overdrive", "drive", 0.25,
                   "muffle", 7.0)
        assert r[:2] == ["/graph/add", "od"] and "muffle" in r[2]
        d.call("/node/od/output", 0.75)
        addr, args = d.request("/node/od/output")
        assert args[-1] == pytest.approx(0.75)
        addr, args = d.request("/node/od/muffle")
        assert args[-1] == pytest.approx(1.0)
        # a set outside the plugin's range: clamped and reported too
        addr, args = d.request("/node/od/drive", -3.0)
        assert addr == "/done" and "clamped to 0..1" in str(args)
        assert d.request("/node/od/drive")[1][-1] == 0.0
        d.call("/node/od/drive", 0.25)
        d.call("/graph/add", "lv2", "nd", "uri", NODELAY, "delay", 48)
        d.sync()
        addr, args = d.request("/graph/add", "lv2", "x", "uri", "urn:nope")
        assert addr == "/fail" and "no LV2 plugin with URI urn:nope" in str(args)
        # a client's new node is never a stand-in, even with a saved port layout
        # (that is for documents made elsewhere): it answered /done, silent
        addr, args = d.request("/graph/add", "lv2", "x", "uri", "urn:nope", "ports",
                               "in*2>out*2")
        assert addr == "/fail" and "no LV2 plugin with URI urn:nope" in str(args), args
        addr, args = d.request("/graph/add", "lv2", "x", "uri", "urn:nope", "ports",
                               "garbage>>>")
        assert addr == "/fail" and "bad port" in str(args), args
        addr, args = d.request("/graph/add", "lv2", "y")
        assert addr == "/fail" and "uri" in str(args)
        addr, args = d.request("/graph/add", "gain", "z", "uri", MDA + "Overdrive")
        assert addr == "/fail" and "gain has no option 'uri' (options: channels)" in str(args)
        d.call("/patch/save", "p1")
        d.call("/graph/remove", "od")
        d.call("/patch/load", "p1")
        addr, args = d.request("/node/od/output")
        assert args[-1] == pytest.approx(0.75)
        addr, args = d.request("/node/od/drive")
        assert args[-1] == pytest.approx(0.25)
    finally:
        d.stop()


RT_CHILD = textwrap.dedent(r"""
    import ctypes, json, os, sys
    import numpy as np
    hook = ctypes.CDLL(os.environ["RT_HOOK"])
    for name in ("rt_hook_count", "rt_hook_enters"):
        getattr(hook, name).restype = ctypes.c_uint64
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session
    from mixgraph.server import lv2
    out = {}
    for uri, params in json.loads(sys.argv[1]):
        e = Engine(48000, 2, 2)
        s = Session(e, confine_paths=False)
        s.add_node("input", "in", {"channels": 1})
        s.add_node("lv2", "pl", {"uri": uri, "group": 0})
        s.add_node("output", "out", {"channels": 1})
        s.connect("in", "pl")
        s.connect("pl", "out")
        s.commit()
        x = np.full((256, 2), 0.01, np.float32)
        e.process(256, x)  # warm up: a plugin's first run may set itself up
        hook.rt_hook_reset()
        for k in range(200):
            for name, (lo, hi) in params.items():
                s.set_param("pl", name, lo + (hi - lo) * ((k % 7) / 6))
            s.service()
            e.process(256, x)
        out[uri] = [hook.rt_hook_enters(), hook.rt_hook_count(), lv2.drain_log()]
        s.close()
        e.free()
    print("RESULT " + json.dumps(out))
""")


def test_no_allocation_on_the_audio_thread(tmp_path, test_bundle):
    """The engine's audio code, with hosted plugins run()ning under parameter
    changes, allocates nothing (LD_PRELOAD malloc hook armed by mg_rt_enter, as in
    tests/test_rt_alloc.py); these plugins' own run() does not allocate either,
    nor does the host's log:log when a plugin logs from run() (the test plugin
    urn:mixgraph:test:state, whose lines are then taken on the control thread)."""
    plugins = [(MDA + "Overdrive", {"drive": (0.0, 1.0)}),
               (LSP + "compressor_mono", {"al": (0.01, 1.0)}),
               ("http://gareus.org/oss/lv2/fil4#mono", {"gain1": (-18.0, 18.0)}),
               ("urn:dragonfly:room", {}),
               ("urn:mixgraph:test:state", {"gain": (0.0, 2.0)})]
    need_plugins(*(u for u, _ in plugins if not u.startswith("urn:mixgraph:")))
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "no C compiler")
    hook = tmp_path / "rt_hook.so"
    subprocess.run([cc, "-std=c11", "-O2", "-shared", "-fPIC", str(HERE / "rt_hook.c"),
                    "-o", str(hook), "-ldl"], check=True)
    env = dict(os.environ, LD_PRELOAD=str(hook), RT_HOOK=str(hook),
               LV2_PATH=f"{test_bundle}:/usr/lib/lv2")
    p = subprocess.run([sys.executable, "-c", RT_CHILD, json.dumps(plugins)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads([x for x in p.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
    for uri, (enters, allocs, _) in res.items():
        assert enters == 200, uri
        assert allocs == 0, uri
    assert res["urn:mixgraph:test:state"][2] >= 3  # it logged at instantiate and from run()


LOG_CHILD = textwrap.dedent(r"""
    import json
    import numpy as np
    from mixgraph.server._core import ffi, lib
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session
    e = Engine(48000, 1, 1)
    s = Session(e, confine_paths=False)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("lv2", "pl", {"uri": "urn:mixgraph:test:state", "group": 0})
    s.add_node("output", "out", {"channels": 1})
    s.connect("in", "pl")
    s.connect("pl", "out")
    s.commit()
    e.process(64, np.full((64, 1), 0.5, np.float32))
    level, node, msg = ffi.new("int *"), ffi.new("char[64]"), ffi.new("char[256]")
    lines = []
    while lib.mg_lv2_log_pop(level, node, 64, msg, 256):
        lines.append([level[0], ffi.string(node).decode(), ffi.string(msg).decode()])
    print("RESULT " + json.dumps(lines))
""")


def test_a_plugins_log_line_from_run_is_formatted_as_printf_would(test_bundle):
    """A plugin's log:log line from run() is not formatted on the audio thread: its
    format and arguments are queued and the control thread formats them (csrc/
    lv2host.c log_defer). The test plugin logs the same two lines of many
    conversions (strings, widths and precisions given by *, hh/l/ll/z/j/L, %a, %%)
    at instantiate (formatted there by vsnprintf) and from its first run(): the
    lines are the same, and the first is what printf gives (written out here)."""
    env = dict(os.environ, LV2_PATH=f"{test_bundle}:/usr/lib/lv2")
    p = subprocess.run([sys.executable, "-c", LOG_CHILD], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = json.loads([x for x in p.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
    texts = [t for _, _, t in lines]
    assert texts[0] == "instantiated at 48000 Hz"
    a = [t for t in texts if t.startswith("A ")]
    b = [t for t in texts if t.startswith("B ")]
    assert len(a) == len(b) == 2, texts
    assert a[0] == a[1] and b[0] == b[1], (a, b)
    assert a[0] == ("A str|-42| 3.14|ff  |Z|123456789|-9000000000|%|     7|2.500|-3|77|"
                    "1.000000e-05")
    assert b[0] == ("B 1e+20|010|+5|1.500000|abc     |00042|65535|-1|1E-300|0x1p-1|1e+04|"
                    f"{-2**31}")
    assert all(lvl == 2 and who == "pl" for lvl, who, t in lines if t[:2] in ("A ", "B "))
    assert any(t.startswith("run 1: peak 0.5000") for t in texts), texts


def test_unknown_uri_and_missing_lilv_are_clear_errors():
    require(lv2.available(), "mixgraph was built without lilv (Debian: liblilv-dev)")
    with pytest.raises(MixgraphError, match="no LV2 plugin with URI urn:x"):
        lv2.plugin_type("urn:x")


@pytest.fixture(scope="module")
def test_bundle(tmp_path_factory) -> Path:
    """tests/lv2/mgtest.c built into an LV2 bundle (NaN writer, failing
    instantiate, not hard-RT): a directory for LV2_PATH."""
    require(lv2.available(), "mixgraph was built without lilv (Debian: liblilv-dev)")
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "no C compiler")
    root = tmp_path_factory.mktemp("lv2path")
    b = root / "mgtest.lv2"
    b.mkdir()
    shutil.copy(HERE / "lv2" / "manifest.ttl", b / "manifest.ttl")
    subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-shared", "-fPIC",
                    str(HERE / "lv2" / "mgtest.c"), "-o", str(b / "mgtest.so"), "-lm"],
                   check=True)
    return root


def test_bad_plugins_are_refused_or_contained_and_the_worker_answers(test_bundle, tmp_path):
    """With a real daemon (LV2_PATH = the test bundle, then the system's): a plugin
    whose instantiate fails, one that requires a feature the host lacks (named in
    the reply) and one that is not hard-RT capable are /fail with
    the reason (the latter runs with allow_non_rt 1); a plugin writing NaN and Inf
    has them scrubbed to 0 at its output and counted in its `nonfinite` readout, and
    the meter after it stays finite."""
    need_plugins(MDA + "Overdrive")
    env = {"LV2_PATH": f"{test_bundle}:/usr/lib/lv2"}
    d = Daemon(tmp_path / "state", "--backend", "null", env=env)
    try:
        addr, args = d.request("/graph/add", "lv2", "f", "uri", "urn:mixgraph:test:fail")
        assert addr == "/fail" and "failed to instantiate" in str(args)
        addr, args = d.request("/graph/add", "lv2", "q", "uri", "urn:mixgraph:test:needs")
        assert addr == "/fail" and "requires the LV2 feature" in str(args) \
            and "data-access" in str(args)
        addr, args = d.request("/graph/add", "lv2", "r", "uri", "urn:mixgraph:test:nonrt")
        assert addr == "/fail" and "hardRTCapable" in str(args) and "allow_non_rt" in str(args)
        assert d.status()["non_rt"] == ""
        d.call("/graph/add", "lv2", "r", "uri", "urn:mixgraph:test:nonrt", "allow_non_rt", 1)
        # allowed, and said: in /status (which nodes) and in the log
        assert d.status()["non_rt"] == "r"
        assert "r: urn:mixgraph:test:nonrt is not lv2:hardRTCapable and runs on the live " \
               "audio thread" in d.output()
        d.call("/graph/add", "sine", "osc", "level", -12.0)
        d.call("/graph/add", "lv2", "nz", "uri", "urn:mixgraph:test:nan")
        d.call("/graph/add", "meter", "m")
        d.call("/graph/connect", "osc", "nz")
        d.call("/graph/connect", "nz", "m")
        d.sync()
        import time
        deadline = time.monotonic() + 30
        count = 0.0
        while time.monotonic() < deadline and count < 20:
            count = d.request("/node/nz/nonfinite")[1][-1]
            time.sleep(0.1)
        assert count >= 20  # 2 per 1000 samples: 96 per second at 48 kHz
        level = d.request("/node/m/peak")[1][-1]
        assert np.isfinite(level) and -13.0 < level < -11.0
        # worker:schedule: the plugin's request goes to the worker thread, whose
        # answer (twice the request) comes back before a later run()
        d.call("/graph/add", "lv2", "wk", "uri", "urn:mixgraph:test:worker")
        d.call("/graph/connect", "osc", "wk")
        d.sync()
        deadline = time.monotonic() + 30
        echo = 0.0
        while time.monotonic() < deadline and echo < 100:
            echo = d.request("/node/wk/echo")[1][-1]
            time.sleep(0.1)
        assert echo >= 100 and echo % 20 == 0  # 2 x a multiple of 10 runs
    finally:
        d.stop()


def test_presets_set_the_parameters_the_preset_file_names(tmp_path):
    """/node/<n>/preset lists the plugin's presets and loads one by label: the
    parameters take the values written in the preset's Turtle file (read here
    with a regular expression, not through lilv)."""
    import re

    uri = MDA + "ThruZero"
    need_plugins(uri)
    ttl = Path("/usr/lib/lv2/mda.lv2/ThruZero-presets.ttl")
    require(ttl.exists(), "mda-lv2's ThruZero presets are not installed")
    text = ttl.read_text()
    block = text[text.index("<http://drobilla.net/plugins/mda/presets#ThruZero-chorus-doubler>"):]
    block = block[:block.index(" .\n")]
    want = {m[0]: float(m[1]) for m in re.findall(
        r'lv2:symbol "(\w+)" ;\s*pset:value ([-0-9.e]+)', block)}
    assert len(want) == 5
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "lv2", "tz", "uri", uri)
        r = d.call("/node/tz/preset")
        assert r[1] == 4 and "Chorus Doubler" in r[2:]
        r = d.call("/node/tz/preset", "Chorus Doubler")
        assert r[1:] == ["Chorus Doubler", 5]
        for sym, v in want.items():
            assert d.request(f"/node/tz/{sym}")[1][-1] == pytest.approx(v, abs=1e-6), sym
        addr, args = d.request("/node/tz/preset", "nope")
        assert addr == "/fail" and "Chorus Doubler" in str(args)
    finally:
        d.stop()


def test_touchosc_layout_has_the_plugins_controls():
    """The TouchOSC layout of a patch with an lv2 node has a control for each of the
    plugin's parameters (stepped with choices: a selector)."""
    from mixgraph.server.layout import local_catalog, plan

    uri = "http://gareus.org/oss/lv2/fil4#mono"
    need_plugins(uri)
    doc, _, _ = plugin_patch(uri, {}, 1, 1)
    got = {n["name"]: cs for n, cs in plan(doc, local_catalog())}
    names = {c.param for c in got["pl"]}
    assert {p.name for p in lv2.plugin_type(uri).params} <= names
    assert next(c for c in got["pl"] if c.param == "freq1").address == "/node/pl/freq1/norm"


def test_a_missing_plugin_loads_as_a_placeholder(tmp_path):
    """A patch naming a plugin this machine lacks still loads: the node is a stand-in
    with the saved ports and parameter values that passes audio through (input k to
    output k), /status counts it as missing, and saving keeps it as it was."""
    need_plugins(MDA + "Overdrive")
    from mixgraph.server import patch as patchmod
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    doc, _, ins = plugin_patch(MDA + "Overdrive", {"drive": 0.4}, 2, 2)
    e = Engine(RATE, 2, 2)
    s = Session(e, confine_paths=False)
    try:
        patchmod.load_doc(s, doc)
        saved = patchmod.to_doc(s)
        node = next(n for n in saved["nodes"] if n["name"] == "pl")
        assert node["options"]["ports"] == "left_in,right_in>left_out,right_out"
    finally:
        s.close()
        e.free()
    # the same patch on a machine without that plugin: another URI, same saved layout
    node["options"]["uri"] = "urn:mixgraph:not-installed"
    e = Engine(RATE, 2, 2)
    s = Session(e, confine_paths=False)
    try:
        patchmod.load_doc(s, saved)
        assert "urn:mixgraph:not-installed" in s.missing["pl"]
        assert s.graph.nodes["pl"].params["drive"] == pytest.approx(0.4)
        s.commit()
        x = noise(4800, 2)
        y = e.process(len(x), x, block=64)
        # through: left in -> left out, right in -> right out (after the fade-in)
        np.testing.assert_array_equal(y[2400:], x[2400:])
        again = patchmod.to_doc(s)
        n2 = next(n for n in again["nodes"] if n["name"] == "pl")
        assert n2["options"] == node["options"] and n2["params"] == node["params"]
    finally:
        s.close()
        e.free()
    # without a saved layout an unknown URI is still refused
    from mixgraph.server.catalog import CATALOG
    with pytest.raises(MixgraphError, match="no LV2 plugin"):
        lv2.lv2_type(CATALOG["lv2"], {"uri": "urn:x", "drive": 0.4})


def test_dragonfly_room_runs_with_its_worker(tmp_path):
    """Dragonfly Room Reverb requires worker:schedule: it is hosted, and an impulse
    through it gives a finite tail that decays (energy of 0.5..1 s after the click
    below a tenth of 0..0.5 s)."""
    uri = "urn:dragonfly:room"
    need_plugins(uri)
    t = lv2.plugin_type(uri)
    n_in = sum(1 for p in t.ports if p.direction == "in")
    x = np.zeros((RATE * 2, n_in), np.float32)
    x[RATE // 10] = 0.5
    y = mixgraph_render(tmp_path, uri, {}, x, sum(1 for p in t.ports if p.direction == "out"))
    assert np.all(np.isfinite(y))
    k = RATE // 10
    first = float(np.sum(y[k:k + RATE // 2] ** 2))
    later = float(np.sum(y[k + RATE // 2:k + RATE] ** 2))
    assert first > 1e-4 and later < 0.1 * first


FP_CHILD = r"""
import json, sys
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session
TINY = sys.float_info.min / 4  # a subnormal: flushed to zero under FTZ/DAZ
out = {}
for uri in json.loads(sys.argv[1]):
    e = Engine(48000, 2, 2)
    s = Session(e, confine_paths=False)
    s.add_node("lv2", "p", {"uri": uri})
    s.commit()
    out[uri] = (TINY * 1.0 > 0.0, TINY + 0.0 > 0.0)
    s.close()
    e.free()
print("RESULT " + json.dumps(out))
"""


def test_loading_a_plugin_keeps_the_control_threads_float_mode(tmp_path):
    """A plugin library built with -ffast-math sets FTZ/DAZ (crtfastmath) in the
    thread that loads it: the control thread, where Python's arithmetic must stay
    IEEE. After instantiating each plugin, a subnormal is still a subnormal (in a
    child process: a broken mode must not leak into the rest of the test run, as
    it did into hypothesis's float strategies)."""
    plugins = [MDA + "Overdrive", LSP + "compressor_mono", LSP + "para_equalizer_x16_mono",
               "http://gareus.org/oss/lv2/fil4#mono", NODELAY, "urn:dragonfly:room"]
    need_plugins(*plugins)
    p = subprocess.run([sys.executable, "-c", FP_CHILD, json.dumps(plugins)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads([x for x in p.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
    bad = [u for u, ok in res.items() if not all(ok)]
    assert not bad, f"these plugins left FTZ/DAZ on the loading thread: {bad}"


def test_plugin_state_its_files_and_its_log_survive_save_and_restart(test_bundle, tmp_path):
    """A plugin's state beyond its controls (urn:mixgraph:test:state learns its
    input's peak) goes into the patch document through its LV2_State_Interface,
    with a file it makes through state:makePath: the file lands inside
    <state dir>/lv2/<node> although the plugin asked for `../../escape/...`,
    and the document names it relative to that directory. After a restart (the
    autosave snapshot) the plugin gets its state back from the file, before it
    runs. The plugin's log lines (at instantiate, and from run() on the audio
    thread) reach the daemon's log, counted in /status and rate-limited."""
    from mixgraph.server.state import PatchStore

    env = {"LV2_PATH": f"{test_bundle}:/usr/lib/lv2"}
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null", env=env)
    try:
        d.call("/graph/add", "sine", "osc", "level", -12.0)
        d.call("/graph/add", "lv2", "st", "uri", "urn:mixgraph:test:state")
        d.call("/graph/connect", "osc", "st")
        d.sync()
        import time
        deadline = time.monotonic() + 30
        learned = 0.0
        while time.monotonic() < deadline and learned < 0.25:
            learned = d.request("/node/st/learned")[1][-1]
            time.sleep(0.1)
        assert learned == pytest.approx(10 ** (-12 / 20), rel=1e-3)  # the sine's peak
        d.call("/graph/disconnect", "osc", "st")
        d.sync()
        d.call("/patch/save", "p1")
        doc = PatchStore(state).load("p1")
        node = next(n for n in doc["nodes"] if n["name"] == "st")
        props = {p["key"]: p for p in node["lv2_state"]}
        saved = props["urn:mixgraph:test:peak"]["value"]
        # the readout comes round to what was saved (published now and then: a read
        # a fixed 0.2 s after the disconnect could be an older, lower peak)
        learned = readout_until(d, "/node/st/learned",
                                lambda v: v == pytest.approx(saved, rel=1e-6))
        assert saved == pytest.approx(learned, rel=1e-6)
        assert props["urn:mixgraph:test:file"]["type"].endswith("atom#Path")
        assert props["urn:mixgraph:test:file"]["value"] == "escape/peak.txt"  # relative
        assert (state / "lv2" / "st" / "escape" / "peak.txt").is_file()
        assert not (state / "lv2" / "escape").exists() and not (state / "escape").exists()
        # the log: the instantiate line at once; the audio thread's lines counted,
        # not each written (one line per node per interval)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and d.status()["lv2_log"] < 10:
            time.sleep(0.2)
        st = d.status()
        assert st["lv2_log"] >= 10 and st["lv2_log_lost"] == 0
        out = d.output()
        assert "st: plugin note: instantiated at 48000 Hz" in out
        assert out.count("plugin warning: run") <= 1
        wait_autosaved(state)  # the autosave snapshot
    finally:
        d.stop()
    # restarted: the plugin's peak comes back from its file (it refuses a file that
    # disagrees with the saved float), before any run (nothing feeds it now)
    d = Daemon(state, "--backend", "null", env=env)
    try:
        d.sync()
        got = readout_until(d, "/node/st/learned", lambda v: v == pytest.approx(learned, rel=1e-6))
        assert got == pytest.approx(learned, rel=1e-6)
        assert "saved plugin state not restored" not in d.output()
    finally:
        d.stop()


CONVO = "http://gareus.org/oss/lv2/convoLV2#Mono"


def test_a_convolvers_impulse_file_is_state_restored_from_the_patch(tmp_path):
    """x42's convoLV2 keeps its impulse response file in its LV2 state, not in a
    control: a patch whose node carries `lv2_state` (the file's path and the
    plugin's channel map) renders the input convolved with that file (numpy's
    direct convolution is the reference, within 1e-6), and the node saves the
    same path back once the plugin has taken the file in (its worker loaded it
    while the state was restored, before the first run)."""
    need_plugins(CONVO)
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    rng = np.random.default_rng(7)
    ir = (rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300.0) * 0.3).astype(np.float32)
    sf.write(tmp_path / "ir.wav", ir, RATE, subtype="FLOAT")
    cfg = "".join(f"convolution.{k}.0={v}\n" for k, v in (
        ("ir.channel", 1), ("ir.gain", "1.000000e+00"), ("ir.delay", 0), ("source", 1),
        ("output", 1))) + "convolution.maxsize=204800\n"
    atom = "http://lv2plug.in/ns/ext/atom#"
    state = [{"key": "http://gareus.org/oss/lv2/convoLV2#impulse", "type": atom + "Path",
              "flags": 3, "value": str(tmp_path / "ir.wav")},
             {"key": "http://gareus.org/oss/lv2/convoLV2#state", "type": atom + "String",
              "flags": 3, "value": cfg}]
    doc, _, _ = plugin_patch(CONVO, {}, 1, 1)
    doc["nodes"][0]["lv2_state"] = state
    x = noise(512 * 24, 1)  # whole periods: a shorter last run() is silent in convoLV2
    sf.write(tmp_path / "in0.wav", x[:, 0], RATE, subtype="FLOAT")
    # convoLV2 runs its convolution a whole period (the host's maxBlockLength) per
    # run(): rendered at that block
    render(doc, tmp_path / "mg.wav", inputs={"i0": str(tmp_path / "in0.wav")},
           subtype="FLOAT", progress=False, block=512)
    y, _ = sf.read(tmp_path / "mg.wav", dtype="float32", always_2d=True)
    ref = np.convolve(x[:, 0].astype(np.float64), ir.astype(np.float64))[:len(x)]
    assert np.sqrt(np.mean(ref ** 2)) > 1e-2
    np.testing.assert_allclose(y[:, 0], ref, rtol=0, atol=1e-6)
    # saved back: the same file
    e = Engine(RATE, 2, 2)
    s = Session(e, confine_paths=False)
    try:
        s.load_doc(doc)
        s.commit()
        e.process(512, np.zeros((512, 2), np.float32))
        saved = {p["key"]: p for p in lv2.node_state(s, "pl")}
        assert saved["http://gareus.org/oss/lv2/convoLV2#impulse"]["value"] == \
            str(tmp_path / "ir.wav")
        assert s.to_doc()["nodes"][0]["lv2_state"] == lv2.node_state(s, "pl")
    finally:
        s.close()
        e.free()


def test_bad_lv2_state_in_a_patch_is_refused_whole():
    """A patch's lv2_state is checked completely before anything changes: not a
    list, a property without key/type, a value that does not fit its type, a
    non-finite number, unknown fields."""
    atom = "http://lv2plug.in/ns/ext/atom#"
    good = {"key": "urn:k", "type": atom + "Float", "flags": 0, "value": 0.5}
    assert lv2.check_state([good], "t") == [good]
    for bad in ({"x": 1}, [{"key": "urn:k", "type": atom + "Float"}],
                [{**good, "value": "text"}], [{**good, "value": float("nan")}],
                [{**good, "extra": 1}], [{**good, "flags": -1}],
                [{**good, "base64": "AAAA"}], [{"key": "", "type": atom + "Int", "value": 1}],
                # not base64 at all: it was decoded as empty data
                [{"key": "urn:k", "type": atom + "Chunk", "flags": 0, "base64": "!!!"}]):
        with pytest.raises(MixgraphError):
            lv2.check_state(bad, "t")


def test_a_stereo_node_connects_to_a_stereo_plugin_as_to_a_built_in_one(tmp_path, lv2ref):
    """A new lv2 node of a stereo plugin has its main inputs as one 2-channel port
    `in` and its outputs as `out` (option `group`, default 1), so `src -> fx ->
    dst` with stereo nodes connects channel k to the plugin's k-th audio port:
    the render equals the reference host's with the same stereo input, and the
    port-by-port node (`group 0`, mono input nodes) bit for bit. Side chains stay
    mono ports by symbol. The layout is saved (`in*2>out*2`) and a stand-in for a
    missing plugin keeps it, so the stereo connections still load."""
    uri = MDA + "Overdrive"
    need_plugins(uri)
    from mixgraph.server import patch as patchmod
    from mixgraph.server.catalog import CATALOG
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    t = lv2.lv2_type(CATALOG["lv2"], {"uri": uri})
    assert [(p.name, p.direction, p.channel_count(1)) for p in t.ports] == [
        ("in", "in", 2), ("out", "out", 2)]
    params = {"drive": 0.6, "muffle": 0.3}
    doc = {"format": "mixgraph-patch", "version": 1, "sample_rate": RATE, "nodes": [
        {"name": "pl", "type": "lv2", "channels": 1, "options": {"uri": uri},
         "params": params},
        {"name": "i", "type": "input", "channels": 2, "options": {"first": 1}, "params": {}},
        {"name": "o", "type": "output", "channels": 2, "options": {"first": 1}, "params": {}}],
        "connections": [["i", "pl"], ["pl", "o"]], "metadata": {}}
    x = noise(RATE // 2, 2)
    sf.write(tmp_path / "st.wav", x, RATE, subtype="FLOAT")
    render(doc, tmp_path / "g.wav", inputs={"i": str(tmp_path / "st.wav")}, subtype="FLOAT",
           progress=False, block=64)
    y, _ = sf.read(tmp_path / "g.wav", dtype="float32", always_2d=True)
    assert np.sqrt(np.mean(y ** 2)) > 1e-3 and not np.allclose(y, x, atol=1e-3)
    np.testing.assert_allclose(y, lv2ref(tmp_path, uri, params, x, 64), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(y, mixgraph_render(tmp_path, uri, params, x, 2))
    # side chains stay mono ports (LSP's stereo compressor: in, sc_l, sc_r, out)
    sc = LSP + "sc_compressor_stereo"
    if sc in set(lv2.uris()):
        ports = lv2.lv2_type(CATALOG["lv2"], {"uri": sc}).ports
        assert [p.channel_count(1) for p in ports] == [2, 1, 1, 2]
        assert ports[0].name == "in" and ports[-1].name == "out"
    e = Engine(RATE, 2, 2)
    s = Session(e, confine_paths=False)
    try:
        patchmod.load_doc(s, doc)
        saved = patchmod.to_doc(s)
    finally:
        s.close()
        e.free()
    node = next(n for n in saved["nodes"] if n["name"] == "pl")
    assert node["options"]["group"] == 1 and node["options"]["ports"] == "in*2>out*2"
    # described as a new node's ports: /catalog/type and mixgraph lv2 show
    from mixgraph.server.osc import Dispatcher
    e = Engine(RATE, 2, 2)
    s = Session(e, confine_paths=False)
    try:
        got = []
        Dispatcher(s).dispatch("/catalog/type", ["lv2", uri], lambda a, b: got.append((a, b)))
        assert [b[1:] for a, b in got if a == "/catalog/type.port"] == [
            ["in", "in", 2], ["out", "out", 2]]
    finally:
        s.close()
        e.free()
    assert [(p["name"], p["channels"]) for p in lv2.describe(uri)["ports"]] == [
        ("in", 2), ("out", 2)]
    node["options"]["uri"] = "urn:mixgraph:not-installed"
    e = Engine(RATE, 2, 2)
    s = Session(e, confine_paths=False)
    try:
        patchmod.load_doc(s, saved)  # the stereo connections load onto the stand-in
        assert "urn:mixgraph:not-installed" in s.missing["pl"]
        s.commit()
        z = e.process(4800, noise(4800, 2), block=64)
        np.testing.assert_array_equal(z[2400:], noise(4800, 2)[2400:])  # passed through
    finally:
        s.close()
        e.free()
    # a document from before `group` (mono `ports`, no `group`) keeps mono ports
    t0 = lv2.lv2_type(CATALOG["lv2"], {"uri": uri, "ports": "left_in,right_in>left_out,right_out"})
    assert [p.name for p in t0.ports] == ["left_in", "right_in", "left_out", "right_out"]


def test_a_bundle_gone_at_restart_leaves_a_placeholder_that_keeps_the_state(
        test_bundle, tmp_path):
    """The daemon restarts without the plugin's bundle (LV2_PATH no longer has it):
    the node is a placeholder that passes audio through, /status counts it in
    missing_files, the log says why, the rest of the patch loads, and the next
    save keeps the plugin's saved lv2_state unchanged, so a restart with the bundle
    back gives the plugin its state again."""
    from mixgraph.server.state import PatchStore

    state = tmp_path / "state"
    with_bundle = {"LV2_PATH": f"{test_bundle}:/usr/lib/lv2"}
    d = Daemon(state, "--backend", "null", env=with_bundle)
    try:
        # at a quarter of the rate the sine's samples reach its crest at once, so the
        # learned peak stays as it is once the level has settled (the state saved
        # below is the state of the autosave that follows)
        d.call("/graph/add", "sine", "osc", "level", -6.0, "freq", RATE / 4)
        d.call("/graph/add", "lv2", "st", "uri", "urn:mixgraph:test:state")
        d.call("/graph/add", "meter", "m")
        d.call("/graph/connect", "osc", "st")
        d.call("/graph/connect", "st", "m")
        d.sync()
        import time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and d.request("/node/st/learned")[1][-1] < 0.5:
            time.sleep(0.1)
        d.call("/graph/disconnect", "osc", "st")
        d.sync()
        time.sleep(0.2)
        d.call("/patch/save", "before")
        saved = next(n for n in PatchStore(state).load("before")["nodes"] if n["name"] == "st")
        assert saved["lv2_state"]
        d.call("/graph/connect", "osc", "st")
        d.sync()
        wait_autosaved(state)  # the autosave snapshot
    finally:
        d.stop()
    d = Daemon(state, "--backend", "null", env={"LV2_PATH": "/usr/lib/lv2"})
    try:
        d.sync()
        assert d.status()["missing_files"] == 1
        assert "placeholder: no LV2 plugin with URI urn:mixgraph:test:state" in d.output()
        peak = readout_until(d, "/node/m/peak", lambda v: -7.0 < v < -5.0)
        assert -7.0 < peak < -5.0  # passed through to the meter
        d.call("/patch/save", "without")
        kept = next(n for n in PatchStore(state).load("without")["nodes"] if n["name"] == "st")
        assert kept["lv2_state"] == saved["lv2_state"]
        assert kept["options"] == saved["options"]
    finally:
        d.stop()
    d = Daemon(state, "--backend", "null", env=with_bundle)
    try:
        d.sync()
        assert d.status()["missing_files"] == 0
        d.call("/patch/load", "without")
        d.sync()
        want = 10 ** (-6 / 20) * 0.999
        assert readout_until(d, "/node/st/learned", lambda v: v >= want) >= want
        assert "saved plugin state not restored" not in d.output()
    finally:
        d.stop()


def test_undo_of_a_removal_gives_the_plugin_its_state_back(test_bundle, tmp_path):
    """Removing an lv2 node and undoing it makes the node again with its plugin's
    state (the history keeps its lv2_state and journals what it gave back), also
    across a SIGKILL right after the undo."""
    import signal
    import time

    env = {"LV2_PATH": f"{test_bundle}:/usr/lib/lv2"}
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null", env=env)
    try:
        d.call("/graph/add", "sine", "osc", "level", -3.0)
        d.call("/graph/add", "lv2", "st", "uri", "urn:mixgraph:test:state")
        d.call("/graph/connect", "osc", "st")
        d.sync()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and d.request("/node/st/learned")[1][-1] < 0.7:
            time.sleep(0.1)
        d.call("/graph/disconnect", "osc", "st")
        d.sync()
        time.sleep(0.2)
        learned = d.request("/node/st/learned")[1][-1]
        assert learned == pytest.approx(10 ** (-3 / 20), rel=1e-3)
        d.call("/graph/remove", "st")
        d.call("/undo")
        d.sync()
        assert readout_until(d, "/node/st/learned", lambda v: v == learned) == learned
        # again, killed as soon as the undo is done (its journal record is on disk
        # before /done; the autosave snapshot comes up to 0.25 s later)
        d.call("/graph/remove", "st")
        d.call("/undo")
        d.stop(signal.SIGKILL)
    finally:
        d.stop()
    d = Daemon(state, "--backend", "null", env=env)
    try:
        d.sync()
        assert readout_until(d, "/node/st/learned", lambda v: v == learned) == learned
    finally:
        d.stop()


def test_catalog_of_many_new_plugins_answers_a_turn_at_a_time():
    """`/catalog lv2 <uri>...` (a read-only query, up to 64 URIs) looks at each plugin
    never looked at before in a control-loop turn of its own, then answers: the first
    look reads a plugin's data files (tens of ms for lsp's; 64 of them froze control
    for seconds). Refusals are kept as answers; a bundle may look at one new plugin."""
    require(lv2.available(), "mixgraph was built without lilv (Debian: liblilv-dev)")
    fresh = [u for u in lv2.uris() if not lv2.known(u)][:4]
    require(len(fresh) == 4, "fewer than 4 LV2 plugins installed")
    bogus = "urn:mixgraph:test:no-such-plugin"

    from mixgraph.server.engine import Engine
    from mixgraph.server.osc import Dispatcher
    from mixgraph.server.session import Session
    e = Engine(RATE, 0, 2)
    s = Session(e, confine_paths=False)
    d = Dispatcher(s)
    e.null_start(64)
    try:
        got: list = []
        d.dispatch("/catalog", ["lv2", *fresh], lambda a, b: got.append((a, b)))
        assert got == [] and not any(lv2.known(u) for u in fresh)  # nothing looked at yet
        turns = 0
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            before = sum(lv2.known(u) for u in fresh)
            s.service()
            assert sum(lv2.known(u) for u in fresh) - before <= 1  # one plugin a turn
            turns += 1
            time.sleep(0.002)
        assert [a for a, _ in got] == ["/catalog.reply"], got
        import msgpack
        assert [t["uri"] for t in msgpack.unpackb(got[0][1][0])] == fresh
        assert turns >= 4
        # known now: answered at once
        got.clear()
        d.dispatch("/catalog", ["lv2", *fresh], lambda a, b: got.append((a, b)))
        assert [a for a, _ in got] == ["/catalog.reply"]
        # an unknown URI among new ones: the answer names it, after the turns
        more = [u for u in lv2.uris() if not lv2.known(u)][:2]
        got.clear()
        d.dispatch("/catalog", ["lv2", *more, bogus], lambda a, b: got.append((a, b)))
        while not got and time.monotonic() < deadline:
            s.service()
            time.sleep(0.002)
        assert got and got[0][0] == "/fail" and bogus in str(got[0][1]), got
        assert lv2.known(bogus)  # the refusal is kept
        # in a bundle: at most one new plugin
        more = [u for u in lv2.uris() if not lv2.known(u)][:2]
        if len(more) == 2:
            from pythonosc.osc_message_builder import OscMessageBuilder

            from mixgraph.server.osc import Timed
            b = OscMessageBuilder("/catalog")
            for a in ("lv2", *more):
                b.add_arg(a)
            m = b.build()
            got.clear()
            d.dispatch_packet([Timed(m.address, m.params)], None, True,
                              lambda a, b: got.append((a, b)))
            while not got and time.monotonic() < deadline:  # held to the next turn
                s.service()
                d.service()
                time.sleep(0.002)
            assert got and got[0][0] == "/fail" and "bundle" in str(got[0][1]), got
    finally:
        e.null_stop()
        s.close()
        e.free()
