"""Every address form of the protocol against a graph holding every node type.

A real `mixgraph serve` (null backend) holds one node of every type in the
catalog. Subscribing and /dump must deliver every parameter of every node
(both forms) and every bypass. Then every address form — the dispatcher's own
literal table (server/osc.py), every address docs/protocol.md names, and each
node's parameter, /norm, /touch, readout, action and bypass addresses, plus
patterns and malformed node addresses — is sent with valid and invalid
arguments; no reply may be `internal error` and the daemon's log must hold no
traceback."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mixgraph.clients import Client
from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.osc import IMMEDIATE, Dispatcher, Timed, encode_bundle, encode_message
from mixgraph.server.session import Session

from daemon_util import Daemon

DOCS = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _name(t: str) -> str:
    return f"n_{t}"


def _settings(t: str) -> list:
    if t == "player":
        return ["path", "tone.wav"]
    if t == "recorder":
        return ["path", "rec.wav"]
    if t == "vca":
        return ["members", "n_gain"]
    return []


@pytest.fixture(scope="module")
def every(tmp_path_factory):
    """A daemon with one node of every catalog type (gain first: the vca needs it)."""
    state = tmp_path_factory.mktemp("every") / "state"
    audio = state / "audio"
    audio.mkdir(parents=True)
    t = np.arange(4800) / 48000.0
    sf.write(audio / "tone.wav", np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1) * 0.1, 48000)
    d = Daemon(state, "--backend", "null", "--inputs", "2", "--outputs", "2")
    # an lv2 node's parameters are its plugin's, not the catalog entry's: tests/test_lv2.py
    types = sorted((n for n in CATALOG if n != "lv2"), key=lambda n: (n == "vca", n))
    try:
        for typ in types:
            d.call("/graph/add", typ, _name(typ), *_settings(typ))
        yield d, types
    finally:
        d.stop()


def _expected_state(types: list[str]) -> set[str]:
    out = set()
    for typ in types:
        t = CATALOG[typ]
        for p in t.params:
            out |= {f"/node/{_name(typ)}/{p.name}", f"/node/{_name(typ)}/{p.name}/norm"}
        if t.param("bypass") is None and t.port(None, "in") and t.port(None, "out"):
            out.add(f"/node/{_name(typ)}/bypass")
    return out


def _collect_until(c: Client, stop, timeout: float = 10.0) -> list[tuple[str, list]]:
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = c.receive(0.5)
        except TimeoutError:
            continue
        got.append(m)
        if stop(m):
            return got
    raise AssertionError(f"no end within {timeout} s; got {got[-5:]}")


def test_dump_and_subscribe_deliver_every_parameter_of_every_node_type(every):
    """The issue's defect 1: a denoise or align node made state_messages() return
    bare strings, and /subscribe and /dump failed with `internal error`."""
    d, types = every
    want = _expected_state(types)
    with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as c:
        c.send("/dump")
        got = _collect_until(c, lambda m: m[0] in ("/done", "/fail") and m[1][:1] == ["/dump"])
        assert got[-1][0] == "/done", got[-1]
        addrs = {a for a, _ in got[:-1]}
        assert addrs == want, (sorted(want - addrs)[:10], sorted(addrs - want)[:10])
        assert got[-1][1] == ["/dump", len(want)]
        for a, args in got[:-1]:
            assert len(args) == 1 and isinstance(args[0], float), (a, args)
    # the blocking client's subscribe(): every state message reaches the callback
    seen: dict[str, list] = {}
    with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as c:
        reply = c.subscribe(lambda a, args: seen.__setitem__(a, args), lease_s=10.0)
        assert reply[:2] == ["/subscribe", 10.0]
        assert set(seen) >= want, sorted(want - set(seen))[:10]
        c.unsubscribe()
    assert "Traceback" not in d.output()


# ---- every address form ----------------------------------------------------------


def dispatcher_literals() -> set[str]:
    """The literal addresses of the dispatcher's own table."""
    e = Engine(48000, 1, 1)
    try:
        return set(Dispatcher(Session(e))._literal)
    finally:
        e.free()


def documented_addresses() -> set[str]:
    """Every address docs/protocol.md names in backticks (placeholders kept)."""
    text = DOCS.read_text()
    out = set()
    for m in re.finditer(r"`(/[A-Za-z][^`\s]*)", text):
        a = m.group(1).rstrip(".,;:")
        out.add(a)
    return out


