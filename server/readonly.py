"""What a view-only client may send (`serve --http-read-only`): which messages only read.

Whether a message changes anything is a declared property of its address, kept here in
one table (READS) that names every literal address of the dispatcher's table (a test
checks that none is missing, so a new address must be classified when it is added):
the most arguments a message to it may carry and still only read. `/status` reads
whatever its arguments (ANY); `/scene/fade <name>` reads with one argument and sets with
more (1); `/scene/safe` lists with none (0); `/cue/go` does something even with none
(CHANGES). Subscriptions are the client's own view of the server, so they count as
looking. A node address (`/node/<name>/<param>[/norm|/touch]`, a readout, `/bypass`)
reads with no argument, except a node action (`/node/al/measure`), which runs with none.
A pattern reads when it has no argument and every address it matches reads.

A viewer also may not crowd out the control surfaces: viewers together hold at most half
of the subscriber slots (--max-subscribers) and of the connection slots (--max-conns,
--max-conns-per-host); see web.viewer_refusal for the connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .actions import actions_for
from .errors import MixgraphError
from .patterns import is_pattern

if TYPE_CHECKING:
    from .osc import Dispatcher, Peer, Timed
    from .transport import ControlServer

ANY = 1 << 30  # a query (or the client's own subscription) whatever its arguments
CHANGES = -1  # changes something (or starts something) whatever its arguments

READS: dict[str, int] = {
    # the server, the catalog, the graph, files: queries
    "/status": ANY, "/info": ANY, "/catalog": ANY, "/catalog/list": ANY,
    "/catalog/type": ANY, "/graph/dump": ANY, "/graph/nodes": ANY,
    "/graph/connections": ANY, "/patch/list": ANY, "/dump": ANY, "/sync": ANY,
    "/history": ANY,  # its argument is how many steps are shown
    "/midi/maps": ANY, "/midi/status": ANY,
    "/scene/list": ANY, "/cue/list": ANY,
    "/scene/fade": 1,  # /scene/fade <name> answers; with <seconds> it sets
    "/scene/safe": 0,  # lists the safes; with arguments it sets one
    # the client's own view: subscriptions, the address proof
    "/subscribe": ANY, "/unsubscribe": ANY, "/meters/subscribe": ANY,
    "/meters/unsubscribe": ANY, "/hello": ANY,
    # changes
    "/reply-port": CHANGES, "/graph/add": CHANGES, "/graph/remove": CHANGES,
    "/graph/connect": CHANGES, "/graph/disconnect": CHANGES, "/graph/clear": CHANGES,
    "/patch/save": CHANGES, "/patch/load": CHANGES, "/undo": CHANGES, "/redo": CHANGES,
    "/midi/map": CHANGES, "/midi/unmap": CHANGES, "/midi/save": CHANGES,
    "/midi/load": CHANGES,
    "/midi/learn": CHANGES,  # with no argument it cancels a learn
    "/scene/store": CHANGES, "/scene/recall": CHANGES, "/scene/morph": CHANGES,
    "/scene/delete": CHANGES, "/scene/rename": CHANGES,
    "/cue/set": CHANGES, "/cue/go": CHANGES, "/cue/standby": CHANGES, "/cue/stop": CHANGES,
    "/cue/delete": CHANGES, "/cue/load": CHANGES,
}
_SUBSCRIBE = ("/subscribe", "/meters/subscribe")


def only_reads(d: Dispatcher, address: str, nargs: int) -> bool:
    """True when a message to `address` with `nargs` arguments changes nothing."""
    most = READS.get(address)
    if most is not None:
        return nargs <= most
    if is_pattern(address) or "//" in address:
        if nargs:
            return False
        try:
            matched = d._match(address)
        except MixgraphError:
            return True  # dispatch answers why it matches nothing
        return all(not is_pattern(a) and only_reads(d, a, 0) for a in matched)
    parts = address.split("/")
    if nargs or len(parts) not in (4, 5) or parts[1] != "node":
        return False
    node = d.session.live.get(parts[2])
    if node is None:
        return False
    if len(parts) == 5:
        return parts[4] in ("norm", "touch")  # `/ramp` with nothing is still a ramp
    return parts[3] not in actions_for(node.g.type.name)


def refusal(server: ControlServer, peer: Peer, msgs: list[Timed]) -> tuple[str, str] | None:
    """For a client of a read-only surface: (address, reason) of the first message of a
    packet that it may not send, or None when it may send them all."""
    d = server.dispatcher
    for m in msgs:
        if not only_reads(d, m.address, len(m.args)):
            return m.address, "read-only surface (--http-read-only)"
        if m.address in _SUBSCRIBE:
            fb = server.feedback
            if peer.key in fb.subs:
                continue
            room = viewer_share(fb.max_subscribers)
            held = sum(1 for s in fb.subs.values() if s.peer.kind == "ws")
            if held >= room:
                return m.address, (f"too many subscribers for a read-only surface ({room} of "
                                   f"{fb.max_subscribers}: the rest are kept for control "
                                   "surfaces; see --max-subscribers)")
    return None


def viewer_share(slots: int) -> int:
    """How many of `slots` (subscribers, connections) viewers may hold together."""
    return max(1, slots // 2)
