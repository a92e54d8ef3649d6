"""mixgraph clients: the Python client library (blocking and asyncio, UDP and TCP).

    from mixgraph.clients import Client, AsyncClient, MixgraphFail

See docs/clients.md."""

from .api import MixgraphFail, MixgraphTimeout
from .client import Client

__all__ = ["AsyncClient", "Client", "MixgraphFail", "MixgraphTimeout"]


def __getattr__(name: str):
    """AsyncClient on first use: asyncio is a tenth of the daemon's start-up imports,
    and the daemon (which imports the protocol module from here) never uses it."""
    if name == "AsyncClient":
        from .aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
