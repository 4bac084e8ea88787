"""Numbers given as text on numeric dimensions mean the same on Druid, the embedded engine and the
oracle. Found by the hardening probes: Druid matched every row for a bound of "1_000" (Python
reads it as 1000) and none for "١٢" (Arabic-Indic digits); such text is now a 400."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from tests.hardening.conftest import SPAN, Tenants
from tests.integration.conftest import Service
from tests.oracle import evaluate

ENGINES = [
    pytest.param("embedded_hardened", id="embedded"),
    pytest.param("druid_hardened", id="druid", marks=pytest.mark.integration),
]
PLAIN_NUMBERS = ["1000", "1e3", "1.0e3", "1E+3", "1000.0", "999.9999", "-0", "0.5", "007", "-5"]
FILTERS = {
    "bound": lambda text: {"type": "bound", "dimension": "session_duration_secs", "lower": text},
    "in": lambda text: {"type": "in", "dimension": "distinct_visited_urls_count", "values": [text, "2"]},
    "selector": lambda text: {"type": "selector", "dimension": "distinct_visited_urls_count", "value": text},
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", sorted(FILTERS))
@pytest.mark.parametrize("text", PLAIN_NUMBERS)
def test_numeric_text_answers_like_the_oracle(engine: str, kind: str, text: str, tenants: Tenants,
                                              request: pytest.FixtureRequest) -> None:
    service: Service = request.getfixturevalue(engine)
    organization = tenants.organizations[0]
    payload: dict[str, Any] = {"interval": SPAN, "granularity": "all", "aggregations": [{"type": "count"}],
                               "filters": FILTERS[kind](text)}
    response = requests.post(
        f"{service.base_url}/api/reporting/v1/orgs/{organization}/visitor_sessions", data=orjson.dumps(payload),
        headers={"Authorization": f"Token {service.tokens[organization]}", "Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == evaluate(tenants.dataset.rows, organization, payload)
