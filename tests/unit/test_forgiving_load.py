"""`load --max-bad-rows N`: bad rows split off into a rejects file, the good ones loaded when there
are at most N, nothing loaded past N; the default stays as strict as before."""

from __future__ import annotations

import os
import stat
import tracemalloc
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from click.testing import CliRunner, Result

from druid_specs import load_spec
from proxy.backends.embedded.storage import TABLE, Generations
from proxy.settings import Settings
from proxyctl.ingest.commands import load
from proxyctl.ingest.ndjson import InvalidLine, validate_file
from proxyctl.ingest.rejects import RejectsClash, Screened, TooManyBadRows, screen
from tests.support.session_lines import BAD_LINES, line

GOOD_A, GOOD_B, GOOD_C = (line(session_id=name) for name in ("a", "b", "c"))
BAD_JSON, BAD_COUNT, BAD_TIME = (
    dict((c[0], c[1]) for c in BAD_LINES)[k] for k in ("not_json", "negative", "bad_day")
)


def _write(path: Path, *lines: bytes, last_newline: bool = True) -> Path:
    path.write_bytes(b"\n".join(lines) + (b"\n" if last_newline else b""))
    return path


def _entries(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines()]


def _screen(tmp_path: Path, *sources: Path, limit: int, rejects: Path | None = None) -> list[Screened]:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return screen(sources, limit, rejects, workdir)


def _strict_reason(path: Path) -> str:
    with pytest.raises(InvalidLine) as caught:
        validate_file(path)
    return caught.value.reason


