"""The browser surface (`mixgraph serve --http`, server/web.py, server/readonly.py) against
what an attacker or a sloppy client sends, over real sockets to a real daemon: DNS
rebinding (a Host that does not name the server), read-only viewers crowding out the
control surfaces, the read-only classification of the whole address space, a token with
URL-special characters, and the HTTP and WebSocket corner cases of RFC 9112 and 6455."""

from __future__ import annotations

import base64
import os
import re
import socket
import struct
import time
from urllib.parse import quote

import pytest
from test_http import WS, free_tcp_port, osc, read_terminal_qr

from mixgraph.clients import Client

from daemon_util import Daemon

RO = "read-only surface (--http-read-only)"


def raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send bytes to the HTTP port; (everything the server answers until it closes, seconds
    that took)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    s.sendall(data)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    s.close()
    return out, time.monotonic() - t0


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def handshake(port: int, host: str | None, origin: str | None = None,
              path: str = "/osc") -> tuple[int, bytes]:
    """A WebSocket opening handshake with a chosen Host (None: no Host header) and Origin;
    (status, the whole answer as far as the head)."""
    key = base64.b64encode(os.urandom(16)).decode()
    head = f"GET {path} HTTP/1.1\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    if origin is not None:
        head += f"Origin: {origin}\r\n"
    head += (f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(head.encode())
    out = b""
    try:
        while b"\r\n\r\n" not in out and (chunk := s.recv(4096)):
            out += chunk
        if not out.startswith(b"HTTP/1.1 101"):
            while chunk := s.recv(4096):
                out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    s.close()
    return status_of(out), out


def page(port: int, host: str | None) -> int:
    h = f"Host: {host}\r\n" if host is not None else ""
    return status_of(raw(port, f"GET / HTTP/1.1\r\n{h}\r\n".encode())[0])


# ---- 1. DNS rebinding ------------------------------------------------------------------


def test_dns_rebinding_a_host_that_is_not_this_server_is_refused(tmp_path):
    """A page of http://evil.example:<port> whose name was rebound to 127.0.0.1: its
    Origin matches its Host, so only the Host tells it apart. Without a token, the page
    and the WebSocket answer only a Host that names this server."""
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port))
    try:
        evil = f"evil.example:{port}"
        st, answer = handshake(port, evil, origin=f"http://{evil}")
        assert st == 403, answer
        assert b"not this server" in answer
        for host in (evil, "evil.example", f"127.0.0.1.evil.example:{port}",
                     f"localhost.evil.example:{port}", f"0.0.0.0:{port}", f"224.0.0.1:{port}",
                     f"[::ffff:10.255.255.1]:{port}", f"localhost:{port}:1", "", None):
            assert page(port, host) == 403, host
            assert handshake(port, host)[0] == 403, host
        # nothing got in
        assert d.call("/graph/nodes") == ["/graph/nodes", 0]
        # the names of this server
        from mixgraph.server.daemon import lan_address

        lan = lan_address()
        names = [f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "LOCALHOST.",
                 f"[::1]:{port}", f"127.0.0.7:{port}"]
        if lan and lan != "127.0.0.1":
            names.append(f"{lan}:{port}")  # an address of one of this machine's interfaces
        for host in names:
            assert page(port, host) == 200, host
            assert handshake(port, host, origin=f"http://{host}")[0] == 101, host
        assert d.status()["bad_http"] == 1 + 2 * 10
        assert "is not this server" in d.output()
    finally:
        d.stop()
    # with a token the token protects: any name may serve the page and, with the token,
    # the WebSocket; a foreign Origin is still refused
    d = Daemon(tmp_path / "state2", "--backend", "null", "--http", str(port),
               "--http-token", "tok")
    try:
        assert page(port, evil) == 200
        assert handshake(port, evil, origin=f"http://{evil}", path="/osc?token=tok")[0] == 101
        assert handshake(port, evil, origin=f"http://{evil}")[0] == 403
        assert handshake(port, f"127.0.0.1:{port}", origin=f"http://{evil}",
                         path="/osc?token=tok")[0] == 403
    finally:
        d.stop()


# ---- 2. viewers leave room for the control surfaces --------------------------------------