def test_every_documented_address_is_in_the_dispatcher_and_back():
    """The sweep below takes its addresses from the dispatcher's table: the docs
    must name no literal address the table lacks, and the table none the docs omit."""
    lit = dispatcher_literals()
    doc = documented_addresses()
    doc_literal = {a for a in doc if not a.startswith("/node/") and "<" not in a}
    replies = {a for a in doc_literal if a.endswith(".reply") or a.split(".")[-1] in
               ("port", "param", "readout", "action")}
    unknown = doc_literal - replies - lit - {"/done", "/fail", "/late", "/synced",
                                             "/graph/changed", "/rate-limit", "/meter",
                                             "/device/state",  # to subscribers
                                             "/cue/playhead", "/cue/running",
                                             "/node", "/catalog/type.port",
                                             "/xremote"}  # another desk's, named in prose
    # node suffixes (`/norm`, `/touch`, `/bypass`) and prefixes (`/graph/`) named in prose
    unknown = {a for a in unknown if a not in ("/norm", "/touch", "/bypass")
               and not any(x.startswith(a) for x in lit)}
    assert not unknown, sorted(unknown)
    assert lit <= doc, sorted(lit - doc)


ARG_VARIANTS: list[list] = [
    [], [0], [1], [0.5], [-1.0], [1e9], [-1e9], [float("nan")], [float("inf")], [True],
    [False], ["x"], [""], ["n_gain"], ["*"], ["x" * 300], [b"\x00\x01"], [1, 2],
    [0.5, "x", 3], [2**31 - 1], [-(2**31)],
]

VALID: dict[str, list[list]] = {
    "/graph/add": [["gain", "extra1"], ["gain", "extra2", "gain", -6.0],
                   ["gain", "extra3", "channels", 2], ["gain", "extra4", "nope", 1],
                   ["recorder", "extra5", "path", "../x.wav"],
                   ["player", "extra6", "path", "missing.wav"], ["vca", "extra7"],
                   ["vca", "extra8", "members", "n_gain,nope"], ["nosuch", "x"],
                   ["gain", "bad name/x"], ["gain", "extra9", "channels", 1e12]],
    "/graph/connect": [["n_sine", "n_gain"], ["n_gain:out", "n_output:in"],
                       ["n_noise", "n_compressor:key"], ["n_gain", "n_gain"],
                       ["n_sine:nope", "n_gain"], ["n_meter", "n_gain"], ["n_vca", "n_gain"],
                       ["n_pan", "n_balance"], ["n_gain", "nope"]],
    "/graph/disconnect": [["n_sine", "n_gain"], ["n_noise", "n_compressor:key"],
                          ["n_sine", "n_pan"]],
    "/catalog/type": [[t] for t in CATALOG] + [["nope"]],
    "/patch/save": [["p1"], ["../p"], ["p" * 300]],
    "/patch/load": [["p1"], ["nope"], ["../p"]],
    "/sync": [[1], [2**31], [-1]],
    "/subscribe": [[10.0], [0.1], [1e9]],
    "/meters/subscribe": [["*"], ["n_meter", 10.0], ["node/n_*", 5], ["[", 1], ["*", 0],
                          ["*", 1000], ["n_meter", 10.0, "blob"], ["n_meter", 10.0, "x"]],
    "/meters/unsubscribe": [["*"], ["n_meter"]],
    "/reply-port": [[0], [70000], [-1]],
    "/graph/remove": [["extra1"], ["nope"], ["n_vca"]],
}
LAST = ("/graph/remove", "/patch/load", "/graph/clear")  # they change the graph under test


def creation_variants() -> list[list]:
    """/graph/add of every type with good and bad creation options."""
    out = []
    bad = [("channels", 0), ("channels", 65), ("channels", "x"), ("channels", 1.5),
           ("channels", float("nan")), ("first", 0), ("first", 99), ("first", "x"),
           ("path", 3), ("path", ""), ("path", "/etc/passwd"), ("members", 7),
           ("format", "nope"), ("seed", "x"), ("seed", -1), ("", 1)]
    for i, typ in enumerate(sorted(CATALOG)):
        t = CATALOG[typ]
        base = _settings(typ)
        out.append([typ, f"c{i}", *base])
        out.append([typ, f"c{i}m", *base, "channels", t.max_channels])
        for p in t.params[:3]:
            out.append([typ, f"c{i}p{p.name}", *base, p.name, p.max * 10 + 1])
            out.append([typ, f"c{i}q{p.name}", *base, p.name, "x"])
        for j, (k, v) in enumerate(bad):
            out.append([typ, f"c{i}b{j}", *base, k, v])
    return out


