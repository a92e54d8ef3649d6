"""The browser control surface (`mixgraph serve --http`, server/web/index.html) in a real
browser: Debian's chromium driven by Playwright, against a real daemon (null backend) with
a 16-channel patch. What is checked is what the page shows and what the server applied
(asked over OSC by the test's own client), never the page's own idea of it.

MIXGRAPH_SCREENSHOTS=<dir> keeps the screenshots the run writes (docs/images/ holds the
ones in docs/clients.md)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from test_http import free_tcp_port

from daemon_util import Daemon

N = 16
READY = "document.body?.dataset.ready === '1'"
# every packet the page sends, by address (the page's WebSocket, wrapped before it loads)
RECORD = """
window.__sent = [];
const orig = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  const u8 = new Uint8Array(data); let e = 0; while (u8[e]) e++;
  window.__sent.push(new TextDecoder().decode(u8.subarray(0, e)));
  return orig.call(this, data);
};
"""


# what a page wait may take: it returns as soon as its condition holds, so the bound only
# matters on a starved host (a 15 s wait ran out at load 18 on the CI run's host)
WAIT_MS = 60000


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _wait(cond, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def build_patch(d: Daemon) -> None:
    """16 channels: sine -> gain -> pan -> master, a meter off each fader; channel 1 has an
    eq before its fader, channel 2 a denoise; a reverb send on channel 3; master -> out
    with its meter; a VCA leading g1 and g2. The send is wired pre (from g3) and post
    (from p3): it belongs in channel 3's strip all the same."""
    c = d.call
    c("/graph/add", "bus", "master", "channels", 2)
    c("/graph/add", "output", "out", "channels", 2)
    c("/graph/add", "meter", "mm", "channels", 2)
    c("/graph/add", "bus", "revbus", "channels", 2)
    c("/graph/add", "reverb", "verb")
    for a, b in (("master", "out"), ("master", "mm"), ("revbus", "verb"), ("verb", "master")):
        c("/graph/connect", a, b)
    for i in range(1, N + 1):
        c("/graph/add", "sine", f"s{i}", "freq", 200.0 + 50 * i, "level", -12.0)
        c("/graph/add", "gain", f"g{i}", "gain", 0.0)
        c("/graph/add", "pan", f"p{i}")
        c("/graph/add", "meter", f"m{i}", "channels", 1)
        head = f"s{i}"
        if i in (1, 2):
            extra = "e1" if i == 1 else "dn2"
            c("/graph/add", "eq" if i == 1 else "denoise", extra, "channels", 1)
            c("/graph/connect", head, extra)
            head = extra
        for a, b in ((head, f"g{i}"), (f"g{i}", f"p{i}"), (f"p{i}", "master"),
                     (f"g{i}", f"m{i}")):
            c("/graph/connect", a, b)
    c("/graph/add", "send", "rs3", "channels", 2)
    c("/graph/connect", "p3", "rs3:post")
    c("/graph/connect", "g3", "rs3:pre")  # wired both ways, as docs/nodes.md shows a send
    c("/graph/connect", "rs3", "revbus")
    c("/graph/add", "vca", "v12", "members", "g1,g2")


def catalog_points(d: Daemon, type_: str, param: str) -> list[tuple[float, float]]:
    """The fader taper's (norm, value) breakpoints as the server publishes them."""
    d.client.send("/catalog/type", type_)
    pts = None
    while True:
        addr, args = d.client.receive(30.0)
        if addr == "/catalog/type.param" and args[1] == param:
            rest = args[8:]
            pts = list(zip(rest[::2], rest[1::2], strict=True))
        elif addr == "/done":
            return pts


def interp_inv(points, v: float) -> float:
    """The position (0..1) of a value on a taper given by its breakpoints."""
    for (n0, v0), (n1, v1) in zip(points, points[1:], strict=False):
        if min(v0, v1) <= v <= max(v0, v1) and v1 != v0:
            return n0 + (n1 - n0) * (v - v0) / (v1 - v0)
    raise AssertionError(v)


def interp(points, n: float) -> float:
    for (n0, v0), (n1, v1) in zip(points, points[1:], strict=False):
        if n0 <= n <= n1:
            return v0 + (v1 - v0) * (n - n0) / (n1 - n0)
    raise AssertionError(n)


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    from conftest import require

    exe = _chromium()
    require(exe is not None, "chromium is not installed (Debian: chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None, "playwright is not installed (pip: playwright)")
    tmp = tmp_path_factory.mktemp("browser")
    port = free_tcp_port()
    d = Daemon(tmp / "state", "--backend", "null", "--http", str(port))
    d.http = port
    d.tmp = tmp
    try:
        build_patch(d)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe)
            yield d, browser
            browser.close()
    finally:
        d.stop()


