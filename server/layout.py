"""TouchOSC layouts generated from a graph: `mixgraph layout --touchosc OUT.tosc`.

The file is the current TouchOSC (2022+) document format: zlib-compressed
XML, `<lexml version='3'>` holding one root `<node type='GROUP'>`; every
control is a `<node type='FADER'|'RADIAL'|'BUTTON'|'LABEL'|...>` with
`<properties>` (name, frame, color, ...), `<values>` (x, touch, text) and
`<messages><osc>` bindings: a constant path and a VALUE argument scaled
0..1, sent on change and received (so feedback moves the control).

What is generated, one strip per node (pages of strips when they do not fit):

- a labelled FADER per gain-like parameter (taper "fader": gain, level,
  makeup, ...), bound to `/node/<name>/<param>/norm`; touching it sends
  `/node/<name>/<param>/touch 1|0` (the server holds back other clients'
  changes to a control being held);
- RADIAL knobs for continuous parameters (EQ, dynamics, pan, frequencies),
  bound to `/node/<name>/<param>/norm` (the server's published taper);
- toggle BUTTONs for switches (mute in red, on/off), momentary ones for
  triggers (reset), `/node/.../norm`;
- labelled selectors (a RADIO with one LABEL per choice) for stepped
  parameters with more than two named choices (EQ band type, slope, pan
  law...): a press sends `/node/<name>/<param> <value>`, feedback moves it;
- under every knob, fader and selector a LABEL that shows the value in its
  unit (`-6.0 dB`, `2.50 kHz`, `low shelf`), set from the `/node/<name>/<param>`
  feedback the server sends (a subscription starts with all of them);
- meters (non-interactive FADERs that only receive), one per channel, for dB
  readouts such as a meter node's peak, bound to `/meters/<name>/<readout>/<ch>`
  (what `/meters/subscribe` streams: 0..1, -60 dBFS to 0 dBFS);
- when the graph has a show (a live graph always has; a patch of version 2):
  a `show` page with GO, STOP, the playhead's number and name, one button per
  scene and a morph crossfader with its two scene selectors
  (show_page);
- a root script that proves its address on load (`/hello`, echoing the
  cookie the server answers; docs/protocol.md "Address proof"), then
  subscribes (`/subscribe 10`, `/meters/subscribe * 20`), keeps the lease
  alive with `/status` every 3 s (any message renews it) and does both again
  every 30 s (a full state dump: it also recovers from a restarted server or
  lost UDP packets).
"""

from __future__ import annotations

import math
import uuid
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path

# the address a meter control listens on: the server's meter stream sends, per dB
# readout and channel (1-based), the reading on a 0..1 scale (-60 dBFS -> 0, 0 dBFS -> 1)
METER_ADDRESS = "/meters/{node}/{readout}/{ch}"
LEASE_S = 10
METER_RATE_HZ = 20

# node types whose every continuous parameter gets a knob (even gain-like ones)
KNOB_TYPES = ("eq", "gate", "expander", "compressor", "limiter", "saturator", "deesser",
              "dynamics", "filter", "width", "reverb", "delay")

# 0/1 parameters that act on the rising edge: momentary buttons, not toggles
TRIGGERS = ("reset", "clear", "tap", "trigger")

COLORS = {
    "fader": (0.25, 0.62, 1.0, 1.0),
    "knob": (1.0, 0.66, 0.16, 1.0),
    "button": (0.3, 0.85, 0.45, 1.0),
    "trigger": (0.85, 0.85, 0.3, 1.0),
    "mute": (1.0, 0.25, 0.25, 1.0),
    "meter": (0.35, 0.95, 0.35, 1.0),
    "label": (1.0, 1.0, 1.0, 1.0),
    "strip": (0.16, 0.16, 0.18, 1.0),
    "root": (0.0, 0.0, 0.0, 1.0),
}


@dataclass
class Control:
    """One control of a strip."""

    kind: str  # fader, knob, button, mute, trigger, meter, action, selector
    node: str
    param: str
    address: str
    label: str
    default: float = 0.0  # 0..1 (a selector: the default's step)
    unit: str = ""
    choices: tuple[str, ...] = ()  # a selector's names, one per step from lo
    lo: float = 0.0  # the parameter's minimum (a selector's first value)


