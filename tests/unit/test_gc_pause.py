"""The collector pauses for large results only, and comes back on whatever happens inside."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from proxy.runtime.gc_pause import LARGE_RESULT_ROWS, gc_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


@pytest.mark.parametrize(
    ("rows", "paused"), [(0, False), (LARGE_RESULT_ROWS - 1, False), (LARGE_RESULT_ROWS, True)]
)
def test_paused_only_for_large_results(rows: int, paused: bool) -> None:
    with gc_paused(rows):
        assert gc.isenabled() is not paused
    assert gc.isenabled()


def test_back_on_after_an_error() -> None:
    with pytest.raises(ValueError), gc_paused(LARGE_RESULT_ROWS):
        raise ValueError("remap failed")
    assert gc.isenabled()


def test_a_nested_pause_leaves_the_switch_to_the_outer_one() -> None:
    with gc_paused(LARGE_RESULT_ROWS):
        with gc_paused(LARGE_RESULT_ROWS):
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