def connect_variants() -> list[list]:
    """/graph/connect between every output port and every input port of the graph."""
    outs, ins = [], []
    for typ, t in CATALOG.items():
        outs += [f"{_name(typ)}:{p.name}" for p in t.ports if p.direction == "out"]
        ins += [f"{_name(typ)}:{p.name}" for p in t.ports if p.direction == "in"]
    return [[a, b] for a in outs for b in ins]


def live_nodes(d: Daemon) -> list[tuple[str, str]]:
    """(name, type) of every node in the daemon's graph."""
    nodes = []
    c = d.client
    c.send("/graph/nodes")
    while True:
        a, args = c.receive(30.0)
        if a == "/graph/nodes.reply":
            nodes.append((args[0], args[1]))
        elif a == "/done" and args[:1] == ["/graph/nodes"]:
            return nodes


def node_forms(nodes: list[tuple[str, str]]) -> list[str]:
    """Every address form of every node, from the catalog."""
    from mixgraph.server.actions import actions_for

    out = []
    for name, typ in nodes:
        t = CATALOG[typ]
        base = f"/node/{name}"
        for p in t.params:
            out += [f"{base}/{p.name}", f"{base}/{p.name}/norm", f"{base}/{p.name}/touch",
                    f"{base}/{p.name}/nope", f"{base}/{p.name}/norm/x"]
        for r in t.readouts:
            out += [f"{base}/{r.name}", f"{base}/{r.name}/norm", f"{base}/{r.name}/touch"]
        out += [f"{base}/{a}" for a in actions_for(typ)]
        out += [f"{base}/bypass", f"{base}/bypass/norm", f"{base}/bypass/touch",
                f"{base}/nope", base, f"{base}/", f"{base}/*", f"{base}/*/norm"]
    out += ["/node", "/node/", "/node/nope/gain", "/node//gain", "/node/*/gain",
            "/node/*/*", "/node/{n_gain,n_eq}/b1gain", "/node/n_[/gain", "/node/*/bypass",
            "/node/?_gain/gain/norm", "/node/*/*/touch", "/nope", "//", "/"]
    return out


def test_no_address_form_gets_an_internal_error(every, tmp_path):
    d, _ = every
    literals = dispatcher_literals() | {
        a for a in documented_addresses() if "<" not in a and not a.startswith("/node/")
        and "." not in a and a not in ("/done", "/fail", "/late", "/synced",
                                       "/graph/changed", "/rate-limit", "/meter")}
    first = sorted(a for a in literals if a not in LAST)
    forms = node_forms(live_nodes(d))
    valid = VALID
    body = [(a, args) for a in forms + first for args in valid.get(a, []) + ARG_VARIANTS]
    for args in connect_variants():  # every port pair, each connection undone at once:
        body += [("/graph/connect", args), ("/graph/disconnect", args)]  # a sparse graph
    for args in creation_variants():  # each created node goes again at once (keeps the
        body += [("/graph/add", args), ("/graph/remove", [args[1]])]  # DSP load small)
    tail = [(a, args) for a in LAST if a in literals
            for args in valid.get(a, []) + ARG_VARIANTS]
    replies: list[tuple[str, list]] = []
    token = 0

    def send_all(c: Client, msgs: list[tuple[str, list]]) -> None:
        nonlocal token, replies
        for i in range(0, len(msgs), 100):
            for a, args in msgs[i:i + 100]:
                c.send(a, *args)
            token += 1
            c.send("/sync", token)
            replies += _collect_until(c, lambda m, k=token: m == ("/synced", [k]), 30.0)

    with Client("127.0.0.1", d.port, timeout=10.0, transport="tcp") as c:
        send_all(c, body)
        # bundles: each node form with a value, alone and after a graph edit that
        # must roll back, immediate and timed in the future
        future = (int(time.time()) + 2208988800 + 1, 0)
        for k, a in enumerate(forms):
            edit = encode_message("/graph/add", ["gain", f"bundled{k}"])
            for tt in (IMMEDIATE, future):
                c.send_packet(encode_bundle([encode_message(a, [0.5])], tt))
                c.send_packet(encode_bundle([edit, encode_message(a, [0.5]),
                                             encode_message("/graph/remove", [f"bundled{k}"])],
                                            tt))
            if k % 20 == 19:
                token += 1
                c.send("/sync", token)
                replies += _collect_until(c, lambda m, k=token: m == ("/synced", [k]), 30.0)
        time.sleep(1.5)  # the timed bundles fall due
        send_all(c, tail)
        # node actions answer later: give them their time, then sync once more
        time.sleep(3.0)
        c.send("/sync", 999999)
        replies += _collect_until(c, lambda m: m == ("/synced", [999999]), 30.0)
    bad = [(a, args) for a, args in replies
           if any(isinstance(x, str) and "internal error" in x for x in args)]
    assert not bad, bad[:20]
    log = d.output()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:][:3000]
    assert d.proc.poll() is None
    assert len(body) + len(tail) > 20000  # the sweep really covered the space
    done = sum(1 for a, _ in replies if a == "/done")
    assert done > 2000, done  # and much of it was valid


