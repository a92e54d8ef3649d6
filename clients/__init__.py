"""mixgraph clients: a small OSC client library used by the CLI and tests."""

from .client import Client, MixgraphFail

__all__ = ["Client", "MixgraphFail"]
