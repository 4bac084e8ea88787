"""A frontend on another origin calls the served API with `fetch` in a real browser: the listed
origin reads answers and errors (401, 429 with Retry-After), any other is blocked by the browser."""

from __future__ import annotations

import json
from typing import Any

import pytest
from selenium import webdriver

from proxyctl.demo import SEED_QUERY
from proxyctl.ingest.generator import DEMO_ORGANIZATION
from tests.browser.conftest import RATE_LIMIT_PER_PRINCIPAL
from tests.support.served import ROUTE, Service

# Runs in the page: POST the query `times` times at most, stop at the first status in `until`,
# and hand back what the page could read of the last answer (or the error fetch threw).
FETCH = """
const [url, key, body, times, until, done] = arguments;
(async () => {
  let answer = null;
  for (let n = 0; n < times; n++) {
    const response = await fetch(url, {method: "POST", body,
      headers: {"Authorization": "Token " + key, "Content-Type": "application/json"}});
    answer = {status: response.status, json: await response.json(),
              request_id: response.headers.get("X-Request-Id"),
              retry_after: response.headers.get("Retry-After")};
    if (until.includes(answer.status)) break;
  }
  return answer;
})().then(done, (error) => done({error: String(error)}));
"""


def fetch_from(
    browser: webdriver.Chrome,
    page: str,
    url: str,
    key: str,
    times: int = 1,
    until: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Open `page`, then let it POST the seed example to `url` and return what it read."""
    browser.get(page)
    body = json.dumps(SEED_QUERY)
    answer: dict[str, Any] = browser.execute_async_script(FETCH, url, key, body, times, list(until))
    return answer


def test_the_listed_origin_reads_the_seed_example(
    browser: webdriver.Chrome, console_service: Service, frontend_port: int
) -> None:
    key = console_service.tokens[DEMO_ORGANIZATION]
    url = console_service.base_url + ROUTE.format(DEMO_ORGANIZATION)
    answer = fetch_from(browser, f"http://127.0.0.1:{frontend_port}/", url, key)
    expected = console_service.post(DEMO_ORGANIZATION, SEED_QUERY).json()
    assert answer["status"] == 200
    assert answer["json"] == expected
    assert expected["data"][0][1] > 0  # the seed example finds Helsinki's visitors in the small data
    assert answer["request_id"]  # exposed to the page


def test_another_origin_is_blocked_by_the_browser(
    browser: webdriver.Chrome, console_service: Service, frontend_port: int
) -> None:
    key = console_service.tokens[DEMO_ORGANIZATION]
    url = console_service.base_url + ROUTE.format(DEMO_ORGANIZATION)
    answer = fetch_from(browser, f"http://localhost:{frontend_port}/", url, key)
    assert answer == {"error": "TypeError: Failed to fetch"}


@pytest.mark.parametrize(
    ("key", "organization", "times", "status", "code", "retry_after"),
    [
        ("none", "own", 1, 401, "not_authenticated", False),
        ("own", "demo", 1, 403, "forbidden", False),
        ("own", "own", RATE_LIMIT_PER_PRINCIPAL + 5, 429, "too_many_requests", True),
    ],
)
def test_the_listed_origin_reads_error_answers(
    browser: webdriver.Chrome,
    console_service: Service,
    frontend_port: int,
    key: str,
    organization: str,
    times: int,
    status: int,
    code: str,
    retry_after: bool,
) -> None:
    # With another organization than the demo's ("own"), so the demo key keeps its budget.
    own = next(org for org in console_service.tokens if org != DEMO_ORGANIZATION)
    token = console_service.tokens[own] if key == "own" else "rpk_not_a_key"
    url = console_service.base_url + ROUTE.format(DEMO_ORGANIZATION if organization == "demo" else own)
    page = f"http://127.0.0.1:{frontend_port}/"
    answer = fetch_from(browser, page, url, token, times, until=(status,))
    assert (answer["status"], answer["json"]["code"]) == (status, code)
    assert (answer["retry_after"] is not None) is retry_after


# A body over the bound: the front refuses it before the service sees it (proxyctl/front).
OVERSIZED = """
const [url, key, size, done] = arguments;
fetch(url, {method: "POST", body: JSON.stringify({padding: "x".repeat(size)}),
            headers: {"Authorization": "Token " + key, "Content-Type": "application/json"}})
  .then(async (response) => ({status: response.status, json: await response.json(),
                              request_id: response.headers.get("X-Request-Id")}))
  .then(done, (error) => done({error: String(error)}));
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_fronts_own_refusal_is_read_by_the_listed_origin_only(
    browser: webdriver.Chrome, console_service: Service, frontend_port: int, host: str
) -> None:
    key = console_service.tokens[DEMO_ORGANIZATION]
    url = console_service.base_url + ROUTE.format(DEMO_ORGANIZATION)
    browser.get(f"http://{host}:{frontend_port}/")
    answer = browser.execute_async_script(OVERSIZED, url, key, 128 * 1024)
    if host == "localhost":  # not listed
        assert answer == {"error": "TypeError: Failed to fetch"}
    else:
        assert (answer["status"], answer["json"]["code"]) == (413, "request_entity_too_large")
        assert answer["request_id"]
