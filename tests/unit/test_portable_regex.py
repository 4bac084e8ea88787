"""Regex patterns: Python, RE2 and Java read the accepted ones alike and run them cheaply; the
rest are a 400.

Most refused patterns below compile in Python, so they used to reach an engine: RE2 (the
embedded engine) or java.util.regex (Druid) refused them there and the caller got a 502, or ran
them for seconds to minutes (the "cost" rows; docs/api.md has the measurements). The third
column names who refuses, misreads or pays for each one.
"""

from __future__ import annotations

import re
import warnings

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas.filters import RegexSchema
from schemas.portable_regex import RegexNotPortable, check_portable

REFUSED = [
    ("unicode_escape", r"\u00e9", "RE2"),
    ("named_unicode_escape", r"\N{LATIN SMALL LETTER A}", "RE2"),
    ("end_of_text_Z", r"a\Z", "RE2"),
    ("end_of_text_z", r"a\z", "Python"),
    ("escaped_non_ascii_letter", r"\é", "RE2"),
    ("comment_group", "(?#note)a", "RE2"),
    ("conditional_group", "(a)?(?(1)b|c)", "RE2"),
    ("verbose_flag", "(?x) a b", "RE2"),
    ("ascii_flag", r"(?a)\w", "RE2"),
    ("python_named_group", "(?P<n>a)", "Java"),
    ("count_over_1000", "a{1001}", "RE2"),
    ("nested_counts_over_1000", "(a{100}){11}", "RE2"),
    ("program_too_large", ".{1000}" * 60, "RE2"),
    ("open_lower_count", "a{,3}", "Java"),
    ("literal_brace", "a{", "Java"),
    ("backspace_in_class", r"[\b]", "RE2 and Java"),
    ("class_starting_with_bracket", "[]a]", "Java reads it differently"),
    ("class_intersection", "[a-z&&b]", "Java reads it differently"),
    ("possessive_after_count", "a{2}+", "RE2"),
    ("adjacent_wide_counts", ".{0,1000}.{0,1000}.{0,1000}x1", "cost: RE2 and Java"),
    ("adjacent_stars", ".*.*x1", "cost: Java"),
    ("adjacent_optionals", "a?a?a?aaa", "cost: Java"),
    ("adjacent_case_folded", "(?i)a*A*", "cost: Java"),
    ("adjacent_inside_a_group", "(x+x+)+y", "cost: Java"),
    ("star_of_star", "(a*)*", "cost: Java"),
    ("plus_in_repeated_group", r"(?:\w+\.)+fi\b", "cost: Java"),
    ("star_in_counted_group", "(.*a){20}", "cost: Java"),
    ("overlapping_alternation_repeated", "(a|aa)+", "cost: Java"),
    ("alternation_repeated", "(?:en|fi){2,}", "cost: Java"),
    ("optional_group_after_a_star", ".*(ab)*", "cost: Java"),
    ("expanded_over_1000", "(a{10}){100}", "cost: RE2"),
    ("separated_but_large", "[^/]{0,1000}/[^/]{0,1000}x1", "cost: RE2"),
]
ACCEPTED = [
    "/(blog|docs)/",
    r"^https://shop\.example\.com/",
    "(?i)zürich",
    r"\d{4}-\d{2}",
    r"[^/]+$",
    "a{2,5}?b{3,}",
    r"(?:[\w-]+\.)?example\.fi\b",
    r"[\]\-\\]",
    r"\x41\.\{\}",
    "(?s-i:a.b)",
    "(a{10}){50}",
    "(?i)helsinki",
    "/(en|fi)/",
    r"https?://(www\.)?example\.com/",
    r"[^/]*/[^/]*/[^/]*x1",
    r"\d+(\.\d+)?",
    "(ab)+c",
    ".*x1",
    ".{0,990}x1",
]


@pytest.mark.parametrize("pattern", [p for _, p, _ in REFUSED], ids=[name for name, _, _ in REFUSED])
def test_non_portable_pattern_is_a_field_error(pattern: str) -> None:
    with pytest.raises(ValidationError) as raised:
        RegexSchema().load({"type": "regex", "dimension": "city", "pattern": pattern})
    assert "pattern" in raised.value.messages


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_portable_pattern_loads_and_compiles_on_re2(pattern: str) -> None:
    RegexSchema().load({"type": "regex", "dimension": "city", "pattern": pattern})
    assert duckdb.connect().execute("SELECT regexp_matches('x', ?)", [pattern]).fetchone() is not None


# Pieces that are portable, not portable, or only portable in some places.
_PIECES = st.sampled_from(
    [
        "a",
        "é",
        ".",
        "^",
        "$",
        "|",
        "]",
        "}",
        "{",
        "#",
        " ",
        "&&",
        "--",
        r"\d",
        r"\W",
        r"\s",
        r"\b",
        r"\A",
        r"\Z",
        r"\z",
        r"\x41",
        r"\u00e9",
        r"\p{L}",
        r"\.",
        r"\]",
        r"\{",
        r"\é",
        r"\1",
        r"\v",
        "[a-z]",
        "[^/]",
        r"[\d.]",
        "[]a]",
        r"[\b]",
        "[[:alpha:]]",
        "[a&&b]",
        "(",
        ")",
        "(?:",
        "(?i)",
        "(?i:",
        "(?-s:",
        "(?P<n>",
        "(?=",
        "(?#",
        "(?>",
        "(?x)",
        "*",
        "+",
        "?",
        "*?",
        "*+",
        "{3}",
        "{2,}",
        "{0,9}",
        "{,3}",
        "{999}",
        "{1000}",
        "{1001}",
        "{2}+",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=12).map("".join))
def test_every_accepted_pattern_compiles_on_re2(pattern: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "possible nested set": refused below
            re.compile(pattern)
        check_portable(pattern)
    except (re.error, RegexNotPortable):
        return  # refused: a 400
    # Raises duckdb.InvalidInputException if RE2 refuses what the schema accepted.
    duckdb.connect().execute("SELECT regexp_matches('x', ?)", [pattern]).fetchone()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.lists(_PIECES, max_size=20).map("".join))
def test_any_text_is_either_portable_or_refused_with_a_message(pattern: str) -> None:
    try:
        check_portable(pattern)
    except RegexNotPortable as exc:
        assert str(exc)
