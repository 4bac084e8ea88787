"""The hardening world: a small generated dataset of several organizations whose rows can each be
attributed to one organization, and the RS256 keys the embedded service trusts."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from proxyctl.ingest.generator import generate, organization_ids
from schemas.vocabulary import DIMENSIONS
from tests.support.fuzz_requests import Target
from tests.support.served import Dataset, Service

SEED = 20240607
SESSIONS = 3_000
ORGS = 4
FIRST_DAY = date(2019, 6, 1)
DAYS = 14
SPAN = {"start": "2019-06-01T00:00:00Z", "end": "2019-06-15T00:00:00Z"}
# Registered and granted, but without a single row: it must answer zeros, never others' rows.
EMPTY_ORG = "5e1f0c2a-9b7d-4c3e-8f60-0000000000e0"
DRUID_DATASOURCE = "visitor_sessions_hardening"
JWT_ISSUER = "https://issuer.hardening.test"
JWT_AUDIENCE = "reporting-hardening"
# Thousands of requests a minute from one key, invalid ones and concurrent ones among them, are
# the point here, not abuse to be limited (tests/soak/test_noisy_neighbour.py has the limits on).
NO_RATE_LIMITS = {
    "PROXY_RATE_LIMIT_PER_ORG_PER_MIN": "0",
    "PROXY_RATE_LIMIT_PER_PRINCIPAL_PER_MIN": "0",
    "PROXY_RATE_LIMIT_INVALID_PER_PRINCIPAL_PER_MIN": "0",
    "PROXY_MAX_CONCURRENT_PER_ORG": "0",
    "PROXY_MAX_CONCURRENT_PER_PRINCIPAL": "0",
}
# The two services on the tenants' data (fixtures in tests/conftest.py), as test parameters.
ENGINES = [
    pytest.param("embedded_hardened", id="embedded"),
    pytest.param("druid_hardened", id="druid", marks=pytest.mark.integration),
]


@dataclass(frozen=True)
class Tenants:
    """The dataset and, per dimension, which organizations' rows hold each value."""

    dataset: Dataset
    owners: dict[str, dict[Any, frozenset[str]]]

    @property
    def organizations(self) -> tuple[str, ...]:
        return self.dataset.organizations

    def values(self, dimension: str, organization: str) -> list[Any]:
        """Values of the dimension found in the organization's rows, sorted for reproducibility."""
        held = [value for value, orgs in self.owners[dimension].items() if organization in orgs]
        return sorted(held, key=repr)

    def foreign(self, dimension: str, organization: str) -> list[Any]:
        """Values only other organizations' rows hold: seeing one in an answer is a leak."""
        held = [value for value, orgs in self.owners[dimension].items() if organization not in orgs]
        return sorted(held, key=repr)


@dataclass(frozen=True)
class JwtKeys:
    """The RS256 key the embedded service trusts (its public half is on disk) and another one."""

    private: rsa.RSAPrivateKey
    public_pem: bytes
    stranger: rsa.RSAPrivateKey


def _owners(rows: list[dict[str, Any]]) -> dict[str, dict[Any, frozenset[str]]]:
    found: dict[str, dict[Any, set[str]]] = {name: defaultdict(set) for name in DIMENSIONS}
    for row in rows:
        for name in DIMENSIONS:
            value = row.get(name)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    found[name][item].add(row["organization_id"])
    return {name: {value: frozenset(orgs) for value, orgs in table.items()} for name, table in found.items()}


def generate_tenants(path: Path) -> Tenants:
    """Write the hardening sessions to `path`; the tenants, each row attributable to one of them."""
    generate(path, sessions=SESSIONS, orgs=ORGS, seed=SEED, start=FIRST_DAY, days=DAYS)
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    owners = _owners(rows)
    # Attribution is what the isolation checks rest on: every session id names one org's row.
    shared = [value for value, orgs in owners["session_id"].items() if len(orgs) > 1]
    assert not shared, f"session ids in more than one organization: {shared[:3]}"
    assert len({row["organization_id"] for row in rows}) == ORGS
    return Tenants(Dataset(path, rows, (*organization_ids(ORGS, SEED), EMPTY_ORG)), owners)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def new_jwt_keys() -> JwtKeys:
    """A fresh trusted key pair and a stranger's key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return JwtKeys(private, _pem(private), stranger)


def embedded_env(data_dir: Path, keys: JwtKeys) -> dict[str, str]:
    """RS256 bearer tokens on (issuer and audience checked), rate limits off."""
    key_file = data_dir / "jwt-public.pem"
    key_file.write_bytes(keys.public_pem)
    return {
        "PROXY_JWT_ALGORITHM": "RS256",
        "PROXY_JWT_PUBLIC_KEY_FILE": str(key_file),
        "PROXY_JWT_ISSUER": JWT_ISSUER,
        "PROXY_JWT_AUDIENCE": JWT_AUDIENCE,
        **NO_RATE_LIMITS,
    }


def druid_env() -> dict[str, str]:
    """A datasource of its own, so the integration suite's data is never replaced; rate limits off."""
    return {"PROXY_DRUID_DATASOURCE": DRUID_DATASOURCE, **NO_RATE_LIMITS}


def bearer_token(keys: JwtKeys, organization: str, lifetime_secs: int = 3600) -> str:
    """A valid RS256 token for the embedded service, granted one organization."""
    now = int(time.time())
    claims = {
        "sub": "hardening",
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + lifetime_secs,
        "orgs": [organization],
    }
    return jwt.encode(claims, keys.private, algorithm="RS256")


def fuzz_target(service: Service, tenants: Tenants, keys: JwtKeys | None = None) -> Target:
    """The fuzz runs' view of a service: the first org's key, the second org as a stranger."""
    own, other = tenants.organizations[:2]
    values = {name: tenants.values(name, own)[:80] for name in DIMENSIONS}
    sign = None if keys is None else (lambda organization: bearer_token(keys, organization))
    return Target(service.base_url, service.backend, own, other, service.tokens, values, sign)
