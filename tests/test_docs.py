"""Documentation that is derived from the C tables must match them."""

from pathlib import Path

from mixgraph.nodes.docgen import render
from mixgraph.server.catalog import CATALOG

ROOT = Path(__file__).resolve().parent.parent


def test_nodes_md_matches_the_c_tables():
    committed = (ROOT / "docs" / "nodes.md").read_text()
    assert committed == render(), (
        "docs/nodes.md is out of date: run `python -m mixgraph.nodes.docgen > docs/nodes.md`"
    )


def test_every_node_type_and_parameter_is_documented():
    text = (ROOT / "docs" / "nodes.md").read_text()
    for t in CATALOG.values():
        assert f"## {t.name}\n" in text
        for p in t.params:
            assert f"| `{p.name}` |" in text


def test_parameter_tables_are_sane():
    """Guards the C tables themselves: ranges ordered, defaults inside, names usable in OSC."""
    import re

    for t in CATALOG.values():
        names = [p.name for p in t.params] + [r.name for r in t.readouts]
        assert len(names) == len(set(names)), f"{t.name}: duplicate parameter/readout names"
        for p in t.params:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", p.name), (t.name, p.name)
            assert p.min < p.max and p.min <= p.default <= p.max, (t.name, p.name)
            if p.map == "log":
                assert p.min > 0, f"{t.name}/{p.name}: log smoothing needs a positive range"
