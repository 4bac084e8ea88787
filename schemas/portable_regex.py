"""The regex syntax every engine reads alike: Python's `re` (the oracle), RE2 (DuckDB) and
java.util.regex (Druid), and a cost every engine can afford. A pattern outside it is the
caller's error (400), never an engine failure (502) or a stalled query later.

Allowed: literals, `.`, `^`, `$`, `|`, groups `(...)` and `(?:...)`, inline flags `(?i)`,
`(?ms-i:...)`, classes `[...]` with ranges, quantifiers `* + ? {n} {n,} {n,m}` (lazy, never
possessive), and the escapes in `_ESCAPES`.

Cost, checked before any engine runs the pattern:
- RE2 compiles counted repetitions out, and its time per character grows with the program:
  nested counts multiply to at most `MAX_REPEAT`, and the pattern with every `{n}` written out
  is at most `MAX_EXPANDED` characters.
- Java backtracks, and its regex filter tries every start: a repetition of variable length
  inside a group that repeats (`(a+)+`, `(a|ab)*`) is exponential, two variable repetitions in
  a row that can match the same characters (`.*.*`, `a?a?`) multiply the work by the value's
  length each. So a repeated group holds no variable quantifier and no `|`, and between two
  variable repetitions comes a character that the first cannot match (`[^/]*/[^/]*`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

MAX_REPEAT = 1_000
MAX_EXPANDED = 1_000
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
class _Atom:
    """What a quantifier would repeat: its text, and for a group what it holds."""

    text: str
    piece: _Piece
    group: _Group | None = None


@dataclass
class _Group:
    """One level of nesting: its size, and for the cost rules whether a repetition of
    overlapping characters is still open (the text of its atom; `_WIDE` for any character)."""

    piece: _Piece = field(default_factory=_Piece)
    before: str | None = None  # the repetition open where the group starts
    open: str | None = None
    ends: list[str | None] = field(default_factory=list)  # open at the end of each branch
    variable: bool = False  # holds a quantifier of variable length, at any depth
    alternation: bool = False


_WIDE = "(?s:.)"
_NESTED = (
    "A repeated group may not hold `*`, `+`, `?`, `{n,m}` or `|`, as in `(a+)+` or `(a|ab)*`: "
    "a backtracking engine (Druid's) can take exponential time on them. Repeat a class instead, "
    "such as `[a-z.]+`."
)
_ADJACENT = (
    "Two variable repetitions that can match the same characters must have a character between "
    "them that the first cannot match: `.*.*`, `a?a?` or `.{0,9}\\w+` make a backtracking engine "
    "(Druid's) try every split of the text; `[^/]*/.*` is fine."
)


@dataclass
class _Scanner:
    pattern: str
    position: int = 0
    groups: list[_Group] = field(default_factory=lambda: [_Group()])
    atom: _Atom | None = None  # what a quantifier at `position` would repeat
    ignore_case: bool = False

    def check(self) -> None:
        self.ignore_case = re.search(r"\(\?[ms]*i", self.pattern) is not None
        while self.position < len(self.pattern):
            self._step(self.pattern[self.position])
        self._settle()
        if self.groups[0].piece.length > MAX_EXPANDED:
            raise RegexNotPortable(
                f"With every {{n}} written out the pattern exceeds {MAX_EXPANDED} characters."
            )

    def _step(self, char: str) -> None:
        if char == "{":
            return self._count()
        if char in "*+?" and self.atom is not None:
            return self._quantifier(char)
        self._settle()
        if char == "(":
            return self._open()
        if char == ")":
            return self._close()
        if char == "|":
            return self._branch()
        start = self.position
        if char == "\\":
            self.position += 1 + _escape_length(self.pattern, self.position + 1, in_class=False)
        elif char == "[":
            self.position = _class_end(self.pattern, self.position + 1)
        else:
            self.position += 1
        text = self.pattern[start : self.position]
        self.atom = None if char in "*+?" else _Atom(text, _Piece(1, len(text)))  # bad `*`: re's error
        self.groups[-1].piece.length += len(text)

    def _quantifier(self, char: str) -> None:
        start = self.position
        self.position = _quantifier_end(self.pattern, self.position + 1)
        self.groups[-1].piece.length += self.position - start
        self._repeat(0 if char in "*?" else 1, 1 if char == "?" else None)

    def _settle(self) -> None:
        """The atom before `position` had no quantifier: it matches exactly once."""
        if self.atom is not None:
            self._repeat(1, 1)

    def _repeat(self, least: int, most: int | None) -> None:
        """Apply the cost rules to the atom repeated `least` to `most` (None: no bound) times."""
        atom, group, self.atom = self.atom, self.groups[-1], None
        assert atom is not None
        variable = most is None or most > least
        if atom.group is not None:
            return self._repeat_group(atom.group, least, most)
        if least:
            self._separate(group, atom.text)
        if variable:
            if group.open is not None:
                raise RegexNotPortable(_ADJACENT)
            group.open, group.variable = atom.text, True

    def _repeat_group(self, inner: _Group, least: int, most: int | None) -> None:
        group = self.groups[-1]
        if (most is None or most > 1) and (inner.variable or inner.alternation):
            raise RegexNotPortable(_NESTED)
        opened = [end for end in inner.ends if end is not None]
        if most is None or most > max(least, 1):  # repeated a variable number of times
            if inner.before is not None:
                raise RegexNotPortable(_ADJACENT)
            opened.append(_WIDE)
        elif not least:  # an optional group: what was open before may still be
            opened += [inner.before] if inner.before is not None else []
        group.open = opened[0] if len(set(opened)) == 1 else (_WIDE if opened else None)
        group.variable = group.variable or inner.variable or most != least

    def _separate(self, group: _Group, text: str) -> None:
        """A character that must match here closes the open repetition if that cannot match it."""
        literal = _literal(text)
        if group.open is not None and literal is not None and not self._can_match(group.open, literal):
            group.open = None

    def _can_match(self, atom: str, char: str) -> bool:
        flags = re.IGNORECASE if self.ignore_case else 0
        return re.fullmatch(atom, char, flags) is not None

    def _branch(self) -> None:
        self.position += 1
        group = self.groups[-1]
        group.ends.append(group.open)
        group.open, group.alternation = group.before, True
        group.piece.length += 1

    def _open(self) -> None:
        start = self.position
        if self.pattern.startswith("(?", start) and not self.pattern.startswith("(?:", start):
            flags = _FLAGS.match(self.pattern, start)
            if flags is None:
                raise RegexNotPortable(
                    "Of the (?...) groups only (?:...) and the flags i, m, s are supported."
                )
            self.position = flags.end()
            if flags.group().endswith(")"):  # a flag switch, not a group
                self.groups[-1].piece.length += self.position - start
                return
        else:
            self.position += 3 if self.pattern.startswith("(?:", start) else 1
        outer = self.groups[-1].open
        self.groups.append(_Group(_Piece(1, self.position - start), before=outer, open=outer))

    def _close(self) -> None:
        self.position += 1
        if len(self.groups) == 1:
            return  # unbalanced: re.compile reports it
        inner = self.groups.pop()
        inner.ends.append(inner.open)
        inner.piece.length += 1
        outer = self.groups[-1]
        outer.piece.repeat = max(outer.piece.repeat, inner.piece.repeat)
        outer.piece.length += inner.piece.length
        self.atom = _Atom("", inner.piece, inner)

    def _count(self) -> None:
        count = _COUNT.match(self.pattern, self.position)
        if count is None:
            raise RegexNotPortable("A literal `{` must be escaped as `\\{`.")
        self.position = _quantifier_end(self.pattern, count.end())
        least = int(count.group(1))
        most = least if count.group(2) is None else (int(count.group(2)) if count.group(2) else None)
        times = most if most is not None else least
        if times > MAX_REPEAT:
            raise RegexNotPortable(f"Repetition counts are at most {MAX_REPEAT}.")
        piece = self.atom.piece if self.atom is not None else _Piece()
        if times * piece.repeat > MAX_REPEAT:
            raise RegexNotPortable(f"Nested repetition counts multiply to more than {MAX_REPEAT}.")
        group = self.groups[-1].piece
        group.repeat = max(group.repeat, times * piece.repeat)
        group.length += (times - 1) * piece.length + len(count.group())
        if self.atom is not None:
            self._repeat(least, most)


def _literal(text: str) -> str | None:
    """The one character an atom's text stands for, if it is a plain or escaped literal."""
    if len(text) == 1 and text not in ".^$":
        return text
    if len(text) == 2 and text[0] == "\\" and text[1] in string.punctuation:
        return text[1]
    return None


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
