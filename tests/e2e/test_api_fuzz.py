"""schemathesis against the chat API's own OpenAPI schema: whatever it sends, no 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from services.chat.api import create_app
from testkit.fixtures import database_url
from testkit.system import launched_in_thread, make_settings

schemathesis = pytest.importorskip("schemathesis")

schema = schemathesis.openapi.from_dict(create_app(make_settings("redis://unused", "http://unused")).openapi())


@pytest.fixture(scope="module")
def live_url(redis_server: str) -> Iterator[str]:
    with launched_in_thread(database_url(redis_server), tool_timeout_s=2.0) as url:
        yield url


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_causes_a_server_error(case: schemathesis.Case, live_url: str) -> None:
    response = case.call(base_url=live_url, timeout=30)
    not_ready = case.path == "/readyz" and response.status_code == 503  # its documented "not ready"
    assert response.status_code < 500 or not_ready, response.text
    if any(v.startswith("text/event-stream") for v in response.headers.get("content-type", [])):
        last = response.text.strip().split("\n\n")[-1]
        assert last.startswith(("event: done\n", "event: error\n")), response.text