def test_read_only_viewers_leave_subscriber_and_connection_slots(tmp_path):
    """On a --http-read-only server, viewers together hold at most half the subscriber
    slots and half the connection slots (all and per address): a TouchOSC-style UDP
    /subscribe and an OSC TCP client from the viewers' own address still get in."""
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port), "--http-read-only",
               "--max-subscribers", "8", "--max-conns-per-host", "6")
    viewers = []
    try:
        answers = []
        for i in range(8):  # one phone per address
            w = WS(port, source=f"127.0.0.{2 + i}")
            assert w.status == 101
            viewers.append(w)
            w.send("/subscribe", 10.0)
            answers.append(w.until(lambda m: m[0] in ("/done", "/fail")
                                   and m[1][:1] == ["/subscribe"]))
        assert [a for a, _ in answers] == ["/done"] * 4 + ["/fail"] * 4
        assert "read-only surface (4 of 8" in answers[-1][1][1]
        viewers[-1].send("/meters/subscribe", "*", 10.0)
        assert viewers[-1].until(lambda m: m[0] in ("/done", "/fail"))[0] == "/fail"
        viewers[0].send("/subscribe", 10.0)  # one that holds a slot renews it
        assert viewers[0].until(lambda m: m[0] in ("/done", "/fail")
                                and m[1][:1] == ["/subscribe"])[0] == "/done"
        with Client("127.0.0.1", d.port, timeout=30.0) as touchosc:
            touchosc.send("/subscribe", 10.0)
            while (m := touchosc.receive(30.0))[0] not in ("/done", "/fail"):
                pass
            assert m[0] == "/done", m
        # connections from one address: 3 viewers of --max-conns-per-host 6
        local = [WS(port) for _ in range(4)]
        assert [w.status for w in local] == [101, 101, 101, 0]
        assert d.status()["refused"] == 1
        viewers += local
        with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as tcp:
            assert tcp.request("/sync", 3) == ("/synced", [3])
    finally:
        for w in viewers:
            w.close()
        d.stop()


# ---- 3. the read-only classification of the whole address space ----------------------------

# What a view may send (docs/operations.md, "The browser surface"): the queries, with
# the arguments a query has, and how the same address sets (None: it never does).
QUERIES: dict[str, tuple[list, list | None]] = {
    "/status": ([], None), "/info": ([], None), "/catalog": ([], None),
    "/catalog/list": ([], None), "/catalog/type": (["gain"], None),
    "/graph/dump": ([], None), "/graph/nodes": ([], None), "/graph/connections": ([], None),
    "/patch/list": ([], None), "/dump": ([], None), "/sync": ([1], None),
    "/history": ([], None), "/midi/maps": ([], None), "/midi/status": ([], None),
    "/scene/list": ([], None), "/cue/list": ([], None),
    "/scene/fade": (["s1"], ["s1", 2.0]), "/scene/safe": ([], ["/node/g/gain", 1]),
    "/subscribe": ([10.0], None), "/unsubscribe": ([], None),
    "/meters/subscribe": (["m", 10.0], None), "/meters/unsubscribe": (["m"], None),
    "/hello": ([], None),
}


def _answers(w: WS, address: str, args: list, fence: list[int]) -> list[tuple[str, list]]:
    """Everything the server answers to one message, up to a /sync fence after it."""
    w.send(address, *args)
    fence[0] += 1
    w.send("/sync", fence[0])
    got = []
    w.until(lambda m: got.append(m) or m == ("/synced", [fence[0]]), timeout=10)
    return got


def test_every_address_declares_whether_it_only_reads():
    """The read-only classification is a declared property of each address
    (server/readonly.py READS): every literal address of the dispatcher's table has one,
    and none is declared that the table lacks."""
    from test_osc_every_address import dispatcher_literals

    from mixgraph.server.readonly import READS

    lit = dispatcher_literals()
    assert not lit - set(READS), sorted(lit - set(READS))
    assert not set(READS) - lit, sorted(set(READS) - lit)


