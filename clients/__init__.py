"""mixgraph clients: a small OSC client library used by the CLI and tests."""
