"""The reporting service: one call from its credentials to the encoded answer, without Flask."""

from __future__ import annotations

import time
from contextlib import ExitStack
from functools import partial
from typing import Any, NamedTuple

import orjson

from proxy.access.authenticate import Authenticator, authorize
from proxy.access.principal import canonical_organization_id
from proxy.access.store import open_access_store
from proxy.backends.base import Backend, Scope
from proxy.cache.build import build_cache
from proxy.errors import BadRequest, LimitsUnavailable, NotAcceptable, ServiceBusy, TooManyRequests
from proxy.query.plan import ResultPlan, plan_result
from proxy.query.render import Answers, render_answer
from proxy.runtime.data_dir import prepare_data_dir
from proxy.runtime.gc_pause import gc_paused
from proxy.runtime.limiters import build_limiter
from proxy.runtime.logs import log_audit
from proxy.runtime.metrics import backend_query
from proxy.service.bodies import QueryBodies
from proxy.service.call import Answer, Call, Record
from proxy.service.fanout import Fanout
from proxy.service.representation import check_representable
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
        self.store = open_access_store(settings)
        self.authenticator = Authenticator(settings, self.store)
        self.bodies = QueryBodies(settings)
        self.backend = backend or build_backend(settings)
        self.cache = build_cache(settings, self.backend)
        self.fanout = Fanout(self.backend)
        self.limiter = build_limiter(settings)

    def check_access(self, call: Call, record: Record) -> Access:
        """Authenticate the caller (401) and check it may read the URL's organization (404, 403)."""
        record.organization = call.organization_id
        principal = self.authenticator.authenticate(call.authorization)
        record.principal = principal.name
        authorize(principal, call.organization_id, self.store)
        record.organization = canonical_organization_id(call.organization_id)
        return Access(principal.name, record.organization)

    def refuse_invalid(self, call: Call, record: Record) -> None:
        """For a request the web layer finds invalid before its body (a bad query string): the
        access checks first (401, 403, 404), then it counts like any invalid request."""
        access = self.check_access(call, record)
        self.limiter.charge(access.organization, access.principal)
        self.limiter.count_invalid(access.organization, access.principal)

    def visitor_sessions(self, call: Call, record: Record) -> Answer:
        """The report the call's body asks for or, with `explain`, the backend query it would run."""
        # The budget counts from the request's arrival: queueing, checks and planning spent some.
        deadline = call.arrived + self.settings.request_timeout_secs
        if deadline <= time.perf_counter():
            raise ServiceBusy("The request waited for a free worker until its time budget was gone.")
        access = self.check_access(call, record)
        log_audit(call.request_id, access.principal, access.organization, call.explain)
        # Every authorized request counts, valid or not, before its body costs anything.
        self.limiter.charge(access.organization, access.principal)
        plan = self._plan(call, access)
        # A new, unguessable backend query id (never the caller's request id): logged with it.
        scope = Scope(access.organization, call.request_id, deadline, call.client_gone)
        record.backend_query_id = scope.query_id
        if call.explain:
            return self._explain(plan, scope, access, record)
        # The one pause of the collector, over the whole answer: the decoded rows and the
        # rendered ones are gone by the time it runs again, so it never walks them. The plan
        # bounds the rows: a grouped answer has at most `row_limit`, a series one per bucket.
        with gc_paused(plan.row_limit if plan.grouped else len(plan.bucket_starts_ms)):
            return self._answer(plan, scope, access, record, call.if_none_match)

    def _plan(self, call: Call, access: Access) -> ResultPlan:
        """The call's validated query, planned; an invalid one (or one its form cannot carry, a 406)
        is charged to its caller."""
        try:
            query = self.bodies.load(call)
            check_representable(query, call.representation)
            return plan_result(query, self.settings.max_buckets, self.settings.max_result_rows)
        except (BadRequest, NotAcceptable):
            self.limiter.count_invalid(access.organization, access.principal)
            raise

    def _explain(self, plan: ResultPlan, scope: Scope, access: Access, record: Record) -> Answer:
        # An explanation runs nothing on the backend, so it takes no concurrency slot.
        record.backend = self.backend.name
        explained: dict[str, Any] = {"backend": self.backend.name, "query": self.backend.explain(plan, scope)}
        if plan.comparison is not None:
            explained["comparison_query"] = self.backend.explain(plan.comparison, scope)
        if plan.totals_intervals:
            explained["totals_query"] = self.backend.explain_totals(plan, scope)
        return Answer(orjson.dumps(explained))

    def _answer(
        self, plan: ResultPlan, scope: Scope, access: Access, record: Record, if_none_match: str | None = None
    ) -> Answer:
        with self.limiter.hold(access.organization, access.principal):
            record.backend = self.backend.name
            if self.cache is None:
                return Answer(self._rendered(plan, scope, access, record))
            # After the access checks: a 304 or a stored answer only for an authorized caller.
            compute = partial(self._rendered, plan, scope, access, record)
            cached = self.cache.answer(plan, scope, if_none_match, compute)
        record.cache = cached.outcome
        return Answer(cached.body or b"", cached.etag, cached.outcome, not_modified=cached.body is None)

    def _rendered(self, plan: ResultPlan, scope: Scope, access: Access, record: Record) -> bytes:
        # Only computing runs a report's extra queries side by side (a stored answer is checked
        # one query at a time), so only computing takes the slots for them.
        with ExitStack() as more_slots:
            at_once = 1 + self._hold_more(more_slots, access, self.fanout.width(plan) - 1)
            answers = self._execute(plan, scope, record, at_once)
        return orjson.dumps(render_answer(plan, answers))

    def _hold_more(self, slots: ExitStack, access: Access, wanted: int) -> int:
        """Up to `wanted` more concurrency slots for a report's extra queries, as many as are
        free: the request is admitted on its first slot; with fewer, its queries take turns."""
        for held in range(wanted):
            try:
                slots.enter_context(self.limiter.hold(access.organization, access.principal))
            except (TooManyRequests, LimitsUnavailable):
                return held
        return wanted

    def _execute(self, plan: ResultPlan, scope: Scope, record: Record, at_once: int) -> Answers:
        started = time.perf_counter()
        try:
            with backend_query(self.backend.name):
                return self.fanout.answers(plan, scope, at_once)
        finally:
            record.backend_ms = (time.perf_counter() - started) * 1000
