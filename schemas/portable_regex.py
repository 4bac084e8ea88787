"""The regex syntax every engine reads alike: Python's `re` (the oracle), RE2 (DuckDB) and
java.util.regex (Druid). A pattern outside it is the caller's error (400), never an engine
failure (502) later.

Allowed: literals, `.`, `^`, `$`, `|`, groups `(...)` and `(?:...)`, inline flags `(?i)`,
`(?ms-i:...)`, classes `[...]` with ranges, quantifiers `* + ? {n} {n,} {n,m}` (lazy, never
possessive), and the escapes in `_ESCAPES`. RE2 compiles counted repetitions out and refuses big
programs, so nested counts multiply to at most `MAX_REPEAT` and the pattern, with every `{n}`
written out, is at most `MAX_EXPANDED` characters.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

MAX_REPEAT = 1_000
MAX_EXPANDED = 10_000
# Escapes the three engines read alike; `\b`, `\B` and `\A` are anchors, not class members.
_ESCAPES = frozenset("dDwWsSntrf") | frozenset(string.punctuation)
_ANCHOR_ESCAPES = frozenset("bBA")
_HEX = re.compile(r"x[0-9A-Fa-f]{2}")
_FLAGS = re.compile(r"\(\?[ims]*(?:-[ims]+)?[:)]")
_COUNT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
# Java reads these as class operators (nested class, intersection); Python warns they will be.
_CLASS_OPERATORS = ("[", "&&", "--", "||", "~~")


class RegexNotPortable(ValueError):
    """The pattern uses syntax at least one engine reads differently or refuses."""


@dataclass
class _Piece:
    """A group (or an atom): its largest nested repetition product, its length written out."""

    repeat: int = 1
    length: int = 0


@dataclass
class _Scanner:
    pattern: str
    position: int = 0
    groups: list[_Piece] = field(default_factory=lambda: [_Piece()])
    atom: _Piece | None = None  # what a quantifier at `position` would repeat

    def check(self) -> None:
        while self.position < len(self.pattern):
            self._step(self.pattern[self.position])
        if self.groups[0].length > MAX_EXPANDED:
            raise RegexNotPortable(
                f"With every {{n}} written out the pattern exceeds {MAX_EXPANDED} characters."
            )

    def _step(self, char: str) -> None:
        start = self.position
        if char == "(":
            return self._open()
        if char == ")":
            return self._close()
        if char == "{":
            return self._count()
        if char in "*+?" and self.atom is not None:
            self.position = _quantifier_end(self.pattern, self.position + 1)
            self.atom = None
            self.groups[-1].length += self.position - start
            return None
        if char == "\\":
            self.position += 1 + _escape_length(self.pattern, self.position + 1, in_class=False)
        elif char == "[":
            self.position = _class_end(self.pattern, self.position + 1)
        else:
            self.position += 1
        self.atom = None if char in "*+?|" else _Piece(1, self.position - start)  # bad `*`: re's error
        self.groups[-1].length += self.position - start

    def _open(self) -> None:
        start, self.atom = self.position, None
        if self.pattern.startswith("(?", start) and not self.pattern.startswith("(?:", start):
            flags = _FLAGS.match(self.pattern, start)
            if flags is None:
                raise RegexNotPortable(
                    "Of the (?...) groups only (?:...) and the flags i, m, s are supported."
                )
            self.position = flags.end()
            if flags.group().endswith(")"):  # a flag switch, not a group
                self.groups[-1].length += self.position - start
                return
        else:
            self.position += 3 if self.pattern.startswith("(?:", start) else 1
        self.groups.append(_Piece(1, self.position - start))

    def _close(self) -> None:
        self.position += 1
        if len(self.groups) == 1:
            self.atom = None  # unbalanced: re.compile reports it
            return
        inner = self.groups.pop()
        inner.length += 1
        outer = self.groups[-1]
        outer.repeat = max(outer.repeat, inner.repeat)
        outer.length += inner.length
        self.atom = inner

    def _count(self) -> None:
        count = _COUNT.match(self.pattern, self.position)
        if count is None:
            raise RegexNotPortable("A literal `{` must be escaped as `\\{`.")
        self.position = _quantifier_end(self.pattern, count.end())
        times = int(count.group(2) or count.group(1))
        if times > MAX_REPEAT:
            raise RegexNotPortable(f"Repetition counts are at most {MAX_REPEAT}.")
        atom, self.atom = self.atom or _Piece(), None
        if times * atom.repeat > MAX_REPEAT:
            raise RegexNotPortable(f"Nested repetition counts multiply to more than {MAX_REPEAT}.")
        group = self.groups[-1]
        group.repeat = max(group.repeat, times * atom.repeat)
        group.length += (times - 1) * atom.length + len(count.group())


def _quantifier_end(pattern: str, at: int) -> int:
    """Position past a quantifier's lazy `?`; a possessive `+` is RE2's error."""
    if pattern.startswith("+", at):
        raise RegexNotPortable("Possessive quantifiers (`*+`, `++`, `?+`, `}+`) are not supported.")
    return at + pattern.startswith("?", at)


def _escape_length(pattern: str, at: int, in_class: bool) -> int:
    """Length of the escape whose letter is at `at`; raises for one not every engine reads."""
    letter = pattern[at : at + 1]
    if _HEX.match(pattern, at):
        return 3
    if letter in _ESCAPES or (letter in _ANCHOR_ESCAPES and not in_class):
        return 1
    shown = f"\\{letter}" if letter else "a trailing \\"
    raise RegexNotPortable(
        f"Unsupported escape {shown}: use \\d \\w \\s (and capitals), \\n \\t \\r \\f, \\xHH, "
        "\\b \\B \\A, or a backslash before punctuation."
    )


def _class_end(pattern: str, at: int) -> int:
    """Position just past the class that opened before `at`; raises on non-portable members."""
    at += pattern.startswith("^", at)
    if pattern.startswith("]", at):
        raise RegexNotPortable("Escape a `]` that starts a class as `\\]`.")
    while at < len(pattern) and pattern[at] != "]":
        if pattern[at] == "\\":
            at += 1 + _escape_length(pattern, at + 1, in_class=True)
        elif pattern.startswith(_CLASS_OPERATORS, at):
            raise RegexNotPortable("Inside a class escape `[`, and write `&&` `--` `||` `~~` apart.")
        else:
            at += 1
    return at + 1


def check_portable(pattern: str) -> None:
    """Raise RegexNotPortable unless every engine reads `pattern` alike; run re.compile first."""
    _Scanner(pattern).check()
