"""mixgraph server: engine wrapper, graph model, OSC, backends and state."""
