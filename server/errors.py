"""The one error type of the server layer: its message is the reason a
client sees in `/fail`."""


ECHO_MAX = 200  # characters (or bytes) of a client's string a reply echoes back
REASON_MAX = 1000  # characters of a /fail reason


def echo(value: object) -> object:
    """A client's value as a reply may echo it: strings and blobs cut to ECHO_MAX
    (marked with '...'), so that a reply always fits a datagram."""
    if isinstance(value, str) and len(value) > ECHO_MAX:
        return value[:ECHO_MAX] + "..."
    if isinstance(value, bytes) and len(value) > ECHO_MAX:
        return value[:ECHO_MAX]
    return value


def shown(value: object) -> str:
    """repr() of a client's value for a reason, cut like echo()."""
    return repr(echo(value))


def reason(text: str) -> str:
    """A /fail reason cut to REASON_MAX characters."""
    return text if len(text) <= REASON_MAX else text[:REASON_MAX] + "..."


class MixgraphError(Exception):
    """A command could not be carried out; str(error) is the readable reason."""


class DeviceMismatch(MixgraphError):
    """A node needs hardware channels the audio device does not have: the patch is
    fine, it is the wrong device (a restart keeps such a snapshot as a patch)."""


GRAPH_WORK_REFUSED = "too much whole-graph work"  # in GraphWorkRefused's reason


class GraphWorkRefused(MixgraphError):
    """The source host's whole-graph budget is spent (osc.Dispatcher.graph_work)."""


class EngineBusy(MixgraphError):
    """The engine's command ring is full: the command was not queued."""