def test_no_address_form_gets_an_internal_error_in_process(tmp_path, caplog):
    """The same sweep through the dispatcher as `mixgraph render` runs it (score
    messages: no network client, no feedback), with every node type present."""
    import logging

    t = np.arange(4800) / 48000.0
    sf.write(tmp_path / "tone.wav", np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1) * 0.1,
             48000)
    e = Engine(48000, 2, 2)
    s = Session(e, data_dir=tmp_path)
    try:
        types = sorted((n for n in CATALOG if n != "lv2"), key=lambda n: (n == "vca", n))
        for typ in types:
            st = _settings(typ)
            s.add_node(typ, _name(typ), dict(zip(st[::2], st[1::2], strict=True)))
        s.commit()
        d = Dispatcher(s)
        replies: list[tuple[str, list]] = []

        def reply(a: str, args: list) -> None:
            replies.append((a, args))

        forms = node_forms([(_name(x), x) for x in types])
        msgs = [(a, args) for a in forms + sorted(dispatcher_literals() - set(LAST)) + list(LAST)
                for args in VALID.get(a, []) + ARG_VARIANTS]
        with caplog.at_level(logging.ERROR, logger="mixgraph"):
            for k, a in enumerate(forms):  # bundles first, while the graph is whole
                for args in ([0.5], [1], []):
                    d.dispatch_packet([Timed(a, args)], None, True, reply)
                    d.dispatch_packet([Timed("/graph/add", ["gain", f"b{k}"]), Timed(a, args),
                                       Timed("/graph/remove", [f"b{k}"])], None, True, reply)
                if k % 50 == 0:
                    s.service()
                    e.process(256, None)
            for i, (a, args) in enumerate(msgs):
                d.dispatch(a, list(args), reply, 0, None)
                if i % 50 == 0:
                    s.service()
                    e.process(256, None)
        bad = [(a, args) for a, args in replies
               if any(isinstance(x, str) and "internal error" in x for x in args)]
        assert not bad, bad[:20]
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], \
            caplog.records[:3]
        assert len(msgs) > 20000
    finally:
        s.close()
        e.free()


def test_a_refused_subscription_gets_one_fail_and_no_done(tmp_path):
    """Everything that can refuse a subscription (the state, the subscriber cap)
    is checked before `/done /subscribe`: over the cap the answer is one /fail
    (with the cap checked after the /done, a client saw /done then /fail)."""
    d = Daemon(tmp_path / "state", "--backend", "null", "--max-subscribers", "1")
    try:
        d.call("/graph/add", "gain", "g")
        with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as a, \
                Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as b:
            assert a.subscribe(lambda *_: None, lease_s=10)[:3] == ["/subscribe", 10.0, 9]
            b.send("/subscribe", 10.0)
            b.send("/sync", 5)
            got = _collect_until(b, lambda m: m == ("/synced", [5]))
            assert [m[0] for m in got] == ["/fail", "/synced"], got
            assert "too many subscribers" in got[0][1][-1]
    finally:
        d.stop()
