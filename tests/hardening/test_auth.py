"""Authentication through the real process: revocation across workers, bearer-token attacks, and
the constant-time key comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.access.store import AccessStore
from tests.support.contract import contract_problem, serving_worker, worker_pids
from tests.support.ids import ORG, OTHER_ORG
from tests.support.served import ROUTE, Service, cli
from tests.support.tenants import JWT_AUDIENCE, JWT_ISSUER, SPAN, JwtKeys, Tenants

QUERY = {"interval": SPAN, "granularity": "all", "aggregations": [{"type": "count"}]}


def _post(service: Service, organization: str, authorization: str) -> tuple[int, int | None]:
    """POST the count query on a fresh connection; the status and the worker that answered."""
    port = int(service.base_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps(QUERY).encode()
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        connection.request("POST", ROUTE.format(organization), body, headers)
        response = connection.getresponse()
        payload = response.read()
        problem = contract_problem("POST", response.status, dict(response.getheaders()), payload)
        assert problem is None, problem
        # Still connected (keep-alive): the accepted socket is in exactly one worker.
        client_port = connection.sock.getsockname()[1] if connection.sock else 0
        return response.status, serving_worker(port, client_port, worker_pids(service.pid))
    finally:
        connection.close()


def _statuses_by_worker(service: Service, organization: str, authorization: str) -> dict[int, set[int]]:
    """Fresh connections until each worker answered at least 5 times: worker → statuses seen."""
    workers = worker_pids(service.pid)
    seen: dict[int, list[int]] = {pid: [] for pid in workers}
    for _ in range(400):
        status, pid = _post(service, organization, authorization)
        if pid is not None:
            seen[pid].append(status)
        if all(len(statuses) >= 5 for statuses in seen.values()):
            break
    assert all(len(statuses) >= 5 for statuses in seen.values()), f"a worker never answered: {seen}"
    return {pid: set(statuses) for pid, statuses in seen.items()}


def test_revoked_key_is_refused_at_once_by_every_worker(embedded_hardened: Service, tenants: Tenants) -> None:
    organization = tenants.organizations[1]
    assert embedded_hardened.env is not None
    key = cli(embedded_hardened.env, "tokens", "create", "--org", organization).strip().splitlines()[-1]
    workers = worker_pids(embedded_hardened.pid)
    assert len(workers) >= 2
    before = _statuses_by_worker(embedded_hardened, organization, f"Token {key}")
    assert before == {pid: {200} for pid in workers}
    cli(embedded_hardened.env, "tokens", "revoke", key.split("_")[1])
    after = _statuses_by_worker(embedded_hardened, organization, f"Token {key}")
    assert after == {pid: {401} for pid in workers}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{head}.{_b64(signature)}"


def _hs256_with_public_pem(keys: JwtKeys, claims: dict[str, Any]) -> str:
    # The classic confusion: sign HS256 with the RS256 public key as the HMAC secret.
    unsigned = _unsigned({"alg": "HS256", "typ": "JWT"}, claims).rsplit(".", 1)[0]
    signature = hmac.new(keys.public_pem, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{_b64(signature)}"


def _claims(organization: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "hardening",
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "orgs": [organization],
    }
    return {key: value for key, value in {**claims, **changes}.items() if value is not None}


def _rs256(keys: JwtKeys, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(claims, keys.private, algorithm="RS256", headers=header or None)


TokenFactory = Callable[[JwtKeys, str], str]
HOUR = 3600
# (id, token for the calling organization, expected status)
BEARER_CASES: list[tuple[str, TokenFactory, int]] = [
    ("valid", lambda k, org: _rs256(k, _claims(org)), 200),
    ("expired", lambda k, org: _rs256(k, _claims(org, exp=int(time.time()) - 120)), 401),
    ("not_yet_valid", lambda k, org: _rs256(k, _claims(org, nbf=int(time.time()) + HOUR)), 401),
    ("issued_in_the_future", lambda k, org: _rs256(k, _claims(org, iat=int(time.time()) + HOUR)), 401),
    ("no_exp", lambda k, org: _rs256(k, _claims(org, exp=None)), 401),
    ("no_sub", lambda k, org: _rs256(k, _claims(org, sub=None)), 401),
    ("wrong_issuer", lambda k, org: _rs256(k, _claims(org, iss="https://evil.test")), 401),
    ("wrong_audience", lambda k, org: _rs256(k, _claims(org, aud="someone-else")), 401),
    ("orgs_not_a_list", lambda k, org: _rs256(k, _claims(org, orgs=org)), 401),
    ("other_org_only", lambda k, org: _rs256(k, _claims(OTHER_ORG)), 403),
    ("alg_none", lambda k, org: _unsigned({"alg": "none", "typ": "JWT"}, _claims(org)), 401),
    ("alg_none_capitalised", lambda k, org: _unsigned({"alg": "None"}, _claims(org)), 401),
    (
        "alg_none_with_rs256_signature",
        lambda k, org: _unsigned({"alg": "none"}, _claims(org), b"x" * 256),
        401,
    ),
    ("hs256_signed_with_the_public_key", lambda k, org: _hs256_with_public_pem(k, _claims(org)), 401),
    (
        "rs256_signed_by_a_stranger",
        lambda k, org: jwt.encode(_claims(org), k.stranger, algorithm="RS256"),
        401,
    ),
    (
        "stranger_key_offered_in_jwk_header",
        lambda k, org: jwt.encode(
            _claims(org),
            k.stranger,
            algorithm="RS256",
            headers={"jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.stranger.public_key()))},
        ),
        401,
    ),
    (
        "stranger_key_offered_by_jku",
        lambda k, org: jwt.encode(
            _claims(org), k.stranger, algorithm="RS256", headers={"jku": "http://127.0.0.1:1/keys.json"}
        ),
        401,
    ),
    (
        "es256",
        lambda k, org: jwt.encode(_claims(org), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"),
        401,
    ),
    ("signature_stripped", lambda k, org: _rs256(k, _claims(org)).rsplit(".", 1)[0] + ".", 401),
    (
        "claims_swapped_after_signing",
        lambda k, org: _swap_claims(_rs256(k, _claims(org)), _claims(org, sub="admin")),
        401,
    ),
    ("not_a_jwt", lambda k, org: "not.a.jwt", 401),
    ("two_segments", lambda k, org: _rs256(k, _claims(org)).rsplit(".", 1)[0], 401),
]


def _swap_claims(token: str, claims: dict[str, Any]) -> str:
    head, _, signature = token.split(".")
    return f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"


@pytest.mark.parametrize(
    ("make_token", "expected"),
    [(f, s) for _, f, s in BEARER_CASES],
    ids=[name for name, _, _ in BEARER_CASES],
)
def test_bearer_token(
    embedded_hardened: Service, tenants: Tenants, jwt_keys: JwtKeys, make_token: TokenFactory, expected: int
) -> None:
    organization = tenants.organizations[0]
    status, _ = _post(embedded_hardened, organization, f"Bearer {make_token(jwt_keys, organization)}")
    assert status == expected


def test_unauthenticated_answers_say_how_to_authenticate(
    embedded_hardened: Service, tenants: Tenants
) -> None:
    response = requests.post(
        f"{embedded_hardened.base_url}{ROUTE.format(tenants.organizations[0])}",
        json=QUERY,
        headers={"Authorization": "Bearer x.y.z"},
        timeout=30,
    )
    assert response.status_code == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert "x.y.z" not in response.text


def test_key_check_compares_hashes_in_constant_time(tmp_path: Path) -> None:
    store = AccessStore(tmp_path / "access.sqlite3")
    store.add_organization(ORG, "Demo")
    key = store.create_key([ORG], "timing")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")  # same key id, other secret
    with mock.patch("proxy.access.store.hmac.compare_digest", wraps=hmac.compare_digest) as compare:
        assert store.principal_for_key(key) is not None
        assert store.principal_for_key(forged) is None
    stored = hashlib.sha256(key.encode()).digest()
    assert compare.call_args_list == [
        mock.call(stored, stored),
        mock.call(stored, hashlib.sha256(forged.encode()).digest()),
    ]
