"""The service while its PostgreSQL access store is down: API-key callers get a 503 JSON error,
bearer-token callers are served, `/readyz` says so, and it recovers by itself once the database is
back. Through the Flask test client, on a PostgreSQL of the test's own that it stops and starts."""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client import REGISTRY
from werkzeug.test import TestResponse

from proxy.access.store import AccessStore, open_access_store
from proxy.errors import AccessStoreUnavailable
from proxy.runtime.postgres_pool import PAUSE_AFTER_FAILURE_SECS
from proxy.settings import Settings
from proxy.web.app import create_app
from proxyctl.postgres import cluster
from tests.support.ids import ORG, OTHER_ORG
from tests.unit.web import QUERY, StubBackend, Web, make_web, settings_for, url

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/reporting"
DOWN = {
    "detail": "The access store cannot be reached; try again shortly.",
    "code": "access_store_unavailable",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[cluster.Layout]:
    """A PostgreSQL of this module's own, made with the local tooling, so that it may be stopped."""
    state_dir = cluster.default_state_dir().parent / f"test-{uuid.uuid4().hex[:12]}"
    layout = cluster.Layout(state_dir, _free_port())
    cluster.initdb(layout)
    yield layout
    cluster.stop(layout)
    shutil.rmtree(state_dir)


@pytest.fixture
def own_postgres(own_cluster: cluster.Layout) -> cluster.Layout:
    """That PostgreSQL running, with an empty database."""
    if cluster.running(own_cluster) is None:
        _start(own_cluster)
    with psycopg.connect(own_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS reporting WITH (FORCE)")
    cluster.ensure_database(own_cluster)
    return own_cluster


def _start(layout: cluster.Layout) -> None:
    cluster.start(layout)
    assert _eventually(lambda: cluster.answers(layout))


def _eventually(condition: Callable[[], bool], secs: float = 30) -> bool:
    deadline = time.monotonic() + secs
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _errors(operation: str) -> float:
    labels = {"store": "postgres", "operation": operation}
    return REGISTRY.get_sample_value("reporting_proxy_access_store_errors_total", labels) or 0.0


def _post(web: Web, who: str, org: str = ORG) -> TestResponse:
    return web.client.post(url(org), json=QUERY, headers=web.auth(who))


def _status(web: Web, who: str, org: str = ORG) -> int:
    return _post(web, who, org).status_code


def test_an_unreachable_store_is_a_503_for_keys_and_nothing_for_bearer_tokens(tmp_path: Path) -> None:
    keys = make_web(tmp_path).keys  # made in a store of their own: the lookup never gets there
    app = create_app(settings_for(tmp_path / "down", access_database_url=UNREACHABLE), StubBackend())
    web = Web(app.test_client(), app.extensions["reporting"], keys)
    errors_before = _errors("principal_for_key")
    refused = _post(web, "a")
    assert (refused.status_code, refused.json, refused.headers["Retry-After"]) == (503, DOWN, "2")
    assert _errors("principal_for_key") == errors_before + 1
    assert (_status(web, "jwt"), _status(web, "jwt_other")) == (200, 403)
    assert web.client.get(url(suffix="/meta"), headers=web.auth("a")).status_code == 503
    ready = web.client.get("/readyz")
    assert (ready.status_code, ready.json["access"]) == (200, "unavailable")


def test_the_service_follows_the_store_down_and_back_up(tmp_path: Path, own_postgres: cluster.Layout) -> None:
    web = make_web(tmp_path, access_database_url=own_postgres.url(), access_store_timeout_secs=0.5)
    assert (_status(web, "a"), web.client.get("/readyz").json["access"]) == (200, "ok")
    cluster.stop(own_postgres)
    assert [_status(web, who) for who in ("a", "both", "jwt")] == [503, 503, 200]
    assert web.client.get("/readyz").json["access"] == "unavailable"
    _start(own_postgres)
    assert _eventually(lambda: _status(web, "a") == 200)
    assert (_status(web, "other", OTHER_ORG), web.client.get("/readyz").json["access"]) == (200, "ok")


def _store(layout: cluster.Layout, timeout_secs: float = 0.5) -> AccessStore:
    settings = settings_for(Path("/nonexistent"), access_database_url=layout.url())
    return open_access_store(Settings(**{**settings.__dict__, "access_store_timeout_secs": timeout_secs}))


def test_after_a_failure_calls_fail_at_once_for_the_pause_then_ask_again(
    own_postgres: cluster.Layout,
) -> None:
    store = _store(own_postgres)
    store.add_organization(ORG, "Demo")
    cluster.stop(own_postgres)
    with pytest.raises(AccessStoreUnavailable):
        store.organization_exists(ORG)
    started = time.monotonic()
    with pytest.raises(AccessStoreUnavailable) as paused:
        store.organization_exists(ORG)
    assert (time.monotonic() - started < 0.1, type(paused.value.__cause__).__name__) == (True, "StoreDown")
    _start(own_postgres)
    time.sleep(PAUSE_AFTER_FAILURE_SECS)
    assert _eventually(lambda: store.readiness() == "ok")
    assert store.organization_exists(ORG)
    store.close()


def test_a_statement_past_the_timeout_is_cut_and_mapped(own_postgres: cluster.Layout) -> None:
    store = _store(own_postgres, timeout_secs=0.3)
    store.migrate()
    with psycopg.connect(own_postgres.url()) as locker:
        locker.execute("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(AccessStoreUnavailable) as cut:
            store.organization_exists(ORG)
        elapsed = time.monotonic() - started
    # The statement_timeout and the lock_timeout are the same bound: either may fire first.
    assert elapsed < 2
    assert isinstance(cut.value.__cause__, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable)
    store.close()