def open_page(env, touch: bool = False, phone: bool = False, record: bool = False):
    d, browser = env
    if phone:
        ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    else:
        ctx = browser.new_context(viewport={"width": 1180, "height": 820}, has_touch=touch)
    page = ctx.new_page()
    page.set_default_timeout(WAIT_MS)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    if record:
        page.add_init_script(RECORD)
    page.goto(f"http://127.0.0.1:{d.http}/")
    page.wait_for_function(READY, timeout=WAIT_MS)
    return page


def bare_page(browser):
    """A page of its own context with the waits of open_page (WAIT_MS): playwright's
    default of 30 s for a goto, click or selector wait is what a page took to load and
    connect on a starved host (the reconnect and lv2 page tests timed out under load)."""
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def norm_of(page, address: str) -> float:
    return float(page.locator(f".fader[data-address='{address}']").get_attribute("data-norm"))


def wait_norm(page, address: str, value: float, tol: float = 1e-4) -> None:
    page.wait_for_function(
        f"Math.abs(parseFloat(document.querySelector(\".fader[data-address='{address}']\")"
        f".dataset.norm) - {value}) <= {tol}", timeout=WAIT_MS)


def lit_height(page, meter: str) -> float:
    """The fraction of a meter's column that is drawn lit (not the dark background) on the
    page's meter layer, read from the canvas's pixels in the middle of the column."""
    return page.evaluate("""(meter) => {
        const box = document.querySelector(`.meters[data-meters~='${meter}']`);
        const k = box.dataset.meters.split(' ').indexOf(meter);
        const r = box.getBoundingClientRect(), dpr = window.devicePixelRatio;
        const x = Math.round((r.left + k * 9 + 3) * dpr);
        const y0 = Math.round(r.top * dpr), h = Math.round(r.height * dpr);
        const px = document.querySelector('#meterlayer').getContext('2d')
            .getImageData(x, y0, 1, h).data;
        let lit = 0;
        for (let i = 0; i < h; i++) { const [R, G, B] = px.slice(4 * i, 4 * i + 3);
            if (R + G + B > 150 && !(R > 240 && G > 240 && B > 240)) lit++; }  // not the hold
        return lit / h; }""", meter)


def stale_pixels(page, at) -> int:
    """Pixels drawn on the meter layer in a column [x, y, height] where no meter is now
    (0 unless an old drawing was left behind), or 0 when a meter is there now."""
    return page.evaluate("""([x, y, h]) => {
        const hit = [...document.querySelectorAll('.meters')].some((b) => {
            const r = b.getBoundingClientRect(); return r.left <= x && x <= r.right; });
        if (hit) return 0;
        const dpr = window.devicePixelRatio;
        const px = document.querySelector('#meterlayer').getContext('2d')
            .getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, Math.round(h * dpr)).data;
        let n = 0; for (let i = 3; i < px.length; i += 4) n += px[i] > 0; return n; }""", at)


def shoot(page, tmp: Path, name: str) -> None:
    page.screenshot(path=str(tmp / name))
    keep = os.environ.get("MIXGRAPH_SCREENSHOTS")
    if keep:
        shutil.copy(tmp / name, os.path.join(keep, name))


