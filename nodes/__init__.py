"""mixgraph node catalog: what the C tables cannot say (docs, display)."""
