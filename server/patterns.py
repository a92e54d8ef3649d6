"""OSC 1.0 address patterns (* ? [abc] [a-z] [!abc] {foo,bar}) and OSC 1.1's //.

An address is only treated as a pattern when it holds one of `*?[]{}` or
`//`; literal addresses never reach this module (dispatch stays a dict lookup).

The matcher never backtracks, so no pattern can make it run for long (a
backtracking regex took 169 s on `/graph/` + 32 `*` + `!`). A pattern is
compiled once (LRU-cached) into a sequence over the address's parts: one
part matcher per part, and a gap for each OSC 1.1 `//` (any number of
non-empty parts). The part sequence is matched by simulating every position
of that sequence at once (O(items x parts)). A part pattern with wildcards is
a small NFA simulated as a set of states, one step per character of the part
(O(pattern x part) at worst), with the state sets it meets cached as a lazy
DFA (a bounded table), so a common pattern costs one dict lookup per character.
A pattern without `//` first goes through a regex that cannot backtrack far
(each part a literal, or literal + `[^/]*` + literal): it decides alone when
no part has more than one `*` and no other wildcard, and otherwise only lets
through the addresses the part matchers then confirm; `filter()` runs it over
a whole address list at C speed.
Patterns are bounded: at most MAX_PATTERN_CHARS characters and
MAX_WILDCARDS wildcards (`*`, `?`, `[...]`, `{...}`, `//` each count one)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

PATTERN_CHARS = frozenset("*?[]{}")
MAX_PATTERN_CHARS = 256  # longer address patterns are refused
MAX_WILDCARDS = 32  # more wildcards than this in one pattern are refused
_CACHE_MAX = 2048  # cached DFA transitions + part results per pattern (shared by its parts)

# NFA node kinds
_LIT, _ANY, _CLASS, _STAR, _SPLIT, _MATCH = range(6)


def is_pattern(address: str) -> bool:
    """True when an address holds OSC pattern characters (or OSC 1.1's `//`)."""
    return "//" in address or not PATTERN_CHARS.isdisjoint(address)


class _Class:
    """A bracket expression: characters and ranges, maybe negated."""

    __slots__ = ("chars", "ranges", "neg")

    def __init__(self, chars: frozenset[str], ranges: tuple[tuple[str, str], ...],
                 neg: bool) -> None:
        self.chars, self.ranges, self.neg = chars, ranges, neg

    def __call__(self, c: str) -> bool:
        hit = c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)
        return hit != self.neg


def _parse_class(body: str) -> _Class:
    neg = body.startswith("!")
    if neg:
        body = body[1:]
    if not body:
        raise ValueError("empty [] in address pattern")
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            a, b = body[k], body[k + 2]
            ranges.append((a, b) if a <= b else (b, a))
            k += 3
        else:
            chars.add(body[k])  # includes a '-' that starts or ends the set
            k += 1
    return _Class(frozenset(chars), tuple(ranges), neg)


def _tokens(seg: str) -> list[tuple]:
    """One address part's pattern as tokens: ('lit', c), ('any',), ('class', _Class),
    ('star',), ('alt', [strings]). ValueError if malformed."""
    out: list[tuple] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            if not out or out[-1][0] != "star":  # ** is *
                out.append(("star",))
        elif c == "?":
            out.append(("any",))
        elif c == "[":
            j = seg.find("]", i + 1)
            if j < 0:
                raise ValueError("unclosed [ in address pattern")
            out.append(("class", _parse_class(seg[i + 1:j])))
            i = j
        elif c == "{":
            j = seg.find("}", i + 1)
            if j < 0:
                raise ValueError("unclosed { in address pattern")
            out.append(("alt", seg[i + 1:j].split(",")))
            i = j
        elif c in "]}":
            raise ValueError(f"unbalanced {c} in address pattern")
        else:
            out.append(("lit", c))
        i += 1
    return out


