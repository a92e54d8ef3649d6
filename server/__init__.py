"""mixgraph server: engine wrapper, graph model, OSC, backends and state."""

__version__ = "0.1.0"
