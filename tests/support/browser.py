"""A real browser for the tests in tests/browser: Debian's headless Chromium driven by Selenium,
and a second origin on loopback whose page calls the service the way a frontend does."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService

from tests.support.net import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver, installed by scripts/system-packages.sh
FRONTEND_PAGE = (
    "<!doctype html><html><head><link rel='icon' href='data:,'><title>frontend</title></head></html>"
)


def chromium() -> webdriver.Chrome:
    """Headless Chromium keeping its console and network logs for the test to read."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    return driver


def serve_frontend(root: Path) -> Iterator[int]:
    """A blank page on 127.0.0.1:<port> (the second origin), until the generator is closed."""
    (root / "index.html").write_text(FRONTEND_PAGE)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The page's requests are no news in the test output."""


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """The page's JavaScript errors and failed loads since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_hosts(driver: webdriver.Chrome) -> set[str]:
    """Every host:port the browser sent a request to since the last call (its network log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = urlsplit(message["params"]["request"]["url"])
            if url.scheme in ("http", "https", "ws", "wss"):
                hosts.add(url.netloc)
    return hosts