class _Part:
    """Matches one address part (no '/') against one part of a pattern.

    A Thompson NFA over the part's tokens, simulated as a set of states; each
    step visits every node at most once, so a part of n characters costs
    O(n x nodes). The state sets reached are cached as DFA transitions.

    `regex` is a cheap first filter for the part that cannot backtrack far: its
    literal head, then `[^/]*` if it has any wildcard, then its literal tail
    (every match has those); `exact` when that is the whole pattern (a lone
    `*` among literals)."""

    __slots__ = ("kind", "text", "nodes", "start", "dfa", "memo", "cap", "regex", "exact")

    def __init__(self, seg: str) -> None:
        toks = _tokens(seg)
        self.text = seg
        self.nodes: list[tuple] = []
        self.dfa: dict[tuple[frozenset[int], str], frozenset[int]] = {}
        self.memo: dict[str, bool] = {}  # part -> result (names recur across addresses)
        self.cap = _CACHE_MAX  # entries each of dfa and memo may hold
        if all(t[0] == "lit" for t in toks):
            self.kind = "lit"
        elif toks == [("star",)]:
            self.kind = "star"
        else:
            self.kind = "nfa"
        wild = [i for i, t in enumerate(toks) if t[0] != "lit"]
        if not wild:
            self.regex, self.exact = re.escape(seg), True
        else:
            head = "".join(t[1] for t in toks[:wild[0]])
            tail = "".join(t[1] for t in toks[wild[-1] + 1:])
            self.regex = re.escape(head) + "[^/]*" + re.escape(tail)
            self.exact = len(wild) == 1 and toks[wild[0]][0] == "star"
        nodes = self.nodes
        nodes.append((_MATCH, None, -1))
        nxt = 0
        for t in reversed(toks):
            k = t[0]
            if k == "lit":
                nodes.append((_LIT, t[1], nxt))
            elif k == "any":
                nodes.append((_ANY, None, nxt))
            elif k == "class":
                nodes.append((_CLASS, t[1], nxt))
            elif k == "star":
                nodes.append((_STAR, None, nxt))
            else:  # alternatives: one chain of literals per alternative
                heads = []
                for alt in t[1]:
                    h = nxt
                    for c in reversed(alt):
                        nodes.append((_LIT, c, h))
                        h = len(nodes) - 1
                    heads.append(h)
                nodes.append((_SPLIT, tuple(heads), nxt))
            nxt = len(nodes) - 1
        self.start = self._closure([nxt])

    def _closure(self, todo: list[int]) -> frozenset[int]:
        """The consuming states (and MATCH) reachable from todo without input."""
        nodes = self.nodes
        seen: set[int] = set()
        out: set[int] = set()
        while todo:
            s = todo.pop()
            if s in seen:
                continue
            seen.add(s)
            kind, data, nxt = nodes[s]
            if kind == _SPLIT:
                todo.extend(data)
            elif kind == _STAR:
                out.add(s)
                todo.append(nxt)
            else:
                out.add(s)
        return frozenset(out)

    def _step(self, states: frozenset[int], c: str) -> frozenset[int]:
        nodes = self.nodes
        todo = []
        for s in states:
            kind, data, nxt = nodes[s]
            if kind == _STAR:
                todo.append(s)
            elif (kind == _LIT and data == c) or kind == _ANY or (kind == _CLASS and data(c)):
                todo.append(nxt)
        return self._closure(todo)

    def __call__(self, part: str) -> bool:
        kind = self.kind
        if kind == "lit":
            return part == self.text
        if kind == "star":
            return True
        memo = self.memo
        r = memo.get(part)
        if r is None:
            r = self._run(part)
            if len(memo) >= self.cap:
                memo.clear()
            memo[part] = r
        return r

    def _run(self, part: str) -> bool:
        dfa = self.dfa
        states = self.start
        for c in part:
            key = (states, c)
            nxt = dfa.get(key)
            if nxt is None:
                nxt = self._step(states, c)
                if len(dfa) >= self.cap:
                    dfa.clear()
                dfa[key] = nxt
            if not nxt:
                return False
            states = nxt
        return 0 in states  # node 0 is MATCH


_GAP = None  # an item of the part sequence standing for OSC 1.1's //


def _affixes(pattern: str) -> tuple[str, str]:
    """The literal text before the first and after the last wildcard: every address
    the pattern matches starts and ends with these (a cheap first filter)."""
    first = [i for i in (pattern.find(c) for c in ("*", "?", "[", "{", "//")) if i >= 0]
    last = [pattern.rfind(c) + len(c) for c in ("*", "?", "]", "}", "//") if c in pattern]
    if not first:
        return pattern, pattern
    return pattern[:min(first)], pattern[max(last):]


