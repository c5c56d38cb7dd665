"""Tag patterns: whether two fnmatch-style globs can match one tag.

Keyless Forward sources claim traffic by their tag patterns alone, so no tag may be claimed by
two users' keyless sources (``Registry`` refuses the second). The check is exact for ``*``,
``?``, ``[...]`` and ``[!...]``: it walks both patterns at once, as a product of two automata,
and answers whether some tag reaches the end of both.
"""

from __future__ import annotations

from typing import Any


def overlap(p: str, q: str) -> bool:
    """Whether some tag matches both glob patterns (``*``, ``?``, ``[...]``, ``[!...]``)."""
    a, b = _glob_tokens(p), _glob_tokens(q)
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:  # the pairs of positions a common tag can reach in both patterns
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        ta = a[i] if i < len(a) else None
        tb = b[j] if j < len(b) else None
        if ta == "*":
            todo.append((i + 1, j))
        if tb == "*":
            todo.append((i, j + 1))
        if ta is None or tb is None:
            continue
        ca = (True, frozenset()) if ta == "*" else ta
        cb = (True, frozenset()) if tb == "*" else tb
        if _meet(ca, cb):  # both take one more common character
            todo.append((i if ta == "*" else i + 1, j if tb == "*" else j + 1))
    return False


def _glob_tokens(p: str) -> list[Any]:
    """``*``, or a character class ``(negated, chars)``; ``?`` is the negated empty class."""
    out: list[Any] = []
    i = 0
    while i < len(p):
        ch = p[i]
        if ch == "*":
            if not out or out[-1] != "*":
                out.append("*")
        elif ch == "?":
            out.append((True, frozenset()))
        elif ch == "[" and "]" in p[i + 2 :]:
            end = p.index("]", i + 2)
            body = p[i + 1 : end]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            chars = set()
            k = 0
            while k < len(body):  # ranges a-z
                if k + 2 < len(body) and body[k + 1] == "-":
                    chars |= {chr(c) for c in range(ord(body[k]), ord(body[k + 2]) + 1)}
                    k += 3
                else:
                    chars.add(body[k])
                    k += 1
            out.append((neg, frozenset(chars)))
            i = end
        else:
            out.append((False, frozenset(ch)))
        i += 1
    return out


def _meet(a: tuple[bool, frozenset[str]], b: tuple[bool, frozenset[str]]) -> bool:
    (na, sa), (nb, sb) = a, b
    if na and nb:
        return True  # both exclude finitely many characters
    if na:
        return bool(sb - sa)
    if nb:
        return bool(sa - sb)
    return bool(sa & sb)
