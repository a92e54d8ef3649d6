"""TouchOSC layouts: the .tosc file is zlib-compressed, well-formed XML
(<lexml version='3'>) with the expected controls bound to their addresses."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from mixgraph.server import layout

from daemon_util import Daemon

PATCH = {
    "format": "mixgraph-patch", "version": 1, "sample_rate": 48000.0,
    "nodes": [
        {"name": "osc", "type": "sine", "channels": 1, "options": {},
         "params": {"freq": 440.0, "level": -20.0}},
        {"name": "ch1", "type": "gain", "channels": 1, "options": {}, "params": {"gain": -6.0}},
        {"name": "p", "type": "pan", "channels": 1, "options": {}, "params": {}},
        {"name": "m", "type": "meter", "channels": 2, "options": {}, "params": {}},
        {"name": "out", "type": "output", "channels": 2, "options": {}, "params": {}},
    ],
    "connections": [["osc:out", "ch1:in"], ["ch1:out", "p:in"], ["p:out", "m:in"],
                    ["p:out", "out:in"]],
    "metadata": {},
}


def load(path) -> ET.Element:
    root = ET.fromstring(zlib.decompress(path.read_bytes()))  # raises if not well-formed
    assert root.tag == "lexml" and root.get("version") == "3"
    return root


def prop(node: ET.Element, key: str) -> str | None:
    for p in node.findall("properties/property"):
        if p.findtext("key") == key:
            return p.findtext("value")
    return None


def controls(root: ET.Element) -> dict[str, tuple[str, list[tuple[str, str, str, str]]]]:
    """control name -> (node type, [(path, send, receive, scale) per <osc>])."""
    out = {}
    for n in root.iter("node"):
        oscs = n.findall("messages/osc")
        if not oscs:
            continue
        binds = []
        for o in oscs:
            a = o.find("arguments/partial")
            binds.append((o.findtext("path/partial/value"), o.findtext("send"),
                          o.findtext("receive"),
                          f"{a.findtext('type')} {a.findtext('value')} "
                          f"{a.findtext('scaleMin')}..{a.findtext('scaleMax')}"))
        out[prop(n, "name")] = (n.get("type"), binds)
    return out


def labels(root: ET.Element) -> set[str]:
    return {v.findtext("default") for n in root.iter("node") if n.get("type") == "LABEL"
            for v in n.findall("values/value") if v.findtext("key") == "text"}


def test_layout_from_patch_file(tmp_path):
    src = tmp_path / "mix.json"
    src.write_text(json.dumps(PATCH))
    out = tmp_path / "mix.tosc"
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "layout", "--touchosc",
                        str(out), "--patch", str(src)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    root = load(out)
    c = controls(root)
    # a fader per gain, bound to the normalised path, sending and receiving (feedback moves
    # it), x scaled 0..1; touching it sends /touch
    assert c["ch1.gain"] == ("FADER", [
        ("/node/ch1/gain/norm", "1", "1", "VALUE x 0..1"),
        ("/node/ch1/gain/touch", "1", "0", "VALUE touch 0..1")])
    assert c["osc.level"][0] == "FADER"
    # mute and polarity are toggle buttons; mute is one
    assert c["ch1.mute"] == ("BUTTON", [("/node/ch1/mute/norm", "1", "1", "VALUE x 0..1")])
    assert c["ch1.polarity"][0] == "BUTTON"
    # knobs for continuous non-gain params
    assert c["osc.freq"][0] == "RADIAL" and c["p.pan"][0] == "RADIAL"
    assert c["osc.freq"][1][0][0] == "/node/osc/freq/norm"
    # a meter per channel of the meter node (stereo: 2), bound to the meter stream's
    # per-channel 0..1 address; receives only, not interactive
    for ch in (1, 2):
        kind, binds = c[f"m.peak{ch}"]
        assert kind == "FADER" and binds == [(f"/meters/m/peak/{ch}", "0", "1", "VALUE x 0..1")]
        meter = next(n for n in root.iter("node") if prop(n, "name") == f"m.peak{ch}")
        assert prop(meter, "interactive") == "0"
    assert "m.rms" not in c and "m.peak" not in c
    # strips are labelled with the node names; nothing for the output (no controls)
    assert {"ch1 (gain)", "osc (sine)", "m (meter)", "gain", "freq"} <= labels(root)
    assert not any(k.startswith("out.") for k in c)
    # the root subscribes to feedback on load
    assert "/subscribe" in prop(root.find("node"), "script")
    assert "wrote" in r.stdout


def test_knobs_for_eq_and_dynamics_and_pages():
    cat = layout.local_catalog() + [
        {"name": "eq", "params": [
            {"name": f"{k}{b}", "unit": u, "min": lo, "max": hi, "default": d, "taper": t}
            for b in range(1, 5)
            for k, u, lo, hi, d, t in [("freq", "Hz", 20, 20000, 1000, "log"),
                                        ("gain", "dB", -24, 24, 0, "linear"),
                                        ("q", "", 0.1, 10, 0.7, "log"),
                                        ("on", "", 0, 1, 1, "stepped")]], "readouts": []},
        {"name": "compressor", "params": [
            {"name": "threshold", "unit": "dB", "min": -60, "max": 0, "default": -20,
             "taper": "linear"},
            {"name": "ratio", "unit": "", "min": 1, "max": 20, "default": 4, "taper": "log"},
            {"name": "makeup", "unit": "dB", "min": 0, "max": 24, "default": 0,
             "taper": "fader"}],
         "readouts": [{"name": "gr", "unit": "dB", "per_channel": False}]},
    ]
    doc = {"nodes": [{"name": "q", "type": "eq", "params": {}},
                     {"name": "comp", "type": "compressor", "params": {}}]
           + [{"name": f"ch{i}", "type": "gain", "params": {}} for i in range(1, 17)]}
    root = layout.build(doc, cat)
    ET.fromstring(zlib.decompress(layout.to_bytes(root)))  # round-trips as a file
    c = controls(root)
    assert all(c[f"q.{k}{b}"][0] == "RADIAL" for b in range(1, 5) for k in ("freq", "gain", "q"))
    assert c["q.on1"][0] == "BUTTON"
    # in a dynamics node even the gain-like makeup is a knob; its gain reduction is a meter
    assert c["comp.makeup"][0] == "RADIAL" and c["comp.threshold"][0] == "RADIAL"
    assert c["comp.gr"][1][0][:3] == ("/meters/comp/gr/1", "0", "1")
    assert all(c[f"ch{i}.gain"][0] == "FADER" for i in range(1, 17))
    # 18 strips do not fit 1024 points: a pager with pages of strips
    pager = [n for n in root.iter("node") if n.get("type") == "PAGER"]
    assert len(pager) == 1 and len(pager[0].findall("children/node")) >= 2
    # default of the log-tapered freq knob: 1 kHz on 20..20k Hz is at ln(50)/ln(1000) = 0.566
    freq = next(n for n in root.iter("node") if prop(n, "name") == "q.freq1")
    x = next(v for v in freq.findall("values/value") if v.findtext("key") == "x")
    assert float(x.findtext("default")) == pytest.approx(0.5660, abs=1e-3)


def test_real_mixing_nodes():
    """The catalog's own EQ and dynamics nodes get knobs, switches buttons, a trigger a
    momentary button, gain reductions meters."""
    cat = layout.local_catalog()
    names = {t["name"] for t in cat}
    if not {"eq", "compressor"} <= names:
        pytest.skip("this build has no eq/compressor node types")
    doc = {"nodes": [{"name": "q", "type": "eq", "channels": 1, "params": {}},
                     {"name": "c", "type": "compressor", "channels": 2, "params": {}},
                     {"name": "m", "type": "meter", "channels": 2, "params": {}}]}
    root = layout.build(doc, cat)
    c = controls(root)
    kinds = {prop(n, "name"): n.get("type") for n in root.iter("node")}
    eq = next(t for t in cat if t["name"] == "eq")
    for p in eq["params"]:
        switch = p["taper"] == "stepped" and p["min"] == 0 and p["max"] == 1
        many = len(p.get("choices", ())) > 2  # a labelled selector (RADIO)
        assert kinds[f"q.{p['name']}"] == ("BUTTON" if switch else "RADIO" if many
                                           else "RADIAL"), p["name"]
    comp = next(t for t in cat if t["name"] == "compressor")
    assert all(kinds[f"c.{p['name']}"] in ("RADIAL", "BUTTON") for p in comp["params"])
    if any(r["name"] == "gr" for r in comp["readouts"]):
        assert c["c.gr1"][1][0][0] == "/meters/c/gr/1"
    buttons = {prop(n, "name"): prop(n, "buttonType") for n in root.iter("node")
               if n.get("type") == "BUTTON"}
    if "m.reset" in buttons:
        assert buttons["m.reset"] == "0"  # momentary
    assert all(v == "1" for k, v in buttons.items() if k != "m.reset")  # toggles


def test_layout_from_live_graph(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "vox", "gain", -3.0)
        d.call("/graph/add", "meter", "vm", "channels", 1)
        d.call("/graph/connect", "vox", "vm")
        out = tmp_path / "live.tosc"
        r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "layout", "--touchosc",
                            str(out), "--port", str(d.port)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        c = controls(load(out))
        assert c["vox.gain"][1][0] == ("/node/vox/gain/norm", "1", "1", "VALUE x 0..1")
        assert c["vox.mute"][0] == "BUTTON"
        assert c["vm.peak"] == ("FADER", [("/meters/vm/peak/1", "0", "1", "VALUE x 0..1")])
    finally:
        d.stop()


def test_node_actions_get_press_buttons_and_their_triggers_no_control():
    """denoise's learn and align's measure are momentary buttons that send on the
    press only; the trigger parameters they drive (listen, capture) get no control."""
    cat = layout.local_catalog()
    doc = {"nodes": [{"name": "dn", "type": "denoise", "channels": 1, "params": {}},
                     {"name": "al", "type": "align", "channels": 1, "params": {}}]}
    root = layout.build(doc, cat)
    c = controls(root)
    assert "dn.listen" not in c and "al.capture" not in c
    assert "dn.reduction" in c and "al.delay" in c
    for name, address in (("dn.learn", "/node/dn/learn"), ("al.measure", "/node/al/measure")):
        kind, binds = c[name]
        assert kind == "BUTTON" and binds == [(address, "1", "0", binds[0][3])]
    node = next(n for n in root.iter("node") if prop(n, "name") == "dn.learn")
    assert prop(node, "buttonType") == "0"
    assert node.findtext("messages/osc/triggers/trigger/condition") == "RISE"


def _script(n: ET.Element) -> str:
    return prop(n, "script") or ""


def test_stepped_parameters_are_labelled_selectors_and_values_show_in_units(tmp_path):
    """Every stepped parameter with more than two named choices is a RADIO with one step
    and one LABEL per choice name (in order), whose press sends the value on the
    parameter's own address; knobs and faders have a label that shows the value in its
    unit; every generated script is valid Lua (checked with luac when it is there)."""

    cat = layout.local_catalog()
    doc = {"nodes": [{"name": t["name"] + "1", "type": t["name"], "channels": 1, "params": {}}
                     for t in cat if t["name"] not in ("input", "output", "player", "recorder")]}
    root = layout.build(doc, cat)
    nodes = {prop(n, "name"): n for n in root.iter("node")}
    label_boxes = [(prop(n, "frame"), n) for n in root.iter("node") if n.get("type") == "LABEL"]
    seen = 0
    for t in cat:
        nname = t["name"] + "1"
        if not any(n["name"] == nname for n in doc["nodes"]):
            continue
        for p in t["params"]:
            ch = p.get("choices") or []
            if len(ch) <= 2:
                continue
            n = nodes[f"{nname}.{p['name']}"]
            assert n.get("type") == "RADIO" and prop(n, "steps") == str(len(ch)), p["name"]
            script = _script(n)
            assert f"sendOSC('/node/{nname}/{p['name']}', self.values.x + ({p['min']:g}))" \
                in script
            seen += 1
    assert seen >= 10
    # the EQ's band type selector: its five names, in order, as labels of its group
    eq = next(g for g in root.iter("node") if g.get("type") == "GROUP"
              and prop(g, "name") == "eq1")
    texts = [v.findtext("default") for n in eq.iter("node") if n.get("type") == "LABEL"
             for v in n.findall("values/value") if v.findtext("key") == "text"]
    i = texts.index("bell")
    assert texts[i:i + 5] == ["bell", "low shelf", "high shelf", "notch", "band-pass"]
    # values in units: the gain fader's label formats dB, a frequency knob Hz/kHz
    g = nodes["gain1.gain value"]
    assert "'/node/gain1/gain'" in _script(g) and "%.1f dB" in _script(g)
    f = nodes["eq1.hpfreq value"]
    assert "kHz" in _script(f) and "'/node/eq1/hpfreq'" in _script(f)
    # a two-state switch with named states shows the name: the compressor's detector
    d = nodes["compressor1.detect value"]
    assert "{'peak', 'RMS'}" in _script(d) and "'/node/compressor1/detect'" in _script(d)
    assert label_boxes
    luac = shutil.which("luac5.4") or shutil.which("luac")
    if luac is None:
        return
    scripts = {prop(n, "name"): _script(n) for n in root.iter("node") if _script(n)}
    for name, src in scripts.items():
        f = tmp_path / "s.lua"
        f.write_text(src)
        r = subprocess.run([luac, "-p", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)


@pytest.mark.parametrize("prove", [False, True])
def test_root_script_proves_its_address_and_gets_meters(tmp_path, prove, require):
    """The layout's root script, run by a stand-in for TouchOSC's script host (Lua 5.4,
    LuaSocket, real UDP): it answers the server's /hello cookie, subscribes, and meters
    arrive, whether the server trusts its address already (loopback) or not."""
    require(shutil.which("lua5.4") is not None, "lua5.4 is not installed")
    r = subprocess.run(["lua5.4", "-e", "require('socket')"], capture_output=True)
    require(r.returncode == 0, "LuaSocket is not installed (Debian: lua-socket)")
    script = tmp_path / "root.lua"
    script.write_text(layout.ROOT_SCRIPT)
    d = Daemon(tmp_path / "state", "--backend", "null", *(["--prove-loopback"] * prove))
    try:
        d.call("/graph/add", "meter", "m", "channels", 1)
        host = Path(__file__).parent / "lua" / "touchosc_host.lua"
        r = subprocess.run(["lua5.4", str(host), str(script), "127.0.0.1", str(d.port)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "/done\t/meters/subscribe" in r.stdout
    finally:
        d.stop()