class Pattern:
    """A compiled OSC address pattern; `match(address)` says whether it matches."""

    __slots__ = ("pattern", "items", "prefix", "suffix", "head", "tail", "ngaps", "rx",
                 "exact", "confirm")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        items: list[_Part | None] = []
        parts: dict[str, _Part] = {}
        for k, piece in enumerate(pattern.split("//")):
            if k:
                items.append(_GAP)
            for seg in piece.split("/"):
                p = parts.get(seg)
                if p is None:
                    p = parts[seg] = _Part(seg)
                items.append(p)
        self.items = items
        self.prefix, self.suffix = _affixes(pattern)
        self.ngaps = items.count(_GAP)
        g = items.index(_GAP) if self.ngaps else len(items)
        self.head = items[:g]  # the part matchers before the first gap
        self.tail = items[g + 1:] if self.ngaps == 1 else []  # ... after a lone gap
        # without gaps: a first filter at C speed, from the parts' regexes (each a
        # literal, or literal + [^/]* + literal: a part's extent is fixed by its
        # '/'s, so the regex engine has nothing to backtrack over but one star's
        # end per part); exact when no part needs more, else the parts that do
        # confirm what it lets through
        self.rx = self.exact = None
        self.confirm: list[tuple[int, _Part]] = []
        if not self.ngaps:
            self.rx = re.compile("/".join(p.regex for p in items) + r"\Z").match
            self.confirm = [(i, p) for i, p in enumerate(items) if not p.exact]
            self.exact = not self.confirm
        nfa = {id(p): p for p in items if p is not _GAP and p.kind == "nfa"}
        for p in nfa.values():  # the pattern's cache budget, shared out
            p.cap = max(16, _CACHE_MAX // (2 * len(nfa)))

    def match(self, address: str) -> bool:
        """True when the whole address matches (a literal address, no wildcards)."""
        rx = self.rx
        if rx is not None:
            if rx(address) is None:
                return False
            return self.exact or self._confirm(address)
        if not address.startswith(self.prefix) or not address.endswith(self.suffix):
            return False
        parts = address.split("/")
        if self.ngaps == 1:  # head, then any non-empty parts, then tail
            h, t, n = len(self.head), len(self.tail), len(parts)
            if n < h + t or "" in parts[h:n - t]:
                return False
            for p, part in zip(self.head, parts, strict=False):
                if not p(part):
                    return False
            for p, part in zip(self.tail, parts[n - t:], strict=True):
                if not p(part):
                    return False
            return True
        return self._match_gaps(parts)

    __call__ = match

    def part_matchers(self) -> list[_Part] | None:
        """Without `//`: one matcher (part -> bool) per '/'-separated part of the
        pattern. An address matches exactly when it has as many parts and each part
        matches its own matcher, so a caller with many addresses built from few names
        (/node/<n>/<param>) can test each distinct name once. None with `//`."""
        return None if self.ngaps else list(self.items)

    def filter(self, addresses: Iterable[str]) -> list[str]:
        """The addresses that match, in order (the first filter run over all at once)."""
        rx = self.rx
        if rx is None:
            m = self.match
            return [a for a in addresses if m(a)]
        out = [a for a in addresses if rx(a) is not None]
        return out if self.exact else [a for a in out if self._confirm(a)]

    def _confirm(self, address: str) -> bool:
        """The parts the first filter cannot decide (it has passed the address)."""
        parts = address.split("/")
        for i, p in self.confirm:
            if not p(parts[i]):
                return False
        return True

    def _match_gaps(self, parts: list[str]) -> bool:
        """Several gaps: every position of the item sequence at once (O(items x parts))."""
        items = self.items
        n = len(items)
        cur = self._skip({0})
        for part in parts:
            nxt = set()
            for i in cur:
                if i == n:
                    continue
                p = items[i]
                if p is _GAP:
                    if part:
                        nxt.add(i)
                elif p(part):
                    nxt.add(i + 1)
            if not nxt:
                return False
            cur = self._skip(nxt)
        return n in cur

    def _skip(self, positions: set[int]) -> set[int]:
        """Positions reachable by letting gaps eat no parts."""
        items, n = self.items, len(self.items)
        out = set(positions)
        for i in sorted(positions):
            while i < n and items[i] is _GAP:
                i += 1
                out.add(i)
        return out


def check_bounds(pattern: str) -> None:
    """ValueError when a pattern is over the length or wildcard bound."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"address pattern too long ({len(pattern)} characters, "
                         f"at most {MAX_PATTERN_CHARS})")
    n = pattern.count("//") + sum(pattern.count(c) for c in "*?[{")
    if n > MAX_WILDCARDS:
        raise ValueError(f"address pattern has too many wildcards ({n}, "
                         f"at most {MAX_WILDCARDS})")


@lru_cache(maxsize=128)
def compile_pattern(pattern: str) -> Pattern:
    """A compiled OSC address pattern; ValueError if malformed or over the bounds."""
    check_bounds(pattern)
    if not pattern.startswith("/"):
        raise ValueError("an address pattern starts with /")
    return Pattern(pattern)


def match(pattern: str, addresses: Iterable[str]) -> list[str]:
    """The addresses (iterable of literal addresses) the pattern matches, in order."""
    return compile_pattern(pattern).filter(addresses)
