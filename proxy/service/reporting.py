"""The reporting service: one call from its credentials to the encoded answer, without Flask."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

import orjson

from proxy.access.authenticate import Authenticator, authorize
from proxy.access.principal import canonical_organization_id
from proxy.access.store import AccessStore
from proxy.backends.base import Backend, Scope
from proxy.query.plan import BackendRow, ResultPlan, plan_result
from proxy.query.render import render
from proxy.runtime.data_dir import prepare_data_dir
from proxy.runtime.gc_pause import gc_paused
from proxy.runtime.limits import Limiter, Limits
from proxy.runtime.logs import log_audit
from proxy.runtime.metrics import backend_query
from proxy.service.bodies import QueryBodies
from proxy.service.call import Answer, Call, Record
from proxy.settings import Settings


def build_backend(settings: Settings) -> Backend:
    """The engine the settings ask for."""
    if settings.backend == "druid":
        from proxy.backends.druid.backend import DruidBackend

        return DruidBackend(settings)
    from proxy.backends.embedded.backend import EmbeddedBackend

    return EmbeddedBackend(settings)


class Access(NamedTuple):
    """An authorized caller: its principal's name and the canonical organization id."""

    principal: str
    organization: str


class ReportingService:
    """What one request needs, built once per worker: access checks, bodies, backend, limiter."""

    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        prepare_data_dir(settings)
        self.store = AccessStore(settings.access_db_path)
        self.authenticator = Authenticator(settings, self.store)
        self.bodies = QueryBodies(settings)
        self.backend = backend or build_backend(settings)
        self.limiter = Limiter(settings.limits_path, Limits.from_settings(settings))

    def check_access(self, call: Call, record: Record) -> Access:
        """Authenticate the caller (401) and check it may read the URL's organization (404, 403)."""
        record.organization = call.organization_id
        principal = self.authenticator.authenticate(call.authorization)
        record.principal = principal.name
        authorize(principal, call.organization_id, self.store)
        record.organization = canonical_organization_id(call.organization_id)
        return Access(principal.name, record.organization)

    def visitor_sessions(self, call: Call, record: Record) -> Answer:
        """The report the call's body asks for or, with `explain`, the backend query it would run."""
        access = self.check_access(call, record)
        log_audit(call.request_id, access.principal, access.organization, call.explain)
        query = self.bodies.load(call)
        plan = plan_result(query, self.settings.max_buckets, self.settings.max_result_rows)
        # The budget counts from the request's arrival: checks and planning spent some of it.
        deadline = call.arrived + self.settings.request_timeout_secs
        scope = Scope(access.organization, call.request_id, deadline, call.client_gone)
        if call.explain:
            return self._explain(plan, scope, access, record)
        # The one pause of the collector, over the whole answer: the decoded rows and the
        # rendered ones are gone by the time it runs again, so it never walks them. The plan
        # bounds the rows: a grouped answer has at most `row_limit`, a series one per bucket.
        with gc_paused(plan.row_limit if plan.grouped else len(plan.bucket_starts_ms)):
            return self._answer(plan, scope, access, record)

    def _explain(self, plan: ResultPlan, scope: Scope, access: Access, record: Record) -> Answer:
        # An explanation runs nothing on the backend, so it takes no concurrency slot.
        with self.limiter.admit(access.organization, access.principal, hold_slot=False):
            record.backend = self.backend.name
            explained = self.backend.explain(plan, scope)
        return Answer(orjson.dumps({"backend": self.backend.name, "query": explained}))

    def _answer(self, plan: ResultPlan, scope: Scope, access: Access, record: Record) -> Answer:
        with self.limiter.admit(access.organization, access.principal):
            record.backend = self.backend.name
            rows = self._execute(plan, scope, record)
        return Answer(orjson.dumps(render(plan, rows)))

    def _execute(self, plan: ResultPlan, scope: Scope, record: Record) -> Sequence[BackendRow]:
        started = time.perf_counter()
        try:
            with backend_query(self.backend.name):
                return self.backend.execute(plan, scope)
        finally:
            record.backend_ms = (time.perf_counter() - started) * 1000
