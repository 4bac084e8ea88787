"""A frontend on another origin asks the served API for CSV with `fetch` in a real browser, with
an `Accept` short enough to be CORS-safelisted and one too long to be (which the preflight must
allow), and reads the text and its content type (issue 15)."""

from __future__ import annotations

import json

import pytest
import requests
from selenium import webdriver

from proxyctl.demo import SEED_QUERY
from tests.support.served import ROUTE, Service

# Runs in the page: POST the seed example with `accept`, hand back what the page could read.
FETCH_CSV = """
const [url, key, body, accept, done] = arguments;
fetch(url, {method: "POST", body, headers: {"Authorization": "Token " + key,
                                             "Content-Type": "application/json", "Accept": accept}})
  .then(async (response) => done({status: response.status, type: response.headers.get("Content-Type"),
                                   text: await response.text()}),
        (error) => done({error: String(error)}));
"""
# Over 128 bytes, so no longer CORS-safelisted: the browser names `accept` in its preflight.
LONG_ACCEPT = "text/csv, " + ", ".join(f"application/x-unused-{n};q=0.1" for n in range(6))


@pytest.mark.parametrize("accept", ["text/csv", LONG_ACCEPT])
def test_the_listed_origin_reads_csv(
    browser: webdriver.Chrome, console_service: Service, frontend_port: int, accept: str
) -> None:
    # The last organization's key: the other browser tests spend the first ones' rate budget.
    organization, key = list(console_service.tokens.items())[-1]
    browser.get(f"http://127.0.0.1:{frontend_port}/")
    url = console_service.base_url + ROUTE.format(organization)
    answer = browser.execute_async_script(FETCH_CSV, url, key, json.dumps(SEED_QUERY), accept)
    headers = {"Authorization": f"Token {key}", "Accept": "text/csv"}
    expected = requests.post(url, json=SEED_QUERY, headers=headers, timeout=60)
    assert answer == {"status": 200, "type": "text/csv; charset=utf-8", "text": expected.text}
    assert expected.text.startswith("timestamp,visitor_id_hyper_unique\r\n")


def test_the_long_accept_is_not_safelisted() -> None:
    assert len(LONG_ACCEPT) > 128