def test_read_only_refuses_every_setting_and_answers_every_query(tmp_path):
    """Every literal address of the dispatcher's table and every address form of nodes
    with parameters, readouts, bypass and actions, sent by a viewer: each query answers
    (not the read-only /fail), each setting form is refused, and at the end the server
    is as it was (the graph, the history, the show, the MIDI maps)."""
    from test_osc_every_address import dispatcher_literals

    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port), "--http-read-only")
    try:
        for a in (("/graph/add", "sine", "osc"), ("/graph/add", "gain", "g"),
                  ("/graph/add", "meter", "m", "channels", 1), ("/graph/add", "align", "al"),
                  ("/graph/add", "denoise", "dn"), ("/graph/connect", "osc", "g"),
                  ("/graph/connect", "g", "m"), ("/scene/store", "s1", "/node/g/gain"),
                  ("/cue/set", 1, "scene", "s1"), ("/patch/save", "p1"),
                  ("/midi/map", "/node/g/gain", "cc", 1, 7)):
            assert d.request(*a)[0] == "/done", a

        def state():
            return [d.request(*q) for q in (("/graph/dump",), ("/history",), ("/cue/list",),
                                            ("/midi/maps",), ("/scene/fade", "s1"),
                                            ("/scene/safe",), ("/patch/list",))]

        before = state()
        w = WS(port)
        fence = [0]

        def refused(address: str, args: list) -> bool:
            got = _answers(w, address, args, fence)
            return ("/fail", [address, RO]) in got

        literals = dispatcher_literals()
        assert set(QUERIES) <= literals
        wrong = []
        for a in sorted(literals):
            if a in QUERIES:
                query, setting = QUERIES[a]
                if refused(a, query):
                    wrong.append(("query refused", a, query))
                if setting is not None and not refused(a, setting):
                    wrong.append(("set passed", a, setting))
            else:
                for args in ([], ["x"], [1.0], ["s1", 1.0]):
                    if not refused(a, args):
                        wrong.append(("set passed", a, args))
        nodes = {"osc": "sine", "g": "gain", "m": "meter", "al": "align", "dn": "denoise"}
        from mixgraph.server.actions import actions_for
        from mixgraph.server.catalog import CATALOG

        for name, typ in nodes.items():
            t = CATALOG[typ]
            base = f"/node/{name}"
            acts = set(actions_for(typ))
            forms = [f"{base}/{r.name}" for r in t.readouts]
            forms += [f"{base}/{r.name}/norm" for r in t.readouts]
            for p in t.params:
                if p.name not in acts:
                    forms += [f"{base}/{p.name}", f"{base}/{p.name}/norm",
                              f"{base}/{p.name}/touch"]
                if not refused(f"{base}/{p.name}/ramp", [0.0, 1.0]):
                    wrong.append(("set passed", f"{base}/{p.name}/ramp", [0.0, 1.0]))
            if t.param("bypass") is None and t.port(None, "in") and t.port(None, "out"):
                forms.append(f"{base}/bypass")
            for a in forms:
                if refused(a, []):
                    wrong.append(("query refused", a, []))
                if not refused(a, [0.5]):
                    wrong.append(("set passed", a, [0.5]))
            for a in acts:  # an action runs with no argument
                for args in ([], [1.0]):
                    if not refused(f"{base}/{a}", args):
                        wrong.append(("action passed", f"{base}/{a}", args))
        # patterns: a query when every address they match is one
        # (a pattern reaches the server's queries only, never its commands: /cue/* is
        # /cue/list, and /*/clear matches nothing)
        for a in ("/node/*/gain", "/node/g/*", "/node/*/peak", "/*/list", "/node/{g,m}/*",
                  "/cue/*"):
            if refused(a, []):
                wrong.append(("query refused", a, []))
            if not refused(a, [0.5]):
                wrong.append(("set passed", a, [0.5]))
        for a in ("/node/*/measure", "/node/dn/learn", "/undo",
                  "/node/g/gain/ramp", "/node/*/*/ramp"):
            if not refused(a, []):
                wrong.append(("set passed", a, []))
        assert not wrong, wrong
        # a bundle with a query and a set is refused whole; one of queries answers
        bundle = (b"#bundle\0" + b"\0" * 7 + b"\1"
                  + b"".join(struct.pack(">i", len(p)) + p
                             for p in (osc("/scene/list"), osc("/node/g/gain", -20.0))))
        w.send_frame(0x2, bundle)
        assert w.until(lambda m: m[0] in ("/fail", "/scene/list.reply")) == (
            "/fail", ["/node/g/gain", RO])
        w.close()
        assert state() == before
    finally:
        d.stop()


# ---- 4. a token with URL-special characters -------------------------------------------------

TOKEN = "s3cr+t/= %&#é"


def test_a_token_with_url_special_characters(tmp_path):
    """The banner's URL and its QR code percent-encode the token, and the server decodes
    the query the way the page passes it on (percent-decoding only: a `+` typed by hand
    is a plus, not a space)."""
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port),
               "--listen", "0.0.0.0", "--allow", "127.0.0.1/32", "--http-token", TOKEN)
    try:
        url = re.search(r"browser console at (\S+)", d.output()).group(1)
        assert url.endswith(f":{port}/?token={quote(TOKEN, safe='')}")
        assert url.endswith("?token=s3cr%2Bt%2F%3D%20%25%26%23%C3%A9")
        assert read_terminal_qr(d.output()) == url
        query = url.split("?", 1)[1]
        assert WS(port, path=f"/osc?{query}").status == 101
        assert WS(port, path=f"/osc?x=1&{query}").status == 101
        assert WS(port, path="/osc?token=s3cr+t/=%20%25%26%23%C3%A9").status == 101
        for bad in ("s3cr%20t%2F%3D%20%25%26%23%C3%A9",  # a space is not a plus
                    "s3cr+t/=", "s3cr+t/=%20%25%26%23%E9"):  # cut at '&'; latin-1 é
            assert WS(port, path=f"/osc?token={bad}").status == 403, bad
    finally:
        d.stop()


