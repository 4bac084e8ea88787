"""A service with a stub backend and granted keys: on its own for the service tests, under the
Flask test client for the web-layer tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from flask.testing import FlaskClient

from proxy.access.store import open_access_store
from proxy.backends.base import Scope
from proxy.query.plan import BackendRow, ResultPlan
from proxy.service.reporting import ReportingService
from proxy.settings import Settings
from proxy.web.app import create_app
from schemas.model import Query
from tests.support.ids import ORG, OTHER_ORG

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
ROUTE = "/api/reporting/v1/orgs/<organization_id>/visitor_sessions"
QUERY = {
    "interval": {"start": "2019-01-01T00:00:00Z", "end": "2019-01-02T00:00:00Z"},
    "granularity": "day",
    "aggregations": [{"type": "count"}],
}


def url(org: str = ORG, suffix: str = "") -> str:
    return f"/api/reporting/v1/orgs/{org}/visitor_sessions{suffix}"


@dataclass
class StubBackend:
    """Answers no rows, or raises `error`; with a `gate`, waits in execute until it is set.

    Every query it is asked to run (or explain) is kept in `queries`, its scope in `scopes`.
    """

    name: str = "stub"
    error: BaseException | None = None
    gate: threading.Event | None = None
    is_ready: bool = True
    entered: threading.Event = field(default_factory=threading.Event)
    queries: list[Query] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)

    def execute(self, plan: ResultPlan, scope: Scope) -> list[BackendRow]:
        self._keep(plan, scope)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.error is not None:
            raise self.error
        return []

    def explain(self, plan: ResultPlan, scope: Scope) -> Any:
        self._keep(plan, scope)
        return {"sql": "SELECT 1", "parameters": []}

    def totals(self, plan: ResultPlan, scope: Scope) -> list[Any]:
        self._keep(plan, scope)
        return [None for _ in plan.totals_intervals]

    def explain_totals(self, plan: ResultPlan, scope: Scope) -> Any:
        return {"sql": "SELECT 2", "parameters": []}

    def ready(self) -> bool:
        return self.is_ready

    def _keep(self, plan: ResultPlan, scope: Scope) -> None:
        self.queries.append(plan.query)
        self.scopes.append(scope)


@dataclass
class Web:
    client: FlaskClient
    service: ReportingService
    keys: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        """Authorization headers: a key by name, or `jwt` / `jwt_other` for a bearer token."""
        if who.startswith("jwt"):
            orgs = [OTHER_ORG] if who == "jwt_other" else [ORG, OTHER_ORG]
            claims = {"sub": "alice", "orgs": orgs, "exp": int(time.time()) + 60}
            return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}
        return {"Authorization": f"Token {self.keys[who]}"}


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path, "jwt_algorithm": "HS256", "jwt_secret": JWT_SECRET}
    return Settings(**{**values, **overrides})


def grant_keys(settings: Settings) -> dict[str, str]:
    """Keys `a`, `b` (ORG), `both` (ORG and OTHER_ORG) and `other` (OTHER_ORG), by name."""
    store = open_access_store(settings)
    store.add_organization(ORG, "Demo")
    store.add_organization(OTHER_ORG, "Other")
    grants = {"a": [ORG], "b": [ORG], "both": [ORG, OTHER_ORG], "other": [OTHER_ORG]}
    keys = {name: store.create_key(orgs, name) for name, orgs in grants.items()}
    store.close()
    return keys


def make_web(tmp_path: Path, backend: Any = None, **overrides: Any) -> Web:
    """A service on `tmp_path` under the Flask test client, with the keys of `grant_keys`."""
    settings = settings_for(tmp_path, **overrides)
    keys = grant_keys(settings)
    app = create_app(settings, backend if backend is not None else StubBackend())
    return Web(app.test_client(), app.extensions["reporting"], keys)
