"""mixgraph clients: the Python client library (blocking and asyncio, UDP and TCP).

    from mixgraph.clients import Client, AsyncClient, MixgraphFail

See docs/clients.md."""

from .aio import AsyncClient
from .api import MixgraphFail, MixgraphTimeout
from .client import Client

__all__ = ["AsyncClient", "Client", "MixgraphFail", "MixgraphTimeout"]