# ---- 5. HTTP and WebSocket corner cases -----------------------------------------------------


@pytest.fixture
def web(tmp_path):
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port))
    d.http = port
    yield d
    d.stop()


def test_bare_lf_header_names_and_head_on_osc(web):
    port = web.http
    # a request with bare LF line endings is answered at once (not after the 10 s
    # head timeout); so is one that mixes them. A head the server did not see end is
    # closed at the head timeout with no answer at all (web.py, expired), so a status
    # proves it was not waited out, however long a loaded host took to send it; the
    # client waits past the head timeout (30 s) to see either (was: 8 s and took < 5)
    for req in (f"GET / HTTP/1.1\nHost: 127.0.0.1:{port}\n\n",
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\n\r\n",
                f"HEAD / HTTP/1.1\nHost: 127.0.0.1:{port}\r\n\n"):
        answer, _ = raw(port, req.encode(), timeout=30)
        assert status_of(answer) == 200, (req, answer[:80])
    # a header name with a space inside, or an obs-fold continuation: 400
    for req in ("GET / HTTP/1.1\r\nHo st: 127.0.0.1\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\r\n  b\r\n\r\n",
                "GET / HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n"):
        assert status_of(raw(port, req.encode())[0]) == 400, req
    # only GET opens a WebSocket
    head = (f"HEAD /osc HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n")
    answer, _ = raw(port, head.encode())
    assert status_of(answer) == 405, answer[:80]
    assert b"Allow: GET" in answer
    assert status_of(raw(port, head.replace("HEAD", "GET", 1).encode(), timeout=1)[0]) == 101


@pytest.mark.parametrize(("payload", "code"), [
    (b"", 1000), (struct.pack(">H", 1000), 1000), (struct.pack(">H", 1001) + b"bye", 1000),
    (struct.pack(">H", 4000), 1000), (struct.pack(">H", 3000), 1000),
    (b"\x03", 1002),  # a 1-byte body
    (struct.pack(">H", 999), 1002), (struct.pack(">H", 1004), 1002),
    (struct.pack(">H", 1005), 1002), (struct.pack(">H", 1006), 1002),
    (struct.pack(">H", 1015), 1002), (struct.pack(">H", 2999), 1002),
    (struct.pack(">H", 5000), 1002),
    (struct.pack(">H", 1000) + b"\xff\xfe", 1007),  # a reason that is not UTF-8
])
def test_close_frames_are_answered_as_rfc_6455_asks(web, payload, code):
    w = WS(web.http)
    w.send_frame(0x8, payload)
    assert w.closed_with() == code
    w.close()


def test_a_tls_handshake_or_binary_on_the_http_port_is_answered_at_once(web):
    """A browser told https:// (or any client that speaks something other than HTTP)
    sends bytes no request line starts with: a TLS ClientHello record starts 0x16 0x03.
    Answered 400 and closed at once, with a reason naming TLS, instead of holding the
    connection for the 10 s head timeout."""
    port = web.http
    hello = bytes([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03])
    hello += os.urandom(32)
    # a connection held to the head timeout gets no answer at all (web.py, expired): the
    # 400 proves it was answered, not waited out, however slow the host (the client
    # waits 30 s, past the 10 s timeout, to see either; was 8 s and took < 5)
    answer, _ = raw(port, hello, timeout=30)
    assert status_of(answer) == 400, answer[:80]
    assert b"TLS" in answer, answer
    for junk in (b"\x00\x01\x02", b"\xff" * 40, b"{\"a\":1}", b"/node/x/gain\0\0\0\0,f\0\0"):
        answer, _ = raw(port, junk, timeout=30)
        assert status_of(answer) == 400, (junk, answer[:80])
    # leading empty lines before a request line are allowed (RFC 9112 section 2.2)
    answer, _ = raw(port, f"\r\nGET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert status_of(answer) == 200, answer[:80]
    # a request line arriving a byte at a time is still waited for
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    for b in b"GE":
        s.sendall(bytes([b]))
        time.sleep(0.05)
    s.sendall(f"T / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    assert s.recv(64).startswith(b"HTTP/1.1 200")
    s.close()
