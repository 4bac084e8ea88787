"""Whole HTTP requests for the fuzz runs — methods, paths, headers, credentials around the bodies
of `fuzz_payloads` — and the sender that drives them through a live server in a few threads,
one keep-alive `requests.Session` each, checking every answer against the error contract."""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.contract import contract_problem
from tests.support.fuzz_payloads import FAMILY_SIZE, Body, body_families
from tests.support.ids import UNKNOWN_ORG
from tests.support.served import ROUTE

METHODS = ("GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "M-SEARCH")
CONTENT_TYPES = (
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/vnd.api+json",
    "application/json-patch+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    "application/jsonp",
    "APPLICATION/JSON",
    "*/*",
)
QUERY_STRINGS = (
    "?explain=true",
    "?explain=TRUE",
    "?explain=1",
    "?explain=true&explain=false",
    "?explain",
    "?a=%ZZ",
    "?" + "x=1&" * 300,
    "?explain=true#fragment",
    "?%00=%00",
)
OTHER_PATHS = (
    "/",
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/metrics",
    "/api",
    "/api/reporting/v1/orgs",
    "/static/../../etc/passwd",
    "/%ff",
    "/é",
    "//healthz",
    "/healthz/",
    "/api/reporting/v1/orgs//visitor_sessions",
)


@dataclass(frozen=True, repr=False)
class Target:
    """What the requests may aim at in one running service."""

    base_url: str
    backend: str
    own_org: str
    other_org: str  # registered, but the own key is not granted it
    tokens: Mapping[str, str]
    values: Mapping[str, Sequence[Any]]  # dimension → values from the own org's rows
    sign_jwt: Callable[[str], str] | None = None  # a valid bearer token for an org, if JWT is on

    def __repr__(self) -> str:
        return f"Target({self.backend} at {self.base_url})"


@dataclass(frozen=True)
class Case:
    """One request; `valid` says the service must answer it (200 or a documented size refusal)."""

    label: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None
    chunked: bool = False
    valid: bool = False


# RFC 9110 field values: visible ASCII, space and obs-text. Not DEL or controls: gunicorn refuses
# those itself, before the app (tests/hardening/test_malformed_http.py covers that layer).
_FIELD_CHARACTERS = st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f")


def _org_in_path(target: Target) -> st.SearchStrategy[str]:
    # At most 2,000 characters: with the longest query string the request line stays under
    # gunicorn's 4,094, past which gunicorn itself answers 414 (test_malformed_http.py).
    own = target.own_org
    return st.one_of(
        st.sampled_from(
            (
                own.upper(),
                f"{{{own}}}",
                f"urn:uuid:{own}",
                own.replace("-", ""),
                target.other_org,
                UNKNOWN_ORG,
                "not-a-uuid",
                "%2e%2e",
                "..",
                own + "%00",
                own[:-1] + "g",
                "٣" * 32,
                "x" * 2000,
            )
        ),
        st.text(min_size=1, max_size=40).filter(
            lambda text: "/" not in text and "?" not in text and "#" not in text
        ),
    )


def _paths(target: Target) -> st.SearchStrategy[str]:
    """Paths other than the own org's plain route: other orgs, suffixes, query strings, elsewhere."""
    own_route = ROUTE.format(target.own_org)
    return st.one_of(
        st.sampled_from(OTHER_PATHS),
        _org_in_path(target).map(ROUTE.format),
        st.sampled_from(("/", "/meta", "/../", "/x")).map(lambda suffix: own_route + suffix),
        st.sampled_from(QUERY_STRINGS).map(lambda query: own_route + query),
    )


def _authorizations(target: Target) -> st.SearchStrategy[str | None]:
    """Anything but the own key: forged, foreign, malformed, bearer tokens valid and not."""
    own_key = target.tokens[target.own_org]
    forged = [
        f"Token {own_key[:-1]}{'A' if own_key[-1] != 'A' else 'B'}",
        f"token {own_key}",
        f"Token  {own_key} ",
        f"Token {target.tokens[target.other_org]}",
        "Token",
        "Bearer",
        "Bearer x.y.z",
        "Basic dXNlcjpwYXNz",
        "Token rpk_0000000000000000_" + "A" * 43,
        "Bearer " + "A" * 5000,
        "Token é",
        "Negotiate YII=",
    ]
    choices: list[st.SearchStrategy[str | None]] = [
        st.sampled_from(forged),
        st.none(),
        st.text(_FIELD_CHARACTERS, max_size=60).map(str.strip),
        st.builds(
            lambda parts: "Bearer " + ".".join(parts),
            st.lists(st.text("ABCabc012-_=", max_size=40), min_size=1, max_size=4),
        ),
    ]
    if target.sign_jwt is not None:
        sign = target.sign_jwt
        choices += [
            st.just(target.own_org).map(lambda org: f"Bearer {sign(org)}"),
            st.just(target.other_org).map(lambda org: f"Bearer {sign(org)}"),
        ]
    return st.one_of(*choices)


_header_name = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~", min_size=1, max_size=20
)
_header_value = st.text(_FIELD_CHARACTERS, max_size=200).map(str.strip)
_request_ids = (
    st.sampled_from(("fuzz-1", "a" * 64, "a" * 65, "spaces are bad", "é", "../..", "")) | _header_value
)


