"""One access table: Authorization header and organization in, HTTP status out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from proxy.access.authenticate import Authenticator, authorize
from proxy.access.store import AccessStore
from proxy.errors import NotAuthenticated, ProxyError
from proxy.settings import Settings, SettingsError, load_settings

ORG_A = "6f1e7c2a-0d55-4b8e-9f43-2b8c1d7a9e01"  # granted to the keys and in the tokens
ORG_B = "a3c9e5d1-7b2f-4e6a-8c0d-5f4e3b2a1c9d"  # exists, granted only to the two-org key
ORG_GONE = "00000000-0000-4000-8000-000000000000"  # never added
SECRET = "a-test-secret-of-at-least-32-bytes!"
ISSUER = "https://issuer.test"
AUDIENCE = "reporting"
DROP = object()


@dataclass(frozen=True)
class World:
    store: AccessStore
    key: str
    two_org_key: str
    revoked_key: str
    rsa_key: rsa.RSAPrivateKey
    other_rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    settings: dict[str, Settings]


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _jwks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> str:
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True) | {"kid": "rsa-1"}
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True) | {"kid": "ec-1"}
    return json.dumps({"keys": [rsa_jwk, ec_jwk]})


def _settings_table(tmp: Path, world_keys: dict[str, Any]) -> dict[str, Settings]:
    (tmp / "rsa.pem").write_bytes(_pem(world_keys["rsa"]))
    (tmp / "ec.pem").write_bytes(_pem(world_keys["ec"]))
    (tmp / "jwks.json").write_text(_jwks(world_keys["rsa"], world_keys["ec"]))
    checked = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    rs_pem = {"jwt_algorithm": "RS256", "jwt_public_key_file": tmp / "rsa.pem"}
    es_pem = {"jwt_algorithm": "ES256", "jwt_public_key_file": tmp / "ec.pem"}
    jwks = tmp / "jwks.json"
    return {
        "off": load_settings({}),
        "hs": load_settings({}, jwt_algorithm="HS256", jwt_secret=SECRET, **checked),
        "rs": load_settings({}, **rs_pem, **checked),
        "es": load_settings({}, **es_pem, **checked),
        "rs-jwks": load_settings({}, jwt_algorithm="RS256", jwt_jwks_file=jwks, **checked),
        "es-jwks": load_settings({}, jwt_algorithm="ES256", jwt_jwks_file=jwks, **checked),
        "rs-open": load_settings({}, **rs_pem),
        "rs-tenants": load_settings({}, **rs_pem, **checked, jwt_orgs_claim="tenants"),
    }


@pytest.fixture
def world(
    store: AccessStore,
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> World:
    store.add_organization(ORG_A, "Acme")
    store.add_organization(ORG_B, "Globex")
    revoked_key = store.create_key([ORG_A], "revoked")
    store.revoke_key(revoked_key.split("_")[1])
    return World(
        store=store,
        key=store.create_key([ORG_A], "one org"),
        two_org_key=store.create_key([ORG_A, ORG_B], "two orgs"),
        revoked_key=revoked_key,
        rsa_key=rsa_key,
        other_rsa_key=other_rsa_key,
        ec_key=ec_key,
        settings=_settings_table(tmp_path, {"rsa": rsa_key, "ec": ec_key}),
    )


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for the `checked` settings; DROP removes a claim; times relative to now."""
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": 600, "orgs": [ORG_A]}
    merged = {name: value for name, value in (base | changes).items() if value is not DROP}
    for name in ("exp", "nbf", "iat"):
        if isinstance(merged.get(name), int):
            merged[name] += now
    return merged


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def hs(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def rs(w: World, payload: dict[str, Any], kid: str | None = None) -> str:
    return jwt.encode(payload, w.rsa_key, algorithm="RS256", headers={"kid": kid} if kid else None)


def es(w: World, payload: dict[str, Any], kid: str | None = None) -> str:
    return jwt.encode(payload, w.ec_key, algorithm="ES256", headers={"kid": kid} if kid else None)


def alg_none(payload: dict[str, Any]) -> str:
    return _hand_made({"alg": "none", "typ": "JWT"}, payload, lambda signing_input: b"")


def hs_signed_with_rsa_public_pem(w: World, payload: dict[str, Any], kid: str = "rsa-1") -> str:
    def sign(signing_input: bytes) -> bytes:
        return hmac.new(_pem(w.rsa_key), signing_input, hashlib.sha256).digest()

    return _hand_made({"alg": "HS256", "typ": "JWT", "kid": kid}, payload, sign)


def with_payload_swapped(token: str, payload: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{_b64(json.dumps(payload).encode())}.{signature}"


MakeHeader = Callable[[World], "str | None"]


def text(header: str | None) -> MakeHeader:
    return lambda w: header


def token(attr: str) -> MakeHeader:
    return lambda w: f"Token {getattr(w, attr)}"


def bearer(make: Callable[[World], str]) -> MakeHeader:
    return lambda w: f"Bearer {make(w)}"


def bearer_hs(secret: str = SECRET, **changes: Any) -> MakeHeader:
    return bearer(lambda w: hs(claims(**changes), secret))


def bearer_rs(kid: str | None = None, **changes: Any) -> MakeHeader:
    return bearer(lambda w: rs(w, claims(**changes), kid))


def bearer_es(kid: str | None = None, **changes: Any) -> MakeHeader:
    return bearer(lambda w: es(w, claims(**changes), kid))


P = pytest.param
NO_KEY = "API key is malformed, unknown or revoked"
BAD_ALG = "algorithm is not accepted"
BAD_SIG = "signature does not verify"
BAD_ORGS = "claim 'orgs' must be a list"
BAD_TIME = "claim '{}' must be a number of seconds"
# config, Authorization header, organization in the URL, status, part of the detail
ACCESS_TABLE = [
    # --- no usable header ---
    P("off", text(None), ORG_A, 401, "missing Authorization", id="no-header"),
    P("off", text(""), ORG_A, 401, "missing Authorization", id="empty-header"),
    P("off", text("   "), ORG_A, 401, "missing Authorization", id="blank-header"),
    P("off", text("Basic dXNlcjpwYXNz"), ORG_A, 401, "unsupported", id="basic-scheme"),
    P("off", lambda w: f"Key {w.key}", ORG_A, 401, "unsupported", id="unknown-scheme"),
    P("off", text("Token"), ORG_A, 401, "missing credentials", id="token-without-key"),
    P("off", text("Bearer   "), ORG_A, 401, "missing credentials", id="bearer-without-jwt"),
    P("off", text(None), ORG_GONE, 401, "missing Authorization", id="401-before-404"),
    # --- API keys ---
    P("off", token("key"), ORG_A, 200, "", id="key"),
    P("off", lambda w: f"token {w.key}", ORG_A, 200, "", id="key-lower-case-scheme"),
    P("off", lambda w: f"  Token   {w.key}  ", ORG_A, 200, "", id="key-extra-spaces"),
    P("off", token("key"), ORG_A.upper(), 200, "", id="key-upper-case-org"),
    P("off", token("two_org_key"), ORG_B, 200, "", id="two-org-key-second-org"),
    P("off", token("key"), ORG_B, 403, "is not granted", id="key-org-not-granted"),
    P("off", token("key"), ORG_GONE, 404, "does not exist", id="key-unknown-org"),
    P("off", token("key"), "not-a-uuid", 404, "does not exist", id="key-malformed-org"),
    P("off", token("revoked_key"), ORG_A, 401, NO_KEY, id="revoked-key"),
    P("off", lambda w: f"Token {w.key[:-2]}xx", ORG_A, 401, NO_KEY, id="wrong-key-secret"),
    P("off", lambda w: f"Token rpk_{'0' * 16}{w.key[20:]}", ORG_A, 401, NO_KEY, id="unknown-id"),
    P("off", text("Token rpk_abc_def"), ORG_A, 401, NO_KEY, id="malformed-key"),
    P("hs", lambda w: f"Token {hs(claims())}", ORG_A, 401, NO_KEY, id="jwt-as-key"),
    P("off", lambda w: f"Bearer {w.key}", ORG_A, 401, "not accepted by this", id="key-as-jwt"),
    # --- JWT: accepted ---
    P("hs", bearer_hs(), ORG_A, 200, "", id="hs256"),
    P("rs", bearer_rs(), ORG_A, 200, "", id="rs256-pem"),
    P("es", bearer_es(), ORG_A, 200, "", id="es256-pem"),
    P("rs-jwks", bearer_rs(kid="rsa-1"), ORG_A, 200, "", id="rs256-jwks"),
    P("es-jwks", bearer_es(kid="ec-1"), ORG_A, 200, "", id="es256-jwks"),
    P("rs", bearer_rs(exp=-10), ORG_A, 200, "", id="expired-within-leeway"),
    P("rs", bearer_rs(exp=time.time() + 600.5, iat=-5, nbf=-5), ORG_A, 200, "", id="fractional-exp"),
    P("rs", bearer_rs(orgs=[ORG_A.upper()]), ORG_A, 200, "", id="upper-case-claim"),
    P("rs", bearer_rs(aud=[AUDIENCE, "other"]), ORG_A, 200, "", id="aud-list"),
    P("rs-open", bearer_rs(iss=DROP, aud=DROP), ORG_A, 200, "", id="no-iss-aud-configured"),
    P("rs-tenants", bearer_rs(orgs=DROP, tenants=[ORG_A]), ORG_A, 200, "", id="custom-orgs-claim"),
    # --- JWT: authenticated, then authorized ---
    P("rs", bearer_rs(), ORG_B, 403, "jwt:alice is not granted", id="jwt-org-not-granted"),
    P("rs", bearer_rs(orgs=[]), ORG_A, 403, "jwt:alice is not granted", id="jwt-empty-orgs"),
    P("rs", bearer_rs(), ORG_GONE, 404, "does not exist", id="jwt-unknown-org"),
    # --- JWT: refused ---
    P("off", bearer_hs(), ORG_A, 401, "not accepted by this service", id="jwt-disabled"),
    P("rs", bearer_rs(exp=-3600), ORG_A, 401, "has expired", id="expired"),
    P("rs", bearer_rs(nbf=3600), ORG_A, 401, "not valid yet", id="nbf-in-future"),
    P("rs", bearer_rs(iat=3600), ORG_A, 401, "not valid yet", id="iat-in-future"),
    P("rs", bearer(lambda w: alg_none(claims())), ORG_A, 401, BAD_ALG, id="alg-none"),
    P("hs", bearer(lambda w: alg_none(claims())), ORG_A, 401, BAD_ALG, id="alg-none-hs-configured"),
    P(
        "rs",
        bearer(lambda w: hs_signed_with_rsa_public_pem(w, claims())),
        ORG_A,
        401,
        BAD_ALG,
        id="hs-rs-confusion",
    ),
    P(
        "rs-jwks",
        bearer(lambda w: hs_signed_with_rsa_public_pem(w, claims())),
        ORG_A,
        401,
        BAD_ALG,
        id="hs-rs-confusion-jwks",
    ),
    P("rs", bearer_hs(), ORG_A, 401, BAD_ALG, id="hs256-when-rs256-configured"),
    P("es", bearer_rs(), ORG_A, 401, BAD_ALG, id="rs256-when-es256-configured"),
    P("hs", bearer_hs(secret="x" * 32), ORG_A, 401, BAD_SIG, id="hs256-wrong-secret"),
    P(
        "rs",
        bearer(lambda w: jwt.encode(claims(), w.other_rsa_key, algorithm="RS256")),
        ORG_A,
        401,
        BAD_SIG,
        id="signed-by-other-key",
    ),
    P(
        "rs",
        bearer(lambda w: with_payload_swapped(rs(w, claims()), claims(orgs=[ORG_B]))),
        ORG_B,
        401,
        BAD_SIG,
        id="payload-tampered",
    ),
    P("rs", bearer_rs(iss="https://evil.test"), ORG_A, 401, "issuer is not", id="wrong-iss"),
    P("rs", bearer_rs(iss=DROP), ORG_A, 401, "lacks the 'iss' claim", id="missing-iss"),
    P("rs", bearer_rs(aud="other"), ORG_A, 401, "audience is not", id="wrong-aud"),
    P("rs", bearer_rs(aud=DROP), ORG_A, 401, "lacks the 'aud' claim", id="missing-aud"),
    P("rs-open", bearer_rs(iss=DROP), ORG_A, 401, "audience is not", id="aud-none-configured"),
    P("rs", bearer_rs(exp=DROP), ORG_A, 401, "lacks the 'exp' claim", id="missing-exp"),
    P("rs", bearer_rs(exp="tomorrow"), ORG_A, 401, "is malformed", id="exp-not-a-number"),
    P("rs", bearer_rs(sub=DROP), ORG_A, 401, "lacks the 'sub' claim", id="missing-sub"),
    P("rs", bearer_rs(sub=42), ORG_A, 401, "'sub' claim must be a string", id="sub-not-a-string"),
    P("rs", bearer_rs(sub=""), ORG_A, 401, "'sub' claim must be a non-empty", id="sub-empty"),
    P("rs", bearer_rs(sub="  "), ORG_A, 401, "'sub' claim must be a non-empty", id="sub-blank"),
    P("rs", bearer_rs(exp="99999999999"), ORG_A, 401, BAD_TIME.format("exp"), id="exp-numeric-string"),
    P("rs", bearer_rs(exp=1e30), ORG_A, 401, BAD_TIME.format("exp"), id="exp-1e30"),
    P("rs", bearer_rs(exp=2**63), ORG_A, 401, BAD_TIME.format("exp"), id="exp-past-year-9999"),
    P("rs", bearer_rs(nbf="0"), ORG_A, 401, BAD_TIME.format("nbf"), id="nbf-string"),
    P("rs", bearer_rs(nbf=-(10**12)), ORG_A, 401, BAD_TIME.format("nbf"), id="nbf-before-1970"),
    P("rs", bearer_rs(iat="0"), ORG_A, 401, BAD_TIME.format("iat"), id="iat-string"),
    P(
        "rs",
        bearer(lambda w: rs(w, claims() | {"iat": True})),
        ORG_A,
        401,
        BAD_TIME.format("iat"),
        id="iat-bool",
    ),
    P("rs", bearer_rs(iat=[1]), ORG_A, 401, "", id="iat-list"),
    P("rs", bearer_rs(orgs=DROP), ORG_A, 401, BAD_ORGS, id="orgs-missing"),
    P("rs", bearer_rs(orgs=ORG_A), ORG_A, 401, BAD_ORGS, id="orgs-not-a-list"),
    P("rs", bearer_rs(orgs=[1, 2]), ORG_A, 401, BAD_ORGS, id="orgs-not-strings"),
    P("rs", bearer_rs(orgs=[ORG_A, "acme"]), ORG_A, 401, BAD_ORGS, id="orgs-not-uuids"),
    P("rs-tenants", bearer_rs(), ORG_A, 401, "claim 'tenants' must", id="custom-claim-missing"),
    P("rs-jwks", bearer_rs(kid="nope"), ORG_A, 401, "no known signing key", id="jwks-unknown-kid"),
    P("rs-jwks", bearer_rs(), ORG_A, 401, "has no 'kid'", id="jwks-no-kid"),
    P("rs-jwks", bearer_rs(kid="ec-1"), ORG_A, 401, "no known signing key", id="jwks-other-alg"),
    P("rs", text("Bearer not-a-jwt"), ORG_A, 401, "is malformed", id="malformed-jwt"),
    P("rs", text("Bearer a.b.c"), ORG_A, 401, "is malformed", id="malformed-jwt-segments"),
    P("rs-jwks", text("Bearer a.b.c"), ORG_A, 401, "is malformed", id="malformed-jwt-jwks"),
]


def _outcome(
    authenticator: Authenticator, header: str | None, org: str, store: AccessStore
) -> tuple[int, str]:
    try:
        authorize(authenticator.authenticate(header), org, store)
    except ProxyError as exc:
        return exc.status, exc.detail
    return 200, ""


@pytest.mark.parametrize(("config", "make_header", "org", "status", "detail"), ACCESS_TABLE)
def test_access(
    world: World, config: str, make_header: MakeHeader, org: str, status: int, detail: str
) -> None:
    authenticator = Authenticator(world.settings[config], world.store)
    outcome = _outcome(authenticator, make_header(world), org, world.store)
    assert (outcome[0], detail in outcome[1]) == (status, True), outcome


@pytest.mark.parametrize(
    ("config", "make_header", "expected_name"),
    [
        P("off", token("key"), "key:", id="key"),
        P("rs", bearer_rs(sub="alice@example.test"), "jwt:alice@example.test", id="jwt"),
    ],
)
def test_principal_name(world: World, config: str, make_header: MakeHeader, expected_name: str) -> None:
    principal = Authenticator(world.settings[config], world.store).authenticate(make_header(world))
    assert principal.name.startswith(expected_name)


@pytest.mark.parametrize(
    ("config", "make_header", "secret_of"),
    [
        P("off", lambda w: f"Token {w.key[:-2]}xx", lambda header: header.split("_", 2)[2], id="wrong-key"),
        P("off", token("revoked_key"), lambda header: header.split("_", 2)[2], id="revoked-key"),
        P("rs", bearer_rs(exp=-3600), lambda header: header.split(".")[2], id="expired-jwt"),
        P(
            "rs",
            lambda w: "Bearer eyJhbGciOiJIUzI1NiJ9.bm90LWpzb24.c2VjcmV0",
            lambda h: "c2VjcmV0",
            id="garbage-jwt",
        ),
    ],
)
def test_refusal_never_echoes_the_credential(
    world: World, config: str, make_header: MakeHeader, secret_of: Callable[[str], str]
) -> None:
    header = make_header(world)
    assert header is not None
    with pytest.raises(NotAuthenticated) as refused:
        Authenticator(world.settings[config], world.store).authenticate(header)
    assert secret_of(header) not in refused.value.detail


def test_keys_are_loaded_once_at_construction(world: World, tmp_path: Path) -> None:
    authenticator = Authenticator(world.settings["rs"], world.store)
    (tmp_path / "rsa.pem").unlink()
    principal = authenticator.authenticate(f"Bearer {rs(world, claims())}")
    assert principal.organizations == frozenset({ORG_A})


def _jwk_set(*jwks: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(jwks)}).encode()


def _weak_rsa_pem(w: World) -> bytes:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))