def test_mixer_strips_faders_and_meters(env):
    d, _ = env
    page = open_page(env)
    # one channel strip per gain node, labelled with the chain's node names
    chans = page.locator(".strip.channel")
    assert chans.count() == N
    nodes = chans.evaluate_all("ss => ss.map(s => s.dataset.nodes)")
    assert nodes[0] == "s1 e1 g1 p1" and nodes[1] == "s2 dn2 g2 p2"
    assert nodes[2:] == [f"s{i} g{i} p{i}" for i in range(3, N + 1)]
    labels = page.locator(".strip.channel").nth(0).locator(".chain button").all_inner_texts()
    assert labels == ["s1", "e1", "g1", "p1"]
    assert page.locator(".strip.channel").nth(2).locator(".param[data-param=level]").count() == 1
    # bus, master and the VCA
    assert page.locator(".strip.bus").evaluate_all("ss => ss.map(s => s.dataset.nodes)") == [
        "revbus verb"]
    assert page.locator(".strip.master").evaluate_all("ss => ss.map(s => s.dataset.nodes)") == [
        "master out"]
    assert page.locator(".strip.vca h2").all_inner_texts() == ["v12"]
    # a drag on g5's fader with the mouse's pointer events: 40% of the track down from 0 dB
    g5 = "/node/g5/gain"
    wait_norm(page, g5, 0.75)
    fader = page.locator(f".fader[data-address='{g5}']")
    track = fader.locator(".track").bounding_box()
    cap = fader.locator(".cap").bounding_box()
    x, y = cap["x"] + cap["width"] / 2, cap["y"] + cap["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + 0.4 * track["height"], steps=8)
    _wait(lambda: d.call(g5 + "/touch") == [1])
    page.mouse.up()
    _wait(lambda: d.call(g5 + "/touch") == [0])
    n = norm_of(page, g5)
    assert n == pytest.approx(0.35, abs=0.01)
    _wait(lambda: d.call(g5 + "/norm")[0] == pytest.approx(n, abs=1e-6))
    # the server applied the catalog's published fader law at that position
    gain = d.call(g5)[0]
    assert gain == pytest.approx(interp(catalog_points(d, "gain", "gain"), n), abs=0.01)
    page.wait_for_function(
        "document.querySelector(\".strip[data-node=s5] output.big\").textContent"
        f" === '{gain:.1f} dB'", timeout=WAIT_MS)
    # an OSC client's change moves the page's fader and its read-out
    d.call("/node/g6/gain/norm", 0.25)
    wait_norm(page, "/node/g6/gain", 0.25)
    # the meter follows the sine: -60 dBFS -> 0, 0 dBFS -> 1, linear in dB (protocol.md)
    bar = "parseFloat(document.querySelector(\".meters[data-meters~='m7/1']\").dataset.level)"
    page.wait_for_function(f"Math.abs({bar} - 80) < 1", timeout=WAIT_MS)  # -12 dBFS
    # and that is what is on screen: the lit part of the column drawn on the meter layer
    assert lit_height(page, "m7/1") == pytest.approx(0.8, abs=0.03)
    d.call("/node/s7/level", -30.0)
    page.wait_for_function(f"Math.abs({bar} - 50) < 1", timeout=WAIT_MS)
    assert lit_height(page, "m7/1") == pytest.approx(0.5, abs=0.03)
    d.call("/node/s7/level", -12.0)
    page.wait_for_function(f"Math.abs({bar} - 80) < 1", timeout=WAIT_MS)
    # the meters stream at 30 Hz (>= 20 asked by the issue) and are drawn on every
    # animation frame the browser runs, up to that: over 2 s, the blobs received and
    # the meter's redraws against the browser's own frames (a browser starved of CPU
    # runs fewer: 19 redraws in a second at load 18, when that was the bound)
    got = page.evaluate("""() => new Promise((ok) => {
        const m = window.mixgraph.meters['/meters/m7/peak/1'];
        const cv = [...m][0].box.cv; let n = 0, frames = 0, live = true;
        const b0 = window.mixgraph.meterBlobs, t0 = performance.now();
        const o = new MutationObserver(() => n++);
        o.observe(cv, { attributes: true, attributeFilter: ["data-level"] });
        const tick = () => { if (live) { frames++; requestAnimationFrame(tick); } };
        requestAnimationFrame(tick);
        setTimeout(() => { live = false; o.disconnect();
            ok({ n, frames, blobs: window.mixgraph.meterBlobs - b0,
                 s: (performance.now() - t0) / 1000 }); }, 2000); })""")
    assert got["blobs"] >= 20 * got["s"] * 0.9, got  # the stream, in the page's time
    assert got["n"] >= min(20 * got["s"], got["frames"]) * 0.9, got  # every frame drawn
    # peak hold: after a drop the hold mark stays at the old peak for a while
    d.call("/node/s8/level", -6.0)
    hold = "parseFloat(document.querySelector(\".meters[data-meters~='m8/1']\").dataset.hold)"
    page.wait_for_function(f"Math.abs({hold} - 90) < 1", timeout=WAIT_MS)
    d.call("/node/s8/level", -48.0)
    # as soon as the bar has fallen below it, the mark is still at the old peak
    bar8 = bar.replace("m7", "m8")
    page.wait_for_function(f"{bar8} < 85 && Math.abs({hold} - 90) < 1", timeout=WAIT_MS)
    page.wait_for_function(f"Math.abs({bar8} - 20) < 1", timeout=WAIT_MS)  # -48 dBFS
    page.wait_for_function(f"{hold} < 25", timeout=WAIT_MS)  # and then it falls too
    assert not page.errors, page.errors
    shoot(page, d.tmp, "mixer-tablet.png")
    page.context.close()


def test_multitouch_fine_mode_and_double_tap(env):
    d, _ = env
    page = open_page(env, touch=True)
    cdp = page.context.new_cdp_session(page)
    a, b = "/node/g9/gain", "/node/g10/gain"
    for x in (a, b):
        wait_norm(page, x, 0.75)

    def at(address):
        f = page.locator(f".fader[data-address='{address}']")
        cap, track = f.locator(".cap").bounding_box(), f.locator(".track").bounding_box()
        return cap["x"] + cap["width"] / 2, cap["y"] + cap["height"] / 2, track["height"]

    (xa, ya, h), (xb, yb, _) = at(a), at(b)

    def touches(kind, pts, at: float | None = None):
        ev = {"type": kind, "touchPoints": [{"x": x, "y": y, "id": i} for i, x, y in pts]}
        if at is not None:  # the event's own time (s since the epoch), as a device stamps it
            ev["timestamp"] = at
        cdp.send("Input.dispatchTouchEvent", ev)

    # two fingers, two faders, at once: one down 20%, the other up 10%
    touches("touchStart", [(1, xa, ya), (2, xb, yb)])
    for k in range(1, 9):
        touches("touchMove", [(1, xa, ya + 0.2 * h * k / 8), (2, xb, yb - 0.1 * h * k / 8)])
    _wait(lambda: d.call(a + "/touch") == [1] and d.call(b + "/touch") == [1])
    # held fingers: another client cannot move them, and its attempt moves nothing on screen
    d.client.send(a + "/norm", 0.1)
    assert d.client.receive(30.0) == ("/fail", [a + "/norm", "touched by another client"])
    d.sync()
    touches("touchEnd", [])
    _wait(lambda: d.call(a + "/touch") == [0] and d.call(b + "/touch") == [0])
    na, nb = norm_of(page, a), norm_of(page, b)
    assert na == pytest.approx(0.55, abs=0.01)
    assert nb == pytest.approx(0.85, abs=0.01)
    _wait(lambda: d.call(a + "/norm")[0] == pytest.approx(na, abs=1e-6))
    _wait(lambda: d.call(b + "/norm")[0] == pytest.approx(nb, abs=1e-6))
    # fine mode: the same drag moves a tenth as far
    page.click("#fine")
    xa, ya, h = at(a)
    touches("touchStart", [(3, xa, ya)])
    for k in range(1, 9):
        touches("touchMove", [(3, xa, ya + 0.2 * h * k / 8)])
    touches("touchEnd", [])
    _wait(lambda: d.call(a + "/touch") == [0])
    assert norm_of(page, a) == pytest.approx(na - 0.02, abs=0.003)
    _wait(lambda: d.call(a + "/norm")[0] == pytest.approx(norm_of(page, a), abs=1e-6))
    page.click("#fine")
    # a double tap sets the default (0 dB for a gain): two taps 100 ms apart by the
    # events' own times (the page reads those, not when it got to them: at load 28 the
    # dispatches alone were more than its 350 ms apart)
    t0 = time.time()
    for k in range(2):
        touches("touchStart", [(4, xa, ya)], at=t0 + 0.1 * k)
        touches("touchEnd", [], at=t0 + 0.1 * k + 0.03)
    _wait(lambda: d.call(a) == [0.0])
    wait_norm(page, a, 0.75)
    assert d.call(b + "/norm")[0] == pytest.approx(nb, abs=1e-6)  # the other one stayed
    assert not page.errors, page.errors
    page.context.close()


def test_node_page_parameters_choices_bypass_actions(env):
    d, _ = env
    page = open_page(env)
    page.click(".chain button[data-node=e1]")
    page.wait_for_selector("#node:not([hidden])")
    # every parameter of the type, as the catalog lists it
    d.client.send("/catalog/type", "eq")
    params = []
    while True:
        addr, args = d.client.receive(30.0)
        if addr == "/catalog/type.param":
            params.append(args[1])
        elif addr == "/done":
            break
    assert page.locator("#node .param").evaluate_all("ps => ps.map(p => p.dataset.param)") \
        == [p for p in params if p != "trigger"]
    # a stepped parameter's choices by name; picking one sets the server
    b1type = page.locator("#node .param[data-param=b1type]")
    names = b1type.locator(".choices button").all_inner_texts()
    assert names == ["bell", "low shelf", "high shelf", "notch", "band-pass"]  # protocol.md
    b1type.locator("button", has_text="notch").click()
    _wait(lambda: d.call("/node/e1/b1type") == [3.0])
    # the server's value shown as its choice name, with the unit elsewhere
    d.call("/node/e1/b1type", 4.0)
    page.wait_for_function("document.querySelector('#node .param[data-param=b1type] output')"
                           ".textContent === 'band-pass'", timeout=WAIT_MS)
    d.call("/node/e1/b1freq", 250.0)
    page.wait_for_function("document.querySelector('#node .param[data-param=b1freq] output')"
                           ".textContent === '250 Hz'", timeout=WAIT_MS)
    # bypass, both ways
    page.click("#node button.bypass")
    _wait(lambda: d.call("/node/e1/bypass") == [1])
    page.wait_for_function("document.querySelector('.chain button[data-node=e1]')"
                           ".classList.contains('byp')", timeout=WAIT_MS)
    d.call("/node/e1/bypass", 0)
    page.wait_for_function("!document.querySelector('#node button.bypass')"
                           ".classList.contains('on')", timeout=WAIT_MS)
    page.click("#node button.close")
    # an action and its result: denoise learn 0.3 s of its input
    page.click(".chain button[data-node=dn2]")
    page.wait_for_selector("#node:not([hidden]) button[data-action=learn]")
    page.fill("#node .action input", "0.3")
    page.click("#node button[data-action=learn]")
    page.wait_for_function("document.querySelector('#node output[data-action=learn]')"
                           ".dataset.done === '1'", timeout=WAIT_MS)
    result = page.locator("#node output[data-action=learn]").inner_text().split()
    assert float(result[0]) == pytest.approx(0.3)
    assert -120 < float(result[1]) < 0  # the learnt noise level, dBFS
    # a failed action says why
    page.fill("#node .action input", "")
    page.click("#node button[data-action=learn]")
    page.wait_for_function("document.querySelector('#node output[data-action=learn]')"
                           ".textContent.startsWith('failed: usage')", timeout=WAIT_MS)
    assert not page.errors, page.errors
    shoot(page, d.tmp, "node-tablet.png")
    page.context.close()


def test_show_page_hidden_without_scenes(env):
    d, _ = env
    page = open_page(env, record=True)
    page.wait_for_function("window.__sent.includes('/scene/list')", timeout=WAIT_MS)
    d.sync()  # the server answered (/fail on a server without scenes, or an empty list)
    page.wait_for_function("window.mixgraph.sceneAcc === null", timeout=WAIT_MS)
    assert page.locator("#tab-show").is_hidden()
    assert page.locator("#show").is_hidden()
    assert page.locator("#msg").inner_text() == ""  # not an error the user must read
    page.context.close()


def test_phone_portrait(env):
    d, _ = env
    page = open_page(env, phone=True)
    # large targets: fader caps and buttons at least 28 CSS px
    cap = page.locator(".fader .cap").first.bounding_box()
    assert cap["width"] >= 40 and cap["height"] >= 28
    assert page.locator(".strip.channel").first.bounding_box()["height"] > 600
    shoot(page, d.tmp, "mixer-phone.png")
    # scrolled to a strip that was off screen: its meter is drawn where the strip now is,
    # and nothing is left drawn where the first strip's meter was
    old = page.evaluate("(() => { const r = document.querySelector("
                        "\".meters[data-meters~='m1/1']\").getBoundingClientRect();"
                        " return [r.left + 3, r.top, r.height]; })()")
    page.evaluate("document.querySelector('#mixer').scrollLeft += 40")  # still in view
    _wait(lambda: abs(lit_height(page, "m1/1") - 0.8) < 0.03)
    assert stale_pixels(page, old) == 0
    page.evaluate("document.querySelector('.strip[data-node=s7]').scrollIntoView()")
    page.wait_for_function("document.querySelector(\".meters[data-meters~='m7/1']\")"
                           ".dataset.level !== undefined", timeout=WAIT_MS)
    _wait(lambda: abs(lit_height(page, "m7/1") - 0.8) < 0.03)
    assert stale_pixels(page, old) == 0
    page.click(".chain button[data-node=e1]")
    page.wait_for_selector("#node:not([hidden])")
    shoot(page, d.tmp, "node-phone.png")
    assert not page.errors, page.errors
    page.context.close()


def test_two_browsers_stay_in_sync(env):
    d, _ = env
    one, two = open_page(env), open_page(env)
    g = "/node/g11/gain"
    fader = one.locator(f".fader[data-address='{g}']")
    cap = fader.locator(".cap").bounding_box()
    x, y = cap["x"] + cap["width"] / 2, cap["y"] + cap["height"] / 2
    one.mouse.move(x, y)
    one.mouse.down()
    one.mouse.move(x, y - 60, steps=6)
    held = norm_of(one, g)
    wait_norm(two, g, held)
    one.mouse.up()
    _wait(lambda: d.call(g + "/touch") == [0])
    # the mute, both ways
    one.click("button[data-address='/node/g11/mute']")
    two.wait_for_function("document.querySelector(\"button[data-address='/node/g11/mute']\")"
                          ".classList.contains('on')", timeout=WAIT_MS)
    assert d.call("/node/g11/mute") == [1.0]
    assert not one.errors and not two.errors
    one.context.close()
    two.context.close()


def test_reconnect_resyncs_and_says_it_was_offline(env, tmp_path):
    _, browser = env
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port))
    try:
        d.call("/graph/add", "gain", "g", "gain", 0.0)
        page = bare_page(browser)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function(READY, timeout=WAIT_MS)
        wait_norm(page, "/node/g/gain", 0.75)
        d.stop()  # the Wi-Fi drops (the server is gone)
        page.wait_for_function("document.querySelector('#conn')?.textContent === 'offline'",
                               timeout=WAIT_MS)
        d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port))
        d.call("/node/g/gain/norm", 0.5)  # changed while the page was away
        d.call("/graph/add", "gain", "g2", "gain", -10.0)
        page.wait_for_function(READY + " && document.querySelector('#conn')?.textContent"
                               " === 'online'", timeout=WAIT_MS)
        wait_norm(page, "/node/g/gain", 0.5)
        wait_norm(page, "/node/g2/gain", 0.5)
        assert "was offline" in page.locator("#msg").inner_text()
        page.close()
    finally:
        d.stop()


