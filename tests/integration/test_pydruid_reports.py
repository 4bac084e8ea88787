"""A few reports built independently with pydruid's own query builder, run on the real local
Druid, and compared with the service's answers to the same public queries: same numbers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydruid.utils.aggregators import longsum
from pydruid.utils.filters import Dimension
from pydruid.utils.postaggregator import Field

from bench.broker import Broker, rows
from tests.support.served import BROKER, DATASOURCE, Dataset, Service

pytestmark = pytest.mark.integration

JUNE = {"start": "2019-06-01T00:00:00Z", "end": "2019-07-01T00:00:00Z"}
JUNE_ISO = "2019-06-01T00:00:00Z/2019-07-01T00:00:00Z"
# pydruid has no builder for DataSketches HLL; this is the sketch the public hyperUnique reads.
VISITORS_SKETCH = {
    "type": "HLLSketchMerge",
    "fieldName": "visitor_id_sketch",
    "lgK": 14,
    "tgtHllType": "HLL_4",
    "round": False,
}


@pytest.fixture(scope="module")
def broker() -> Broker:
    return Broker(BROKER, timeout_secs=60)


@pytest.fixture(scope="module")
def organization(dataset: Dataset) -> str:
    return dataset.organizations[0]


def _public(service: Service, organization: str, payload: dict[str, Any]) -> list[list[Any]]:
    response = service.post(organization, payload)
    assert response.status_code == 200, response.text
    data: list[list[Any]] = response.json()["data"]
    return data


def _own(organization: str) -> Any:
    return Dimension("organization_id") == organization


def test_sessions_per_day(druid_service: Service, organization: str, broker: Broker) -> None:
    public = _public(
        druid_service,
        organization,
        {"interval": JUNE, "granularity": "day", "aggregations": [{"type": "count"}]},
    )
    answer = broker.timeseries(
        datasource=DATASOURCE,
        granularity="day",
        intervals=JUNE_ISO,
        aggregations={"count": longsum("count")},
        filter=_own(organization),
    )
    druid = {row["timestamp"][:10]: row["result"]["count"] for row in rows(answer)}
    # Druid leaves out leading and trailing empty days; the service zero-fills every day.
    assert {day[:10]: count for day, count in public} == {
        day[:10]: druid.get(day[:10], 0) for day, _ in public
    }
    assert len(public) == 30


def test_top_cities_by_sessions_with_unique_visitors(
    druid_service: Service, organization: str, broker: Broker
) -> None:
    payload = {
        "interval": JUNE,
        "granularity": "all",
        "group_by": ["city"],
        "aggregations": [{"type": "count"}, {"type": "hyperUnique", "fields": ["visitor_id"]}],
        "order_by": [{"field": "count", "direction": "desc"}, {"field": "city", "direction": "asc"}],
        "limit": 5,
    }
    public = _public(druid_service, organization, payload)
    answer = broker.groupby(
        datasource=DATASOURCE,
        granularity="all",
        intervals=JUNE_ISO,
        dimensions=["city"],
        aggregations={"count": longsum("count"), "visitors": dict(VISITORS_SKETCH)},
        filter=_own(organization),
        limit_spec={
            "type": "default",
            "limit": 5,
            "columns": [
                {"dimension": "count", "direction": "descending", "dimensionOrder": "numeric"},
                {"dimension": "city", "direction": "ascending"},
            ],
        },
    )
    druid = [[row["event"]["city"], row["event"]["count"], row["event"]["visitors"]] for row in rows(answer)]
    assert len(druid) == 5
    assert [row[1:] for row in public] == druid


def test_average_duration_of_mobile_sessions(
    druid_service: Service, organization: str, broker: Broker
) -> None:
    payload = {
        "interval": JUNE,
        "granularity": "all",
        "aggregations": [{"type": "avg", "fields": ["session_duration_secs"]}],
        "filters": [{"type": "selector", "dimension": "device_type", "value": "mobile"}],
    }
    [[_, public_avg]] = _public(druid_service, organization, payload)
    answer = broker.timeseries(
        datasource=DATASOURCE,
        granularity="all",
        intervals=JUNE_ISO,
        aggregations={"seconds": longsum("session_duration_secs_sum"), "sessions": longsum("count")},
        post_aggregations={"avg": Field("seconds") / Field("sessions")},
        filter=_own(organization) & (Dimension("device_type") == "mobile"),
    )
    [row] = rows(answer)
    assert row["result"]["sessions"] > 0
    assert math.isclose(public_avg, row["result"]["avg"], rel_tol=1e-9)
