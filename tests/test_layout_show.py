"""The TouchOSC show page: GO, STOP, the playhead, a button per scene and a morph
crossfader. Its Lua scripts run under lua5.4 with a stand-in for TouchOSC's
`self` and `sendOSC`, and what they send is sent to a real daemon over UDP."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from mixgraph.server import layout

from daemon_util import Daemon

HARNESS = r"""
sent = {}
function sendOSC(path, ...)
  local parts = {path}
  for _, v in ipairs({...}) do parts[#parts + 1] = tostring(v) end
  print(table.concat(parts, '\t'))
end
self = {values = {x = %(x)s, text = ''},
        parent = {children = {['morph a'] = {values = {x = %(a)s}},
                              ['morph b'] = {values = {x = %(b)s}}}}}
%(script)s
if onValueChanged then onValueChanged('x') end
if onReceiveOSC then
  onReceiveOSC({'/cue/playhead', {{value = '2'}, {value = 'Fade down'}}}, nil)
  print('text', self.values.text)
end
"""


def prop(node: ET.Element, key: str) -> str | None:
    for p in node.findall("properties/property"):
        if p.findtext("key") == key:
            return p.findtext("value")
    return None


def run_lua(script: str, x: float = 1, a: int = 0, b: int = 1) -> list[list[str]]:
    src = HARNESS % {"x": x, "a": a, "b": b, "script": script}
    r = subprocess.run(["lua5.4", "-"], input=src, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


DOC = {"format": "mixgraph-patch", "version": 2, "sample_rate": 48000.0,
       "nodes": [{"name": "g", "type": "gain", "channels": 1, "options": {}, "params": {}}],
       "connections": [], "metadata": {},
       "show": {"scenes": {"quiet": {}, "loud": {}}, "safes": [], "cues": [],
                "playhead": None}}


def test_show_page_controls_and_scripts(tmp_path):
    if shutil.which("lua5.4") is None:
        pytest.skip("lua5.4 is not installed")
    root = layout.build(DOC, layout.local_catalog())
    nodes = {prop(n, "name"): n for n in root.iter("node")}
    page = nodes["show"]
    assert prop(page, "tabLabel") == "show"
    assert run_lua(prop(nodes["go"], "script")) == [["/cue/go"]]
    assert run_lua(prop(nodes["stop"], "script")) == [["/cue/stop"]]
    assert run_lua(prop(nodes["go"], "script"), x=0) == []  # the release sends nothing
    assert run_lua(prop(nodes["scene loud"], "script")) == [["/scene/recall", "loud"]]
    assert run_lua(prop(nodes["playhead"], "script")) == [["text", "next: 2  Fade down"]]
    assert nodes["morph a"].get("type") == "RADIO" and prop(nodes["morph a"], "steps") == "2"
    got = run_lua(prop(nodes["morph"], "script"), x=0.25, a=1, b=0)
    assert got == [["/scene/morph", "loud", "quiet", "0.25"]]
    # what the scripts send, the server takes
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/scene/store", "quiet")
        d.call("/node/g/gain", 6.0)
        d.call("/scene/store", "loud")
        d.call("/cue/set", 1, "scene", "quiet")
        for msg in ([["/scene/recall", "loud"]], got, [["/cue/go"]], [["/cue/stop"]]):
            addr, *args = msg[0]
            args = [float(a) if a[0].isdigit() else a for a in args]
            assert d.request(addr, *args)[0] == "/done", msg
    finally:
        d.stop()


def test_no_show_no_show_page():
    doc = {k: v for k, v in DOC.items() if k != "show"}
    root = layout.build(doc, layout.local_catalog())
    assert not any(prop(n, "name") == "show" for n in root.iter("node"))