@pytest.mark.parametrize(("bad", "reason"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_a_bad_row_of_each_kind_is_rejected_with_the_strict_reason(
    tmp_path: Path, bad: bytes, reason: str
) -> None:
    source = _write(tmp_path / "s.ndjson", GOOD_A, bad, GOOD_B)
    (screened,) = _screen(tmp_path, source, limit=1)
    assert _entries(tmp_path / "s.ndjson.rejects.ndjson") == [
        {
            "file": str(source),
            "line": 2,
            "reason": _strict_reason(source),
            "raw": bad.decode("utf-8", "replace"),
        }
    ]
    assert _strict_reason(source).startswith(reason)
    assert (screened.rejected, screened.summary and screened.summary.rows) == (1, 2)
    assert screened.load_path.read_bytes() == GOOD_A + b"\n" + GOOD_B + b"\n"


def test_the_clean_copy_holds_every_good_line_once_in_order(tmp_path: Path) -> None:
    # Bad first (nothing before it to copy), bad in a run, a good last line without its newline.
    source = _write(
        tmp_path / "s.ndjson", BAD_JSON, GOOD_A, GOOD_B, BAD_COUNT, BAD_TIME, GOOD_C, last_newline=False
    )
    (screened,) = _screen(tmp_path, source, limit=3)
    assert [(e["line"], e["reason"][:20]) for e in _entries(tmp_path / "s.ndjson.rejects.ndjson")] == [
        (1, "not valid JSON (unex"),
        (4, "session_duration_sec"),
        (5, "timestamp '2019-02-3"),
    ]
    assert screened.load_path.read_bytes() == b"".join(good + b"\n" for good in (GOOD_A, GOOD_B, GOOD_C))
    assert screened.load_path.parent == tmp_path / "work"
    assert (screened.rejected, screened.summary and screened.summary.rows) == (3, 3)


def test_a_file_without_bad_rows_loads_as_it_is_and_empties_an_old_rejects_file(tmp_path: Path) -> None:
    source = _write(tmp_path / "s.ndjson", GOOD_A, GOOD_B)
    stale = _write(tmp_path / "s.ndjson.rejects.ndjson", b'{"line": 9}')
    (screened,) = _screen(tmp_path, source, limit=5)
    assert (screened.load_path, screened.rejected, screened.rejects) == (source, 0, stale)
    assert stale.read_bytes() == b""
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.parametrize(("limit", "loads"), [(3, True), (2, False), (0, False)])
def test_at_most_n_bad_rows_load_and_one_more_does_not(tmp_path: Path, limit: int, loads: bool) -> None:
    source = _write(tmp_path / "s.ndjson", GOOD_A, BAD_JSON, BAD_COUNT, GOOD_B, BAD_TIME)
    if loads:
        assert [item.rejected for item in _screen(tmp_path, source, limit=limit)] == [3]
    else:
        with pytest.raises(TooManyBadRows, match=rf"^3 bad rows, more than --max-bad-rows {limit} allows"):
            _screen(tmp_path, source, limit=limit)
    # Either way every bad row is listed, so the operator sees why.
    assert [e["line"] for e in _entries(tmp_path / "s.ndjson.rejects.ndjson")] == [2, 3, 5]


@pytest.mark.parametrize(("limit", "loads"), [(4, True), (3, False)])
def test_the_limit_counts_the_bad_rows_of_every_input(tmp_path: Path, limit: int, loads: bool) -> None:
    first = _write(tmp_path / "a.ndjson", BAD_JSON, GOOD_A, BAD_COUNT)
    second = _write(tmp_path / "b.ndjson", GOOD_B, BAD_TIME, BAD_JSON)
    shared = tmp_path / "all.rejects.ndjson"
    if loads:
        assert [s.rejected for s in _screen(tmp_path, first, second, limit=limit, rejects=shared)] == [2, 2]
    else:
        with pytest.raises(TooManyBadRows, match=f"each is in {shared}$"):
            _screen(tmp_path, first, second, limit=limit, rejects=shared)
    assert [(Path(e["file"]).name, e["line"]) for e in _entries(shared)] == [
        ("a.ndjson", 1),
        ("a.ndjson", 3),
        ("b.ndjson", 2),
        ("b.ndjson", 3),
    ]


def test_each_input_gets_its_own_rejects_file_by_default(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.ndjson", BAD_JSON, GOOD_A)
    second = _write(tmp_path / "b.ndjson", GOOD_B)
    assert [s.rejects.name for s in _screen(tmp_path, first, second, limit=1)] == [
        "a.ndjson.rejects.ndjson",
        "b.ndjson.rejects.ndjson",
    ]


def test_a_file_of_bad_rows_only_has_no_summary(tmp_path: Path) -> None:
    source = _write(tmp_path / "s.ndjson", BAD_JSON, BAD_TIME)
    assert [(s.rejected, s.summary) for s in _screen(tmp_path, source, limit=2)] == [(2, None)]


def test_an_empty_file_has_no_sessions_as_in_a_strict_load(tmp_path: Path) -> None:
    source = tmp_path / "s.ndjson"
    source.write_bytes(b"")
    with pytest.raises(InvalidLine, match=r"s\.ndjson:1: no sessions"):
        _screen(tmp_path, source, limit=1)


@pytest.mark.parametrize("rejects", ["s.ndjson", None])
def test_a_rejects_file_may_not_be_an_input(tmp_path: Path, rejects: str | None) -> None:
    source = _write(tmp_path / "s.ndjson", GOOD_A, BAD_JSON)
    # With the default, the second input is where the first one's rejects would go.
    other = _write(tmp_path / "s.ndjson.rejects.ndjson", GOOD_B)
    with pytest.raises(RejectsClash, match="is one of the input files"):
        _screen(tmp_path, source, other, limit=1, rejects=tmp_path / rejects if rejects else None)
    assert (source.read_bytes(), other.read_bytes()) == (GOOD_A + b"\n" + BAD_JSON + b"\n", GOOD_B + b"\n")


def test_rejects_and_clean_copies_are_private(tmp_path: Path) -> None:
    source = _write(tmp_path / "s.ndjson", GOOD_A, BAD_JSON, GOOD_B)
    (screened,) = _screen(tmp_path, source, limit=1)
    modes = [stat.S_IMODE(os.stat(path).st_mode) for path in (screened.rejects, screened.load_path)]
    assert modes == [0o600, 0o600]


def test_rejects_stream_to_disk_and_are_not_held(tmp_path: Path) -> None:
    bad = line(session_duration_secs=-1, city="x" * 2000)
    source = _write(tmp_path / "s.ndjson", GOOD_A, *[bad] * 5000)
    tracemalloc.start()
    try:
        (screened,) = _screen(tmp_path, source, limit=5000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert screened.rejects.stat().st_size > 10_000_000
    assert peak < 1_000_000


def test_druid_itself_never_drops_a_row() -> None:
    assert load_spec()["spec"]["tuningConfig"]["maxParseExceptions"] == 0


# The command itself, loading the embedded engine (real DuckDB).


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    for name in [name for name in os.environ if name.startswith("PROXY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PROXY_BACKEND", "embedded")
    monkeypatch.setenv("PROXY_DATA_DIR", str(tmp_path / "data"))
    return CliRunner().invoke(load, list(args))


def _stored(tmp_path: Path) -> tuple[str | None, list[str]]:
    """The current generation and the session ids it holds."""
    generations = Generations(Settings(backend="embedded", data_dir=tmp_path / "data").embedded_dir)
    current = generations.current()
    if current is None:
        return None, []
    with duckdb.connect(str(generations.path(current)), read_only=True) as connection:
        ids = connection.execute(f"SELECT session_id FROM {TABLE} ORDER BY session_id").fetchall()
    return current, [row[0] for row in ids]


def test_by_default_the_first_bad_row_stops_the_load_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _write(tmp_path / "s.ndjson", GOOD_A, BAD_COUNT, BAD_JSON)
    result = _run(tmp_path, monkeypatch, str(source))
    assert result.exit_code == 1
    assert result.output.endswith(f"Error: {source}:2: {_strict_reason(source)}; nothing was loaded\n")
    assert not (tmp_path / "s.ndjson.rejects.ndjson").exists()
    assert _stored(tmp_path) == (None, [])


@pytest.mark.parametrize(("limit", "exit_code"), [("2", 0), ("1", 1)])
def test_the_command_loads_the_good_rows_only_up_to_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, exit_code: int
) -> None:
    before = _write(tmp_path / "before.ndjson", line(session_id="old"))
    assert _run(tmp_path, monkeypatch, str(before)).exit_code == 0
    source = _write(tmp_path / "s.ndjson", GOOD_A, BAD_COUNT, GOOD_B, BAD_JSON, GOOD_C)
    result = _run(tmp_path, monkeypatch, str(source), "--max-bad-rows", limit)
    rejects = tmp_path / "s.ndjson.rejects.ndjson"
    expected = {
        0: (f"3 rows ingested, 2 rejected (rejects in {rejects})", ("sessions-2.duckdb", ["a", "b", "c"])),
        1: (f"2 bad rows, more than --max-bad-rows 1 allows; each is in {rejects}; nothing was loaded", None),
    }[exit_code]
    assert (result.exit_code, expected[0] in result.output) == (exit_code, True), result.output
    assert _stored(tmp_path) == (expected[1] or ("sessions-1.duckdb", ["old"]))
    assert [e["line"] for e in _entries(rejects)] == [2, 4]


def test_rejects_asked_with_no_bad_rows_allowed_lists_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _write(tmp_path / "s.ndjson", BAD_JSON, GOOD_A, BAD_TIME)
    listed = tmp_path / "listed.ndjson"
    result = _run(tmp_path, monkeypatch, str(source), "--rejects", str(listed))
    assert (result.exit_code, "2 bad rows, more than --max-bad-rows 0 allows" in result.output) == (1, True)
    assert [e["line"] for e in _entries(listed)] == [1, 3]
    assert _stored(tmp_path) == (None, [])


def test_every_row_rejected_loads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _write(tmp_path / "s.ndjson", BAD_JSON, BAD_TIME)
    result = _run(tmp_path, monkeypatch, str(source), "--max-bad-rows", "5")
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        1,
        "Error: every row was rejected; nothing was loaded",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "-1 is not in the range x>=0"),
        ("many", "'many' is not a valid integer"),
        ("1.5", "'1.5' is not"),
    ],
)
def test_a_bad_limit_is_a_usage_error_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    source = _write(tmp_path / "s.ndjson", GOOD_A)
    result = _run(tmp_path, monkeypatch, str(source), "--max-bad-rows", value)
    assert (result.exit_code, f"Invalid value for '--max-bad-rows': {message}" in result.output) == (2, True)


def test_a_day_whose_only_rows_were_rejected_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept_day = line(session_id="old", timestamp="2019-01-05T12:00:00Z")
    assert _run(tmp_path, monkeypatch, str(_write(tmp_path / "before.ndjson", kept_day))).exit_code == 0
    bad_on_that_day = line(session_id="bad", timestamp="2019-01-05T13:00:00Z", session_duration_secs=-1)
    source = _write(
        tmp_path / "s.ndjson", line(session_id="new", timestamp="2019-01-01T12:00:00Z"), bad_on_that_day
    )
    assert _run(tmp_path, monkeypatch, str(source), "--max-bad-rows", "1").exit_code == 0
    assert _stored(tmp_path) == ("sessions-2.duckdb", ["new", "old"])
