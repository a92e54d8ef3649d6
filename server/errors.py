"""The one error type of the server layer: its message is the reason a
client sees in `/fail`."""


class MixgraphError(Exception):
    """A command could not be carried out; str(error) is the readable reason."""


class EngineBusy(MixgraphError):
    """The engine's command ring is full: the command was not queued."""