def cases(target: Target) -> st.SearchStrategy[list[Case]]:
    """`FAMILY_SIZE` requests with bodies from one generated query. Most are the plain POST of the
    own org with its key, so that the body is what gets checked; the others change one thing:
    path, method, credentials, headers or transfer encoding."""
    own_key = f"Token {target.tokens[target.own_org]}"
    route = ROUTE.format(target.own_org)
    families, paths, authorizations = body_families(target.values), _paths(target), _authorizations(target)
    envelopes = st.sampled_from(
        ("plain",) * 14 + ("path", "method", "authorization", "content_type", "headers", "chunked")
    )
    methods, content_types = st.sampled_from(METHODS), st.sampled_from(CONTENT_TYPES)
    extra_headers = st.dictionaries(_header_name, _header_value, max_size=3)

    def case(draw: st.DrawFn, body: Body) -> Case:
        change = draw(envelopes)
        method, path = "POST", route
        headers: dict[str, str] = {"Authorization": own_key, "Content-Type": "application/json"}
        if change == "path":
            path = draw(paths)
        elif change == "method":
            method = draw(methods)
        elif change == "authorization":
            headers.pop("Authorization")
            authorization = draw(authorizations)
            if authorization is not None:
                headers["Authorization"] = authorization
        elif change == "content_type":
            headers |= {"Content-Type": draw(content_types)}
        elif change == "headers":
            headers |= {"X-Request-Id": draw(_request_ids), **draw(extra_headers)}
        valid = body.valid and change in ("plain", "chunked")
        return Case(f"{body.label}/{change}", method, path, headers, body.data, change == "chunked", valid)

    @st.composite
    def family(draw: st.DrawFn) -> list[Case]:
        return [case(draw, body) for body in draw(families)]

    return family()


@dataclass
class Tally:
    """What was sent and how it was answered, shared by the sending threads."""

    statuses: Counter[int] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reconnect(self) -> None:
        with self.lock:
            self.reconnects += 1

    def add(self, case: Case, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1
            body, envelope = case.label.split("/")
            self.labels[body.split(":")[0]] += 1
            self.labels[envelope] += 1

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def summary(self, name: str) -> str:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        kinds = ", ".join(f"{label} {count}" for label, count in sorted(self.labels.items()))
        return (
            f"fuzz {name}: {self.sent} requests; status {{{statuses}}}; bodies and envelopes {{{kinds}}}; "
            f"{self.reconnects} retried on a new connection"
        )


class Sender:
    """Sends cases from a few threads, each with its own keep-alive session."""

    def __init__(self, target: Target, tally: Tally, threads: int = 4) -> None:
        self.target, self.tally = target, tally
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="fuzz")
        self.local = threading.local()

    def close(self) -> None:
        self.pool.shutdown()

    def _session(self, fresh: bool = False) -> requests.Session:
        session: requests.Session | None = getattr(self.local, "session", None)
        if session is None or fresh:
            session = self.local.session = requests.Session()
        return session

    def _request(self, case: Case, fresh: bool) -> requests.Response:
        data: bytes | Iterator[bytes] | None = case.body
        if case.chunked and case.body is not None:
            data = iter([case.body[i : i + 8192] for i in range(0, len(case.body), 8192)])
        return self._session(fresh).request(
            case.method,
            self.target.base_url + case.path,
            data=data,
            headers=dict(case.headers),
            timeout=60,
            allow_redirects=False,
        )

    def _answer(self, case: Case) -> requests.Response | str:
        """The answer, retried once on a new connection when a kept-alive one was closed.

        gunicorn closes a connection whose previous request left over 64 KiB of body unread (a
        413, or a 401 before the body was read) although that answer said keep-alive, and a
        kept-alive connection can time out just as it is reused. A client retries those; a
        worker that died would fail the retry too, and the run checks the workers at the end.
        """
        try:
            return self._request(case, fresh=False)
        except requests.ConnectionError:
            self.tally.reconnect()
        try:
            return self._request(case, fresh=True)
        except requests.RequestException as exc:
            return f"no answer ({exc!r}) on a new connection either"

    def send(self, case: Case) -> str | None:
        """Send one case; why its answer breaks the contract, or None."""
        response = self._answer(case)
        if isinstance(response, str):
            return f"{response}: {case!r:.600}"
        self.tally.add(case, response.status_code)
        problem = contract_problem(case.method, response.status_code, response.headers, response.content)
        problem = problem or self._valid_problem(case, response)
        return None if problem is None else f"{problem}: {case!r:.600} -> {response.content[:300]!r}"

    def _valid_problem(self, case: Case, response: requests.Response) -> str | None:
        if not case.valid or response.status_code == 200:
            return None
        code = orjson.loads(response.content).get("code") if response.content else None
        refused_for_size = code == "result_too_large" or (
            self.target.backend == "druid"
            and response.json().get("detail", "").startswith("The query needs more resources")
        )
        return None if refused_for_size else f"a valid query answered {response.status_code}"


def fuzz(target: Target, total: int, threads: int = 4) -> tuple[Tally, list[str]]:
    """Send `total` generated cases (rounded up to whole families), up to `threads` at once; the
    tally and the problems seen.

    Generation and sending overlap: each example is queued and checked when its answer comes,
    so a problem is collected rather than raised in the example that queued it. It names the
    exact request and answer, which is also why nothing is shrunk.
    """
    tally = Tally()
    sender = Sender(target, tally, threads)
    pending: deque[Future[str | None]] = deque()
    problems: list[str] = []

    def collect(wait: bool) -> None:
        while pending and (wait or pending[0].done() or len(pending) > 8 * threads):
            problem = pending.popleft().result()
            if problem:
                problems.append(problem)

    @settings(
        max_examples=-(-total // FAMILY_SIZE),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate),
    )
    @given(cases(target))
    def run(family: list[Case]) -> None:
        pending.extend(sender.pool.submit(sender.send, case) for case in family)
        collect(wait=False)

    try:
        run()
        collect(wait=True)
    finally:
        sender.close()
    return tally, problems