def test_a_page_without_its_token_says_what_is_missing(env, tmp_path):
    """A server listening beyond loopback refuses a page opened without the token
    (the WebSocket handshake gets 403); the page says so instead of only 'offline'."""
    _, browser = env
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port),
               "--listen", "0.0.0.0", "--allow", "127.0.0.0/8")
    try:
        page = bare_page(browser)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.querySelector('#msg')?.textContent.includes('token')",
                               timeout=WAIT_MS)
        assert page.locator("#conn").inner_text() == "offline"
        token = (tmp_path / "state" / "http-token").read_text().strip()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        page.wait_for_function(READY, timeout=WAIT_MS)
        assert "token" not in page.locator("#msg").inner_text()
        page.close()
    finally:
        d.stop()


def replies(d: Daemon, address: str, *args) -> list[tuple[str, list]]:
    """Every message the server answers to one request, up to and with its /done."""
    d.client.send(address, *args)
    out = []
    while True:
        addr, a = d.client.receive(30.0)
        out.append((addr, a))
        if addr in ("/done", "/fail") and a and a[0] == address:
            return out


def test_show_page_with_real_scenes_and_cues(env):
    """The show page against the server's own scenes and cue list (server/scenes.py,
    cues.py): the tab appears, GO fires the cue at the playhead on the server and the
    page's playhead follows the server's, STOP, a cue tapped is stood by, a scene button
    recalls, the morph crossfader moves the values between two scenes."""
    d, _ = env
    g = "/node/g12/gain"
    page = open_page(env)
    try:
        assert page.locator("#tab-show").is_hidden()  # no scenes, no cues yet
        d.call(g, -10.0)
        d.call("/scene/store", "intro", g)
        d.call(g, -30.0)
        d.call("/scene/store", "verse", g)
        d.call("/scene/store", "bridge", g, "/node/g13/mute")
        d.call("/cue/set", 1, "name", "Intro", "scene", "intro")
        d.call("/cue/set", 2, "name", "Verse", "scene", "verse")
        d.call("/cue/set", 3, "name", "Bridge", "scene", "bridge")
        # stored by another client: the page finds them by itself (its heartbeat asks)
        page.wait_for_selector("#tab-show:not([hidden])", timeout=WAIT_MS)
        page.click("#tab-show")
        assert page.locator("#mixer").is_hidden()
        page.wait_for_function("document.querySelectorAll('#cues button').length === 3",
                               timeout=WAIT_MS)
        assert page.locator("#scenes button").all_inner_texts() == ["intro", "verse", "bridge"]
        assert page.locator("#cues button span").all_inner_texts() == ["Intro", "Verse",
                                                                        "Bridge"]
        page.wait_for_function("document.querySelector('#playhead')?.dataset.cue === '1'",
                               timeout=WAIT_MS)
        assert page.locator("#playhead").inner_text() == "standby: cue 1 Intro"
        assert page.locator("#cues button.next").get_attribute("data-cue") == "1"
        # GO fires cue 1 on the server (its scene recalled) and the playhead moves to 2
        page.click("#go")
        _wait(lambda: d.call(g) == [pytest.approx(-10.0, abs=1e-4)])
        assert replies(d, "/cue/list")[-1][1][2] == "2"
        page.wait_for_function("document.querySelector('#playhead')?.dataset.cue === '2'",
                               timeout=WAIT_MS)
        assert page.locator("#playhead").inner_text() == "standby: cue 2 Verse"
        page.click("#go")
        _wait(lambda: d.call(g) == [pytest.approx(-30.0, abs=1e-4)])
        page.wait_for_function("document.querySelector('#playhead')?.dataset.cue === '3'",
                               timeout=WAIT_MS)
        # a cue tapped is stood by on the server; STOP answers
        page.click("#cues button[data-cue='1']")
        _wait(lambda: replies(d, "/cue/list")[-1][1][2] == "1")
        page.wait_for_function("document.querySelector('#playhead')?.dataset.cue === '1'",
                               timeout=WAIT_MS)
        page.click("#stop")
        d.sync()
        assert page.locator("#msg").inner_text() == ""  # nothing refused
        # a scene button recalls that scene
        page.click("#scenes button[data-scene=intro]")
        _wait(lambda: d.call(g) == [pytest.approx(-10.0, abs=1e-4)])
        # the morph crossfader, intro -> verse: half way along the gain's fader taper
        assert page.locator("#morph-a").input_value() == "intro"
        assert page.locator("#morph-b").input_value() == "verse"
        x = page.locator("#morph-x")
        box, track = x.bounding_box(), x.locator(".track").bounding_box()
        cap = x.locator(".cap").bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(cap["x"] + cap["width"] / 2, y)
        page.mouse.down()
        page.mouse.move(cap["x"] + cap["width"] / 2 + track["width"] / 2, y, steps=6)
        page.mouse.up()
        page.wait_for_function("Math.abs(Number(document.querySelector('#morph output')"
                               ".textContent) - 0.5) < 0.02", timeout=WAIT_MS)
        pos = float(x.get_attribute("data-norm"))
        pts = catalog_points(d, "gain", "gain")
        lo, hi = (interp_inv(pts, v) for v in (-10.0, -30.0))
        want = interp(pts, lo + (hi - lo) * pos)
        _wait(lambda: d.call(g)[0] == pytest.approx(want, abs=0.05))
        assert -30.0 < want < -10.0
        shoot(page, d.tmp, "show-tablet.png")
        # the page's own mixer shows the morphed value
        page.click("#tab-mixer")
        wait_norm(page, g, float(d.call(g + "/norm")[0]))
        assert not page.errors, page.errors
    finally:
        for c in (1, 2, 3):
            d.client.send("/cue/delete", c)
        for sc in ("intro", "verse", "bridge"):
            d.client.send("/scene/delete", sc)
        d.sync()
        page.context.close()


