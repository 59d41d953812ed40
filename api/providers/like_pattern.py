"""CQL2 ``LIKE`` patterns as regular expressions that cannot backtrack catastrophically.

CQL2 fixes the pattern characters: ``%`` matches any run of characters, ``_`` exactly one,
and ``\\`` makes the next character literal; a ``.`` is an ordinary character. Both stores
check a pattern here (api.cql2.walk); the embedded store also matches with the regex.

A pattern cut at its ``%`` runs is a list of fixed-length pieces. The naive translation
``piece.*piece.*piece`` lets the regex engine retry every split of the text between the
wildcards, which is exponential in their number (``'%%%%%%%%%%#'`` took minutes). Here each
inner piece sits in an atomic group, ``(?>.*?piece)``: the engine takes the piece's leftmost
occurrence and never revisits it. Taking the leftmost occurrence is always safe, because it
leaves the most text for what follows, so the answers are those of the naive pattern while
the work is at most text length x pattern length per value.
"""
from __future__ import annotations

import re

WILDCARD, SINGLE, ESCAPE = "%", "_", "\\"
MAX_PATTERN_CHARS = 1_000


class LikePatternError(ValueError):
    """A pattern this evaluator refuses (too long, or a dangling escape)."""


def like_regex(pattern: str, nocase: bool) -> re.Pattern[str]:
    """A compiled regex whose ``fullmatch`` is the CQL2 LIKE test of ``pattern``."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise LikePatternError(f"the LIKE pattern has {len(pattern):,} characters; at most "
                               f"{MAX_PATTERN_CHARS:,} are allowed")
    pieces = _pieces(pattern)
    if len(pieces) == 1:  # no '%': one fixed-length piece
        body = pieces[0]
    else:
        inner = "".join(f"(?>.*?{p})" for p in pieces[1:-1] if p)
        body = f"{pieces[0]}{inner}.*{pieces[-1]}"
    return re.compile(body, re.DOTALL | (re.IGNORECASE if nocase else 0))


def _pieces(pattern: str) -> list[str]:
    """The regex of each stretch between ``%`` runs (``_`` as ``.``, the rest literal)."""
    pieces: list[list[str]] = [[]]
    chars = iter(pattern)
    for c in chars:
        if c == ESCAPE:
            literal = next(chars, None)
            if literal is None:
                raise LikePatternError("the LIKE pattern ends with a lone '\\'; write '\\\\' for a backslash")
            pieces[-1].append(re.escape(literal))
        elif c == WILDCARD:
            if pieces[-1] or len(pieces) == 1:
                pieces.append([])  # consecutive '%' are one wildcard
        elif c == SINGLE:
            pieces[-1].append(".")
        else:
            pieces[-1].append(re.escape(c))
    return ["".join(p) for p in pieces]
