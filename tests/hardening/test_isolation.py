"""Tenant isolation on both engines, property-based: random filter trees (`or`, `not`, nulls,
arrays, values copied from other organizations' rows, names of internal columns) grouped by
`session_id` and other dimensions. Every answer equals the exact oracle for the calling
organization and holds no group value that only other organizations' rows hold; a filter or
group-by naming an internal column is a 400; `?explain=true` shows only the caller's own org."""

from __future__ import annotations

import orjson
import pytest
import requests

from tests.support.isolation import INTERNAL_NAMES, Json, post_checked, run_isolation
from tests.support.served import Service
from tests.support.tenants import ENGINES, SPAN, Tenants


@pytest.fixture(params=ENGINES)
def service(request: pytest.FixtureRequest) -> Service:
    started: Service = request.getfixturevalue(request.param)
    return started


def test_no_answer_holds_another_tenants_rows(
    service: Service, tenants: Tenants, capsys: pytest.CaptureFixture[str]
) -> None:
    checked = run_isolation(service, tenants, examples=60)
    with capsys.disabled():
        print(
            f"\nisolation on {service.backend}: {checked} answers equal the caller's oracle, no foreign value"
        )
    assert checked >= 30


@pytest.mark.parametrize("name", INTERNAL_NAMES)
@pytest.mark.parametrize("place", ["filter", "not_filter", "group_by"])
def test_internal_column_is_a_400(service: Service, tenants: Tenants, name: str, place: str) -> None:
    leaf = {"type": "selector", "dimension": name, "value": tenants.organizations[1]}
    payload: Json = {"interval": SPAN, "granularity": "all", "aggregations": [{"type": "count"}]}
    payload |= (
        {"group_by": [name]}
        if place == "group_by"
        else {"filters": leaf if place == "filter" else {"type": "not", "field": leaf}}
    )
    response = post_checked(service, tenants.organizations[0], payload)
    assert response.status_code == 400
    fields = {path.split(".")[0] for path in response.json()["errors"]}
    assert fields == {"group_by" if place == "group_by" else "filters"}


def test_explain_shows_only_the_callers_org(service: Service, tenants: Tenants) -> None:
    caller, *others = tenants.organizations
    payload: Json = {
        "interval": SPAN,
        "granularity": "all",
        "aggregations": [{"type": "count"}],
        "filters": {
            "type": "in",
            "dimension": "session_id",
            "values": tenants.foreign("session_id", caller)[:5],
        },
    }
    response = post_checked(service, caller, payload, "?explain=true")
    assert response.status_code == 200
    explained = orjson.dumps(response.json()["query"]).decode()
    assert caller in explained
    assert not [org for org in others if org in explained]


@pytest.mark.parametrize("explain", ["?explain=true", ""])
def test_another_orgs_key_gets_403_even_to_explain(service: Service, tenants: Tenants, explain: str) -> None:
    caller, target = tenants.organizations[0], tenants.organizations[1]
    url = f"{service.base_url}/api/reporting/v1/orgs/{target}/visitor_sessions{explain}"
    response = requests.post(
        url,
        json={"interval": SPAN, "granularity": "all", "aggregations": [{"type": "count"}]},
        headers={"Authorization": f"Token {service.tokens[caller]}"},
        timeout=30,
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
