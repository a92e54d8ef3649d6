"""OSC 1.0 address patterns (* ? [] [!] {a,b}) and OSC 1.1's // wildcard.

An address is only treated as a pattern when it holds one of `*?[]{}` or
`//`; literal addresses never reach this module (dispatch stays a dict lookup).
Patterns are compiled to anchored regular expressions once (LRU-cached)."""

from __future__ import annotations

import re
from functools import lru_cache

PATTERN_CHARS = frozenset("*?[]{}")


def is_pattern(address: str) -> bool:
    return "//" in address or not PATTERN_CHARS.isdisjoint(address)


def _segment(seg: str) -> str:
    out = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = seg.find("]", i + 1)
            if j < 0:
                raise ValueError("unclosed [ in address pattern")
            body = seg[i + 1:j]
            neg = body.startswith("!")
            if neg:
                body = body[1:]
            if not body:
                raise ValueError("empty [] in address pattern")
            parts = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    a, b = body[k], body[k + 2]
                    if a > b:
                        a, b = b, a
                    parts.append(re.escape(a) + "-" + re.escape(b))
                    k += 3
                else:
                    parts.append(re.escape(body[k]))
                    k += 1
            out.append("[" + ("^/" if neg else "") + "".join(parts) + "]")
            i = j
        elif c == "{":
            j = seg.find("}", i + 1)
            if j < 0:
                raise ValueError("unclosed { in address pattern")
            alts = seg[i + 1:j].split(",")
            out.append("(?:" + "|".join(re.escape(a) for a in alts) + ")")
            i = j
        elif c in "]}":
            raise ValueError(f"unbalanced {c} in address pattern")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> re.Pattern:
    """An anchored regex for an OSC address pattern; ValueError if malformed."""
    if not pattern.startswith("/"):
        raise ValueError("an address pattern starts with /")
    # OSC 1.1: '//' matches any number of intermediate containers (including none)
    pieces = pattern.split("//")
    rx = "/(?:[^/]+/)*".join(
        "/".join(_segment(s) for s in piece.split("/")) for piece in pieces
    )
    return re.compile(rx + r"\Z")


def match(pattern: str, addresses) -> list[str]:
    """The addresses (iterable of literal addresses) the pattern matches, in order."""
    rx = compile_pattern(pattern)
    return [a for a in addresses if rx.match(a)]