OVERDRIVE = "http://drobilla.net/plugins/mda/Overdrive"
BALANCE = "http://gareus.org/oss/lv2/balance"


def test_lv2_node_page_has_the_plugins_parameters(env):
    """An lv2 node's page lists its plugin's parameters (the catalog of that plugin, asked
    with /catalog lv2 <uri>), with the plugin's units and labelled choices, and moving one
    sets it on the server."""
    from conftest import require

    d, _ = env
    d.client.send("/catalog/type", "lv2", OVERDRIVE)
    if d.client.receive(30.0)[0] == "/fail":
        require(False, "mda-lv2 is not installed (Debian: mda-lv2) or no lilv in this build")
    while d.client.receive(30.0)[0] != "/done":
        pass
    page = open_page(env)
    try:
        d.call("/graph/add", "lv2", "od", "uri", OVERDRIVE)
        d.call("/graph/add", "lv2", "bal", "uri", BALANCE)
        # the page rebuilds on /graph/changed; each plugin node is a strip of its own
        page.click(".chain button[data-node=od]", timeout=WAIT_MS)
        page.wait_for_selector("#node:not([hidden])")
        d.client.send("/catalog/type", "lv2", OVERDRIVE)
        params = []
        while True:
            addr, args = d.client.receive(30.0)
            if addr == "/catalog/type.param":
                params.append(args[1])
            elif addr == "/done":
                break
        assert params == ["drive", "muffle", "output"]
        assert page.locator("#node .param").evaluate_all(
            "ps => ps.map(p => p.dataset.param)") == params
        assert "MDA Overdrive" in page.locator("#node .doc").first.inner_text()
        # a drag on drive's slider sets it on the server, along its linear 0..1 range
        s = page.locator("#node .hslider[data-address='/node/od/drive']")
        track = s.locator(".track").bounding_box()
        cap = s.locator(".cap").bounding_box()
        x, y = cap["x"] + cap["width"] / 2, cap["y"] + cap["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 0.6 * track["width"], y, steps=8)
        page.mouse.up()
        _wait(lambda: d.call("/node/od/drive/touch") == [0])
        n = float(s.get_attribute("data-norm"))
        assert n == pytest.approx(0.6, abs=0.02)
        _wait(lambda: d.call("/node/od/drive")[0] == pytest.approx(n, abs=1e-5))
        page.wait_for_function("document.querySelector('#node .param[data-param=drive] "
                               f"output').textContent === '{n:.2f}'", timeout=WAIT_MS)
        page.click("#node button.close")
        # another plugin: its unit (dB) and its labelled choices, from its own catalog
        page.click(".chain button[data-node=bal]")
        page.wait_for_selector("#node:not([hidden]) .param[data-param=trim]")
        d.call("/node/bal/trim", -6.0)
        page.wait_for_function("document.querySelector('#node .param[data-param=trim] output')"
                               ".textContent === '-6.00 dB'", timeout=WAIT_MS)
        mode = page.locator("#node .param[data-param=unitygain]")
        assert mode.locator(".choices button").all_inner_texts() == [
            "Balance", "Unity Gain - Equal Amplitude", "Seesaw - Equal Power"]
        mode.locator("button", has_text="Seesaw").click()
        _wait(lambda: d.call("/node/bal/unitygain") == [2.0])
        page.wait_for_function("document.querySelector('#node .param[data-param=unitygain] "
                               "output').textContent === 'Seesaw - Equal Power'", timeout=WAIT_MS)
        assert page.locator("#node .param[data-param=phaseL] .choices button") \
            .all_inner_texts() == ["off", "on"]
        assert not page.errors, page.errors
        shoot(page, d.tmp, "node-lv2-tablet.png")
    finally:
        for n in ("od", "bal"):
            d.client.send("/graph/remove", n)
        d.sync()
        page.context.close()


def test_read_only_page_shows_the_show_tab(env, tmp_path):
    """A --http-read-only server answers the page's /scene/list and /cue/list (queries):
    the Show tab appears with the server's scenes; a scene button's recall is refused
    and changes nothing."""
    _, browser = env
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port), "--http-read-only")
    try:
        d.call("/graph/add", "gain", "g", "gain", -10.0)
        d.call("/scene/store", "intro", "/node/g/gain")
        d.call("/cue/set", 1, "name", "Intro", "scene", "intro")
        page = bare_page(browser)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function(READY, timeout=WAIT_MS)
        page.wait_for_selector("#tab-show", state="visible", timeout=WAIT_MS)
        page.click("#tab-show")
        page.wait_for_selector("#scenes button[data-scene='intro']", timeout=WAIT_MS)
        d.call("/node/g/gain", -20.0)
        page.click("#scenes button[data-scene='intro']")
        time.sleep(0.5)
        assert d.call("/node/g/gain") == [-20.0]  # refused: a view
        page.close()
    finally:
        d.stop()


def test_a_token_with_url_special_characters_opens_the_page(env, tmp_path):
    """--http-token 's3cr+t/= %&#': the URL the banner prints (percent-encoded) opens a
    working page, as the page passes its query on and the server decodes it."""
    import re

    _, browser = env
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port),
               "--http-token", "s3cr+t/= %&#")
    try:
        url = re.search(r"browser console at (\S+)", d.output()).group(1)
        assert url == f"http://127.0.0.1:{port}/?token=s3cr%2Bt%2F%3D%20%25%26%23"
        page = bare_page(browser)
        page.goto(url)
        page.wait_for_function(READY, timeout=WAIT_MS)
        assert page.locator("#conn").inner_text() == "online"
        page.close()
    finally:
        d.stop()