def _materialize(tmp: Path, name: str, value: Any, w: World) -> Any:
    """A callable value is file content: write it, and configure the file's path."""
    if not callable(value):
        return value
    path = tmp / name
    path.write_bytes(value(w))
    return path


RSA_JWK = RSAAlgorithm.to_jwk
EC_JWK = ECAlgorithm.to_jwk
MISSING = Path("/nonexistent/key.pem")


@pytest.mark.parametrize(
    ("algorithm", "fields", "message"),
    [
        P("HS256", {"jwt_secret": "short"}, "below the minimum", id="hs-secret-too-short"),
        P("HS256", {}, "needs PROXY_JWT_SECRET", id="hs-no-secret"),
        P("HS512", {"jwt_secret": SECRET}, "must be HS256", id="unsupported-algorithm"),
        P("RS256", {}, "needs PROXY_JWT_PUBLIC_KEY_FILE", id="rs-no-key"),
        P("RS256", {"jwt_public_key_file": MISSING}, "not a readable PEM", id="rs-missing-file"),
        P("RS256", {"jwt_public_key_file": lambda w: b"x"}, "not a readable PEM", id="rs-not-pem"),
        P(
            "RS256",
            {"jwt_public_key_file": lambda w: _pem(w.ec_key)},
            "not a usable RS256 key",
            id="rs-given-ec-key",
        ),
        P(
            "ES256",
            {"jwt_public_key_file": lambda w: _pem(w.rsa_key)},
            "not a usable ES256 key",
            id="es-given-rsa-key",
        ),
        P(
            "ES256",
            {"jwt_public_key_file": lambda w: _pem(ec.generate_private_key(ec.SECP384R1()))},
            "not a usable ES256 key",
            id="es-wrong-curve",
        ),
        P("RS256", {"jwt_public_key_file": _weak_rsa_pem}, "below the minimum", id="rs-weak-key"),
        P("RS256", {"jwt_jwks_file": lambda w: b"{"}, "not a readable JWK set", id="jwks-not-json"),
        P("RS256", {"jwt_jwks_file": lambda w: b"[]"}, "not a readable JWK", id="jwks-not-dict"),
        P(
            "RS256",
            {
                "jwt_jwks_file": lambda w: _jwk_set(
                    EC_JWK(w.ec_key.public_key(), as_dict=True) | {"kid": "ec-1"}
                )
            },
            "no RS256 signing key",
            id="jwks-no-key-of-algorithm",
        ),
        P(
            "RS256",
            {"jwt_jwks_file": lambda w: _jwk_set(RSA_JWK(w.rsa_key.public_key(), as_dict=True))},
            "with a 'kid'",
            id="jwks-no-kid",
        ),
        P(
            "RS256",
            {
                "jwt_jwks_file": lambda w: _jwk_set(
                    RSA_JWK(w.rsa_key.public_key(), as_dict=True) | {"kid": "k", "use": "enc"}
                )
            },
            "no RS256 signing key",
            id="jwks-encryption-key-only",
        ),
        P(
            "RS256",
            {"jwt_jwks_file": lambda w: b"", "jwt_public_key_file": lambda w: _pem(w.rsa_key)},
            "not both",
            id="both-key-sources",
        ),
    ],
)
def test_unusable_jwt_configuration_refuses_to_start(
    world: World, tmp_path: Path, algorithm: str, fields: dict[str, Any], message: str
) -> None:
    values = {name: _materialize(tmp_path, name, value, world) for name, value in fields.items()}
    with pytest.raises(SettingsError, match=message):
        Authenticator(Settings(jwt_algorithm=algorithm, **values), world.store)
