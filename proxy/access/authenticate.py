"""Who is calling (an API key or a JWT), and whether they may read an organization.

`Authorization: Token rpk_...` is looked up in the access store on every request (503
`access_store_unavailable` while the store cannot answer); `Authorization: Bearer <JWT>` is
verified with the one configured algorithm and key, and needs no store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from proxy.access.principal import Principal, canonical_organization_id
from proxy.access.store import AccessStore
from proxy.errors import AccessStoreUnavailable, Forbidden, NotAuthenticated, OrganizationNotFound
from proxy.settings import Settings, SettingsError

# Clock skew tolerated between the token issuer and this host.
_LEEWAY_SECS = 30
_ALGORITHMS = ("HS256", "RS256", "ES256")
# PyJWT reads a time claim through int(), so "99999999999" or 1e30 pass as far-future times:
# a NumericDate is a JSON number of seconds, from 1970 to the end of year 9999.
_TIME_CLAIMS = ("exp", "nbf", "iat")
_LATEST_NUMERIC_DATE = 253_402_300_799

# Key resolvers get the raw token, so a JWKS resolver can pick the key by the header's `kid`.
_KeyResolver = Callable[[str], Any]


def authorize(principal: Principal, organization_id: str, store: AccessStore) -> None:
    """Raise unless the organization exists (404) and the principal is granted it (403)."""
    if not _registered(organization_id, store):
        raise OrganizationNotFound("organization does not exist")
    if canonical_organization_id(organization_id) not in principal.organizations:
        raise Forbidden(f"{principal.name} is not granted this organization")


def _registered(organization_id: str, store: AccessStore) -> bool:
    try:
        return store.organization_exists(organization_id)
    except AccessStoreUnavailable:
        # The store is down: the caller's own grants decide (a bearer token needs no store). A
        # granted organization is served, unregistered or not (it has no data); any other is 403.
        return _is_organization_id(organization_id)


def _is_organization_id(organization_id: str) -> bool:
    try:
        canonical_organization_id(organization_id)
    except ValueError:
        return False
    return True


class Authenticator:
    """Turns an `Authorization` header into a Principal, or raises NotAuthenticated."""

    def __init__(self, settings: Settings, store: AccessStore) -> None:
        self._store = store
        self._jwt = _JwtVerifier(settings) if settings.jwt_algorithm else None

    def authenticate(self, authorization_header: str | None) -> Principal:
        """The caller named by the header; never echoes the credential in an error."""
        if not authorization_header or not authorization_header.strip():
            raise NotAuthenticated("missing Authorization header")
        scheme, _, credentials = authorization_header.strip().partition(" ")
        schemes = {"token": self._from_key, "bearer": self._from_jwt}
        handler = schemes.get(scheme.lower())
        if handler is None:
            raise NotAuthenticated("unsupported authorization scheme; use Token or Bearer")
        if not credentials.strip():
            raise NotAuthenticated(f"missing credentials after {scheme}")
        return handler(credentials.strip())

    def _from_key(self, key: str) -> Principal:
        principal = self._store.principal_for_key(key)
        if principal is None:
            raise NotAuthenticated("API key is malformed, unknown or revoked")
        return principal

    def _from_jwt(self, token: str) -> Principal:
        if self._jwt is None:
            raise NotAuthenticated("bearer tokens are not accepted by this service")
        return self._jwt.principal(token)


class _JwtVerifier:
    """Verifies tokens of the configured algorithm; its keys are loaded once, here."""

    def __init__(self, settings: Settings) -> None:
        self._algorithm = _algorithm(settings)
        self._resolve_key = _key_resolver(settings, self._algorithm)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._orgs_claim = settings.jwt_orgs_claim
        self._require = ["exp", "sub"] + [
            claim for claim, value in (("iss", self._issuer), ("aud", self._audience)) if value
        ]

    def principal(self, token: str) -> Principal:
        claims = self._claims(token)
        _check_claim_types(claims)
        return Principal(name=f"jwt:{claims['sub']}", organizations=self._organizations(claims))

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                self._resolve_key(token),
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=_LEEWAY_SECS,
                options={"require": self._require},
            )
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(_jwt_detail(exc, self._algorithm)) from exc

    def _organizations(self, claims: dict[str, Any]) -> frozenset[str]:
        value = claims.get(self._orgs_claim)
        problem = f"bearer token claim {self._orgs_claim!r} must be a list of organization ids"
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise NotAuthenticated(problem)
        try:
            return frozenset(canonical_organization_id(item) for item in value)
        except ValueError as exc:
            raise NotAuthenticated(problem) from exc


def _check_claim_types(claims: dict[str, Any]) -> None:
    """Raise NotAuthenticated unless the time claims are NumericDates and `sub` names someone."""
    for name in _TIME_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            raise NotAuthenticated(
                f"bearer token claim {name!r} must be a number of seconds from 1970 to year 9999"
            )
    if not claims["sub"].strip():
        raise NotAuthenticated("bearer token 'sub' claim must be a non-empty string")


def _is_numeric_date(value: Any) -> bool:
    # bool is an int subclass; JSON true is not a time.
    return type(value) in (int, float) and bool(0 <= value <= _LATEST_NUMERIC_DATE)


_JWT_DETAILS: dict[type[jwt.PyJWTError], str] = {
    jwt.ExpiredSignatureError: "bearer token has expired",
    jwt.ImmatureSignatureError: "bearer token is not valid yet",
    jwt.InvalidIssuerError: "bearer token issuer is not accepted",
    jwt.InvalidAudienceError: "bearer token audience is not accepted",
    jwt.InvalidSignatureError: "bearer token signature does not verify",
    jwt.exceptions.InvalidSubjectError: "bearer token 'sub' claim must be a string",
    jwt.DecodeError: "bearer token is malformed",
}


def _jwt_detail(exc: jwt.PyJWTError, algorithm: str) -> str:
    # Fixed wording rather than PyJWT's messages, which may quote parts of the token.
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"bearer token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"bearer token algorithm is not accepted (expected {algorithm})"
    for cls in type(exc).__mro__:
        if cls in _JWT_DETAILS:
            return _JWT_DETAILS[cls]
    return "bearer token is invalid"


def _algorithm(settings: Settings) -> str:
    algorithm = settings.jwt_algorithm
    if algorithm is None or algorithm not in _ALGORITHMS:
        raise SettingsError(f"PROXY_JWT_ALGORITHM={algorithm!r}: must be HS256, RS256 or ES256")
    return algorithm


def _key_resolver(settings: Settings, algorithm: str) -> _KeyResolver:
    if algorithm == "HS256":
        return _static(_hmac_key(settings.jwt_secret))
    if settings.jwt_public_key_file and settings.jwt_jwks_file:
        raise SettingsError("set PROXY_JWT_PUBLIC_KEY_FILE or PROXY_JWT_JWKS_FILE, not both")
    if settings.jwt_jwks_file:
        return _jwks_resolver(_load_jwks(settings.jwt_jwks_file, algorithm))
    if settings.jwt_public_key_file:
        return _static(_load_public_key(settings.jwt_public_key_file, algorithm))
    raise SettingsError(
        f"PROXY_JWT_ALGORITHM={algorithm} needs PROXY_JWT_PUBLIC_KEY_FILE or PROXY_JWT_JWKS_FILE"
    )


def _static(key: Any) -> _KeyResolver:
    return lambda token: key


def _checked_key(key: Any, algorithm: str, variable: str) -> Any:
    # PyJWT only warns about weak keys, on every request; refusing to start is clearer.
    try:
        prepared = jwt.get_algorithm_by_name(algorithm).prepare_key(key)
    except (jwt.InvalidKeyError, TypeError, ValueError) as exc:
        raise SettingsError(f"{variable}: not a usable {algorithm} key") from exc
    weakness = jwt.get_algorithm_by_name(algorithm).check_key_length(prepared)
    if weakness:
        raise SettingsError(f"{variable}: {weakness}")
    return prepared


def _hmac_key(secret: str | None) -> Any:
    if not secret:
        raise SettingsError("PROXY_JWT_ALGORITHM=HS256 needs PROXY_JWT_SECRET")
    return _checked_key(secret.encode(), "HS256", "PROXY_JWT_SECRET")


def _load_public_key(path: Path, algorithm: str) -> Any:
    variable = f"PROXY_JWT_PUBLIC_KEY_FILE={path}"
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        raise SettingsError(f"{variable}: not a readable PEM public key") from exc
    return _checked_key(key, algorithm, variable)


def _load_jwks(path: Path, algorithm: str) -> dict[str, jwt.PyJWK]:
    variable = f"PROXY_JWT_JWKS_FILE={path}"
    try:
        keyset = jwt.PyJWKSet.from_json(path.read_text())
    except (OSError, ValueError, AttributeError, jwt.PyJWTError) as exc:
        raise SettingsError(f"{variable}: not a readable JWK set") from exc
    keys = {
        key.key_id: key
        for key in keyset
        if key.key_id and key.algorithm_name == algorithm and key.public_key_use in (None, "sig")
    }
    if not keys:
        raise SettingsError(f"{variable}: no {algorithm} signing key with a 'kid'")
    for kid, key in keys.items():
        _checked_key(key.key, algorithm, f"{variable} (kid {kid!r})")
    return keys


def _jwks_resolver(keys: dict[str, jwt.PyJWK]) -> _KeyResolver:
    def resolve(token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is None:
            raise NotAuthenticated("bearer token has no 'kid' header to pick its signing key")
        if kid not in keys:
            raise NotAuthenticated("bearer token 'kid' names no known signing key")
        return keys[kid]

    return resolve
