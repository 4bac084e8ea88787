"""A request body → a validated Query; small bodies are validated once and kept."""

from __future__ import annotations

from functools import lru_cache

import orjson
from marshmallow import ValidationError

from proxy.errors import BadRequest, UnsupportedMediaType
from proxy.service.call import Call
from proxy.settings import Settings
from schemas.model import Query
from schemas.request import QuerySchema

# Dashboards send the same bodies again and again (every refresh, every viewer), and a
# validated Query is immutable and holds no organization: small bodies are validated once.
CACHED_BODY_BYTES = 4096
CACHED_BODIES = 512


class QueryBodies:
    """Validates request bodies against the deployment's limits, remembering small valid ones."""

    def __init__(self, settings: Settings) -> None:
        self.schema = QuerySchema(settings)
        self._cached = lru_cache(maxsize=CACHED_BODIES)(self._validated)

    def load(self, call: Call) -> Query:
        """The call's query; 415 unless declared JSON (its body then goes unread), 400 unless valid."""
        if not call.is_json:
            raise UnsupportedMediaType("Send the query as application/json.")
        body = call.body()
        # A failed validation raises, so only valid bodies are ever cached.
        return self._cached(body) if len(body) <= CACHED_BODY_BYTES else self._validated(body)

    def _validated(self, body: bytes) -> Query:
        try:
            payload = orjson.loads(body)
        except (orjson.JSONDecodeError, RecursionError) as exc:
            raise BadRequest("The body is not valid JSON.") from exc
        if not isinstance(payload, dict):
            raise BadRequest("The body must be a JSON object.")
        try:
            query: Query = self.schema.load(payload)
        except ValidationError as exc:
            errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            raise BadRequest("The query is invalid.", errors) from exc
        return query
