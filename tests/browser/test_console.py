"""The query console in a real browser: the demo key entered, the seed example and a grouped
daily query run, the table checked against the API's JSON, the chart's series counted, no
JavaScript error, and no request to any other host than the service."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from proxyctl.demo import CONSOLE_FRAGMENT, SEED_QUERY
from proxyctl.ingest.generator import DEMO_ORGANIZATION
from tests.support.browser import console_errors, requested_hosts
from tests.support.served import Service

FRAGMENT = "#" + CONSOLE_FRAGMENT  # the URL `make demo` prints
GROUPED_DAILY = {
    "interval": {
        "start": "2019-01-01T00:00:00+02:00",
        "end": "2019-01-08T00:00:00+02:00",
        "time_zone": "Europe/Helsinki",
    },
    "granularity": "day",
    "aggregations": [{"type": "count"}],
    "group_by": ["device_type"],
}
SERIES = "return Chart.getChart(document.getElementById('chart')).data.datasets.map(d => d.label)"


@pytest.fixture(scope="module")
def console(browser: webdriver.Chrome, console_service: Service) -> webdriver.Chrome:
    """The console opened and connected with the demo key; the logs read so far dropped."""
    browser.get(f"{console_service.base_url}/console{FRAGMENT}")
    browser.find_element(By.ID, "key").send_keys(console_service.tokens[DEMO_ORGANIZATION])
    browser.find_element(By.ID, "connect-button").click()
    wait(browser).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#group-by input"))
    return browser


def wait(browser: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(browser, 30)


def run(browser: webdriver.Chrome) -> None:
    """Click Run and wait for the answer's status line."""
    browser.execute_script("document.getElementById('status').textContent = ''")
    browser.find_element(By.ID, "run").click()
    wait(browser).until(lambda driver: driver.find_element(By.ID, "status").text.startswith("200 "))


def table(browser: webdriver.Chrome) -> tuple[list[str], list[list[str]]]:
    head = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#table thead th")]
    rows = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    return head, [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def as_text(value: Any) -> str:
    """How the page writes a JSON value in a cell (JavaScript's String())."""
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def type_request(browser: webdriver.Chrome, query: dict[str, Any]) -> None:
    """Open the request's JSON and type the query into it, as a person pasting it would."""
    details = browser.find_element(By.ID, "json-details")
    if details.get_attribute("open") is None:
        details.find_element(By.TAG_NAME, "summary").click()
    editor = browser.find_element(By.ID, "request")
    wait(browser).until(expected_conditions.visibility_of(editor))
    editor.clear()
    editor.send_keys(json.dumps(query))


def save_screenshot(browser: webdriver.Chrome, path: Path) -> None:
    """The top of the page, where the chart is; small enough to commit (docs/console.png is a copy)."""
    browser.execute_script("window.scrollTo(0, 0)")
    clip = {"x": 0, "y": 0, "width": 1280, "height": 800, "scale": 0.625}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


def check_table(browser: webdriver.Chrome, expected: dict[str, Any]) -> None:
    head, rows = table(browser)
    assert head == [field["name"] for field in expected["fields"]]
    assert rows == [[as_text(value) for value in row] for row in expected["data"]]


def test_the_seed_example_typed_as_json_is_drawn_and_tabled(
    console: webdriver.Chrome, console_service: Service
) -> None:
    type_request(console, SEED_QUERY)
    run(console)
    expected = console_service.post(DEMO_ORGANIZATION, SEED_QUERY).json()
    check_table(console, expected)
    assert console.execute_script(SERIES) == ["visitor_id_hyper_unique"]


def test_a_grouped_daily_query_built_in_the_form_draws_a_line_per_group(
    console: webdriver.Chrome, console_service: Service, screenshots: Path
) -> None:
    console.find_element(By.CSS_SELECTOR, "#group-by input[value=device_type]").click()
    sent = json.loads(console.find_element(By.ID, "request").get_attribute("value") or "")
    assert sent == GROUPED_DAILY  # what the form built, interval offsets in the zone included
    run(console)
    expected = console_service.post(DEMO_ORGANIZATION, GROUPED_DAILY).json()
    check_table(console, expected)
    groups = sorted({as_text(row[1]) for row in expected["data"]})
    assert len(groups) > 1
    assert sorted(console.execute_script(SERIES)) == groups
    save_screenshot(console, screenshots / "console.png")


def test_explain_shows_the_backend_query(console: webdriver.Chrome) -> None:
    console.find_element(By.ID, "explain").click()
    explained = console.find_element(By.ID, "explain-out")
    wait(console).until(lambda driver: explained.text)
    shown = json.loads(explained.text)
    assert shown["backend"] == "embedded"
    assert "SELECT" in json.dumps(shown["query"])


def test_an_error_is_shown_in_its_shape(console: webdriver.Chrome) -> None:
    type_request(console, {**GROUPED_DAILY, "granularity": "fortnight"})
    console.find_element(By.ID, "run").click()
    error = console.find_element(By.ID, "error")
    wait(console).until(lambda driver: error.is_displayed())
    assert error.text.startswith("400 invalid_request: ")
    assert "granularity" in error.find_element(By.TAG_NAME, "li").text


def test_nothing_but_the_service_was_asked_and_no_script_failed(
    console: webdriver.Chrome, console_service: Service
) -> None:
    assert requested_hosts(console) == {urlsplit(console_service.base_url).netloc}
    # The 400 of the error test is the one failed load the browser reports; nothing else.
    assert [line for line in console_errors(console) if "status of 400" not in line] == []