# ---- choosing controls ------------------------------------------------------------------

def _norm_default(p: dict) -> float:
    lo, hi, d = float(p["min"]), float(p["max"]), float(p["default"])
    if hi <= lo:
        return 0.0
    if p.get("taper") == "log" and lo > 0:
        return (math.log(d) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return min(1.0, max(0.0, (d - lo) / (hi - lo)))


def controls_for(node: dict, ntype: dict) -> list[Control]:
    """The controls of one node (from its patch entry and its catalog type)."""
    name = node["name"]
    knobby = any(ntype["name"].startswith(k) for k in KNOB_TYPES)
    actions = ntype.get("actions", [])
    # an action's trigger parameters are driven by the action, never by hand
    driven = {t for a in actions for t in a.get("triggers", [])}
    out: list[Control] = []
    for p in ntype.get("params", []):
        pname = p["name"]
        if pname in driven:
            continue
        addr = f"/node/{name}/{pname}/norm"
        switch = p.get("taper") == "stepped" and float(p["min"]) == 0 and float(p["max"]) == 1
        choices = tuple(p.get("choices") or ())
        if len(choices) > 2:
            lo = float(p["min"])
            out.append(Control("selector", name, pname, f"/node/{name}/{pname}", pname,
                               float(round(float(p["default"]) - lo)), choices=choices, lo=lo))
            continue
        if pname == "mute":
            kind = "mute"
        elif switch and pname in TRIGGERS:
            kind = "trigger"
        elif switch:
            kind = "button"
        elif p.get("taper") == "fader" and not knobby:
            kind = "fader"
        else:
            kind = "knob"
        out.append(Control(kind, name, pname, addr, pname, _norm_default(p),
                           unit=p.get("unit", ""), choices=choices))
    for a in actions:  # a press sends /node/<name>/<action> 1 (one second of audio)
        out.append(Control("action", name, a["name"], f"/node/{name}/{a['name']}", a["name"]))
    dbs = [r for r in ntype.get("readouts", []) if r.get("unit", "").startswith("dB")]
    if ntype["name"] == "meter":
        dbs = [r for r in dbs if r["name"] == "peak"] or dbs[:1]
    for r in dbs:
        chans = int(node.get("channels") or 1) if r.get("per_channel") else 1
        for ch in range(1, chans + 1):
            label = r["name"] if chans == 1 else f"{r['name']} {ch}"
            param = r["name"] if chans == 1 else f"{r['name']}{ch}"
            out.append(Control("meter", name, param,
                               METER_ADDRESS.format(node=name, readout=r["name"], ch=ch), label))
    return out


def _lv2_type(node: dict) -> dict | None:
    """The catalog description of an lv2 node's plugin, None if lilv cannot find it."""
    from .errors import MixgraphError
    from .lv2 import plugin_type
    from .osc import Dispatcher

    uri = (node.get("options") or {}).get("uri")
    try:
        return Dispatcher.describe_type(plugin_type(uri)) if isinstance(uri, str) else None
    except MixgraphError:
        return None


def plan(doc: dict, catalog: list[dict]) -> list[tuple[dict, list[Control]]]:
    """(node, controls) for every node of the patch that has any control."""
    types = {t["name"]: t for t in catalog}
    out = []
    for n in doc.get("nodes", []):
        t = types.get(n.get("type"))
        if t is None:
            continue
        if t["name"] == "lv2":  # its controls are its plugin's (described on this machine)
            t = _lv2_type(n) or t
        cs = controls_for(n, t)
        if cs:
            out.append((n, cs))
    return out


# ---- XML ------------------------------------------------------------------------------------

def _prop(props: ET.Element, ptype: str, key: str, value) -> None:
    p = ET.SubElement(props, "property", type=ptype)
    ET.SubElement(p, "key").text = key
    v = ET.SubElement(p, "value")
    if ptype == "c":
        for k, x in zip("rgba", value, strict=True):
            ET.SubElement(v, k).text = f"{x:g}"
    elif ptype == "r":
        for k, x in zip(("x", "y", "w", "h"), value, strict=True):
            ET.SubElement(v, k).text = str(int(x))
    elif ptype == "b":
        v.text = "1" if value else "0"
    elif ptype == "f":
        v.text = f"{float(value):g}"
    else:
        v.text = str(value)


def _value(values: ET.Element, key: str, default) -> None:
    v = ET.SubElement(values, "value")
    ET.SubElement(v, "key").text = key
    ET.SubElement(v, "locked").text = "0"
    ET.SubElement(v, "lockedDefaultCurrent").text = "0"
    ET.SubElement(v, "default").text = str(default)
    ET.SubElement(v, "defaultPull").text = "0"


def _partial(parent: ET.Element, ptype: str, conversion: str, value: str) -> None:
    p = ET.SubElement(parent, "partial")
    ET.SubElement(p, "type").text = ptype
    ET.SubElement(p, "conversion").text = conversion
    ET.SubElement(p, "value").text = value
    ET.SubElement(p, "scaleMin").text = "0"
    ET.SubElement(p, "scaleMax").text = "1"


def _osc(messages: ET.Element, address: str, var: str = "x", conversion: str = "FLOAT",
         send: bool = True, receive: bool = True, condition: str = "ANY") -> None:
    o = ET.SubElement(messages, "osc")
    ET.SubElement(o, "enabled").text = "1"
    ET.SubElement(o, "send").text = "1" if send else "0"
    ET.SubElement(o, "receive").text = "1" if receive else "0"
    ET.SubElement(o, "feedback").text = "0"
    ET.SubElement(o, "noDuplicates").text = "1"
    ET.SubElement(o, "connections").text = "1111111111"
    trig = ET.SubElement(ET.SubElement(o, "triggers"), "trigger")
    ET.SubElement(trig, "var").text = var
    ET.SubElement(trig, "condition").text = condition
    _partial(ET.SubElement(o, "path"), "CONSTANT", "STRING", address)
    _partial(ET.SubElement(o, "arguments"), "VALUE", conversion, var)


def _node(parent: ET.Element, ntype: str, name: str, frame, color, **extra) -> ET.Element:
    n = ET.SubElement(parent, "node", ID=str(uuid.uuid4()), type=ntype)
    props = ET.SubElement(n, "properties")
    _prop(props, "b", "background", extra.pop("background", True))
    _prop(props, "c", "color", color)
    _prop(props, "r", "frame", frame)
    _prop(props, "b", "interactive", extra.pop("interactive", ntype not in ("LABEL", "GROUP")))
    _prop(props, "b", "locked", False)
    _prop(props, "s", "name", name)
    _prop(props, "b", "outline", True)
    _prop(props, "b", "visible", True)
    for key, (ptype, value) in extra.items():
        _prop(props, ptype, key, value)
    ET.SubElement(n, "values")
    return n


def _children(n: ET.Element) -> ET.Element:
    c = n.find("children")
    return c if c is not None else ET.SubElement(n, "children")


def _label(parent: ET.Element, text: str, frame, size: int = 12) -> None:
    n = _node(_children(parent), "LABEL", f"label {text}", frame, COLORS["label"],
              background=False, textSize=("i", size), textColor=("c", COLORS["label"]))
    _value(n.find("values"), "text", text)
    _value(n.find("values"), "touch", "false")


def _lua(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def value_script(address: str, unit: str, choices: tuple[str, ...] = (),
                 lo: float = 0.0) -> str:
    """The Lua of a value label: shows the `address <value>` feedback in its unit."""
    if choices:
        fmt = (f"local names = {{{', '.join(_lua(c) for c in choices)}}}\n"
               f"local function show(v)\n"
               f"  return names[math.floor(v - ({lo:g}) + 0.5) + 1] or tostring(v)\nend\n")
    elif unit == "Hz":
        fmt = ("local function show(v)\n  if v >= 1000 then return string.format('%.2f kHz', "
               "v / 1000) end\n  return string.format('%.0f Hz', v)\nend\n")
    elif unit in ("dB", "dBFS", "dBTP", "LUFS", "LU", "ms"):
        fmt = f"local function show(v)\n  return string.format('%.1f {unit}', v)\nend\n"
    elif unit == "%":
        fmt = "local function show(v)\n  return string.format('%.0f %%', v)\nend\n"
    else:
        fmt = (f"local function show(v)\n  return string.format('%.2f', v)"
               f"{' .. ' + _lua(' ' + unit) if unit else ''}\nend\n")
    return (f"-- mixgraph: the value of {address} in its unit\n{fmt}"
            f"function onReceiveOSC(message, connections)\n"
            f"  if message[1] == {_lua(address)} and message[2][1] then\n"
            f"    self.values.text = show(message[2][1].value)\n  end\nend\n")


def selector_script(address: str, lo: float) -> str:
    """The Lua of a selector (RADIO): a press sends `address <lo + step>`; the server's
    `address <value>` feedback selects the step."""
    return (f"-- mixgraph: a labelled selector for {address}\n"
            f"function onValueChanged(key)\n"
            f"  if key == 'x' then sendOSC({_lua(address)}, self.values.x + ({lo:g})) end\n"
            f"end\n"
            f"function onReceiveOSC(message, connections)\n"
            f"  if message[1] == {_lua(address)} and message[2][1] then\n"
            f"    self.values.x = math.floor(message[2][1].value - ({lo:g}) + 0.5)\n"
            f"  end\nend\n")


def _value_label(parent: ET.Element, c: Control, frame) -> None:
    """A LABEL showing a control's value in its unit (from the server's feedback)."""
    address = c.address[:-len("/norm")] if c.address.endswith("/norm") else c.address
    n = _node(_children(parent), "LABEL", f"{c.node}.{c.param} value", frame, COLORS["label"],
              background=False, textSize=("i", 9), textColor=("c", COLORS["label"]),
              script=("s", value_script(address, c.unit, c.choices, c.lo)))
    _value(n.find("values"), "text", "")
    _value(n.find("values"), "touch", "false")


def _selector(parent: ET.Element, c: Control, frame) -> None:
    """A RADIO with one step per choice and a LABEL naming each step."""
    x, y, w, h = frame
    n = _node(_children(parent), "RADIO", f"{c.node}.{c.param}", (x, y, w, h - 14),
              COLORS["knob"], steps=("i", len(c.choices)), orientation=("i", 0),
              radioType=("i", 0), script=("s", selector_script(c.address, c.lo)))
    _value(n.find("values"), "x", f"{int(c.default)}")
    _value(n.find("values"), "touch", "false")
    seg = w / len(c.choices)
    for k, name in enumerate(c.choices):
        _label(parent, name, (x + k * seg, y + h - 14, seg, 14), 8)


def _control(parent: ET.Element, c: Control, frame) -> None:
    if c.kind == "selector":
        _selector(parent, c, frame)
        return
    kids = _children(parent)
    name = f"{c.node}.{c.param}"
    if c.kind in ("fader", "meter"):
        n = _node(kids, "FADER", name, frame, COLORS[c.kind],
                  interactive=(c.kind == "fader"),
                  orientation=("i", 0), bar=("b", True), cursor=("b", c.kind == "fader"),
                  grid=("b", c.kind == "fader"), gridSteps=("i", 10),
                  response=("i", 0), responseFactor=("i", 100))
    elif c.kind == "knob":
        n = _node(kids, "RADIAL", name, frame, COLORS["knob"],
                  inverted=("b", False), centered=("b", False), cursor=("b", True),
                  response=("i", 0), responseFactor=("i", 100))
    else:  # button, mute: toggles; trigger, action: momentary (1 on press, 0 on release)
        n = _node(kids, "BUTTON", name, frame, COLORS["trigger" if c.kind == "action" else c.kind],
                  buttonType=("i", 0 if c.kind in ("trigger", "action") else 1),
                  press=("b", True), release=("b", True))
    values = n.find("values")
    _value(values, "x", f"{c.default:g}")
    _value(values, "touch", "false")
    msgs = ET.SubElement(n, "messages")
    if c.kind == "action":  # sent on the press only; the answer comes as /done or /fail
        _osc(msgs, c.address, condition="RISE", receive=False)
        return
    _osc(msgs, c.address, send=(c.kind != "meter"))
    if c.kind in ("fader", "knob"):
        _osc(msgs, c.address[:-len("/norm")] + "/touch", var="touch", conversion="INTEGER",
             receive=False)


ROOT_SCRIPT = f"""-- mixgraph: prove this address, subscribe to feedback and meters, keep the lease
-- Over UDP the server starts feedback only for an address that has shown it receives:
-- /hello is answered with /hello <cookie>; sending the cookie back gets /done /hello
-- (at once from a server that trusts this address already). Then subscribe.
local last, lastsub = 0, 0
local function subscribe()
  sendOSC('/subscribe', {LEASE_S})
  sendOSC('/meters/subscribe', '*', {METER_RATE_HZ})
end
function init()
  sendOSC('/hello')
end
function onReceiveOSC(message, connections)
  local path, args = message[1], message[2]
  if path == '/hello' and args[1] then
    sendOSC('/hello', args[1].value)
  elseif path == '/done' and args[1] and args[1].value == '/hello' then
    subscribe()
  end
end
function update()
  local now = getMillis()
  if now - lastsub > 30000 then
    lastsub = now
    last = now
    sendOSC('/hello')
  elseif now - last > 3000 then
    last = now
    sendOSC('/status')
  end
end
"""

STRIP_H_TITLE = 28
CELL = 70  # a knob or button cell, its name and value labels included
SEL_H = 52  # a selector's row: its name, the RADIO, a label per choice
SEL_STEP = 44  # width of one selector step


def _strip_width(cs: list[Control], height: int) -> int:
    small = [c for c in cs if c.kind in ("knob", "button", "mute", "trigger", "action")]
    tall = [c for c in cs if c.kind in ("fader", "meter")]
    sels = [c for c in cs if c.kind == "selector"]
    rows = max(1, (height - STRIP_H_TITLE - (260 if tall else 0) - len(sels) * SEL_H) // CELL)
    cols = max(2, math.ceil(len(small) / rows))
    widest = max((len(c.choices) * SEL_STEP for c in sels), default=0)
    return max(cols * CELL, len(tall) * 52, widest) + 12


def _strip(parent: ET.Element, node: dict, cs: list[Control], x: int, w: int,
           height: int) -> None:
    g = _node(_children(parent), "GROUP", node["name"], (x, 0, w, height), COLORS["strip"],
              interactive=False)
    _value(g.find("values"), "touch", "false")
    _label(g, f"{node['name']} ({node['type']})", (4, 2, w - 8, STRIP_H_TITLE - 4), 13)
    small = [c for c in cs if c.kind in ("knob", "button", "mute", "trigger", "action")]
    tall = [c for c in cs if c.kind in ("fader", "meter")]
    sels = [c for c in cs if c.kind == "selector"]
    top = STRIP_H_TITLE
    for c in sels:
        _label(g, c.label, (6, top, w - 12, 14), 10)
        _control(g, c, (6, top + 14, w - 12, SEL_H - 16))
        top += SEL_H
    cols = max(1, (w - 12) // CELL)
    for i, c in enumerate(small):
        cx = 6 + (i % cols) * CELL
        cy = top + (i // cols) * CELL
        _control(g, c, (cx + 6, cy, CELL - 12, CELL - 30))
        _label(g, c.label, (cx, cy + CELL - 30, CELL, 14), 10)
        if c.kind == "knob" or c.choices:  # knobs, and switches with named states
            _value_label(g, c, (cx, cy + CELL - 16, CELL, 14))
    if tall:
        rows = math.ceil(len(small) / cols) if small else 0
        top = top + rows * CELL + 4
        fh = max(120, height - top - 38)
        for i, c in enumerate(tall):
            fx = 6 + i * 52
            _control(g, c, (fx + 4, top, 40, fh))
            _label(g, c.label, (fx, top + fh + 2, 50, 16), 10)
            if c.kind == "fader":
                _value_label(g, c, (fx - 2, top + fh + 18, 54, 14))


def build(doc: dict, catalog: list[dict], width: int = 1024, height: int = 768,
          title: str = "mixgraph") -> ET.Element:
    """The <lexml> tree of a TouchOSC layout for the graph `doc`."""
    lexml = ET.Element("lexml", version="3")
    root = _node(lexml, "GROUP", title, (0, 0, width, height), COLORS["root"],
                 interactive=False, script=("s", ROOT_SCRIPT))
    _value(root.find("values"), "touch", "false")
    strips = [(n, cs, _strip_width(cs, height - 40)) for n, cs in plan(doc, catalog)]
    pages: list[list] = [[]]
    used = 0
    for s in strips:
        if pages[-1] and used + s[2] > width:
            pages.append([])
            used = 0
        pages[-1].append(s)
        used += s[2]
    show = doc.get("show") if isinstance(doc.get("show"), dict) else None
    if len(pages) == 1 and show is None:
        x = 0
        for n, cs, w in pages[0]:
            _strip(root, n, cs, x, w, height)
            x += w
        return lexml
    pager = _node(_children(root), "PAGER", "pages", (0, 0, width, height), COLORS["root"],
                  tabLabelSize=("i", 14), tabbar=("b", True), tabbarSize=("i", 40))
    _value(pager.find("values"), "page", "0")
    _value(pager.find("values"), "touch", "false")
    for i, page in enumerate(pages):
        names = f"{page[0][0]['name']}..{page[-1][0]['name']}" if page else "empty"
        pg = _node(_children(pager), "GROUP", f"page{i + 1}", (0, 40, width, height - 40),
                   COLORS["root"], interactive=False, tabLabel=("s", names))
        _value(pg.find("values"), "touch", "false")
        x = 0
        for n, cs, w in page:
            _strip(pg, n, cs, x, w, height - 40)
            x += w
    if show is not None:  # GO, STOP, playhead, scenes, morph: show_page
        pg = _node(_children(pager), "GROUP", "show", (0, 40, width, height - 40),
                   COLORS["root"], interactive=False, tabLabel=("s", "show"))
        _value(pg.find("values"), "touch", "false")
        show_page(pg, show, width, height - 40)
    return lexml


def to_bytes(lexml: ET.Element) -> bytes:
    """The .tosc file's bytes: the XML document, zlib-compressed."""
    xml = ET.tostring(lexml, encoding="UTF-8", xml_declaration=True)
    return zlib.compress(xml, 9)


def write_tosc(path: str | Path, doc: dict, catalog: list[dict], **kw) -> int:
    """Write the layout; returns the number of controls."""
    lexml = build(doc, catalog, **kw)
    Path(path).write_bytes(to_bytes(lexml))
    return sum(1 for _ in lexml.iter("osc") if _.find("triggers/trigger/var").text == "x")


def local_catalog() -> list[dict]:
    """The catalog as /catalog gives it (with each type's actions), without a server."""
    from .catalog import CATALOG
    from .osc import Dispatcher

    return [Dispatcher.describe_type(t) for t in CATALOG.values()]


# ---- the show page: GO, STOP, the playhead, a button per scene, a morph crossfader ----
# Every control talks through a small Lua script: GO and STOP send /cue/go and
# /cue/stop on press; the playhead label shows /cue/playhead <number> <name>
# (subscriber feedback); a scene button sends /scene/recall <name> (the scene's
# own fade applies); the crossfader sends /scene/morph <a> <b> <x> with the scenes
# the two selectors (RADIOs, one step per scene) point at.

SCENE_BUTTONS_MAX = 48  # more scenes than that: the first 48 get buttons


def _press_script(address: str, *args: str) -> str:
    a = "".join(", " + _lua(x) for x in args)
    return (f"-- mixgraph: {address} on press\nfunction onValueChanged(key)\n"
            f"  if key == 'x' and self.values.x == 1 then sendOSC({_lua(address)}{a}) end\n"
            f"end\n")


PLAYHEAD_SCRIPT = """-- mixgraph: the playhead, from /cue/playhead <number> <name>
function onReceiveOSC(message, connections)
  if message[1] == '/cue/playhead' and message[2][1] then
    local name = message[2][2] and message[2][2].value or ''
    self.values.text = 'next: ' .. tostring(message[2][1].value) .. '  ' .. name
  end
end
"""


def morph_script(names: list[str]) -> str:
    """The Lua of the crossfader: /scene/morph <a> <b> <x> from the two selectors."""
    table = ", ".join(_lua(n) for n in names)
    return (f"-- mixgraph: a crossfader between the scenes the selectors choose\n"
            f"local names = {{{table}}}\n"
            f"function onValueChanged(key)\n"
            f"  if key ~= 'x' then return end\n"
            f"  local a = names[math.floor(self.parent.children['morph a'].values.x + 0.5) + 1]\n"
            f"  local b = names[math.floor(self.parent.children['morph b'].values.x + 0.5) + 1]\n"
            f"  if a and b then sendOSC('/scene/morph', a, b, self.values.x) end\n"
            f"end\n")


def _button(parent: ET.Element, name: str, frame, color, script: str, text: str) -> None:
    n = _node(_children(parent), "BUTTON", name, frame, color, buttonType=("i", 0),
              press=("b", True), release=("b", True), script=("s", script))
    _value(n.find("values"), "x", "0")
    _value(n.find("values"), "touch", "false")
    x, y, w, h = frame
    _label(parent, text, (x, y + h // 2 - 10, w, 20), 14)


def _radio(parent: ET.Element, name: str, names: list[str], frame) -> None:
    x, y, w, h = frame
    n = _node(_children(parent), "RADIO", name, (x, y, w, h - 16), COLORS["knob"],
              steps=("i", max(1, len(names))), orientation=("i", 0), radioType=("i", 0))
    _value(n.find("values"), "x", "0")
    _value(n.find("values"), "touch", "false")
    seg = w / max(1, len(names))
    for k, s in enumerate(names):
        _label(parent, s, (x + k * seg, y + h - 16, seg, 16), 9)


def show_page(parent: ET.Element, show: dict, width: int, height: int) -> int:
    """Fill a page with the show's controls; returns how many send OSC."""
    names = list((show.get("scenes") or {}).keys())
    pad = 10
    _button(parent, "go", (pad, pad, 200, 120), COLORS["button"], _press_script("/cue/go"), "GO")
    _button(parent, "stop", (pad + 210, pad, 120, 120), COLORS["mute"],
            _press_script("/cue/stop"), "STOP")
    lab = _node(_children(parent), "LABEL", "playhead", (pad + 340, pad, width - 350 - pad, 120),
                COLORS["label"], background=False, textSize=("i", 22),
                textColor=("c", COLORS["label"]), script=("s", PLAYHEAD_SCRIPT))
    _value(lab.find("values"), "text", "next: -")
    _value(lab.find("values"), "touch", "false")
    top = 150
    _label(parent, "scenes", (pad, top, 200, 18), 12)
    top += 20
    cols = max(1, (width - 2 * pad) // 120)
    shown = names[:SCENE_BUTTONS_MAX]
    for i, s in enumerate(shown):
        x = pad + (i % cols) * 120
        y = top + (i // cols) * 60
        _button(parent, f"scene {s}", (x, y, 110, 50), COLORS["fader"],
                _press_script("/scene/recall", s), s)
    top += max(1, -(-len(shown) // cols)) * 60 + 10
    _label(parent, "morph", (pad, top, 200, 18), 12)
    top += 20
    mh = max(40, min(60, (height - top - 10) // 3))
    _radio(parent, "morph a", names, (pad, top, width - 2 * pad, mh))
    fader = _node(_children(parent), "FADER", "morph", (pad, top + mh + 4, width - 2 * pad, mh),
                  COLORS["fader"], orientation=("i", 1), bar=("b", True), cursor=("b", True),
                  grid=("b", True), gridSteps=("i", 10), response=("i", 0),
                  responseFactor=("i", 100), script=("s", morph_script(names)))
    _value(fader.find("values"), "x", "0")
    _value(fader.find("values"), "touch", "false")
    _radio(parent, "morph b", names, (pad, top + 2 * mh + 8, width - 2 * pad, mh))
    return 2 + len(shown) + 1
