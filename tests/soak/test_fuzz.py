"""The long hardening runs (`make soak`): 11,500 generated and mutated requests — 10,000 through the
real embedded service and a 1,500 Druid-backed slice — and more tenant-isolation cases on both
engines.

Every answer: no 5xx, and every non-200 is `{"detail", "code", "errors"?}` with X-Request-Id.
After each run the service still answers its health check with the same workers, and its log
holds no unhandled error. The counts and status distribution are printed.
"""

from __future__ import annotations

import time

import pytest

from tests.support.contract import serving_problem, worker_pids
from tests.support.fuzz_requests import Target, fuzz
from tests.support.isolation import run_isolation
from tests.support.served import Service
from tests.support.tenants import ENGINES, JwtKeys, Tenants, fuzz_target

pytestmark = pytest.mark.soak


def _fuzz_and_check(service: Service, target: Target, total: int, capsys: pytest.CaptureFixture[str]) -> None:
    workers = worker_pids(service.pid)
    started = time.monotonic()
    tally, problems = fuzz(target, total)
    with capsys.disabled():
        print(f"\n{tally.summary(service.backend)} in {time.monotonic() - started:.0f} s")
    assert not problems, f"{len(problems)} answers break the contract:\n" + "\n".join(problems[:20])
    assert tally.sent >= total
    assert serving_problem(service.base_url, service.pid, workers, service.data_dir / "gunicorn.log") is None


def test_fuzz_embedded(
    embedded_hardened: Service, tenants: Tenants, jwt_keys: JwtKeys, capsys: pytest.CaptureFixture[str]
) -> None:
    _fuzz_and_check(embedded_hardened, fuzz_target(embedded_hardened, tenants, jwt_keys), 10_000, capsys)


@pytest.mark.integration
def test_fuzz_druid(druid_hardened: Service, tenants: Tenants, capsys: pytest.CaptureFixture[str]) -> None:
    _fuzz_and_check(druid_hardened, fuzz_target(druid_hardened, tenants), 1_500, capsys)


@pytest.mark.parametrize("engine", ENGINES)
def test_isolation_long(
    engine: str, tenants: Tenants, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    service: Service = request.getfixturevalue(engine)
    checked = run_isolation(service, tenants, examples=150)
    with capsys.disabled():
        print(
            f"\nisolation (long) on {service.backend}: {checked} answers equal the caller's oracle, no foreign value"
        )
    assert checked >= 90
