"""A short fuzz run through the real embedded service on every `make test`; the long runs (10,000+
requests, and a Druid slice) are in tests/soak/test_fuzz.py."""

from __future__ import annotations

import os

import pytest

from tests.support.contract import serving_problem, worker_pids
from tests.support.fuzz_requests import fuzz
from tests.support.served import Service
from tests.support.tenants import JwtKeys, Tenants, fuzz_target


def test_fuzz_smoke_no_5xx_and_one_error_shape(
    embedded_hardened: Service, tenants: Tenants, jwt_keys: JwtKeys, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = worker_pids(embedded_hardened.pid)
    tally, problems = fuzz(
        fuzz_target(embedded_hardened, tenants, jwt_keys), total=int(os.environ.get("FUZZ_TOTAL", "400"))
    )
    with capsys.disabled():
        print("\n" + tally.summary("smoke (embedded)"))
    assert not problems, "\n".join(problems[:20])
    assert tally.sent >= 400
    assert (
        serving_problem(
            embedded_hardened.base_url,
            embedded_hardened.pid,
            workers,
            embedded_hardened.data_dir / "gunicorn.log",
        )
        is None
    )
