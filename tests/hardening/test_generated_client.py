"""A typed client generated from the served document with openapi-python-client: generated
without a warning, one error class for every status, a normal answer always a `Result`, and
count cells integers (issue 14)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from proxy.web.openapi import error_codes
from tests.support.ids import UNKNOWN_ORG
from tests.support.served import BIN, Service

PACKAGE = "reporting_proxy_client"
# The zone enum holds names that differ only in punctuation (GMT+0, GMT-0, GMT0): as Python
# enum members they would collide, so the client spells enums as Literal types.
CONFIG = "literal_enums: true\n"


@pytest.fixture(scope="module")
def generated(
    open_service: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ModuleType]]:
    """The generator's output, and the generated package imported."""
    workdir = tmp_path_factory.mktemp("client")
    spec = workdir / "openapi.json"
    spec.write_bytes(requests.get(f"{open_service.base_url}/openapi.json", timeout=10).content)
    (workdir / "config.yaml").write_text(CONFIG)
    done = subprocess.run(
        [
            *(str(BIN / "openapi-python-client"), "generate", "--path", str(spec), "--meta", "none"),
            *("--config", str(workdir / "config.yaml"), "--output-path", str(workdir / PACKAGE)),
        ],
        cwd=workdir,
        # ruff (which the generator formats its output with) from this virtualenv.
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(workdir))
    try:
        yield done.stdout + done.stderr, importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(workdir))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_the_client_generates_without_warnings(generated: tuple[str, ModuleType]) -> None:
    output, _ = generated
    assert output.strip().splitlines() == [output.strip().splitlines()[0]]
    assert output.startswith("Generating ")


def _query(
    generated: tuple[str, ModuleType],
    service: Service,
    payload: dict[str, Any],
    organization: str | None = None,
    token: str | None = None,
) -> tuple[Any, ModuleType]:
    _, package = generated
    models = importlib.import_module(f"{PACKAGE}.models")
    api = importlib.import_module(f"{PACKAGE}.api.default.query_visitor_sessions")
    own, own_token = next(iter(service.tokens.items()))
    client = package.AuthenticatedClient(base_url=service.base_url, token=token or own_token, prefix="Token")
    body = models.VisitorSessionsQuery.from_dict(payload)
    return api.sync_detailed(organization or own, client=client, body=body), models


INTERVAL = {"start": "2019-06-01T00:00:00Z", "end": "2019-06-08T00:00:00Z"}
GROUPED = {
    "interval": INTERVAL,
    "granularity": "day",
    "group_by": ["device_type"],
    "aggregations": [{"type": "count"}, {"type": "avg", "fields": ["session_duration_secs"]}],
}


def test_an_answer_is_a_result_with_integer_counts(
    generated: tuple[str, ModuleType], open_service: Service
) -> None:
    response, models = _query(generated, open_service, GROUPED)
    assert response.status_code == 200
    assert isinstance(response.parsed, models.Result)
    counts = [row[2] for row in response.parsed.data]
    assert counts and all(type(count) is int for count in counts)


@pytest.mark.parametrize(
    ("change", "organization", "token", "status"),
    [
        ({"interval": {**INTERVAL, "end": "2019-05-01T00:00:00Z"}}, None, None, 400),
        ({}, None, "rpk_unknown_key", 401),
        ({}, UNKNOWN_ORG, None, 404),
    ],
)
def test_every_error_status_parses_into_the_one_error_class(
    generated: tuple[str, ModuleType],
    open_service: Service,
    change: dict[str, Any],
    organization: str | None,
    token: str | None,
    status: int,
) -> None:
    response, models = _query(generated, open_service, {**GROUPED, **change}, organization, token)
    assert response.status_code == status
    assert type(response.parsed) is models.Error


def test_one_error_class_parses_every_status(generated: tuple[str, ModuleType]) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    # The error, its `code` (a Literal of every code) and its `errors` map: no class per status.
    assert [name for name in models.__all__ if "Error" in name] == ["Error", "ErrorCode", "ErrorErrors"]
    api = importlib.import_module(f"{PACKAGE}.api.default.query_visitor_sessions")
    parsers = re.findall(r"response_(\d+) = (\w+)\.from_dict", Path(api.__file__).read_text())
    assert {status: parser for status, parser in parsers} == {
        **{str(status): "Error" for status in error_codes()},
        "200": "Result",
    }
