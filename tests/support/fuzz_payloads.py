"""Request bodies for the fuzz runs: valid queries built from the public vocabulary, then
mutated — wrong types at any position, deep and wide filter trees, huge arrays, unicode and
control characters, numbers JSON cannot hold, invalid regexes — and raw non-JSON bodies.

Every strategy yields `Body`: the bytes to send and a label for the tally. Bodies are JSON text
built by hand where orjson would refuse to write them (1e400, NaN, 2**70, 5,000 levels deep).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import strategies as st

from schemas.vocabulary import AGGREGATIONS, DIMENSIONS, GRANULARITIES, SEARCH_TYPES, DimensionKind

Json = Any
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Body:
    label: str
    data: bytes
    valid: bool = False  # a query the service must answer (200, or a documented size refusal)


ZONES = (
    "UTC",
    "Europe/Helsinki",
    "America/New_York",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/St_Johns",
    "Pacific/Kiritimati",
)
# Longest interval per granularity that stays under the 10,000-bucket cap.
SPANS = {
    "minute": timedelta(hours=6),
    "fifteen_minute": timedelta(days=3),
    "thirty_minute": timedelta(days=5),
    "hour": timedelta(days=14),
    "day": timedelta(days=60),
    "week": timedelta(days=120),
    "all": timedelta(days=366),
    "month": timedelta(days=366),
    "quarter": timedelta(days=366),
    "year": timedelta(days=366),
}
DATA_START = datetime(2019, 5, 25, tzinfo=ZoneInfo("UTC"))
PORTABLE_REGEXES = ("^https://", r"/(blog|docs)/", r"\d{2,}", "(?i)chrome", r"^[A-Z]{2}$", r"[^/]+$", "a|b|c")
LIKES = ("%", "Hel%", "_%", "%/blog/%", r"100\%", "M_c%", "%é%")
NASTY_TEXT = (
    "",
    " ",
    "\u0000",
    "\u202e\u2066",
    "\ufeff",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "' OR 1=1 --",
    '"; DROP TABLE sessions; --',
    "${jndi:ldap://x/a}",
    "../../etc/passwd",
    "%00",
    "\\",
    "\r\n",
    "a" * 1000,
    "a" * 1001,
    "é" * 600,
    "2019-06-01",
    "2019-06-01T00:00:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999-12:00",
    "2019-13-45T25:61:61Z",
    "2019-06-01T00:00:00+24:00",
    "2019-06-01T00:00:00Z[Europe/Helsinki]",
    "Europe/Helsinki\u0000",
    "posix/Europe/Helsinki",
    "Etc/GMT+14",
    "localtime",
    "Factory",
    "utc",
    "NaN",
    "Infinity",
    "-0",
    "1e400",
    "1_000",
    "١٢٣",
    "0x10",
    "True",
    "null",
)
# JSON text orjson cannot write: numbers out of every range, non-JSON literals, broken escapes.
RAW_TOKENS = (
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    str(2**70),
    str(-(2**64)),
    "1" + "0" * 400,
    "-0",
    "-0.0",
    "1E+2",
    "1e-400",
    "0x1F",
    "01",
    "+1",
    ".5",
    "1.",
    "tru",
    "nul",
    "[1,]",
    "{,}",
    '"\\ud800"',
    '"\\u0000"',
    '"\\x41"',
    "'single'",
    "undefined",
)


def _instant(moment: datetime, zone: str, as_utc: bool) -> str:
    return (
        moment.isoformat().replace("+00:00", "Z") if as_utc else moment.astimezone(ZoneInfo(zone)).isoformat()
    )


@cache
def interval(granularity: str) -> st.SearchStrategy[Json]:
    """An interval in the data's weeks, short enough for the granularity's bucket cap."""
    minutes = int(SPANS[granularity].total_seconds() // 60)

    def build(offset: int, length: int, zone: str, as_utc: bool) -> Json:
        start = DATA_START + timedelta(minutes=offset)
        end = start + timedelta(minutes=length)
        return {"start": _instant(start, zone, as_utc), "end": _instant(end, zone, as_utc), "time_zone": zone}

    return st.builds(
        build, st.integers(0, 40 * 24 * 60), st.integers(1, minutes), st.sampled_from(ZONES), st.booleans()
    )


@cache
def _aggregation(kind: str) -> st.SearchStrategy[Json]:
    allowed = AGGREGATIONS[kind][0]
    if allowed is None:
        return st.just({"type": kind})
    return st.lists(st.sampled_from(allowed), min_size=1, unique=True).map(
        lambda fields: {"type": kind, "fields": fields}
    )


def _leaf(dimension: str, values: Mapping[str, Sequence[Any]]) -> st.SearchStrategy[Json]:
    kind = DIMENSIONS[dimension]
    pool = st.sampled_from(values[dimension]) if values.get(dimension) else st.text(max_size=8)
    pick = st.integers(0, 5_000) if kind is DimensionKind.NUMBER else pool
    common = [
        st.builds(lambda v: {"type": "selector", "dimension": dimension, "value": v}, pick | st.none()),
        st.builds(
            lambda vs: {"type": "in", "dimension": dimension, "values": vs},
            st.lists(pick | st.none(), min_size=1, max_size=5),
        ),
    ]
    if kind is DimensionKind.NUMBER:
        bound = st.builds(
            lambda lo, hi: {
                "type": "bound",
                "dimension": dimension,
                "lower": lo,
                "upper": hi,
                "upperStrict": True,
            },
            st.integers(0, 100),
            st.integers(100, 5_000),
        )
        return st.one_of(*common, bound)
    return st.one_of(
        *common,
        *(
            st.builds(
                lambda lo: {"type": "bound", "dimension": dimension, "lower": lo}, st.sampled_from("AHMZ")
            ),
            st.builds(
                lambda p: {"type": "regex", "dimension": dimension, "pattern": p},
                st.sampled_from(PORTABLE_REGEXES),
            ),
            st.builds(
                lambda p: {"type": "like", "dimension": dimension, "pattern": p}, st.sampled_from(LIKES)
            ),
            st.builds(
                lambda t, v: {"type": "search", "dimension": dimension, "query": {"type": t, "value": v}},
                st.sampled_from(SEARCH_TYPES),
                st.sampled_from(("e", "Hel", "blog", "ZÜR")),
            ),
        ),
    )


def filter_tree(values: Mapping[str, Sequence[Any]]) -> st.SearchStrategy[Json]:
    leaf = st.one_of(*(_leaf(dimension, values) for dimension in sorted(DIMENSIONS)))
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(
                lambda parts: {"type": "and", "fields": parts}, st.lists(inner, min_size=1, max_size=3)
            ),
            st.builds(lambda parts: {"type": "or", "fields": parts}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda part: {"type": "not", "field": part}, inner),
        ),
        max_leaves=4,
    )


# Strategies built once: a strategy made inside a draw is validated again on every draw.
_granularities = st.sampled_from(GRANULARITIES)
_aggregation_kinds = st.lists(st.sampled_from(sorted(AGGREGATIONS)), min_size=1, max_size=3, unique=True)
_group_bys = st.lists(st.sampled_from(sorted(DIMENSIONS)), unique=True, max_size=2)
_directions = st.sampled_from(("asc", "desc"))
_limits = st.none() | st.integers(1, 500)
_index = st.integers(0, 2**16)  # modulo a length known only inside the draw


def _pick(draw: st.DrawFn, items: Sequence[Any]) -> Any:
    return items[draw(_index) % len(items)]


@st.composite
def _valid_query(draw: st.DrawFn, filters: st.SearchStrategy[Json]) -> Json:
    granularity = draw(_granularities)
    query: Json = {
        "interval": draw(interval(granularity)),
        "granularity": granularity,
        "aggregations": [draw(_aggregation(kind)) for kind in draw(_aggregation_kinds)],
    }
    group_by = draw(_group_bys)
    if group_by:
        query["group_by"] = group_by
        columns = [
            *group_by,
            *(
                f"{f}{AGGREGATIONS[a['type']][1]}"
                for a in query["aggregations"]
                for f in a.get("fields", [""])
            ),
        ]
        order = list(dict.fromkeys(_pick(draw, columns) for _ in range(draw(_index) % 3)))
        query["order_by"] = [{"field": name, "direction": draw(_directions)} for name in order]
        query["limit"] = draw(_limits)
    query["filters"] = draw(filters)
    return {key: value for key, value in query.items() if value is not None}


def paths(document: Json, prefix: Path = ()) -> list[Path]:
    """Every position in a JSON document, the root included."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def replace_at(document: Json, path: Path, value: Json) -> Json:
    """A copy of the document with the node at `path` replaced (or deleted when value is _DELETE)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        copy = dict(document)
        if not rest and value is _DELETE:
            del copy[head]
        else:
            copy[head] = replace_at(document[head], rest, value)
        return copy
    items = list(document)
    if not rest and value is _DELETE:
        del items[int(head)]
    else:
        items[int(head)] = replace_at(document[int(head)], rest, value)
    return items


_DELETE = object()
_RAW = "\u0000raw:"  # marks a string holding hex of raw JSON text, spliced in by `encode`

_int64 = st.integers(-(2**63), 2**63 - 1)  # wider ones travel as raw text: orjson cannot write them
weird_value: st.SearchStrategy[Json] = st.one_of(
    st.none(),
    st.booleans(),
    _int64,
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(-0.0),
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=30),
    st.lists(_int64 | st.text(max_size=3) | st.none(), max_size=4),
    st.dictionaries(
        st.sampled_from(("type", "dimension", "value", "fields", "field", "x")),
        _int64 | st.text(max_size=3),
        max_size=3,
    ),
    st.sampled_from(RAW_TOKENS).map(lambda token: _RAW + token.encode().hex()),
    st.integers(1_000, 70_000).map(lambda size: "x" * size),
)


def encode(document: Json) -> bytes:
    """orjson text of the document, with raw-token markers spliced in as bare JSON text."""
    data = orjson.dumps(document)
    marker = orjson.dumps(_RAW)[:-1]  # the opening quote and the escaped marker
    while (start := data.find(marker)) != -1:
        end = data.index(b'"', start + len(marker))
        data = data[:start] + bytes.fromhex(data[start + len(marker) : end].decode()) + data[end + 1 :]
    return data


def valid_query(values: Mapping[str, Sequence[Any]]) -> st.SearchStrategy[Json]:
    """A query the service must answer, its filter values drawn from `values` (built once: slow)."""
    tree = filter_tree(values)
    return _valid_query(st.none() | tree | st.lists(tree, max_size=2))


_mutations = st.sampled_from(("replace", "replace", "delete", "unknown_key"))
_unknown_keys = st.sampled_from(("organization_id", "__time", "x", "", "Type"))


def mutated(draw: st.DrawFn, query: Json) -> Body:
    """The query with one position replaced by a weird value, deleted, or given an unknown key."""
    path = _pick(draw, paths(query))
    how = draw(_mutations)
    if how == "delete" and path:
        return Body("mutated:delete", encode(replace_at(query, path, _DELETE)))
    if how == "unknown_key":
        target = _pick(draw, [p for p in paths(query) if isinstance(_at(query, p), dict)])
        extra = {**_at(query, target), draw(_unknown_keys): draw(weird_value)}
        return Body("mutated:unknown_key", encode(replace_at(query, target, extra)))
    return Body("mutated:replace", encode(replace_at(query, path, draw(weird_value))))


def _at(document: Json, path: Path) -> Json:
    for step in path:
        document = document[step]
    return document


def _leaf_text(dimension: str = "city") -> str:
    return f'{{"type":"selector","dimension":"{dimension}","value":"Helsinki"}}'


def _with_filters(text: str) -> bytes:
    return (
        f'{{"interval":{{"start":"2019-06-01T00:00:00Z","end":"2019-06-02T00:00:00Z"}},'
        f'"granularity":"hour","aggregations":[{{"type":"count"}}],"filters":{text}}}'
    ).encode()


@st.composite
def huge_query(draw: st.DrawFn) -> Body:
    """Deep and wide filter trees, huge arrays, long strings: sizes drawn, contents repeated."""
    size = draw(st.sampled_from((11, 12, 101, 255, 1_001, 1_100, 5_000, 20_000)))
    shape = draw(
        st.sampled_from(
            (
                "deep_not",
                "deep_and",
                "deep_list",
                "wide_in",
                "many_leaves",
                "group_by",
                "aggregations",
                "long_value",
            )
        )
    )
    if shape == "deep_not":
        text = '{"type":"not","field":' * size + _leaf_text() + "}" * size
    elif shape == "deep_and":
        text = '{"type":"and","fields":[' * size + _leaf_text() + "]}" * size
    elif shape == "deep_list":
        text = "[" * size + _leaf_text() + "]" * size
    elif shape == "wide_in":
        text = '{"type":"in","dimension":"city","values":[' + ",".join(['"Helsinki"'] * size) + "]}"
    elif shape == "many_leaves":
        text = '{"type":"or","fields":[' + ",".join([_leaf_text()] * size) + "]}"
    elif shape == "group_by":
        return Body(
            f"huge:{shape}",
            _with_filters("null")[:-1] + b',"group_by":' + orjson.dumps(["city"] * size) + b"}",
        )
    elif shape == "aggregations":
        return Body(
            f"huge:{shape}",
            _with_filters("null")[:-1]
            + b',"aggregations":'
            + orjson.dumps([{"type": "count"}] * size)
            + b"}",
        )
    else:
        text = '{"type":"selector","dimension":"city","value":"' + "é" * size + '"}'
    return Body(f"huge:{shape}", _with_filters(text))


_raw_shapes = st.sampled_from(
    ("binary", "truncated", "scalar", "bom", "utf16", "latin1", "empty", "oversized", "at_limit", "regex")
)


def raw_body(draw: st.DrawFn, query: Json) -> Body:
    """Bodies that are not a JSON object: garbage, truncated, other encodings, scalars, oversize."""
    valid = encode(query)
    shape = draw(_raw_shapes)
    if shape == "binary":
        return Body("raw:binary", draw(st.binary(max_size=200)))
    if shape == "truncated":
        return Body("raw:truncated", valid[: draw(st.integers(0, max(0, len(valid) - 1)))])
    if shape == "scalar":
        return Body(
            "raw:scalar",
            draw(st.sampled_from((b"null", b"[]", b"[{}]", b'"query"', b"0", b"true", b"{}", b" "))),
        )
    if shape == "bom":
        return Body("raw:bom", b"\xef\xbb\xbf" + valid)
    if shape == "utf16":
        return Body("raw:utf16", valid.decode().encode("utf-16"))
    if shape == "latin1":
        return Body("raw:latin1", valid.decode().replace("Helsinki", "Hélsinki").encode("latin-1", "replace"))
    if shape == "empty":
        return Body("raw:empty", b"")
    if shape in ("oversized", "at_limit"):
        size = 64 * 1024 + (draw(st.integers(1, 200_000)) if shape == "oversized" else 0)
        return Body(f"raw:{shape}", valid[:-1] + b" " * max(0, size - len(valid)) + b"}")
    pattern = draw(st.lists(st.sampled_from(REGEX_PIECES), min_size=1, max_size=8).map("".join))
    return Body(
        "raw:regex",
        _with_filters(orjson.dumps({"type": "regex", "dimension": "city", "pattern": pattern}).decode()),
    )


REGEX_PIECES = (
    "a",
    ".",
    "^",
    "$",
    "|",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "*",
    "+",
    "?",
    "\\",
    "\\d",
    "\\Z",
    "\\z",
    "\\u00e9",
    "\\p{L}",
    "\\1",
    "(?P<n>",
    "(?<n>",
    "(?=",
    "(?#",
    "(?i)",
    "(?x)",
    "{1001}",
    "{,3}",
    "{2}+",
    "[[:alpha:]]",
    "[a&&b]",
    "(a{100}){11}",
    ".{1000}",
    "é",
    "\\é",
    "\\x41",
    "\\Q",
    "\\",
    "\\\\",
)


FAMILY_SIZE = 4
_last_kinds = st.sampled_from(("mutated", "mutated", "huge", "raw"))


def body_families(values: Mapping[str, Sequence[Any]]) -> st.SearchStrategy[list[Body]]:
    """`FAMILY_SIZE` bodies from one generated query: the query itself, two mutants of it, and a
    third mutant, a huge or a raw body. Generating a query costs ~30 draws; its mutants ~4 each."""
    queries = valid_query(values)

    @st.composite
    def family(draw: st.DrawFn) -> list[Body]:
        query = draw(queries)
        last = draw(_last_kinds)
        final = (
            draw(huge_query())
            if last == "huge"
            else raw_body(draw, query)
            if last == "raw"
            else mutated(draw, query)
        )
        return [Body("valid", encode(query), valid=True), mutated(draw, query), mutated(draw, query), final]

    return family()
